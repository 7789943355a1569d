"""The one image/video reading policy (facelift_jax.media) used by datasets, predict, preprocessing
and the bridges.

Expected pixels come from independent constructions: the array written, numpy's own rotations for
the EXIF orientations (as the EXIF 2.3 spec defines them), the textbook CMYK → RGB formula.
"""

import io
import pathlib
import re
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from facelift_jax import media
from facelift_jax.evaluation.datasets import base

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _blocks(colours, rows: int, cols: int, side: int = 8) -> np.ndarray:
    """(rows·side, cols·side, C) uint8 of flat side×side blocks (row-major colours): flat 8×8 blocks
    survive JPEG at quality 100 without chroma subsampling within ±1-2 levels."""
    out = np.zeros((rows * side, cols * side, len(colours[0])), np.uint8)
    for k, c in enumerate(colours):
        r, q = divmod(k, cols)
        out[r * side:(r + 1) * side, q * side:(q + 1) * side] = c
    return out


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width×height RGB pixels, followed by a few hundred bytes of data."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4000)) + \
        chunk(b"IEND", b"")


# ----------------------------------------------------------------------------------------------
# Valid photographs: converted to (H, W, 3) uint8 RGB
# ----------------------------------------------------------------------------------------------

def test_read_image_converts_gray_alpha_and_16_bit_and_rejects_the_rest(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])
    np.testing.assert_array_equal(media.read_image(tmp_path / "c.png"), rgb)
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([rgb[..., ::-1], np.full((6, 9), 128, np.uint8)]))
    np.testing.assert_array_equal(media.read_image(tmp_path / "a.png"), rgb)
    cv2.imwrite(str(tmp_path / "g.png"), rgb[..., 0])
    np.testing.assert_array_equal(media.read_image(tmp_path / "g.png"), np.repeat(rgb[..., :1], 3, -1))
    Image.fromarray(np.dstack([rgb[..., 1], rgb[..., 2]]), "LA").save(tmp_path / "la.png")  # gray + alpha
    np.testing.assert_array_equal(media.read_image(tmp_path / "la.png"), np.repeat(rgb[..., 1:2], 3, -1))
    cv2.imwrite(str(tmp_path / "w.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    np.testing.assert_array_equal(media.read_image(tmp_path / "w.png"), rgb)
    cv2.imwrite(str(tmp_path / "f.tiff"), rgb.astype(np.float32))
    with pytest.raises(media.MediaError, match="pixel type float32") as e:
        media.read_image(tmp_path / "f.tiff")
    assert e.value.reason.startswith("unsupported") and e.value.path.name == "f.tiff"
    with pytest.raises(FileNotFoundError, match="cannot read image"):
        media.read_image(tmp_path / "none.png")


def test_16_bit_full_range_rounds_to_nearest_8_bit(tmp_path):
    # Every 16-bit value v → round(v · 255 / 65535) (= round(v / 257)); ties cannot occur.
    v = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    expected = np.floor(v.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "g16.png"), v)
    np.testing.assert_array_equal(media.read_image(tmp_path / "g16.png"), np.repeat(expected[..., None], 3, -1))
    rgba16 = np.dstack([v, v[::-1], v.T, np.full_like(v, 1000)])  # BGRA, 16-bit, mostly transparent
    cv2.imwrite(str(tmp_path / "c16.png"), rgba16)
    np.testing.assert_array_equal(media.read_image(tmp_path / "c16.png"),
                                  np.dstack([expected.T, expected[::-1], expected]))


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk_is_converted_to_rgb(tmp_path, fmt):
    cmyk = _blocks([(0, 0, 0, 0), (255, 0, 0, 0), (0, 128, 0, 64), (30, 200, 90, 100), (0, 0, 255, 200),
                    (10, 20, 30, 255)], 2, 3)
    path = tmp_path / f"cmyk.{fmt.lower()}"
    Image.fromarray(cmyk, "CMYK").save(path, fmt, **({"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}))
    c, m, y, k = (cmyk[..., i].astype(np.float64) / 255 for i in range(4))
    expected = 255 * np.stack([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)], -1)
    got = media.read_image(path)
    assert got.shape == (16, 24, 3) and got.dtype == np.uint8
    np.testing.assert_allclose(got, expected, atol=2)  # integer arithmetic in the decoders (+ JPEG: ±1)


# numpy's version of each EXIF orientation (EXIF 2.3, tag 0x0112): the stored array → what a viewer shows.
_ORIENT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
    # Six distinct flat colours on a 2×3 grid: every flip / rotation gives a different picture.
    rgb = _blocks([(250, 0, 0), (0, 250, 0), (0, 0, 250), (250, 250, 0), (0, 250, 250), (250, 0, 250)], 2, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(tmp_path / "o.jpg", quality=100, subsampling=0, exif=exif)
    assert Image.open(tmp_path / "o.jpg").getexif()[0x0112] == orientation  # the tag really is in the file
    got = media.read_image(tmp_path / "o.jpg")
    expected = _ORIENT[orientation](rgb)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=3)


# ----------------------------------------------------------------------------------------------
# Bad files: one MediaError each, with a reason that says what is wrong
# ----------------------------------------------------------------------------------------------

def _good_jpeg(tmp_path) -> bytes:
    img = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8), (5, 5), 0)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_empty_image_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(media.MediaError) as e:
        media.read_image(tmp_path / "e.png")
    assert e.value.reason == "empty (0 bytes)"


def test_text_file_named_png(tmp_path):
    (tmp_path / "t.png").write_text("this is a text file\n")
    with pytest.raises(media.MediaError, match="not a readable image file"):
        media.read_image(tmp_path / "t.png")


def test_truncated_png(tmp_path):
    cv2.imwrite(str(tmp_path / "ok.png"), np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    with pytest.raises(media.MediaError, match="not a readable image file"):
        media.read_image(tmp_path / "cut.png")


def test_truncated_jpeg_is_refused_not_filled_with_grey(tmp_path):
    data = _good_jpeg(tmp_path)
    (tmp_path / "cut.jpg").write_bytes(data[:int(len(data) * 0.7)])
    # What the check prevents: libjpeg reading the file decodes it without an error, rows lost are grey.
    assert (cv2.imread(str(tmp_path / "cut.jpg"))[-8:] == 128).all()
    with pytest.raises(media.MediaError, match="a truncated JPEG"):
        media.read_image(tmp_path / "cut.jpg")
    (tmp_path / "ok.jpg").write_bytes(data + b"camera trailer \xff\xda\x00")  # bytes after EOI are fine
    assert media.read_image(tmp_path / "ok.jpg").shape == (64, 80, 3)


def test_jpeg_completeness_across_encoders():
    img = cv2.GaussianBlur(np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 0)
    encoded = {"baseline": cv2.imencode(".jpg", img)[1].tobytes(),
               "progressive": cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
               "restart markers": cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])[1].tobytes()}
    for name, kwargs in {"pillow + EXIF": {"exif": Image.Exif()}, "optimized": {"optimize": True},
                         "pillow CMYK": {}}.items():
        buf = io.BytesIO()
        (Image.fromarray(img).convert("CMYK") if "CMYK" in name else Image.fromarray(img)).save(buf, "JPEG", **kwargs)
        encoded[name] = buf.getvalue()
    for name, data in encoded.items():
        assert media.jpeg_is_complete(data), name
        for cut in (3, len(data) // 4, len(data) // 2, len(data) - 40, len(data) - 2, len(data) - 1):
            assert not media.jpeg_is_complete(data[:cut]), (name, cut)


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    # 12000² = 144 M pixels: above media's limit (134 M), below Pillow's own (179 M) and OpenCV's (1 G).
    (tmp_path / "bomb.png").write_bytes(_png_header(12000, 12000))
    with pytest.raises(media.MediaError, match=r"too large: its header claims 12000×12000 = 144,000,000 pixels"):
        media.read_image(tmp_path / "bomb.png")
    # 100000² = 10¹⁰ pixels (30 GB decoded) from a 150-byte file: Pillow's own guard trips first.
    (tmp_path / "huge.png").write_bytes(_png_header(100000, 100000))
    with pytest.raises(media.MediaError, match="too large: its header claims more than"):
        media.read_image(tmp_path / "huge.png")
    # The limit is a documented, settable number: a genuine 64×64 image above a lowered limit.
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((64, 64, 3), np.uint8))
    monkeypatch.setattr(media, "MAX_IMAGE_PIXELS", 64 * 64 - 1)
    with pytest.raises(media.MediaError, match="64×64 = 4,096 pixels, the limit is media.MAX_IMAGE_PIXELS = 4,095"):
        media.read_image(tmp_path / "ok.png")


def test_one_pixel_image_is_read_but_refused_as_an_evaluation_sample(tmp_path):
    cv2.imwrite(str(tmp_path / "px.png"), np.array([[[10, 20, 30]]], np.uint8))
    np.testing.assert_array_equal(media.read_image(tmp_path / "px.png"), [[[30, 20, 10]]])  # a valid file
    # ... but no face: a dataset sample names itself instead of failing inside a model batch
    # (predict refuses it too: tests/test_export_predict.py).
    with pytest.raises(base.DatasetFormatError, match=r"sample px: the image is 1×1 pixels, too small"):
        base.EvalSample(name="px", image=media.read_image(tmp_path / "px.png"), box=np.zeros(4))
    with pytest.raises(base.DatasetFormatError, match=r"sample g: the image must be \(H, W, 3\) uint8"):
        base.EvalSample(name="g", image=np.zeros((20, 20), np.uint8), box=np.zeros(4))


def test_dataset_reader_error_names_the_file(tmp_path):
    data = _good_jpeg(tmp_path)
    (tmp_path / "face_0003.jpg").write_bytes(data[:len(data) // 2])
    with pytest.raises(base.DatasetFormatError, match=r"face_0003.jpg is a truncated JPEG"):
        base.read_image_rgb(tmp_path / "face_0003.jpg")


def test_evaluate_skips_bad_images_of_a_real_dataset_and_names_them(tmp_path):
    """DAD-3DHeads fixture with a truncated image, a 1×1 image and a (valid) 16-bit grayscale one."""
    from test_datasets import H, W, _write_dad

    from facelift_jax import evaluate
    from facelift_jax.evaluation.datasets.dad3dheads import DAD3DHeads
    from facelift_jax.predict import PredictionResult

    root, _ = _write_dad(tmp_path, n=4)
    data = _good_jpeg(tmp_path)
    (root / "images" / "item1.png").write_bytes(data[:len(data) // 2])  # content decides, not the suffix
    cv2.imwrite(str(root / "images" / "item2.png"), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(root / "images" / "item3.png"), np.full((H, W), 40000, np.uint16))
    ds = DAD3DHeads(root)
    np.testing.assert_array_equal(ds[3].image, np.full((H, W, 3), 156))  # 40000 · 255 / 65535 = 155.6

    class Zeros:  # stands in for the model: run_predictions only batches and concatenates
        batch_size = 2

        def predict_crops(self, images, boxes):
            n = len(images)
            return PredictionResult(np.zeros((n, 98, 3)), np.zeros((n, 98, 2)), np.zeros((n, 98, 2, 2)),
                                    np.tile(np.eye(3), (n, 1, 1)), np.zeros((n, 3)), np.zeros((n, 3)), boxes)

    run = evaluate.run_predictions(Zeros(), ds, progress=False)
    assert run["names"] == ["item0", "item3"]
    assert [(s["index"], s["error"]) for s in run["skipped"]] == [
        (1, f"image {root / 'images' / 'item1.png'} is a truncated JPEG: the data ends before the end-of-image "
            "marker (an interrupted download or copy? get the file again)"),
        (2, "sample item2: the image is 1×1 pixels, too small (at least 8×8)")]

# ----------------------------------------------------------------------------------------------
# Videos
# ----------------------------------------------------------------------------------------------

def _write_avi(path, frames, fps=12.0, size=(16, 16)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def test_video_chunks_properties_and_suffixes(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    _write_avi(tmp_path / "v.avi", frames)
    chunks = list(media.iter_video(tmp_path / "v.avi", 2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    np.testing.assert_array_equal(np.stack([f for c in chunks for f in c]), media.read_video(tmp_path / "v.avi"))
    assert media.video_properties(tmp_path / "v.avi") == (5, 12.0)
    assert media.is_video("x.MP4") and media.is_image("x.JPG") and not media.is_video("x.png")
    (tmp_path / "junk.avi").write_bytes(b"not a video")
    with pytest.raises(media.MediaError, match="not a video file OpenCV can open"):
        media.video_properties(tmp_path / "junk.avi")


def test_zero_byte_video(tmp_path):
    (tmp_path / "z.mp4").write_bytes(b"")
    for read in (media.video_properties, media.read_video, lambda p: next(media.iter_video(p))):
        with pytest.raises(media.MediaError) as e:
            read(tmp_path / "z.mp4")
        assert e.value.reason == "empty (0 bytes)"


def test_video_without_frames(tmp_path):
    _write_avi(tmp_path / "none.avi", [])  # a valid container holding no frame
    assert media.video_properties(tmp_path / "none.avi")[0] == 0  # it opens ...
    for read in (media.read_video, lambda p: list(media.iter_video(p, 4))):
        with pytest.raises(media.MediaError, match="a video without a decodable frame"):  # ... but is no video
            read(tmp_path / "none.avi")


# ----------------------------------------------------------------------------------------------
# One reader for the whole project
# ----------------------------------------------------------------------------------------------

def test_media_is_the_only_reader():
    """Image/video decoding outside media.py would bypass its policy (EXIF, CMYK, limits, errors)."""
    readers = re.compile(r"cv2\.(imread|imdecode|imreadmulti|VideoCapture)\b|\bImage\.open\b|\bimageio\b|"
                         r"\bskimage\.io\b|\btifffile\b")
    offenders = []
    for folder in ("facelift_jax", "bridges", "benchmarks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "facelift_jax" / "media.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if readers.search(line.split("#")[0]):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "read through facelift_jax.media instead:\n" + "\n".join(offenders)
    suffix_lists = [p for folder in ("facelift_jax", "bridges", "benchmarks")
                    for p in (ROOT / folder).rglob("*.py") if p.name != "media.py"
                    and re.search(r"\(\s*[\"']\.mp4[\"']\s*,\s*[\"']\.avi|\(\s*[\"']\.avi[\"']\s*,\s*[\"']\.mp4",
                                  p.read_text())]
    assert not suffix_lists, f"video suffix lists besides media.VIDEO_SUFFIXES: {suffix_lists}"
