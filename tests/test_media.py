"""The one image/video reading policy (facelift_jax.media) used by datasets, predict, preprocessing
and the bridges."""

import cv2
import numpy as np
import pytest

from facelift_jax import media


def test_read_image_converts_gray_alpha_and_16_bit_and_rejects_the_rest(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])
    np.testing.assert_array_equal(media.read_image(tmp_path / "c.png"), rgb)
    cv2.imwrite(str(tmp_path / "a.png"), np.dstack([rgb[..., ::-1], np.full((6, 9), 128, np.uint8)]))
    np.testing.assert_array_equal(media.read_image(tmp_path / "a.png"), rgb)
    cv2.imwrite(str(tmp_path / "g.png"), rgb[..., 0])
    np.testing.assert_array_equal(media.read_image(tmp_path / "g.png"), np.repeat(rgb[..., :1], 3, -1))
    cv2.imwrite(str(tmp_path / "w.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    np.testing.assert_array_equal(media.read_image(tmp_path / "w.png"), rgb)
    cv2.imwrite(str(tmp_path / "f.tiff"), rgb.astype(np.float32))
    with pytest.raises(media.MediaError, match="pixel type float32") as e:
        media.read_image(tmp_path / "f.tiff")
    assert e.value.reason.startswith("unsupported") and e.value.path.name == "f.tiff"
    with pytest.raises(FileNotFoundError, match="cannot read image"):
        media.read_image(tmp_path / "none.png")


def test_video_chunks_properties_and_suffixes(tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(tmp_path / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (16, 16))
    for f in frames:
        writer.write(f)
    writer.release()
    chunks = list(media.iter_video(tmp_path / "v.avi", 2))
    assert [len(c) for c in chunks] == [2, 2, 1]
    np.testing.assert_array_equal(np.stack([f for c in chunks for f in c]), media.read_video(tmp_path / "v.avi"))
    assert media.video_properties(tmp_path / "v.avi") == (5, 12.0)
    assert media.is_video("x.MP4") and media.is_image("x.JPG") and not media.is_video("x.png")
    (tmp_path / "junk.avi").write_bytes(b"not a video")
    with pytest.raises(media.MediaError):
        media.video_properties(tmp_path / "junk.avi")
