"""Reading images and videos: one policy for every reader in the project.

Images (``read_image``): any photograph OpenCV decodes, returned as (H, W, 3) uint8 RGB:
  * grayscale (with or without alpha) is expanded to three equal channels;
  * an alpha channel is dropped (the stored colours are kept, not blended with a background);
  * 16-bit samples are scaled to 8 bit (round(v / 257), so 65535 → 255);
  * CMYK (JPEG, TIFF) is converted to RGB by the decoder (R ≈ (255 − C)(255 − K) / 255, ...);
  * the EXIF orientation tag is applied (the array is upright as a viewer shows it).
Refused before any pixel is decoded (``MediaError``): an empty file; a header claiming more than
``MAX_IMAGE_PIXELS`` pixels (a decompression bomb: a few-kB PNG can claim 100000×100000 pixels,
30 GB once decoded; read by Pillow, which parses the header only); a JPEG whose data ends before
its end-of-image marker (libjpeg would silently fill the missing rows with grey). Refused after
decoding: float or other non-8/16-bit samples.

Videos (``iter_video``, ``read_video``, ``read_frame``, ``video_properties``): decoded with
OpenCV, frames (H, W, 3) uint8 RGB; every capture is released. An empty file, a file OpenCV
cannot open and a video without a decodable frame are ``MediaError``.

Errors: a missing file raises ``FileNotFoundError``; a file that exists but is not a usable image
or video raises ``MediaError`` (a ``ValueError``) with ``path`` and ``reason`` (a phrase that reads
after "the file is": "empty (0 bytes)", "not a readable image file", "a truncated JPEG (...)",
"unsupported: pixel type float32 (...)", ...). No error of OpenCV or Pillow escapes these functions.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import warnings
from collections.abc import Iterator

import cv2
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm")  # what OpenCV decodes
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_FPS = 25.0  # when a container does not state its frame rate
# 2**27 ≈ 134 M pixels (e.g. 11585²): a 100-megapixel camera's photo passes; decoded it takes 400 MB as
# 8-bit RGB (800 MB at 16 bit). Raise it (media.MAX_IMAGE_PIXELS = ...) to read larger images; above
# 2 × PIL.Image.MAX_IMAGE_PIXELS (≈ 179 M by default) Pillow's own guard refuses the header too.
MAX_IMAGE_PIXELS = 2**27


class MediaError(ValueError):
    """A file exists but is not an image / video this project can use."""

    def __init__(self, path, reason: str):
        self.path, self.reason = pathlib.Path(path), reason
        super().__init__(f"{path}: {reason}")


def is_video(path) -> bool:
    return pathlib.Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_image(path) -> bool:
    return pathlib.Path(path).suffix.lower() in IMAGE_SUFFIXES


# ----------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------

def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the file's header states it, None when Pillow does not know the format.

    ``Image.open`` is lazy: it parses the header and decodes no pixel. Pillow's own bomb guard
    (an error above 2 × ``PIL.Image.MAX_IMAGE_PIXELS``) is reported as an infinite size.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit here is ours
        try:
            with Image.open(io.BytesIO(data)) as im:
                return im.size
        except Image.DecompressionBombError:
            return (np.inf, np.inf)
        except Exception:  # noqa: BLE001 -- an unknown or damaged header: OpenCV decides (and has its own limit)
            return None


# A marker ends a scan's entropy-coded data: 0xFF followed by anything but 0x00 (a stuffed 0xFF byte),
# a restart marker (0xD0-0xD7) or another 0xFF (fill; the last 0xFF of a run then matches).
_END_OF_SCAN = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


def jpeg_is_complete(data: bytes) -> bool:
    """Whether JPEG bytes (starting with SOI 0xFFD8) reach the end-of-image marker (0xFFD9).

    libjpeg decodes a truncated file without an error (the missing rows come out grey), so
    truncation is found here: marker segments are skipped by their length field, each scan's
    entropy-coded data by searching for the marker that ends it; running out of bytes first means
    the file was cut. Bytes after the end-of-image marker (camera trailers) are ignored.
    """
    pos, n = 2, len(data)
    while True:
        pos = data.find(b"\xff", pos)  # libjpeg also skips stray bytes before a marker
        if pos < 0 or pos + 1 >= n:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0xD9:  # EOI
            return True
        elif 0xD0 <= marker <= 0xD7 or marker == 0x01:  # segments without a length field
            pos += 2
        else:
            if pos + 4 > n:
                return False
            pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
            if marker == 0xDA:  # SOS: the scan's entropy-coded data follows its header
                end = _END_OF_SCAN.search(data, pos)
                if end is None:
                    return False
                pos = end.start()


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, upright (module doc for the accepted formats)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cannot read image {path}: it does not exist")
    data = path.read_bytes()
    if not data:
        raise MediaError(path, "empty (0 bytes)")
    size = _header_size(data)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        claim = (f"more than {2 * Image.MAX_IMAGE_PIXELS:,} (Pillow's limit)" if np.isinf(size[0])
                 else f"{size[0]}×{size[1]} = {size[0] * size[1]:,}")
        raise MediaError(path, f"too large: its header claims {claim} pixels, the limit is media.MAX_IMAGE_PIXELS = "
                               f"{MAX_IMAGE_PIXELS:,} (a decompression bomb? else downscale the image)")
    if data[:2] == b"\xff\xd8" and not jpeg_is_complete(data):
        raise MediaError(path, "a truncated JPEG: the data ends before the end-of-image marker "
                               "(an interrupted download or copy? get the file again)")
    # IMREAD_COLOR: gray → 3 channels, alpha dropped, CMYK → colour, EXIF orientation applied
    # (IMREAD_UNCHANGED would skip the last three); IMREAD_ANYDEPTH keeps 16 bit for exact rounding.
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    except cv2.error as e:
        raise MediaError(path, f"not a readable image file (OpenCV: {str(e).strip().splitlines()[-1]})") from e
    if image is None:
        raise MediaError(path, "not a readable image file (OpenCV cannot decode it)")
    if image.dtype == np.uint16:
        image = cv2.convertScaleAbs(image, alpha=1 / 257)  # round(v / 257), exact for every uint16 value
    elif image.dtype != np.uint8:
        raise MediaError(path, f"unsupported: pixel type {image.dtype} (expected 8 or 16 bit; convert it first)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------------------------
# Videos
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def open_video(path) -> Iterator[cv2.VideoCapture]:
    """An opened ``cv2.VideoCapture`` of ``path``, released on exit."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cannot open video {path}: it does not exist")
    if path.stat().st_size == 0:
        raise MediaError(path, "empty (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MediaError(path, "not a video file OpenCV can open")
        yield cap
    finally:
        cap.release()


def video_properties(path) -> tuple[int, float]:
    """(frame count as the container states it, 0 if unknown; frames per second, ``DEFAULT_FPS``
    when the container gives none or a meaningless one)."""
    with open_video(path) as cap:
        count, fps = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
    return max(0, int(count or 0)), float(fps) if np.isfinite(fps) and fps > 0 else DEFAULT_FPS


def iter_video(path, chunk: int = 1) -> Iterator[list[np.ndarray]]:
    """The frames of a video file, (H, W, 3) uint8 RGB, in lists of ``chunk`` (the last may be shorter).

    ``MediaError`` (at the first ``next``) when not even one frame decodes.
    """
    with open_video(path) as cap:
        frames, count = [], 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(np.ascontiguousarray(frame[..., ::-1]))
            count += 1
            if len(frames) == chunk:
                yield frames
                frames = []
        if frames:
            yield frames
        if count == 0:
            raise MediaError(path, "a video without a decodable frame")


def read_video(path) -> np.ndarray:
    """Every frame of a video file → (T, H, W, 3) uint8 RGB; ``MediaError`` if none decodes."""
    return np.stack([f for chunk in iter_video(path, 64) for f in chunk])


def read_frame(path, index: int) -> np.ndarray:
    """Frame ``index`` of a video file → (H, W, 3) uint8 RGB; ``IndexError`` if out of range."""
    with open_video(path) as cap:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 0 and not 0 <= index < count:
            raise IndexError(f"frame {index} out of range for {path} with {count} frames")
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = cap.read()
        if not ok:
            raise IndexError(f"cannot decode frame {index} of {path}")
        return np.ascontiguousarray(frame[..., ::-1])
