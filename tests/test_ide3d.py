"""bridges.ide3d without the real checkpoint: a stand-in generator in a fake IDE-3D checkout.

The stand-in's class lives only in the fake checkout, so unpickling it exercises the real loading
path (checkout on sys.path, its legacy.load_network_pkl). Its synthesis records the camera label it
receives and draws images that depend on it; the label is checked against EG3D's LookAtPoseSampler
formulas (REFERENCE.md) plus the OpenGL axis flip, written out here independently of camera.py.
"""

import math
import pickle
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bridges import ide3d  # noqa: E402
from facelift_jax import camera  # noqa: E402

pytestmark = pytest.mark.torch

RAY_START, RAY_END = 2.25, 3.3            # IDE-3D's FFHQ range, the default when G names none
EG3D_RAY_START, EG3D_RAY_END = 2.4, 3.4   # the EG3D-style stand-in declares its own range
Z_DIM, W_DIM, NUM_WS, RES = 8, 8, 3, 64
SIGMA = 5.0  # the stand-in fields' raw density everywhere

STANDIN_SOURCE = textwrap.dedent('''
    import torch

    def _semantic_logits(points):
        background = points[..., 0] > 0                          # world x > 0 is background
        logits = torch.zeros(*points.shape[:2], 19)
        logits[..., 0] = 10.0 * background
        logits[..., 1] = 10.0 * ~background
        return logits

    class IDE3DStyleRenderer(torch.nn.Module):
        """sample_voxel(img_v, seg_v, points) → (B, M, 52): 32 texture, 19 semantic, raw sigma."""
        def sample_voxel(self, img_v, seg_v, points):
            B, M, _ = points.shape
            return torch.cat([torch.zeros(B, M, 32), _semantic_logits(points), torch.full((B, M, 1), SIGMA)], -1)

    class EG3DStyleRenderer(torch.nn.Module):
        """run_model(planes, decoder, points, dirs, options) → {'sigma', 'semantic', 'rgb'}."""
        def run_model(self, planes, decoder, sample_coordinates, sample_directions, options):
            B, M, _ = sample_coordinates.shape
            return {"rgb": torch.zeros(B, M, 32), "sigma": torch.full((B, M, 1), SIGMA),
                    "semantic": _semantic_logits(sample_coordinates)}

    class StandInSynthesis(torch.nn.Module):
        def __init__(self, renderer, calls, query_field=True):
            super().__init__()
            self.renderer, self.calls, self.query_field = renderer, calls, query_field

        def forward(self, ws, c, noise_mode="random", return_seg=False, **kwargs):
            B = ws.shape[0]
            cam2world = c[:, :16].reshape(B, 4, 4)
            origin = cam2world[:, :3, 3]
            forward = -cam2world[:, :3, 2]                      # OpenGL: the camera looks down -z
            t = torch.linspace(2.205, 3.405, 13)  # no sample exactly at a tested near/far midpoint
            lateral = torch.tensor([-0.3, 0.0, 0.3])[:, None] * torch.tensor([1.0, 0.0, 0.0])
            dirs = torch.nn.functional.normalize(forward[:, None, :] * 2.7 + lateral[None], dim=-1)
            pts = (origin[:, None, None, :] + t[None, None, :, None] * dirs[:, :, None, :]).reshape(B, -1, 3)
            record = {"c": c.clone(), "noise_mode": noise_mode, "return_seg": return_seg, "points": pts.clone()}
            if self.query_field and hasattr(self.renderer, "sample_voxel"):
                record["sigma"] = self.renderer.sample_voxel(None, None, pts)[..., -1:].clone()
            elif self.query_field:
                record["sigma"] = self.renderer.run_model(None, None, pts, dirs.repeat_interleave(13, 1), {})["sigma"].clone()
            self.calls[-1].update(record)
            ramp = torch.linspace(-1, 1, RES).expand(B, RES, RES)   # varies along image x
            image = torch.stack([ramp,
                                 (origin[:, 0] / 2.7)[:, None, None].expand(B, RES, RES),
                                 torch.tanh(ws.mean((1, 2)))[:, None, None].expand(B, RES, RES)], 1)
            seg = torch.zeros(B, 19, RES, RES)
            seg[:, 1, :, : RES // 2] = 5.0                       # skin on the left half
            seg[:, 13, :, RES // 2 :] = 5.0                      # hair on the right half
            return image, seg

    class StandInGenerator(torch.nn.Module):
        """layout "ide3d": G.synthesis.renderer.sample_voxel; "eg3d": G.renderer.run_model plus
        rendering_kwargs; "silent": a renderer that synthesis never queries."""
        def __init__(self, layout="ide3d"):
            super().__init__()
            self.z_dim, self.c_dim, self.w_dim, self.num_ws = Z_DIM, 25, W_DIM, NUM_WS
            self.calls = []
            renderer = EG3DStyleRenderer() if layout == "eg3d" else IDE3DStyleRenderer()
            self.synthesis = StandInSynthesis(renderer, self.calls, query_field=layout != "silent")
            if layout == "eg3d":
                self.renderer = renderer
                self.rendering_kwargs = {"ray_start": EG3D_RAY_START, "ray_end": EG3D_RAY_END}
            self.register_buffer("w_avg", torch.zeros(W_DIM))

        def mapping(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
            self.calls.append({"z": z.clone(), "c_cond": c.clone(), "psi": truncation_psi})
            w = self.w_avg + truncation_psi * (z[:, :W_DIM] - self.w_avg)
            return w[:, None, :].repeat(1, NUM_WS, 1)
''')
STANDIN_CONSTANTS = (f"Z_DIM, W_DIM, NUM_WS, RES, SIGMA = {Z_DIM}, {W_DIM}, {NUM_WS}, {RES}, {SIGMA}\n"
                     f"EG3D_RAY_START, EG3D_RAY_END = {EG3D_RAY_START}, {EG3D_RAY_END}\n")

LEGACY_SOURCE = textwrap.dedent('''
    import pickle
    import dnnlib        # the real legacy.py imports these two; so does the fake
    import torch_utils

    def load_network_pkl(f, force_fp16=False):
        return pickle.load(f)
''')


def _forget_checkout_modules():
    for name in list(sys.modules):
        if name.split(".")[0] in ("legacy", "dnnlib", "torch_utils", "standin_training"):
            del sys.modules[name]


@pytest.fixture(scope="module")
def fake_checkout(tmp_path_factory):
    """(checkout dir, IDE-3D-style pickle, all pickles by layout); stand-in code only in the checkout."""
    root = tmp_path_factory.mktemp("ide3d")
    repo = root / "IDE-3D"
    for pkg in ("dnnlib", "torch_utils", "standin_training"):
        (repo / pkg).mkdir(parents=True)
        (repo / pkg / "__init__.py").write_text("")
    (repo / "legacy.py").write_text(LEGACY_SOURCE)
    (repo / "standin_training" / "generator.py").write_text(STANDIN_CONSTANTS + STANDIN_SOURCE)
    sys.path.insert(0, str(repo))
    try:
        from standin_training.generator import StandInGenerator

        pkls = {}
        for layout in ("ide3d", "eg3d", "silent"):
            pkls[layout] = root / f"standin-{layout}.pkl"
            with open(pkls[layout], "wb") as f:
                pickle.dump({"G_ema": StandInGenerator(layout), "D": None}, f)
    finally:
        sys.path.remove(str(repo))
        _forget_checkout_modules()
    yield repo, pkls["ide3d"], pkls
    if str(repo) in sys.path:
        sys.path.remove(str(repo))
    _forget_checkout_modules()


# --------------------------------------------------------------------------- independent camera math


def lookat_cam2world_opencv(h, v, lookat, radius):
    """EG3D LookAtPoseSampler.sample(h, v, lookat, radius) as REFERENCE.md states it."""
    theta, phi = h, math.acos(1 - 2 * v / math.pi)
    origin = radius * np.array([math.sin(phi) * math.cos(math.pi - theta), math.cos(phi),
                                math.sin(phi) * math.sin(math.pi - theta)])
    fwd = np.asarray(lookat, float) - origin
    fwd /= np.linalg.norm(fwd)
    right = -np.cross([0.0, 1.0, 0.0], fwd)
    right /= np.linalg.norm(right)
    up = np.cross(fwd, right)
    up /= np.linalg.norm(up)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up, fwd, origin
    return m


def expected_ide3d_label(azimuth, elevation, roll, dt, radius=2.7, lookat=(0, 0, 0.2)):
    a, b, g = np.deg2rad([azimuth, elevation, roll])
    # camera.py's angles → sampler arguments: h = π/2 + α, v = π/2 (1 − sin β).
    m = lookat_cam2world_opencv(math.pi / 2 + a, math.pi / 2 * (1 - math.sin(b)), lookat, radius)
    # Roll γ > 0 turns the image content clockwise: the camera's x, y axes rotate by γ about its z.
    x, y = m[:3, 0].copy(), m[:3, 1].copy()
    m[:3, 0] = math.cos(g) * x - math.sin(g) * y
    m[:3, 1] = math.sin(g) * x + math.cos(g) * y
    # Δt is added to the camera-space translation: the centre moves by −(cam2world rotation)·Δt.
    m[:3, 3] = m[:3, 3] - m[:3, :3] @ np.asarray(dt, float)
    # OpenGL: camera y (up) and z (backward) are the negated OpenCV axes.
    m[:3, 1] *= -1
    m[:3, 2] *= -1
    K = np.array([[2985.29 / 700, 0, 0.5], [0, 2985.29 / 700, 0.5], [0, 0, 1]])
    return np.concatenate([m.reshape(-1), K.reshape(-1)])


CAMERAS = [  # azimuth, elevation, roll (degrees), Δt
    (0.0, 0.0, 0.0, (0.0, 0.0, 0.0)),
    (35.0, 10.0, 0.0, (0.0, 0.0, 0.0)),
    (-70.0, -25.0, 20.0, (0.03, -0.02, 0.1)),
    (100.0, 40.0, -75.0, (0.0, 0.05, -0.15)),
]


def make_cameras():
    a, b, g, t = (np.array(x, np.float32) for x in zip(*CAMERAS))
    return camera.camera_from_angles(a, b, g, t)


# --------------------------------------------------------------------------- tests


def test_missing_checkout_items_are_named(tmp_path):
    (tmp_path / "dnnlib").mkdir()
    with pytest.raises(FileNotFoundError, match="legacy.py, torch_utils"):
        ide3d.add_checkout_to_path(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ide3d.add_checkout_to_path(tmp_path / "nowhere")


def test_missing_checkpoint_is_named(fake_checkout, tmp_path):
    repo, _, _ = fake_checkout
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        ide3d.IDE3DGenerator(tmp_path / "missing.pkl", repo)


def test_render_passes_expected_labels_and_images_reach_jax(fake_checkout):
    repo, pkl, _ = fake_checkout
    gen = ide3d.IDE3DGenerator(pkl, repo, truncation_psi=0.5, device="cpu", batch_size=3)
    seeds = np.array([0, 7, 123, 2**31 + 5])
    cams = make_cameras()
    out = gen.render(seeds, cams, image_size=224)

    calls = gen.G.calls
    assert len(calls) == 2  # batch_size 3 → chunks of 3 and 1
    c = torch.cat([k["c"] for k in calls]).numpy()
    for i, (a, b, g, dt) in enumerate(CAMERAS):
        np.testing.assert_allclose(c[i], expected_ide3d_label(a, b, g, dt), atol=2e-5, err_msg=f"camera {i}")
    z = torch.cat([k["z"] for k in calls]).numpy()
    for i, s in enumerate(seeds):
        np.testing.assert_allclose(z[i], np.random.RandomState(s).randn(1, Z_DIM)[0], rtol=1e-6)
    c_cond = torch.cat([k["c_cond"] for k in calls]).numpy()
    frontal = expected_ide3d_label(0.0, 0.0, 0.0, (0, 0, 0))  # identity rotation, centre (0, 0, 2.7)
    np.testing.assert_allclose(c_cond, np.tile(frontal, (4, 1)), atol=1e-4)
    assert all(k["psi"] == 0.5 and k["noise_mode"] == "const" and k["return_seg"] for k in calls)

    assert isinstance(out.image, jax.Array) and out.image.shape == (4, 224, 224, 3)
    assert out.image.dtype == jnp.uint8
    img = np.asarray(out.image).astype(int)
    # Channel 1 is the constant (camera-centre x / 2.7) in [-1, 1] → round((v + 1) · 127.5).
    centre_x = np.array([expected_ide3d_label(*cam)[3] for cam in CAMERAS])
    np.testing.assert_array_equal(img[:, 100, 50, 1], np.round((centre_x / 2.7 + 1) * 127.5))
    # Channel 0 is linspace(-1, 1, 64) along x, i.e. v(u) = -1 + 2 (64 u - 1/2) / 63 at image
    # position u ∈ [0, 1]; output column j samples u = (j + 1/2) / 224 (bilinear is exact on a ramp).
    cols = np.arange(8, 216)
    u = (cols + 0.5) / 224
    np.testing.assert_allclose(img[0, 10, cols, 0], np.round((2 * (64 * u - 0.5) / 63) * 127.5), atol=1)
    assert img.min() >= 0 and img.max() <= 255 and img[..., 0].max() >= 250 and img[..., 0].min() <= 5
    sem = np.asarray(out.semantic)
    assert out.semantic.shape == (4, 224, 224) and out.semantic.dtype == jnp.uint8
    assert (sem[:, :, :110] == 1).all() and (sem[:, :, 114:] == 13).all()
    assert out.depth is None and out.landmarks2d is None
    assert out.cameras is cams


@pytest.mark.parametrize("layout", ["ide3d", "eg3d"])
def test_background_fix_applied_inside_render(fake_checkout, layout):
    repo, _, pkls = fake_checkout
    near, far = (RAY_START, RAY_END) if layout == "ide3d" else (EG3D_RAY_START, EG3D_RAY_END)
    cams = make_cameras()
    for fix in (True, False):
        gen = ide3d.IDE3DGenerator(pkls[layout], repo, device="cpu", fix_background=fix)
        gen.render(np.arange(4), cams, image_size=32)
        call = gen.G.calls[-1]
        pts, sigma = call["points"].numpy(), call["sigma"].numpy()[..., 0]
        # The camera centre is the label's translation column.
        origin = np.stack([expected_ide3d_label(*cam)[[3, 7, 11]] for cam in CAMERAS])
        dist = np.linalg.norm(pts - origin[:, None], axis=-1)
        near_background = (pts[..., 0] > 0) & (dist < (near + far) / 2)
        assert near_background.any() and (~near_background).any()
        expected = np.where(near_background, 1.0, SIGMA) if fix else np.full_like(sigma, SIGMA)
        np.testing.assert_array_equal(sigma, expected)
        if fix:
            assert gen.layout.name == layout and gen.frustum == pytest.approx((near, far))
            # The hook is gone after rendering: the renderer's own method answers again.
            assert gen.layout.method not in vars(gen.renderer)


def test_background_fix_refuses_to_do_nothing(fake_checkout):
    repo, _, pkls = fake_checkout
    gen = ide3d.IDE3DGenerator(pkls["silent"], repo, device="cpu")
    with pytest.raises(RuntimeError, match="never called"):
        gen.render(np.arange(4), make_cameras(), image_size=32)
    ide3d.IDE3DGenerator(pkls["silent"], repo, device="cpu", fix_background=False).render(
        np.arange(4), make_cameras(), image_size=32)


def test_background_density_fix_math_brute_force():
    gen = torch.Generator().manual_seed(0)
    B, M, C = 2, 50, 19
    sigma = torch.randn(B, M, 1, generator=gen) * 10
    semantic = torch.randn(B, M, C, generator=gen)
    semantic[:, ::3, 0] += 5.0  # make background frequent
    coords = torch.randn(B, M, 3, generator=gen) * 0.6
    origins = torch.tensor([[0.0, 0.0, 2.7], [1.0, 0.5, 2.4]])
    out = ide3d.background_density_fix(sigma, semantic, coords, origins, near=2.25, far=3.3, density=1.0)
    changed = 0
    for b in range(B):
        for m in range(M):
            d = math.dist(coords[b, m].tolist(), origins[b].tolist())
            is_bg = int(torch.argmax(semantic[b, m])) == 0
            want = 1.0 if (is_bg and d < 2.775) else float(sigma[b, m, 0])
            assert float(out[b, m, 0]) == pytest.approx(want)
            changed += is_bg and d < 2.775
    assert 0 < changed < B * M


def test_hook_restores_method_and_finds_no_renderer():
    class Renderer(torch.nn.Module):
        def sample_voxel(self, img_v, seg_v, points):
            return torch.zeros(*points.shape[:2], 52)

    r = Renderer()
    points = torch.zeros(1, 4, 3)
    with ide3d.BackgroundFixHook(r, ide3d.ide3d_layout(), torch.zeros(1, 3), 2.25, 3.3) as hook:
        r.sample_voxel(None, None, points)
        assert "sample_voxel" in vars(r)
    assert hook.calls == 1 and "sample_voxel" not in vars(r)
    with pytest.raises(TypeError, match="run_model"):
        ide3d.BackgroundFixHook(r, ide3d.eg3d_layout(), torch.zeros(1, 3), 2.25, 3.3)
    with pytest.raises(TypeError, match="fix_background=False"):
        ide3d.find_renderer(torch.nn.Linear(2, 2))


def test_latent_z_and_bad_seeds():
    z = ide3d.latent_z([3, 4], 5)
    np.testing.assert_allclose(z[1], np.random.RandomState(4).randn(5), rtol=1e-6)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        ide3d.latent_z([-1], 5)
    with pytest.raises(TypeError, match="integer seeds"):
        ide3d.latent_z([0.5], 5)


def test_render_rejects_mismatched_batch(fake_checkout):
    repo, pkl, _ = fake_checkout
    gen = ide3d.IDE3DGenerator(pkl, repo, device="cpu")
    with pytest.raises(ValueError, match="one camera per latent"):
        gen.render(np.arange(3), make_cameras())


def test_custom_field_layout():
    class PackedRenderer(torch.nn.Module):  # a field answering (B, M, 3 + 19 + 1), semantics after rgb
        def query(self, features, points):
            B, M, _ = points.shape
            out = torch.zeros(B, M, 23)
            out[..., 3] = 10.0   # every sample is background
            out[..., 22] = 7.0   # raw sigma last
            return out

    layout = ide3d.FieldLayout("packed", "query", 1, sigma=lambda o: o[..., -1:], semantic=lambda o: o[..., 3:22],
                               with_sigma=lambda o, s: torch.cat([o[..., :-1], s], -1))
    r = PackedRenderer()
    points = torch.tensor([[[0.0, 0.0, 0.3], [0.0, 0.0, -0.5]]])  # 2.4 and 3.2 from the camera
    with ide3d.BackgroundFixHook(r, layout, torch.tensor([[0.0, 0.0, 2.7]]), 2.25, 3.3):
        sigma = r.query(None, points)[..., -1]
    assert sigma[0].tolist() == [1.0, 7.0]


def test_preview_cli_writes_png(fake_checkout, tmp_path):
    repo, pkl, _ = fake_checkout
    path = ide3d.main(["--checkpoint", str(pkl), "--repo", str(repo), "--out", str(tmp_path),
                       "--seeds", "3", "--azimuths=-60,0,60", "--image-size", "48", "--device", "cpu"])
    import cv2

    png = cv2.imread(str(path))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 200


def test_class_mapping_to_synthetic_names():
    from facelift_jax.synthetic.classes import SEMANTIC_CLASSES

    names = ide3d.IDE3D_SEMANTIC_CLASSES
    mapped = np.asarray(ide3d.to_synthetic_classes(np.arange(19, dtype=np.uint8)))
    by_name = {names[i]: SEMANTIC_CLASSES[m] for i, m in enumerate(mapped)}
    assert by_name["background"] == "background" and by_name["skin"] == "skin"
    assert by_name["l_brow"] == by_name["r_brow"] == "brows"
    assert by_name["l_eye"] == by_name["r_eye"] == "eyes"
    assert by_name["u_lip"] == by_name["l_lip"] == "lips" and by_name["nose"] == "nose"
    assert by_name["hair"] == "hair" and by_name["cloth"] == "background"
    assert set(by_name.values()) == set(SEMANTIC_CLASSES)


def test_from_config(fake_checkout):
    import ml_collections

    repo, pkl, _ = fake_checkout
    cfg = ml_collections.ConfigDict(dict(checkpoint=str(pkl), repo=str(repo), truncation_psi=0.6,
                                         fix_background=False))
    gen = ide3d.IDE3DGenerator.from_config(cfg, device="cpu")
    assert gen.truncation_psi == 0.6 and not gen.fix_background and gen.renderer is None
    cfg.checkpoint = ""
    with pytest.raises(ValueError, match="checkpoint"):
        ide3d.IDE3DGenerator.from_config(cfg)
