"""Reading images and videos: one policy for every reader in the project.

Images (``read_image``): any file OpenCV decodes, returned as (H, W, 3) uint8 RGB. Grayscale is
expanded to three channels, an alpha channel dropped, 16-bit samples scaled to 8 bit (/257, rounded).
Videos (``iter_video``, ``read_video``, ``read_frame``, ``video_properties``): decoded with
OpenCV, frames (H, W, 3) uint8 RGB; every capture is released.

Errors: a missing file raises ``FileNotFoundError``; a file that exists but is not a usable image
or video raises ``MediaError`` (a ``ValueError``) with ``path`` and ``reason`` (a phrase that reads
after "the file is": "not a readable image file", "unsupported: 2 channels (...)", ...).
"""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
DEFAULT_FPS = 25.0  # when a container does not state its frame rate


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

def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (module doc for the accepted formats)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cannot read image {path}: it does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise MediaError(path, "not a readable image file")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    else:
        raise MediaError(path, f"unsupported: {image.shape[2]} channels (expected 1, 3 or 4)")
    if image.dtype != np.uint8:
        if image.dtype != np.uint16:
            raise MediaError(path, f"unsupported: pixel type {image.dtype} (expected 8 or 16 bit)")
        image = (image / 257.0).round().astype(np.uint8)
    return image


# ----------------------------------------------------------------------------------------------
# Videos
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def open_video(path) -> Iterator[cv2.VideoCapture]:
    """An opened ``cv2.VideoCapture`` of ``path``, released on exit."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cannot open video {path}: it does not exist")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MediaError(path, "OpenCV cannot open this video file")
        yield cap
    finally:
        cap.release()


def video_properties(path) -> tuple[int, float]:
    """(frame count as the container states it, 0 if unknown; frames per second)."""
    with open_video(path) as cap:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)), float(cap.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS)


def iter_video(path, chunk: int = 1) -> Iterator[list[np.ndarray]]:
    """The frames of a video file, (H, W, 3) uint8 RGB, in lists of ``chunk`` (the last may be shorter)."""
    with open_video(path) as cap:
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(np.ascontiguousarray(frame[..., ::-1]))
            if len(frames) == chunk:
                yield frames
                frames = []
        if frames:
            yield frames


def read_video(path) -> np.ndarray:
    """Every frame of a video file → (T, H, W, 3) uint8 RGB; ``MediaError`` if none decodes."""
    frames = [f for chunk in iter_video(path, 64) for f in chunk]
    if not frames:
        raise MediaError(path, "no decodable frames")
    return np.stack(frames)


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
