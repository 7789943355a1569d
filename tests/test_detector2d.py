"""bridges.detector2d: crop geometry, heatmap decoding, end to end with known-answer networks, and
the pyfacer release file against pyfacer's own ``FaRLFaceAlignment`` (``pip install --no-deps pyfacer==0.0.5``).

The known-answer networks compute a known function of the crop — heatmap k is colour channel k % 3
(average-pooled), or directly that channel's intensity centroid — on images holding one Gaussian
blob per colour channel. Every landmark must therefore land on its blob's known image position,
which only happens if the crop, the decoding and the uncrop are all right.
"""

import io
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import jax  # noqa: E402

from bridges import detector2d  # noqa: E402

pytestmark = pytest.mark.torch

H, W = 240, 320


def blob_image(centres, sigma=3.0, h=H, w=W):
    """(h, w, 3) uint8 with a Gaussian blob per channel at pixel positions centres (3, 2)."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5  # pixel centres, continuous convention
    img = np.zeros((h, w, 3))
    for c, (cx, cy) in enumerate(centres):
        img[..., c] = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return np.round(img * 255).astype(np.uint8)


class ChannelHeatmaps(torch.nn.Module):
    """Heatmap k = colour channel k % 3 of the crop, pooled 4× (heatmaps coarser than the crop)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("index", torch.arange(98) % 3)

    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x[:, self.index], 4)


class ChannelCentroids(torch.nn.Module):
    """Landmark k = intensity centroid of colour channel k % 3, in crop pixels (B, 196)."""

    def forward(self, x):
        B, _, S, _ = x.shape
        c = (torch.arange(S, dtype=x.dtype) + 0.5)
        w = x / x.sum((2, 3), keepdim=True)
        px, py = (w.sum(2) * c).sum(-1), (w.sum(3) * c).sum(-1)
        pts = torch.stack([px, py], -1)  # (B, 3, 2)
        return pts[:, torch.arange(98) % 3].reshape(B, 196)


BLOBS = np.array([[[130.3, 100.7], [170.2, 98.4], [151.6, 140.1]],
                  [[60.5, 60.2], [95.8, 75.3], [70.1, 110.9]]])


def expected_normalized(blobs):
    return np.stack([b[np.arange(98) % 3] / np.array([W, H]) for b in blobs])


# --------------------------------------------------------------------------- geometry


def test_box_crop_matrix_closed_form():
    # Box 100×120 centred at (150, 110), face scale 0.8 → square side 150 from (75, 35) to (225, 185).
    M = detector2d.box_crop_matrix([[100, 50, 200, 170]], 448, 0.8)
    np.testing.assert_allclose(detector2d.crop_points([[[75, 35], [225, 185], [150, 110]]], M),
                               [[[0, 0], [448, 448], [224, 224]]], atol=1e-9)


def test_full_image_crop_letterboxes():
    M = detector2d.full_image_crop_matrix(H, W, 448)  # 320 wide: x spans the crop, y is centred
    np.testing.assert_allclose(detector2d.crop_points([[[0, 0], [W, H]]], M),
                               [[[0, 224 - 448 * H / W / 2], [448, 224 + 448 * H / W / 2]]], atol=1e-9)


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(7, 2)) * 30
    ang, s, t = math.radians(-37.0), 1.7, np.array([12.0, -4.0])
    R = s * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    M = detector2d.similarity_matrix(src, src @ R.T + t)
    np.testing.assert_allclose(M[:2, :2], R, atol=1e-12)
    np.testing.assert_allclose(M[:2, 2], t, atol=1e-10)


def test_points5_crop_hits_pyfacer_target():
    target = (detector2d.STANDARD_FACE_5 * 0.8 + 1) * 447 / 2
    ang = math.radians(25.0)
    R = 0.4 * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    points5 = target @ R.T + np.array([40.0, 30.0])  # a rotated, shrunken face in some image
    M = detector2d.points5_crop_matrix(points5[None], 448, 0.8)
    np.testing.assert_allclose(detector2d.crop_points(points5[None], M)[0], target, atol=1e-9)


@pytest.mark.parametrize("kind", ["box", "points5", "full"])
def test_crop_and_uncrop_are_exact_inverses(kind):
    rng = np.random.default_rng(1)
    if kind == "box":
        M = detector2d.box_crop_matrix([[10, 20, 90, 130], [200, 5, 260, 40]], 448, 0.8)
    elif kind == "points5":
        M = detector2d.points5_crop_matrix(rng.normal(size=(2, 5, 2)) * 20 + 100, 448, 0.8)
    else:
        M = np.concatenate([detector2d.full_image_crop_matrix(H, W, 256, 2)])
    p = rng.uniform(-50, 400, size=(2, 98, 2))
    np.testing.assert_allclose(detector2d.uncrop_points(detector2d.crop_points(p, M), M), p, atol=1e-9)
    np.testing.assert_allclose(detector2d.crop_points(detector2d.uncrop_points(p, M), M), p, atol=1e-9)


def test_warp_crops_puts_image_content_at_M_p():
    img = np.zeros((1, 1, H, W), np.float32)
    img[0, 0, 77, 201] = 1.0  # pixel centre (201.5, 77.5)
    M = detector2d.box_crop_matrix([[150, 40, 250, 120]], 200, 1.0)  # scale 2: no aliasing of one pixel
    crop = detector2d.warp_crops(torch.from_numpy(img), M, 200)[0, 0].numpy()
    qx, qy = detector2d.crop_points([[[201.5, 77.5]]], M)[0, 0]
    iy, ix = np.unravel_index(np.argmax(crop), crop.shape)
    assert abs(ix + 0.5 - qx) <= 1.0 and abs(iy + 0.5 - qy) <= 1.0
    # The brightness centroid of the bilinear footprint lands on M·p exactly.
    ys, xs = np.mgrid[0:200, 0:200] + 0.5
    np.testing.assert_allclose([(crop * xs).sum() / crop.sum(), (crop * ys).sum() / crop.sum()], [qx, qy], atol=1e-4)


def test_decode_heatmaps_mean_softmax_and_empty():
    hm = torch.zeros(1, 3, 8, 16)
    hm[0, 0, 2, 5] = 1.0                        # one hot pixel → its centre
    hm[0, 1, 4, 3] = hm[0, 1, 4, 9] = 0.5       # two equal peaks → midway
    points, peak = detector2d.decode_heatmaps(hm, "mean")
    np.testing.assert_allclose(points[0, 0], [5.5 / 16, 2.5 / 8])
    np.testing.assert_allclose(points[0, 1], [6.5 / 16, 4.5 / 8])
    np.testing.assert_allclose(points[0, 2], [0.5, 0.5])  # empty heatmap → centre, confidence 0
    np.testing.assert_allclose(peak[0], [1.0, 0.5, 0.0])
    logits = torch.full((1, 1, 8, 16), -30.0)
    logits[0, 0, 6, 12] = 30.0
    sm, _ = detector2d.decode_heatmaps(logits, "softmax")
    np.testing.assert_allclose(sm[0, 0], [12.5 / 16, 6.5 / 8], atol=1e-6)


# --------------------------------------------------------------------------- end to end


def test_detect_heatmaps_with_boxes_lands_on_blobs():
    det = detector2d.TorchLandmarkDetector(ChannelHeatmaps(), crop_size=448, face_scale=0.8, device="cpu")
    images = np.stack([blob_image(b) for b in BLOBS])
    boxes = np.array([[110, 80, 190, 160], [40, 40, 120, 130]])
    lm, conf = det.detect(jax.numpy.asarray(images), boxes=boxes, return_confidence=True)
    assert isinstance(lm, jax.Array) and lm.shape == (2, 98, 2) and conf.shape == (2, 98)
    err_px = np.abs(np.asarray(lm) - expected_normalized(BLOBS)) * np.array([W, H])
    assert err_px.max() < 0.1, err_px.max()


def test_detect_coordinates_with_points5_rotated_face():
    det = detector2d.TorchLandmarkDetector(ChannelCentroids(), crop_size=256, face_scale=0.8,
                                           output="coords", coord_units="pixels", device="cpu")
    # A rotated 5-point face around the blobs: the crop is a rotation + scale of the image.
    ang = math.radians(30.0)
    R = 0.35 * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    points5 = np.stack([detector2d.STANDARD_FACE_5 * 100 @ R.T * 2 + b.mean(0) for b in BLOBS])
    images = np.stack([blob_image(b) for b in BLOBS])
    lm = det.detect(images, points5=points5)
    err_px = np.abs(np.asarray(lm) - expected_normalized(BLOBS)) * np.array([W, H])
    assert err_px.max() < 0.1, err_px.max()


def test_detect_whole_image_on_render_output_like_object_and_batches():
    class Render:  # what generators return: an object with .image
        def __init__(self, image):
            self.image = image

    det = detector2d.TorchLandmarkDetector(ChannelHeatmaps(), crop_size=320, device="cpu", batch_size=1)
    images = np.stack([blob_image(b) for b in BLOBS])
    lm = det.detect(Render(jax.numpy.asarray(images)))
    err_px = np.abs(np.asarray(lm) - expected_normalized(BLOBS)) * np.array([W, H])
    assert err_px.max() < 0.1, err_px.max()
    single = det.detect(images[1])  # (H, W, 3) is one image
    np.testing.assert_allclose(np.asarray(single)[0], np.asarray(lm)[1], atol=1e-6)


def test_detect_bad_inputs():
    det = detector2d.TorchLandmarkDetector(ChannelHeatmaps(), crop_size=64, device="cpu")
    img = blob_image(BLOBS[0])
    with pytest.raises(ValueError, match="shape"):
        det.detect(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="x1 > x0"):
        det.detect(img, boxes=[[10, 10, 5, 20]])
    with pytest.raises(ValueError, match="one box"):
        det.detect(img, boxes=[[0, 0, 10, 10], [0, 0, 20, 20]])
    with pytest.raises(TypeError, match="boxes="):
        det.detect(img, np.array([[0, 0, 10, 10]]))
    wrong = detector2d.TorchLandmarkDetector(torch.nn.Identity(), crop_size=64, device="cpu")
    with pytest.raises(ValueError, match="heatmaps"):
        wrong.detect(img)


def test_load_pyfacer_wflw_full_torchscript(tmp_path):
    traced = torch.jit.trace(ChannelHeatmaps(), torch.zeros(1, 3, 448, 448))
    path = tmp_path / "wflw_full.pt"
    torch.jit.save(traced, str(path))
    det = detector2d.load_pyfacer_wflw(path, device="cpu")
    assert det.crop_size == 448 and det.face_scale == 0.8
    images = np.stack([blob_image(b) for b in BLOBS])
    lm = det.detect(images, boxes=np.array([[110, 80, 190, 160], [40, 40, 120, 130]]))
    err_px = np.abs(np.asarray(lm) - expected_normalized(BLOBS)) * np.array([W, H])
    assert err_px.max() < 0.1


def _block_pyfacer(monkeypatch):
    """As if pyfacer were not installed: drop its loaded modules, block the import (restored after)."""
    for name in [n for n in sys.modules if n == "facer" or n.startswith("facer.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "facer", None)


def test_load_pyfacer_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        detector2d.load_pyfacer_wflw(tmp_path / "nothing.pt")
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="TorchScript"):
        detector2d.load_pyfacer_wflw(bogus)
    head = torch.jit.trace(torch.nn.Conv2d(3, 98, 1), torch.zeros(1, 3, 8, 8))
    release_like = tmp_path / "head_only.pt"
    torch.jit.save(head, str(release_like), _extra_files={"backbone": b"state"})
    _block_pyfacer(monkeypatch)
    with pytest.raises(ImportError, match="pip install --no-deps pyfacer"):
        detector2d.load_pyfacer_wflw(release_like)


# --------------------------------------------------------------------------- pyfacer's own FaRLFaceAlignment


@pytest.fixture(scope="module")
def pyfacer_modules():
    from bridges import upstream

    try:
        return (upstream.pyfacer("farl"), upstream.pyfacer("face_alignment.network"),
                upstream.pyfacer("face_alignment.farl"))
    except ModuleNotFoundError as e:
        pytest.skip(f"needs pyfacer's code ({upstream.PYFACER_INSTALL}): {e}")


class StandInHead(torch.nn.Module):
    """Stands in for mmseg's UPerHead (pyfacer's MMSEG_UPerHead needs mmcv, which has no CPU wheel
    here); pyfacer ships the head traced anyway. Each of the four FPN levels → 1×1 conv to 98
    channels, upsampled to the finest level and summed: heatmap logits that depend on the image."""

    def __init__(self, channels: int):
        super().__init__()
        self.lateral = torch.nn.ModuleList([torch.nn.Conv2d(channels, 98, 1) for _ in range(4)])

    def forward(self, features: list[torch.Tensor]):
        size = features[0].shape[-2:]
        out = self.lateral[0](features[0])
        for conv, f in zip(self.lateral[1:], features[1:]):
            out = out + torch.nn.functional.interpolate(conv(f), size=size, mode="bilinear", align_corners=False)
        return out


def pyfacer_release_file(network, path, width):
    """A file in pyfacer's release layout, written as pyfacer's face_alignment/farl.py __main__ does:
    the traced heatmap head, the backbone's state_dict as the extra file "backbone"."""
    torch.manual_seed(0)
    backbone = network.FaRLVisualFeatures("base", None, forced_input_resolution=448, output_indices=None).eval()
    head = StandInHead(width).eval()
    with torch.no_grad():  # sparse, peaked sigmoid maps, so the 98 points spread over the face
        for conv in head.lateral:
            conv.weight.mul_(3.0)
            conv.bias.fill_(-2.0)
        features, _ = backbone(torch.rand(1, 3, 448, 448))
    traced = torch.jit.trace(head, example_inputs=[features])
    buffer = io.BytesIO()
    torch.save(backbone.state_dict(), buffer)
    torch.jit.save(traced, str(path), _extra_files={"backbone": buffer.getvalue()})
    return path


@pytest.mark.filterwarnings("ignore:torch.meshgrid")  # pyfacer's heatmap2points
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_release_file_matches_pyfacer_face_alignment(pyfacer_modules, tmp_path, monkeypatch):
    """pyfacer's FaRLFaceAlignment (its crop, network, heatmap warp-back and decoding) and the
    project's loader + detector on the same release-layout file and a 640×480 image."""
    farl_package, network, alignment = pyfacer_modules
    width = 64

    def small_farl(model_type, model_file=None):  # FaRL's ViT at width 64 (12 blocks: pyfacer reads 3, 5, 7, 11)
        tower = farl_package.model.VisualTransformer(input_resolution=224, patch_size=16, width=width, layers=12,
                                                     heads=2, output_dim=32)
        tower.transformer.use_checkpoint = False
        return tower

    monkeypatch.setattr(farl_package, "load_farl", small_farl)  # both sides build FaRLVisualFeatures("base")
    path = pyfacer_release_file(network, tmp_path / "face_alignment.farl.wflw.main_ema_jit.pt", width)
    H_, W_ = 480, 640
    image = np.random.default_rng(0).integers(0, 256, (1, H_, W_, 3), dtype=np.uint8)
    ang, scale = math.radians(15.0), 90.0  # a rotated face; its crop lies inside the image
    R = scale * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    points5 = (detector2d.STANDARD_FACE_5 @ R.T + np.array([330.0, 250.0]))[None]

    aligner = alignment.FaRLFaceAlignment("wflw/448", model_path=str(path), device="cpu")
    with torch.no_grad():
        data = aligner(torch.from_numpy(image).permute(0, 3, 1, 2),
                       {"points": torch.tensor(points5, dtype=torch.float32), "image_ids": torch.tensor([0])})
    theirs = data["alignment"].numpy()  # pixels, integer pixel centres (pyfacer's denormalize_points: −½)

    det = detector2d.load_pyfacer_wflw(path, device="cpu")
    ours = np.asarray(det.detect(image, points5=points5)) * np.array([W_, H_]) - 0.5
    assert ours.shape == theirs.shape == (1, 98, 2)
    assert theirs[0].std(0).min() > 5.0  # the points are spread out, not all at the crop centre
    err = np.abs(ours - theirs)
    # pyfacer decodes after resampling the heatmaps into the image, the project in the crop: the two
    # weighted means differ by resampling only (the dry run: 0.013 px on average).
    assert err.mean() < 0.03 and err.max() < 0.25, (err.mean(), err.max())


def test_pyfacer_network_imports_without_facer_init():
    """The loader's import path pulls neither torchvision nor pyfacer's toolkit (a fresh interpreter)."""
    code = ("import sys; from bridges import upstream; upstream.pyfacer('face_alignment.network'); "
            "heavy = ['torchvision', 'skimage', 'matplotlib', 'cv2', 'facer', 'facer.face_detection', 'requests']; "
            "print(sorted(m for m in heavy if m in sys.modules))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=str(Path(__file__).resolve().parents[1]))
    if "is not installed" in out.stderr:
        pytest.skip("needs pyfacer")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_cli_draws_landmarks_and_saves_them(tmp_path):
    import cv2

    traced = torch.jit.trace(ChannelHeatmaps(), torch.zeros(1, 3, 448, 448))
    weights = tmp_path / "wflw_full.pt"
    torch.jit.save(traced, str(weights))
    image_path = tmp_path / "blobs.png"
    cv2.imwrite(str(image_path), cv2.cvtColor(blob_image(BLOBS[0]), cv2.COLOR_RGB2BGR))
    out = detector2d.main(["--weights", str(weights), "--image", str(image_path),
                           "--out", str(tmp_path / "overlay.png"), "--box", "110,80,190,160", "--device", "cpu"])
    drawn = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    saved = np.load(out.with_suffix(".npy"))
    err_px = np.abs(saved - expected_normalized(BLOBS[:1])[0]) * np.array([W, H])
    assert err_px.max() < 0.1
    x, y = (saved[0] * np.array([W, H]) - 0.5).round().astype(int)
    assert tuple(drawn[y, x]) == (0, 255, 0)  # a green dot where landmark 0 lies
    with pytest.raises(FileNotFoundError, match="cannot read image"):
        detector2d.main(["--weights", str(weights), "--image", str(tmp_path / "no.png"), "--out", str(out)])


def test_from_config(tmp_path):
    import ml_collections

    with pytest.raises(ValueError, match="weights is empty"):
        detector2d.from_config(ml_collections.ConfigDict(dict(weights="")))
    path = tmp_path / "wflw_full.pt"
    torch.jit.save(torch.jit.trace(ChannelHeatmaps(), torch.zeros(1, 3, 64, 64)), str(path))
    det = detector2d.from_config(ml_collections.ConfigDict(dict(weights=str(path))), device="cpu")
    assert det.crop_size == 448 and det.output == "heatmap"
