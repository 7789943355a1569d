"""bridges.ide3d without the real checkpoint: persistence-pickled stand-ins in a fake IDE-3D checkout.

IDE-3D's checkpoint carries the generator's source code (``torch_utils.persistence``); the public
repository has no licence, so nothing of it is copied here. The fake checkout is written for these
tests: its ``torch_utils/persistence.py`` pickles a class together with its module's source and
rebuilds it from that source on load; its ``legacy.py`` imports click and its ``dnnlib/util.py``
requests (as IDE-3D's do); its ``dnnlib/camera.py`` and the pickled generator module import
``numpy.lib.function_base`` / ``numpy.lib.arraysetops`` (as IDE-3D's code does, gone in NumPy 2).
The generator module is deleted after pickling, so its code comes from the pickle alone.

The stand-in's synthesis records the camera label it receives and draws images that depend on it;
the label is checked against EG3D's LookAtPoseSampler formulas (REFERENCE.md) plus the OpenGL axis
flip, written out here independently of camera.py. Its "fov" variant builds pi-GAN-style rays from
its own 18° field of view and ignores the label's K, and draws a blob where a fixed world point
lies: the blob must land where camera.project puts that point with the K the bridge derives.
"""

import contextlib
import importlib
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
FOV, RAY_GRID = 18.0, 64                  # the "fov" stand-in's own rendering settings (IDE-3D's scripts: 18°)
POINT = (0.14, -0.1, 0.1)                 # the world point the "fov" and "label" stand-ins draw as a blob

PERSISTENCE_SOURCE = textwrap.dedent('''
    """Pickle a class with its module's source; rebuild it from that source (written for the tests)."""
    import copy
    import inspect
    import sys
    import types
    import uuid

    import dnnlib

    _source_of = {}     # module name -> source, for modules built from a pickle
    _module_of = {}     # source -> module

    def persistent_class(cls):
        source = _source_of.get(cls.__module__) or inspect.getsource(sys.modules[cls.__module__])

        class Persistent(cls):
            _module_source = source
            _class_name = cls.__name__

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._init_kwargs = copy.deepcopy(kwargs)

            @property
            def init_kwargs(self):
                return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

            def __reduce__(self):
                return _rebuild, (type(self)._module_source, type(self)._class_name), dict(self.__dict__)

        Persistent.__name__ = Persistent.__qualname__ = cls.__name__
        return Persistent

    def _module(source):
        if source not in _module_of:
            module = types.ModuleType("_pickled_module_" + uuid.uuid4().hex)
            sys.modules[module.__name__] = module
            _source_of[module.__name__] = source
            exec(compile(source, module.__name__, "exec"), module.__dict__)
            _module_of[source] = module
        return _module_of[source]

    def _rebuild(source, class_name):
        cls = getattr(_module(source), class_name)
        return cls.__new__(cls)
''')

STANDIN_SOURCE = textwrap.dedent('''
    import math

    import numpy as np
    import torch
    from numpy.lib.arraysetops import isin          # NumPy 1 names, as IDE-3D's code imports them
    from dnnlib import camera as _camera            # imports numpy.lib.function_base
    from torch_utils import persistence
    # EXTRA IMPORTS

    _NUMPY_ALIASES_WORK = bool(isin(2, [1, 2])) and abs(_camera.QUARTER_TURN - math.pi / 2) < 1e-12

    def _semantic_logits(points):
        background = points[..., 0] > 0                          # world x > 0 is background
        logits = torch.zeros(*points.shape[:2], 19)
        logits[..., 0] = 10.0 * background
        logits[..., 1] = 10.0 * ~background
        return logits

    @persistence.persistent_class
    class IDE3DStyleRenderer(torch.nn.Module):
        """sample_voxel(img_v, seg_v, points) → (B, M, 52): 32 texture, 19 semantic, raw sigma."""
        def sample_voxel(self, img_v, seg_v, points):
            B, M, _ = points.shape
            return torch.cat([torch.zeros(B, M, 32), _semantic_logits(points), torch.full((B, M, 1), SIGMA)], -1)

    @persistence.persistent_class
    class EG3DStyleRenderer(torch.nn.Module):
        """run_model(planes, decoder, points, dirs, options) → {'sigma', 'semantic', 'rgb'}."""
        def run_model(self, planes, decoder, sample_coordinates, sample_directions, options):
            B, M, _ = sample_coordinates.shape
            return {"rgb": torch.zeros(B, M, 32), "sigma": torch.full((B, M, 1), SIGMA),
                    "semantic": _semantic_logits(sample_coordinates)}

    def _camera_rays(c, rays, fov, grid):
        """(B, grid, grid, 3) world ray directions: pi-GAN rays from the field of view (x, y =
        linspace(±1) through the outer pixel centres, z = -1/tan(fov/2)), or rays through the
        pixel centres with the label's K. OpenGL camera: x right, y up, looking down -z."""
        B = c.shape[0]
        if rays == "fov":
            x = torch.linspace(-1, 1, grid).expand(B, grid, grid)
            y = torch.linspace(1, -1, grid)[:, None].expand(B, grid, grid)
            z = torch.full_like(x, -1.0 / math.tan(math.radians(fov) / 2))
        else:
            K = c[:, 16:25].reshape(B, 3, 3)
            centres = (torch.arange(grid) + 0.5) / grid
            x = (centres[None, None, :] - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None]
            y = -(centres[None, :, None] - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None]
            x, y = x.expand(B, grid, grid), y.expand(B, grid, grid)
            z = -torch.ones_like(x)
        d = torch.stack([x, y, z], -1)
        rotation = c[:, :16].reshape(B, 4, 4)[:, :3, :3]
        return torch.nn.functional.normalize(torch.einsum("bij,bhwj->bhwi", rotation, d), dim=-1)

    @persistence.persistent_class
    class StandInSynthesis(torch.nn.Module):
        def __init__(self, renderer, calls, query_field=True, rays="none", fov=None, grid=None):
            super().__init__()
            self.renderer, self.calls, self.query_field = renderer, calls, query_field
            self.rays, self.fov, self.grid = rays, fov, grid

        def forward(self, ws, c, noise_mode="random", return_seg=False, **kwargs):
            B = ws.shape[0]
            cam2world = c[:, :16].reshape(B, 4, 4)
            origin = cam2world[:, :3, 3]
            forward = -cam2world[:, :3, 2]                      # OpenGL: the camera looks down -z
            t = torch.linspace(2.205, 3.405, 13)  # no sample exactly at a tested near/far midpoint
            lateral = torch.tensor([-0.3, 0.0, 0.3])[:, None] * torch.tensor([1.0, 0.0, 0.0])
            dirs = torch.nn.functional.normalize(forward[:, None, :] * 2.7 + lateral[None], dim=-1)
            pts = (origin[:, None, None, :] + t[None, None, :, None] * dirs[:, :, None, :]).reshape(B, -1, 3)
            record = {"c": c.clone(), "noise_mode": noise_mode, "return_seg": return_seg, "points": pts.clone(),
                      "kwargs": dict(kwargs)}
            if self.query_field and hasattr(self.renderer, "sample_voxel"):
                record["sigma"] = self.renderer.sample_voxel(None, None, pts)[..., -1:].clone()
            elif self.query_field:
                record["sigma"] = self.renderer.run_model(None, None, pts, dirs.repeat_interleave(13, 1), {})["sigma"].clone()
            self.calls[-1].update(record)
            if self.rays == "none":
                channel0 = torch.linspace(-1, 1, RES).expand(B, RES, RES)   # varies along image x
            else:  # a blob about POINT: exp(-(distance from the ray to POINT)² / 2s²)
                d = _camera_rays(c, self.rays, self.fov, RES)
                v = torch.tensor(POINT)[None, None, None] - origin[:, None, None, :]
                along = (v * d).sum(-1, keepdim=True)
                dist2 = ((v - along * d) ** 2).sum(-1)
                channel0 = 2.0 * torch.exp(-dist2 / (2 * 0.02 ** 2)) - 1.0
            image = torch.stack([channel0,
                                 (origin[:, 0] / 2.7)[:, None, None].expand(B, RES, RES),
                                 torch.tanh(ws.mean((1, 2)))[:, None, None].expand(B, RES, RES)], 1)
            seg = torch.zeros(B, 19, RES, RES)
            seg[:, 1, :, : RES // 2] = 5.0                       # skin on the left half
            seg[:, 13, :, RES // 2 :] = 5.0                      # hair on the right half
            return image, seg

    @persistence.persistent_class
    class StandInGenerator(torch.nn.Module):
        """layout "ide3d": G.synthesis.renderer.sample_voxel; "eg3d": G.renderer.run_model plus
        rendering_kwargs; "silent": a renderer that synthesis never queries. rays "fov": pi-GAN
        rays from rendering_kwargs["fov"] (an init kwarg only, as persistence keeps it) on a
        neural_rendering_resolution grid; "label": rays from the label's K; "none": no rays."""
        def __init__(self, layout="ide3d", rays="none", rendering_kwargs=None, neural_rendering_resolution=None):
            super().__init__()
            assert _NUMPY_ALIASES_WORK
            self.z_dim, self.c_dim, self.w_dim, self.num_ws = Z_DIM, 25, W_DIM, NUM_WS
            self.calls = []
            renderer = EG3DStyleRenderer() if layout == "eg3d" else IDE3DStyleRenderer()
            fov = (rendering_kwargs or {}).get("fov")
            self.synthesis = StandInSynthesis(renderer, self.calls, query_field=layout != "silent", rays=rays,
                                              fov=fov, grid=neural_rendering_resolution)
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
                     f"EG3D_RAY_START, EG3D_RAY_END = {EG3D_RAY_START}, {EG3D_RAY_END}\nPOINT = {POINT}\n")

CHECKOUT_FILES = {
    "legacy.py": '''
        import pickle

        import click         # IDE-3D's legacy.py imports these
        import dnnlib
        import torch_utils

        def load_network_pkl(f, force_fp16=False):
            return pickle.load(f)
        ''',
    "dnnlib/__init__.py": "from .util import EasyDict\n",
    "dnnlib/util.py": '''
        import requests      # as IDE-3D's dnnlib/util.py does

        class EasyDict(dict):
            def __getattr__(self, name):
                try:
                    return self[name]
                except KeyError:
                    raise AttributeError(name)
        ''',
    "dnnlib/camera.py": '''
        from numpy.lib.function_base import angle    # as IDE-3D's dnnlib/camera.py does

        QUARTER_TURN = float(angle(1j))
        ''',
    "torch_utils/__init__.py": "",
    "torch_utils/persistence.py": PERSISTENCE_SOURCE,
    "training/__init__.py": "",
}
VARIANTS = {  # pickles whose generator code needs something the environment lacks
    "missing_checkout_module": "import training.removed_helper",
    "missing_package": "import mcubes",
    "removed_numpy_module": "from numpy.lib.shape_base import apply_along_axis",
}


def _forget_checkout_modules():
    for name in list(sys.modules):
        if name.split(".")[0] in ("legacy", "dnnlib", "torch_utils", "training") or name.startswith("_pickled_module_"):
            del sys.modules[name]


def _remove_numpy_aliases():
    import numpy.lib

    for old in ide3d.NUMPY2_ALIASES:
        if getattr(sys.modules.get(old), "__doc__", "") and "bridges.ide3d" in sys.modules[old].__doc__:
            del sys.modules[old]
            if isinstance(getattr(numpy.lib, old.rsplit(".", 1)[1], None), type(sys)):
                delattr(numpy.lib, old.rsplit(".", 1)[1])


@contextlib.contextmanager
def _numpy1_names_while_building():
    """Only while the stand-in pickles are built under NumPy 2 (their module imports NumPy 1 names):
    NumPy 2's private modules under the old names, removed again (independent of bridges.ide3d)."""
    added = []
    for old, new in (("numpy.lib.function_base", "numpy.lib._function_base_impl"),
                     ("numpy.lib.arraysetops", "numpy.lib._arraysetops_impl")):
        try:
            importlib.import_module(old)
        except ImportError:
            sys.modules[old] = importlib.import_module(new)
            added.append(old)
    try:
        yield
    finally:
        for old in added:
            sys.modules.pop(old, None)


STANDINS = {  # name → StandInGenerator kwargs
    "ide3d": dict(layout="ide3d"), "eg3d": dict(layout="eg3d"), "silent": dict(layout="silent"),
    "fov": dict(layout="ide3d", rays="fov", rendering_kwargs={"fov": FOV}, neural_rendering_resolution=RAY_GRID),
    "label": dict(layout="ide3d", rays="label"),
}


@pytest.fixture(scope="module")
def fake_checkout(tmp_path_factory):
    """(checkout dir, IDE-3D-style pickle, all pickles by name); the generator's code only in the pickles."""
    root = tmp_path_factory.mktemp("ide3d")
    repo = root / "IDE-3D"
    for rel, text in CHECKOUT_FILES.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(textwrap.dedent(text))
    module_file = repo / "training" / "standin_networks.py"
    module_file.write_text(STANDIN_CONSTANTS + STANDIN_SOURCE)
    sys.path.insert(0, str(repo))
    building = _numpy1_names_while_building()
    building.__enter__()
    try:
        from training.standin_networks import StandInGenerator

        pkls = {}
        for name, kwargs in STANDINS.items():
            pkls[name] = root / f"standin-{name}.pkl"
            with open(pkls[name], "wb") as f:
                pickle.dump({"G_ema": StandInGenerator(**kwargs), "D": None}, f)
        original = StandInGenerator._module_source
        for name, line in VARIANTS.items():
            StandInGenerator._module_source = original.replace("# EXTRA IMPORTS", line)
            pkls[name] = root / f"standin-{name}.pkl"
            with open(pkls[name], "wb") as f:
                pickle.dump({"G_ema": StandInGenerator(), "D": None}, f)
        StandInGenerator._module_source = original
    finally:
        sys.path.remove(str(repo))
        _forget_checkout_modules()
        building.__exit__(None, None, None)  # each test starts as a fresh NumPy 2 process would
    module_file.unlink()  # from now on the generator's code exists only inside the pickles
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


# --------------------------------------------------------------------------- loading a real checkout (issue 17)


def _load_fresh(repo, pkl):
    """load_generator in the state of a fresh process (no checkout module imported yet)."""
    _forget_checkout_modules()
    try:
        return ide3d.load_generator(pkl, repo)
    finally:
        _forget_checkout_modules()


NUMPY2 = int(np.__version__.split(".")[0]) >= 2


@pytest.mark.parametrize("package", ["click", "requests"])
def test_missing_third_party_package_names_the_extra(fake_checkout, monkeypatch, package):
    repo, pkl, _ = fake_checkout
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=rf"third-party package '{package}'.*pip install -e '\.\[ide3d\]'"):
        _load_fresh(repo, pkl)


@pytest.mark.skipif(not NUMPY2, reason="NumPy 1 still has numpy.lib.function_base / arraysetops")
def test_numpy2_aliases_let_the_checkout_load(fake_checkout):
    repo, pkl, _ = fake_checkout
    _remove_numpy_aliases()
    import importlib.util

    assert importlib.util.find_spec("numpy.lib.arraysetops") is None  # the state that made loading fail
    G = _load_fresh(repo, pkl)
    assert type(G).mapping.__globals__["_NUMPY_ALIASES_WORK"]  # the pickled module ran isin and angle
    from numpy.lib.arraysetops import isin
    from numpy.lib.function_base import angle

    assert isin is np.isin and angle is np.angle
    import numpy.lib

    assert numpy.lib.function_base.angle(1j) == pytest.approx(math.pi / 2)
    # Names outside __all__ are looked up in NumPy 2's private module too.
    assert sys.modules["numpy.lib.function_base"]._angle_dispatcher is numpy.lib._function_base_impl._angle_dispatcher
    assert ide3d.install_numpy2_aliases() == []  # idempotent


def test_missing_modules_are_told_apart(fake_checkout, monkeypatch):
    repo, _, pkls = fake_checkout
    with pytest.raises(ModuleNotFoundError, match="needs module 'training.removed_helper', which the IDE-3D checkout"):
        _load_fresh(repo, pkls["missing_checkout_module"])
    monkeypatch.setitem(sys.modules, "mcubes", None)
    with pytest.raises(ModuleNotFoundError, match="third-party package 'PyMCubes' \\(module 'mcubes'\\)"):
        _load_fresh(repo, pkls["missing_package"])
    if NUMPY2:
        with pytest.raises(ModuleNotFoundError, match="'numpy.lib.shape_base', which NumPy .* no longer has.*"
                                                      "NUMPY2_ALIASES"):
            _load_fresh(repo, pkls["removed_numpy_module"])


# --------------------------------------------------------------------------- intrinsics (issue 17)


def test_focal_from_fov_closed_forms():
    # EG3D's K as a field of view: 2·atan(1 / (2·4.2647)) = 13.37°, rays spanning the image edges.
    eg3d_fov = math.degrees(2 * math.atan(1 / (2 * camera.FOCAL)))
    assert ide3d.focal_from_fov(eg3d_fov) == pytest.approx(camera.FOCAL, rel=1e-12)
    # pi-GAN rays through the outer pixel centres of a 2-pixel grid: x = ±1 at u = 1/4, 3/4, so a
    # 90° field of view (tan 45° = 1) has focal (3/4 − 1/4) / 2 = 1/4.
    assert ide3d.focal_from_fov(90.0, 2) == pytest.approx(0.25, rel=1e-12)
    with pytest.raises(ValueError, match="field of view"):
        ide3d.focal_from_fov(0.0)


def blob_centre(image_channel):
    """Intensity centroid (x, y) of an (H, W) image, normalized image coordinates (pixel centres)."""
    img = np.asarray(image_channel, np.float64)
    H, W = img.shape
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    return np.array([(img * xs).sum() / img.sum() / W, (img * ys).sum() / img.sum() / H])


BLOB_CAMERAS = [(0.0, 0.0, 0.0), (20.0, 10.0, 15.0)]  # azimuth, elevation, roll


def test_renderer_with_its_own_fov_projects_with_the_derived_K(fake_checkout):
    repo, _, pkls = fake_checkout
    gen = ide3d.IDE3DGenerator(pkls["fov"], repo, device="cpu")
    intr = gen.intrinsics
    assert intr.fov_deg == FOV and intr.ray_grid == RAY_GRID and "init_kwargs['rendering_kwargs']['fov']" in intr.source
    # The stand-in's rays: x_j = −1 + 2j/(R − 1) at pixel centre u_j = (j + ½)/R; z = −1/tan(fov/2).
    j = np.array([0.0, RAY_GRID - 1.0])
    slope = np.diff((j + 0.5) / RAY_GRID)[0] / np.diff(-1 + 2 * j / (RAY_GRID - 1))[0]  # du/dx
    assert intr.focal == pytest.approx(slope / math.tan(math.radians(FOV) / 2), rel=1e-12)

    a, b, g = (np.array(x, np.float32) for x in zip(*BLOB_CAMERAS))
    eg3d_cams = camera.camera_from_angles(a, b, g)
    with pytest.raises(ValueError, match=r"fx=4\.2647.*fx = fy = 3\.1075.*fov 18°"):
        gen.render(np.arange(2), eg3d_cams, image_size=256)

    cams = camera.camera_from_angles(a, b, g, focal=intr.focal)
    out = gen.render(np.arange(2), cams, image_size=256)
    assert np.allclose(np.asarray(gen.G.calls[-1]["c"])[:, 16], intr.focal)  # the label carries the K too
    point = jnp.asarray([POINT], jnp.float32)
    for i in range(2):
        seen = blob_centre(np.asarray(out.image)[i, ..., 0])
        want = np.asarray(camera.project(point, cams[i]))[0]
        assert np.abs(seen - want).max() * 256 < 0.1, (i, seen, want)
        # With EG3D's K the same point would be placed several pixels off: what the refusal prevents.
        wrong = np.asarray(camera.project(point, eg3d_cams[i]))[0]
        assert np.abs(seen - wrong).max() * 256 > 10


def test_check_label_intrinsics_tells_the_two_renderers_apart(fake_checkout):
    repo, _, pkls = fake_checkout
    own_fov = ide3d.check_label_intrinsics(ide3d.IDE3DGenerator(pkls["fov"], repo, device="cpu"), image_size=64)
    assert not own_fov["label_k_used"] and own_fov["max_abs_difference"] == 0
    follows_label = ide3d.IDE3DGenerator(pkls["label"], repo, device="cpu")
    assert follows_label.intrinsics.focal is None  # no fov stored: the label's K holds
    report = ide3d.check_label_intrinsics(follows_label, image_size=64)
    assert report["label_k_used"] and report["max_abs_difference"] > 50
    # That renderer draws POINT where camera.project puts it with the cameras' own K.
    cams = camera.camera_from_angles(*(np.array(x, np.float32) for x in zip(*BLOB_CAMERAS)))
    out = follows_label.render(np.arange(2), cams, image_size=256)
    for i in range(2):
        want = np.asarray(camera.project(jnp.asarray([POINT], jnp.float32), cams[i]))[0]
        assert np.abs(blob_centre(np.asarray(out.image)[i, ..., 0]) - want).max() * 256 < 0.1


def test_intrinsics_arguments(fake_checkout, tmp_path):
    repo, _, pkls = fake_checkout
    with pytest.raises(ValueError, match="fov=20.0 disagrees with the generator's own .*= 18"):
        ide3d.IDE3DGenerator(pkls["fov"], repo, device="cpu", fov=20.0)
    trusting = ide3d.IDE3DGenerator(pkls["fov"], repo, device="cpu", fov="label")
    trusting.render(np.arange(1), camera.camera_from_angles(np.zeros(1), np.zeros(1)), image_size=32)
    stated = ide3d.IDE3DGenerator(pkls["label"], repo, device="cpu", fov=FOV, ray_grid=RAY_GRID)
    assert stated.intrinsics.focal == pytest.approx(ide3d.focal_from_fov(FOV, RAY_GRID))
    with pytest.warns(UserWarning, match="ray_grid=64"):
        edges = ide3d.IDE3DGenerator(pkls["label"], repo, device="cpu", fov=FOV)
    assert edges.intrinsics.focal == pytest.approx(ide3d.focal_from_fov(FOV))
    # Call-time settings (IDE-3D's scripts pass render_params) come first and reach G.synthesis.
    params = {"render_params": {"fov": 12.0, "num_steps": 96}}
    called = ide3d.IDE3DGenerator(pkls["fov"], repo, device="cpu", synthesis_kwargs=params)
    assert called.intrinsics.focal == pytest.approx(ide3d.focal_from_fov(12.0, RAY_GRID))
    assert "synthesis_kwargs['render_params']['fov']" in called.intrinsics.source
    called.render(np.arange(1), camera.camera_from_angles(np.zeros(1), np.zeros(1), focal=called.intrinsics.focal),
                  image_size=32)
    assert called.G.calls[-1]["kwargs"] == params
    path = ide3d.main(["--checkpoint", str(pkls["fov"]), "--repo", str(repo), "--out", str(tmp_path),
                       "--check-intrinsics", "--device", "cpu"])
    assert "IGNORES the label's K" in path.read_text()


def test_run_focal_follows_the_generator(fake_checkout):
    """sources: config.camera.focal is the one focal of a run; make_generator refuses an IDE-3D
    generator whose own K differs, naming the flag; with it set, the lifting views and the sampled
    cameras carry that K and the stand-in's blob lands where camera.project puts the point."""
    from configs import default, paper
    from facelift_jax import sources, views

    repo, _, pkls = fake_checkout
    config = default.get_config()
    config.generator = "ide3d"
    config.ide3d.update(dict(checkpoint=str(pkls["fov"]), repo=str(repo), fix_background=False))
    want = ide3d.focal_from_fov(FOV, RAY_GRID)
    with pytest.raises(ValueError, match=rf"--config\.camera\.focal={want:.6g}"):
        sources.make_generator(config)
    config.camera.focal = want
    gen = sources.make_generator(config)
    assert paper.get_config().camera.focal == pytest.approx(gen.intrinsics.focal, rel=1e-12)  # 18°, 64 rays
    f = sources.generator_focal(gen, config)
    assert f == want and config.model.focal == want
    lifting = views.lifting_cameras(radius=config.camera.radius, look_at=tuple(config.camera.look_at), focal=f)
    pick = np.array([views.LIFTING_VIEWS.index(v) for v in views.LIFTING_VIEWS[:2]])
    sampled = camera.sample_cameras(jax.random.key(1), 2, config.camera)
    for cams in (lifting[pick], sampled):
        assert np.allclose(np.asarray(cams.K)[:, 0, 0], want)
        out = gen.render(np.arange(2), cams, image_size=128)  # check_cameras accepts them
        for i in range(2):
            seen = blob_centre(np.asarray(out.image)[i, ..., 0])
            p = np.asarray(cams.R[i], np.float64) @ np.asarray(POINT) + np.asarray(cams.t[i], np.float64)
            pinhole = want * p[:2] / p[2] + 0.5  # independent of camera.py
            assert np.abs(np.asarray(camera.project(jnp.asarray([POINT], jnp.float32), cams[i]))[0] - pinhole).max() < 1e-5
            assert np.abs(seen - pinhole).max() * 128 < 0.2, (i, seen, pinhole)
