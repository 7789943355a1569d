"""IDE-3D, the paper's 3D-aware face GAN, as a generator source: render (seed, camera) into JAX.

The IDE-3D checkpoint (``ide3d-ffhq-64-512.pkl``) holds the generator's source code itself
(``torch_utils.persistence``); that code imports IDE-3D's own modules (``training.*``,
``torch_utils.*``, ``dnnlib``), so the user's IDE-3D checkout must be importable. ``IDE3DGenerator``
puts it on ``sys.path`` and loads the pickle with the checkout's ``legacy.load_network_pkl``, as
IDE-3D's own scripts do. Loading needs the ``[ide3d]`` extra (``pip install -e '.[ide3d]'``: click
for ``legacy.py``, requests for ``dnnlib/util.py``, scipy for ``dnnlib/camera.py``) and, under
NumPy 2, the aliases of ``install_numpy2_aliases`` for the NumPy 1 modules IDE-3D imports. A missing
module is reported as missing from the checkout, removed from NumPy, or a package to install.

Intrinsics: IDE-3D's scripts render with pi-GAN-style rays built from a field of view (18°), not
from the K in the camera label. ``render_intrinsics`` reads the generator's own settings at load
time and derives the K its images obey (``focal_from_fov``); ``render`` refuses cameras with
another K, and ``check_label_intrinsics`` (``--check-intrinsics``) shows whether a checkpoint's
renderer uses the label's K at all: one latent under two K's, identical images mean it does not.
In a run every camera is built with ``config.camera.focal`` (configs/paper.py: the 18°/64-ray value);
``sources.make_generator`` refuses an IDE3DGenerator whose ``intrinsics.focal`` differs
(``sources.generator_focal``), naming ``--config.camera.focal=<its value>``.

Per seed and camera (FaceLift §4): z = ``np.random.RandomState(seed).randn(1, G.z_dim)`` (the
StyleGAN/EG3D scripts' convention), ``ws = G.mapping(z, c_frontal, truncation_psi)`` with IDE-3D's
frontal conditioning label, then ``G.synthesis(ws, c, noise_mode='const', return_seg=True)`` with
``c = camera.ide3d_label(cameras)`` (OpenGL-style cam2world + normalized K). Images come back in
[-1, 1] at 512²; they are resized to ``image_size`` and quantized to uint8, and the 19-class
semantic map (``IDE3D_SEMANTIC_CLASSES``) is returned beside them.

The large-pose background fix (§4): "set the density of background points in the near half of the
viewing frustum to 1, prior to rendering", see ``background_density_fix`` and ``BackgroundFixHook``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import numbers
import sys
import types
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bridges import dlpack
from facelift_jax import camera as camera_lib
from facelift_jax.camera import focal_from_fov
from facelift_jax.synthetic.classes import SEMANTIC_INDEX

# IDE-3D's dnnlib/seg_tools.py class order (CelebAMask-HQ labels).
IDE3D_SEMANTIC_CLASSES = (
    "background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear",
    "mouth", "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth",
)
BACKGROUND_CLASS = 0

# IDE-3D's conditioning label for the mapping network (gen_images.py, viz/renderer.py): identity
# OpenGL cam2world with the camera at z = +2.7, then the normalized FFHQ intrinsics.
FRONTAL_CONDITIONING = np.array(
    [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2.7, 0, 0, 0, 1, 4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1], np.float32)

REQUIRED_CHECKOUT_ITEMS = ("legacy.py", "dnnlib", "torch_utils")
# FFHQ near/far ray distances of EG3D and IDE-3D (ray_start, ray_end).
FFHQ_RAY_RANGE = (2.25, 3.3)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class IDE3DRenderOutput:
    """What ``IDE3DGenerator.render`` returns; field names follow the synthetic generator's output.

    image: (B, H, W, 3) uint8 RGB. semantic: (B, H, W) uint8 indices into IDE3D_SEMANTIC_CLASSES.
    cameras: the Camera (B,) rendered. IDE-3D knows no depth buffer or landmarks, so depth,
    landmarks3d, landmarks2d and visible are None.
    """

    image: jax.Array
    semantic: jax.Array
    cameras: camera_lib.Camera
    depth: jax.Array | None = None
    landmarks3d: jax.Array | None = None
    landmarks2d: jax.Array | None = None
    visible: jax.Array | None = None

    def __getitem__(self, index) -> "IDE3DRenderOutput":
        return jax.tree_util.tree_map(lambda x: x[index], self)


# IDE-3D's 19 classes → the synthetic source's 7 (facelift_jax.synthetic.SEMANTIC_CLASSES), so code
# written for synthetic renders can read IDE-3D's maps. Ears and neck count as skin, the inner
# mouth as lips, a hat as hair; glasses count as eyes; earrings, necklaces and clothes as background.
_TO_SYNTHETIC = {
    "background": "background", "skin": "skin", "nose": "nose", "eye_g": "eyes", "l_eye": "eyes",
    "r_eye": "eyes", "l_brow": "brows", "r_brow": "brows", "l_ear": "skin", "r_ear": "skin",
    "mouth": "lips", "u_lip": "lips", "l_lip": "lips", "hair": "hair", "hat": "hair",
    "ear_r": "background", "neck_l": "background", "neck": "skin", "cloth": "background",
}
IDE3D_TO_SYNTHETIC = np.array([SEMANTIC_INDEX[_TO_SYNTHETIC[name]] for name in IDE3D_SEMANTIC_CLASSES], np.uint8)


def to_synthetic_classes(semantic):
    """(…) IDE-3D class indices (uint8) → the synthetic source's class indices, same shape."""
    return jnp.asarray(IDE3D_TO_SYNTHETIC)[jnp.asarray(semantic).astype(jnp.int32)]


# --------------------------------------------------------------------------- loading


def add_checkout_to_path(ide3d_repo: str | Path) -> Path:
    """Check that ``ide3d_repo`` is an IDE-3D checkout and put it first on ``sys.path``."""
    if not str(ide3d_repo):
        raise ValueError("ide3d_repo is empty: give the path of a clone of IDE-3D (MrTornado24/IDE-3D)")
    repo = Path(ide3d_repo).expanduser().resolve()
    if not repo.is_dir():
        raise FileNotFoundError(f"ide3d_repo {repo} is not a directory: give the path of a clone of IDE-3D")
    missing = [item for item in REQUIRED_CHECKOUT_ITEMS if not (repo / item).exists()]
    if missing:
        raise FileNotFoundError(
            f"ide3d_repo {repo} is not an IDE-3D checkout: it lacks {', '.join(missing)}. The IDE-3D "
            "pickle stores references to IDE-3D's code (legacy.py, dnnlib/, torch_utils/, training/), "
            "so loading it needs that checkout on sys.path")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    return repo


# NumPy 2 made these modules private; IDE-3D's code (dnnlib/camera.py, the pickled generator's
# modules) still imports them by their NumPy 1 names. Old name → where NumPy 2 keeps the same code.
NUMPY2_ALIASES = {
    "numpy.lib.function_base": "numpy.lib._function_base_impl",
    "numpy.lib.arraysetops": "numpy.lib._arraysetops_impl",
}
# Import names whose pip package is named otherwise (for the missing-package message).
_PIP_NAMES = {"cv2": "opencv-python-headless", "PIL": "pillow", "distutils": "setuptools", "mcubes": "PyMCubes",
              "skimage": "scikit-image", "yaml": "pyyaml"}
IDE3D_EXTRA = "pip install -e '.[ide3d]'"


def install_numpy2_aliases() -> list[str]:
    """Make ``NUMPY2_ALIASES``' old module names importable under NumPy 2; returns the names added.

    Each alias is a module holding the public names of its NumPy 2 home (other names are looked
    up there too), registered in ``sys.modules`` and as an attribute of ``numpy.lib``. Under
    NumPy 1 the real modules exist and nothing is added. The aliases stay for the process: the
    pickled IDE-3D code may import them again when it runs.
    """
    import numpy.lib

    added = []
    for old, new in NUMPY2_ALIASES.items():
        if old in sys.modules:
            continue
        try:
            if importlib.util.find_spec(old) is not None:
                continue  # NumPy 1: the real module
        except ImportError:
            pass
        impl = importlib.import_module(new)
        alias = types.ModuleType(old, f"{old} as NumPy 1 had it: an alias of {new}, added by bridges.ide3d")
        for name in getattr(impl, "__all__", [n for n in dir(impl) if not n.startswith("_")]):
            setattr(alias, name, getattr(impl, name))
        alias.__getattr__ = lambda name, _impl=impl: getattr(_impl, name)  # PEP 562: the rest from the impl
        sys.modules[old] = alias
        setattr(numpy.lib, old.rsplit(".", 1)[1], alias)
        added.append(old)
    return added


def missing_module_error(err: ModuleNotFoundError, repo: Path, while_: str) -> ModuleNotFoundError:
    """A ModuleNotFoundError naming its real cause: a module the IDE-3D checkout lacks, a NumPy 1
    module NumPy 2 removed, or a third-party package to install."""
    name = err.name or str(err)
    top = name.split(".")[0]
    if (repo / top).is_dir() or (repo / f"{top}.py").is_file():
        msg = (f"{while_} needs module {name!r}, which the IDE-3D checkout {repo} does not provide; is it a "
               "complete clone of MrTornado24/IDE-3D (with its submodules)?")
    elif top == "numpy":
        msg = (f"{while_} imports {name!r}, which NumPy {np.__version__} no longer has (NumPy 2 made it private). "
               f"bridges.ide3d aliases {', '.join(NUMPY2_ALIASES)}; add this one to bridges.ide3d.NUMPY2_ALIASES "
               "(old name → its numpy.lib._*_impl module) or use numpy<2")
    else:
        package = _PIP_NAMES.get(top, top)
        msg = (f"{while_} needs the third-party package {package!r} (module {name!r}), which is not installed: "
               f"{IDE3D_EXTRA} (click for IDE-3D's legacy.py, requests for its dnnlib/util.py, scipy), "
               f"or pip install {package}")
    return ModuleNotFoundError(msg, name=err.name)


def _import_legacy(repo: Path):
    try:
        legacy = importlib.import_module("legacy")
    except ModuleNotFoundError as e:
        raise missing_module_error(e, repo, f"importing IDE-3D's legacy.py from {repo}") from e
    origin = Path(getattr(legacy, "__file__", "") or "").resolve()
    if origin != repo / "legacy.py":
        raise ImportError(
            f"a module named 'legacy' is already imported from {origin}, not from the IDE-3D checkout "
            f"{repo}; load IDE-3D in a fresh process")
    return legacy


def load_generator(checkpoint: str | Path, ide3d_repo: str | Path) -> torch.nn.Module:
    """The ``G_ema`` network of an IDE-3D pickle, loaded through the checkout's ``legacy.py``.

    NumPy 2 compatibility aliases (``install_numpy2_aliases``) are installed first; a missing module
    is reported as missing from the checkout, removed from NumPy, or a package to install.
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"IDE-3D checkpoint {path} does not exist (expected ide3d-ffhq-64-512.pkl)")
    repo = add_checkout_to_path(ide3d_repo)
    install_numpy2_aliases()
    legacy = _import_legacy(repo)
    with open(path, "rb") as f:
        try:
            data = legacy.load_network_pkl(f)
        except ModuleNotFoundError as e:
            raise missing_module_error(e, repo, f"unpickling {path}") from e
    if not isinstance(data, dict) or "G_ema" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise KeyError(f"{path} holds no 'G_ema' network (found {keys})")
    G = data["G_ema"]
    for attr in ("mapping", "synthesis", "z_dim"):
        if not hasattr(G, attr):
            raise TypeError(f"G_ema in {path} has no {attr!r}; it is not an IDE-3D/EG3D generator")
    return G


# --------------------------------------------------------------------------- intrinsics


FOV_KEYS = ("fov", "fov_deg", "field_of_view")
RAY_GRID_KEYS = ("neural_rendering_resolution", "nerf_resolution", "ray_resolution")


@dataclasses.dataclass(frozen=True)
class RenderIntrinsics:
    """The normalized pinhole K the generator's images obey: fx = fy = ``focal``, cx = cy = ½.

    focal None: the renderer follows the K in the camera label (EG3D style), so the cameras' own K
    holds. source: where the numbers came from. fov_deg / ray_grid: the renderer's own field of
    view (degrees) and ray-grid width when it builds its rays from them.
    """

    focal: float | None
    source: str
    fov_deg: float | None = None
    ray_grid: int | None = None

    def K(self) -> np.ndarray:
        """(3, 3) normalized intrinsics; raises when the label's K is used (no K of its own)."""
        if self.focal is None:
            raise ValueError(f"this generator has no intrinsics of its own ({self.source})")
        return np.array([[self.focal, 0.0, 0.5], [0.0, self.focal, 0.5], [0.0, 0.0, 1.0]])


def _settings_sources(G) -> list[tuple[str, Any]]:
    """(name, object or dict) places where a generator keeps its rendering settings."""
    owners = [("G", G), ("G.synthesis", getattr(G, "synthesis", None)),
              ("G.synthesis.renderer", getattr(getattr(G, "synthesis", None), "renderer", None)),
              ("G.renderer", getattr(G, "renderer", None))]
    places: list[tuple[str, Any]] = []
    for name, owner in owners:
        if owner is None:
            continue
        places.append((name, owner))
        for attr in ("init_kwargs", "rendering_kwargs", "render_kwargs"):
            try:
                value = getattr(owner, attr, None)
            except Exception:  # noqa: BLE001  a property of foreign code may raise anything
                value = None
            if isinstance(value, dict):
                places.append((f"{name}.{attr}", value))
    return places


def _find_setting(places, keys) -> list[tuple[str, Any]]:
    """Every (path, value) under ``keys`` in the places: object attributes, then dicts two levels deep."""
    found = []

    def walk(path, d, depth):
        for k, v in d.items():
            if k in keys and isinstance(v, numbers.Real) and not isinstance(v, bool):
                found.append((f"{path}[{k!r}]", float(v)))
            elif isinstance(v, dict) and depth < 2:
                walk(f"{path}[{k!r}]", v, depth + 1)

    for path, place in places:
        if isinstance(place, dict):
            walk(path, place, 0)
        else:
            for k in keys:
                v = vars(place).get(k) if hasattr(place, "__dict__") else None
                if isinstance(v, numbers.Real) and not isinstance(v, bool):
                    found.append((f"{path}.{k}", float(v)))
    return found


def render_intrinsics(G, fov: float | str | None = None, ray_grid: int | None = None,
                      synthesis_kwargs: dict | None = None) -> RenderIntrinsics:
    """The K that G's images obey, read from G's own rendering settings.

    fov: None reads the field of view from ``synthesis_kwargs`` (what every synthesis call gets,
    e.g. IDE-3D's ``render_params={"fov": 18, ...}``), else from G (``init_kwargs`` of G /
    G.synthesis / its renderer, their ``rendering_kwargs``); a number states it (refused if that
    source says otherwise); "label" trusts the camera label's K. ray_grid: the ray grid's width
    (default: G's ``neural_rendering_resolution``). Different values in one source are refused.
    """
    if fov == "label":
        return RenderIntrinsics(None, "fov='label': the renderer follows the camera label's K")
    places = _settings_sources(G)
    # Call-time settings override the ones G stores, so they are looked at alone when present.
    fovs = _find_setting([("synthesis_kwargs", synthesis_kwargs or {})], FOV_KEYS) or _find_setting(places, FOV_KEYS)
    if len({v for _, v in fovs}) > 1:
        raise ValueError("the generator's settings disagree on its field of view: "
                         + ", ".join(f"{p} = {v:g}" for p, v in fovs) + "; pass fov=... to choose")
    if fov is not None:
        if fovs and abs(fovs[0][1] - float(fov)) > 1e-6:
            raise ValueError(f"fov={fov} disagrees with the generator's own {fovs[0][0]} = {fovs[0][1]:g}")
        fov_deg, source = float(fov), "fov argument"
    elif fovs:
        fov_deg, source = fovs[0][1], fovs[0][0]
    else:
        return RenderIntrinsics(None, "no field of view in the generator's settings: the renderer is taken to "
                                      "follow the camera label's K (check with python -m bridges.ide3d --check-intrinsics)")
    if ray_grid is None:
        grids = _find_setting(places, RAY_GRID_KEYS)
        if len({v for _, v in grids}) > 1:
            raise ValueError("the generator's settings disagree on the ray grid: "
                             + ", ".join(f"{p} = {v:g}" for p, v in grids) + "; pass ray_grid=... to choose")
        if grids:
            ray_grid, grid_source = int(grids[0][1]), grids[0][0]
        else:
            grid_source = "not found; rays taken to span the image edges"
            warnings.warn(f"IDE-3D: fov {fov_deg:g}° found ({source}) but no ray-grid width "
                          f"({'/'.join(RAY_GRID_KEYS)}); the focal assumes rays spanning the image edges. "
                          "Pass ray_grid=64 for ide3d-ffhq-64-512.pkl", stacklevel=3)
    else:
        grid_source = "ray_grid argument"
    return RenderIntrinsics(focal_from_fov(fov_deg, ray_grid), f"fov from {source}, ray grid {grid_source}",
                            fov_deg, ray_grid)


def latent_z(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """(B, z_dim) float32 latents, z_b = RandomState(seed_b).randn(1, z_dim) as in StyleGAN/EG3D scripts."""
    seeds = np.asarray(seeds).reshape(-1)
    if not np.issubdtype(seeds.dtype, np.integer):
        raise TypeError(f"latents must be integer seeds, got dtype {seeds.dtype}")
    if seeds.size and (seeds.min() < 0 or seeds.max() >= 2**32):
        raise ValueError(f"latent seeds must lie in [0, 2**32) for np.random.RandomState, got {seeds.min()}..{seeds.max()}")
    return np.concatenate([np.random.RandomState(int(s)).randn(1, z_dim) for s in seeds]).astype(np.float32)


# --------------------------------------------------------------------------- image post-processing


def images_to_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) float in [-1, 1] → (B, size, size, 3) uint8, -1 ↦ 0 and +1 ↦ 255.

    Downscaling is antialiased bilinear (IDE-3D renders 512², the model eats 224²).
    """
    x = images.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def semantic_to_labels(seg: torch.Tensor, size: int) -> torch.Tensor:
    """IDE-3D's semantic output → (B, size, size) uint8 class indices.

    seg: (B, C, H, W) per-class logits (resized bilinearly, then argmax over C, which keeps class
    boundaries smooth), or (B, H, W) / (B, 1, H, W) indices (resized by nearest neighbour).
    """
    if seg.ndim == 4 and seg.shape[1] > 1:
        logits = seg.float()
        if logits.shape[-2:] != (size, size):
            logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return logits.argmax(1).to(torch.uint8)
    labels = seg.reshape(seg.shape[0], 1, *seg.shape[-2:]).float()
    if labels.shape[-2:] != (size, size):
        labels = F.interpolate(labels, size=(size, size), mode="nearest")
    return labels[:, 0].round().to(torch.uint8)


def _split_synthesis_output(out: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(out, dict):
        image = out.get("image")
        seg = next((out[k] for k in ("seg", "semantic", "image_seg") if k in out), None)
    elif isinstance(out, (tuple, list)) and len(out) >= 2:
        image, seg = out[0], out[1]
    else:
        image, seg = None, None
    if image is None or seg is None:
        raise TypeError(f"G.synthesis(..., return_seg=True) returned {type(out).__name__}; "
                        "expected (image, seg) as IDE-3D does")
    return image, seg


# --------------------------------------------------------------------------- §4 background fix


def background_density_fix(sigma: torch.Tensor, semantic: torch.Tensor, coordinates: torch.Tensor,
                           origins: torch.Tensor, near: float, far: float, density: float = 1.0,
                           background_class: int = BACKGROUND_CLASS) -> torch.Tensor:
    """FaceLift §4: background samples in the near half of the frustum get density ``density``.

    sigma: (B, M, 1) densities as the field emits them. semantic: (B, M, C) per-class semantic
    logits of the same samples. coordinates: (B, M, 3) world positions of the samples. origins:
    (B, 3) camera centres (world). near, far: the renderer's ray_start / ray_end.
    A sample is "in the near half" when its distance from the camera centre is below
    (near + far) / 2 (rays are unit-length, so distance = ray parameter t) and is "background" when
    its semantic argmax is ``background_class``. Returns sigma with those entries replaced.
    """
    distance = torch.linalg.vector_norm(coordinates - origins[:, None, :], dim=-1)
    replace = (distance < 0.5 * (near + far)) & (semantic.argmax(-1) == background_class)
    return torch.where(replace[..., None], torch.as_tensor(density, dtype=sigma.dtype, device=sigma.device), sigma)


@dataclasses.dataclass(frozen=True)
class FieldLayout:
    """Where a renderer evaluates its density/semantic field on sample points, and the answer's layout.

    method: the renderer method called on the sample points; points_arg: index of the (B, M, 3)
    world points among its positional arguments; sigma / semantic: output → (B, M, 1) raw density /
    (B, M, C) semantic logits; with_sigma: (output, new sigma) → output to hand back.
    """

    name: str
    method: str
    points_arg: int
    sigma: Callable[[Any], torch.Tensor]
    semantic: Callable[[Any], torch.Tensor]
    with_sigma: Callable[[Any, torch.Tensor], Any]


def ide3d_layout(semantic_channels: slice = slice(32, 51)) -> FieldLayout:
    """IDE-3D: ``G.synthesis.renderer.sample_voxel(img_v, seg_v, points) → (B, M, 52)``.

    IDE-3D's own shape-extraction script queries the field this way and reads the raw density as the
    last channel. The other 51 channels are read as 32 texture features then the 19 semantic logits
    (52 = 32 + 19 + 1); that split is inferred from the width, so it is a parameter.
    """
    return FieldLayout(
        "ide3d", "sample_voxel", 2, sigma=lambda out: out[..., -1:],
        semantic=lambda out: out[..., semantic_channels],
        with_sigma=lambda out, sigma: torch.cat([out[..., :-1], sigma.to(out.dtype)], -1))


def eg3d_layout(semantic_key: str = "semantic", num_classes: int = 19) -> FieldLayout:
    """EG3D-style tri-plane renderer: ``renderer.run_model(planes, decoder, points, dirs, options) →
    {'sigma': (B, M, 1) raw, semantic_key: (B, M, ≥C) logits, ...}`` (ImportanceRenderer)."""
    return FieldLayout(
        "eg3d", "run_model", 2, sigma=lambda out: out["sigma"],
        semantic=lambda out: out[semantic_key][..., :num_classes],
        with_sigma=lambda out, sigma: {**out, "sigma": sigma})


class BackgroundFixHook:
    """Context manager applying ``background_density_fix`` inside a generator's volume renderer.

    Where it hooks: the renderer evaluates its field (density + semantics) at the ray samples
    through one method — IDE-3D: ``G.synthesis.renderer.sample_voxel(img_v, seg_v, points)``;
    EG3D-style: ``G.renderer.run_model(planes, decoder, points, dirs, options)`` — for the coarse
    samples and again for the importance samples. The hook replaces that method on the renderer
    *instance* by a wrapper that rewrites the returned density (the class is untouched; ``__exit__``
    restores the method), so both passes see the fixed density and importance sampling follows it.
    ``calls`` counts the wrapped evaluations: a render during which it stays 0 means this renderer
    does not evaluate its field through that method, and ``IDE3DGenerator`` raises instead of
    silently rendering without the fix.

    Value: the paper's "density 1" is written into the raw density channel, before the renderer's
    activation: pi-GAN-style integration (IDE-3D) takes relu/softplus(σ) there, EG3D's ray marcher
    softplus(σ − 1); either way it is thin next to the opaque background it replaces. ``density``
    sets another value.
    """

    def __init__(self, renderer: torch.nn.Module, layout: FieldLayout, origins: torch.Tensor,
                 near: float, far: float, density: float = 1.0, background_class: int = BACKGROUND_CLASS):
        if not callable(getattr(renderer, layout.method, None)):
            raise TypeError(f"{type(renderer).__name__} has no {layout.method} method to hook ({layout.name} layout)")
        self.renderer, self.layout, self.origins = renderer, layout, origins
        self.near, self.far, self.density = float(near), float(far), float(density)
        self.background_class = background_class
        self.calls = 0
        self._had_instance_attr = False
        self._saved = None

    def _wrap(self, method: Callable) -> Callable:
        layout = self.layout

        def field_with_background_fix(*args, **kwargs):
            out = method(*args, **kwargs)
            points = args[layout.points_arg]
            sigma = background_density_fix(layout.sigma(out), layout.semantic(out), points,
                                           self.origins.to(points), self.near, self.far, self.density,
                                           self.background_class)
            self.calls += 1
            return layout.with_sigma(out, sigma)

        return field_with_background_fix

    def __enter__(self) -> "BackgroundFixHook":
        name = self.layout.method
        self._had_instance_attr = name in vars(self.renderer)
        self._saved = getattr(self.renderer, name)
        # An instance attribute shadows the class method for this renderer only.
        object.__setattr__(self.renderer, name, self._wrap(self._saved))
        return self

    def __exit__(self, *exc) -> None:
        if self._had_instance_attr:
            object.__setattr__(self.renderer, self.layout.method, self._saved)
        else:
            object.__delattr__(self.renderer, self.layout.method)


def find_renderer(G: torch.nn.Module, layout: FieldLayout | str = "auto") -> tuple[torch.nn.Module, FieldLayout]:
    """The volume renderer inside G and its field layout.

    Looks at ``G.synthesis.renderer`` (IDE-3D), ``G.renderer`` (EG3D), then every submodule; with
    layout "auto" a renderer with ``sample_voxel`` is IDE-3D's and one with ``run_model`` EG3D's.
    """
    layouts = {"ide3d": ide3d_layout(), "eg3d": eg3d_layout()}
    if isinstance(layout, str):
        if layout not in ("auto", *layouts):
            raise ValueError(f"field layout must be 'auto', 'ide3d', 'eg3d' or a FieldLayout, got {layout!r}")
        wanted = list(layouts.values()) if layout == "auto" else [layouts[layout]]
    else:
        wanted = [layout]
    candidates = [getattr(getattr(G, "synthesis", None), "renderer", None), getattr(G, "renderer", None)]
    candidates += [m for _, m in G.named_modules()]
    for module in candidates:
        for lay in wanted:
            if module is not None and callable(getattr(module, lay.method, None)):
                return module, lay
    methods = " or ".join(lay.method for lay in wanted)
    raise TypeError(f"fix_background needs a volume renderer with {methods} inside the generator; none was "
                    "found. Pass fix_background=False, or a FieldLayout naming the renderer's field method")


# --------------------------------------------------------------------------- the generator


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class IDE3DGenerator:
    """Renders IDE-3D faces for (seed, camera) pairs; a drop-in for the synthetic generator's render.

    checkpoint: path of ``ide3d-ffhq-64-512.pkl``. ide3d_repo: the user's IDE-3D checkout.
    truncation_psi: StyleGAN truncation. device: torch device (default: CUDA when available).
    fix_background: apply the §4 background-density fix while rendering (``BackgroundFixHook``);
    background_density: the raw density it writes; frustum: (near, far) ray range for it, default
    ``rendering_kwargs`` ray_start / ray_end of G (or G.synthesis) when present, else FFHQ's
    (2.25, 3.3); field_layout: "auto", "ide3d", "eg3d" or a ``FieldLayout`` (where the renderer
    evaluates density and semantics). batch_size: renders per synthesis call.

    Intrinsics: ``self.intrinsics`` (``render_intrinsics``) is the K the generator's images obey,
    read from its own rendering settings at load time (fov, ray_grid override them; fov="label"
    trusts the camera label's K). ``render`` refuses cameras whose K disagrees, with the numbers:
    projecting landmarks with another K than the images obey scales every point about the centre.
    Build the cameras with ``focal=generator.intrinsics.focal``: in a run, set
    ``config.camera.focal`` to it (configs/paper.py does); ``sources.make_generator`` checks the two
    agree (``sources.generator_focal``) and every camera of the run is built with it. synthesis_kwargs: extra keyword
    arguments of ``G.synthesis`` (e.g. IDE-3D's ``render_params={"fov": 18, "num_steps": 96}``).
    """

    def __init__(self, checkpoint: str | Path, ide3d_repo: str | Path, truncation_psi: float = 0.7,
                 device: str | torch.device | None = None, fix_background: bool = True,
                 background_density: float = 1.0, frustum: tuple[float, float] | None = None,
                 field_layout: FieldLayout | str = "auto", batch_size: int = 8,
                 fov: float | str | None = None, ray_grid: int | None = None,
                 synthesis_kwargs: dict | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        self.device = torch.device(device) if device is not None else default_device()
        self.G = load_generator(checkpoint, ide3d_repo).eval().requires_grad_(False).to(self.device)
        self.repo = Path(ide3d_repo).expanduser().resolve()
        self.synthesis_kwargs = dict(synthesis_kwargs or {})
        self.intrinsics = render_intrinsics(self.G, fov, ray_grid, self.synthesis_kwargs)
        self.truncation_psi = float(truncation_psi)
        self.fix_background = bool(fix_background)
        self.background_density = float(background_density)
        self.field_layout = field_layout
        self.batch_size = int(batch_size)
        self.z_dim = int(self.G.z_dim)
        self.renderer, self.layout, self.frustum, self._frustum_arg = None, None, None, frustum
        if self.fix_background:
            self._prepare_fix()  # fail at construction, not at the first render

    def _prepare_fix(self) -> None:
        if self.renderer is None:
            self.renderer, self.layout = find_renderer(self.G, self.field_layout)
            self.frustum = self._frustum(self._frustum_arg)

    @classmethod
    def from_config(cls, config, device=None) -> "IDE3DGenerator":
        """From the ``config.ide3d`` section: checkpoint, repo, truncation_psi, fix_background (and,
        when present, background_density, field_layout, batch_size, fov, ray_grid)."""
        if not config.get("checkpoint") or not config.get("repo"):
            raise ValueError("config.ide3d needs checkpoint (ide3d-ffhq-64-512.pkl) and repo (the IDE-3D "
                             f"checkout); got checkpoint={config.get('checkpoint')!r}, repo={config.get('repo')!r}")
        return cls(config.checkpoint, config.repo, truncation_psi=config.get("truncation_psi", 0.7),
                   device=device, fix_background=config.get("fix_background", True),
                   background_density=config.get("background_density", 1.0),
                   field_layout=config.get("field_layout", "auto"), batch_size=config.get("batch_size", 8),
                   fov=config.get("fov", None), ray_grid=config.get("ray_grid", None))

    def _frustum(self, frustum) -> tuple[float, float]:
        if frustum is None:
            frustum = FFHQ_RAY_RANGE
            for owner in (self.G, getattr(self.G, "synthesis", None)):
                kwargs = getattr(owner, "rendering_kwargs", None)
                if isinstance(kwargs, dict) and "ray_start" in kwargs:
                    frustum = (kwargs.get("ray_start"), kwargs.get("ray_end"))
                    break
        near, far = frustum
        if not all(isinstance(v, numbers.Real) for v in (near, far)) or not 0 <= near < far:
            raise ValueError(f"fix_background needs a numeric ray range near < far; got {frustum} "
                             "(pass frustum=(ray_start, ray_end))")
        return float(near), float(far)

    @torch.no_grad()
    def _render_chunk(self, seeds: np.ndarray, labels: np.ndarray, centers: np.ndarray, size: int):
        try:
            return self._render_chunk_unguarded(seeds, labels, centers, size)
        except ModuleNotFoundError as e:  # IDE-3D's code may import lazily, e.g. its CUDA ops
            raise missing_module_error(e, self.repo, "running IDE-3D's generator") from e

    def _render_chunk_unguarded(self, seeds, labels, centers, size):
        G, n = self.G, len(seeds)
        z = torch.from_numpy(latent_z(seeds, self.z_dim)).to(self.device)
        c_cond = torch.from_numpy(np.tile(FRONTAL_CONDITIONING, (n, 1))).to(self.device)
        ws = G.mapping(z=z, c=c_cond, truncation_psi=self.truncation_psi)
        c = torch.from_numpy(labels).to(self.device)
        if self.fix_background:
            self._prepare_fix()
            origins = torch.from_numpy(centers).to(self.device)
            with BackgroundFixHook(self.renderer, self.layout, origins, *self.frustum,
                                   density=self.background_density) as hook:
                out = G.synthesis(ws, c=c, noise_mode="const", return_seg=True, **self.synthesis_kwargs)
            if hook.calls == 0:
                raise RuntimeError(
                    f"fix_background: G.synthesis never called {type(self.renderer).__name__}."
                    f"{self.layout.method}, so the fix could not act; give the renderer's field method as a "
                    "FieldLayout (field_layout=...) or pass fix_background=False")
        else:
            out = G.synthesis(ws, c=c, noise_mode="const", return_seg=True, **self.synthesis_kwargs)
        image, seg = _split_synthesis_output(out)
        return images_to_uint8(image, size), semantic_to_labels(seg, size)

    def check_cameras(self, cameras: camera_lib.Camera) -> None:
        """Refuse cameras whose K is not the one the generator's images obey (``self.intrinsics``)."""
        f = self.intrinsics.focal
        if f is None:
            return
        K = np.asarray(cameras.K, np.float64).reshape(-1, 3, 3)
        want = self.intrinsics.K()
        bad = np.abs(K - want).max((1, 2)) > 1e-3 * f
        if bad.any():
            k = K[np.argmax(bad)]
            raise ValueError(
                f"camera intrinsics fx={k[0, 0]:.4f}, fy={k[1, 1]:.4f}, cx={k[0, 2]:.4f}, cy={k[1, 2]:.4f} disagree "
                f"with the K this IDE-3D generator renders with: fx = fy = {f:.4f}, cx = cy = 0.5 "
                f"({self.intrinsics.source}; fov {self.intrinsics.fov_deg:g}°). Landmarks projected with the "
                f"cameras' K would be scaled by {k[0, 0] / f:.3f} about the image centre. Build the cameras with "
                f"focal={f:.4f} (camera.camera_from_angles(..., focal=generator.intrinsics.focal); in a run "
                f"--config.camera.focal={f:.6g}); if the "
                "renderer does follow the label's K (python -m bridges.ide3d --check-intrinsics), pass fov='label'")

    def render(self, latents, cameras: camera_lib.Camera, image_size: int = 224) -> IDE3DRenderOutput:
        """Render seeds ``latents`` (B,) with ``cameras`` (batch (B,)) at ``image_size``² pixels.

        The cameras' K must be ``self.intrinsics`` (``check_cameras``); their labels carry it."""
        self.check_cameras(cameras)
        seeds = np.asarray(latents).reshape(-1)
        labels = np.array(camera_lib.ide3d_label(cameras), np.float32).reshape(-1, 25)
        centers = np.array(cameras.center, np.float32).reshape(-1, 3)
        if labels.shape[0] != seeds.shape[0]:
            raise ValueError(f"latents has {seeds.shape[0]} seeds but cameras has batch shape "
                             f"{cameras.batch_shape}; give one camera per latent")
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        images, semantics = [], []
        starts = range(0, len(seeds), self.batch_size)
        for s in tqdm(starts, desc="IDE-3D render", unit="batch", disable=len(starts) <= 1, leave=False):
            sl = slice(s, s + self.batch_size)
            image, semantic = self._render_chunk(seeds[sl], labels[sl], centers[sl], int(image_size))
            images.append(image)
            semantics.append(semantic)
        if not images:
            raise ValueError("latents is empty")
        return IDE3DRenderOutput(image=dlpack.to_jax(torch.cat(images), name="image"),
                                 semantic=dlpack.to_jax(torch.cat(semantics), name="semantic"),
                                 cameras=cameras)


def check_label_intrinsics(generator: IDE3DGenerator, seed: int = 0,
                           focals: tuple[float, float] = (camera_lib.FOCAL, 0.75 * camera_lib.FOCAL),
                           image_size: int = 128) -> dict:
    """Does the renderer use the K in the camera label? Render one latent, frontal, under two label
    K's (bypassing ``check_cameras``) and compare the images.

    Identical images: the renderer ignores the label's K (it builds its rays from its own field of
    view), so landmarks must be projected with ``generator.intrinsics``, never with the label's K.
    Different images: the label's K is used (EG3D style). Returns focals, the largest absolute
    uint8 difference, ``label_k_used`` and the generator's ``intrinsics``.
    """
    images = []
    for f in focals:
        cam = camera_lib.camera_from_angles(np.zeros(1, np.float32), np.zeros(1, np.float32), focal=float(f))
        labels = np.array(camera_lib.ide3d_label(cam), np.float32).reshape(-1, 25)
        centers = np.array(cam.center, np.float32).reshape(-1, 3)
        image, _ = generator._render_chunk(np.array([seed]), labels, centers, int(image_size))
        images.append(image.to(torch.int16))
    difference = int((images[0] - images[1]).abs().max())
    return dict(focals=tuple(float(f) for f in focals), max_abs_difference=difference,
                label_k_used=difference > 0, intrinsics=generator.intrinsics)


# --------------------------------------------------------------------------- command line


def _parse_floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def write_preview(generator: IDE3DGenerator, seeds: Sequence[int], azimuths: Sequence[float], path: str | Path,
                  elevation: float = 0.0, image_size: int = 224, compare_fix: bool = True) -> Path:
    """PNG grid: one row per seed (and per fix setting when ``compare_fix``), one column per azimuth.

    Each cell shows the render with its semantic map's background (class 0) tinted, so the effect
    of the §4 background fix at large poses is visible side by side.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend switch

    seeds = [int(s) for s in seeds]
    azimuths = [float(a) for a in azimuths]
    settings = [True, False] if compare_fix else [generator.fix_background]
    grid_seeds = np.repeat(np.array(seeds), len(azimuths))
    focal = generator.intrinsics.focal or camera_lib.FOCAL  # the K its images obey (check_cameras)
    cams = camera_lib.camera_from_angles(np.tile(np.array(azimuths, np.float32), len(seeds)),
                                         np.full(len(grid_seeds), elevation, np.float32), focal=focal)
    rows = []
    saved = generator.fix_background
    try:
        for fix in settings:
            generator.fix_background = fix
            out = generator.render(grid_seeds, cams, image_size=image_size)
            image, background = np.asarray(out.image), np.asarray(out.semantic) == BACKGROUND_CLASS
            tinted = np.where(background[..., None], (0.6 * image + 0.4 * np.array([0, 90, 255])).astype(np.uint8), image)
            rows += [(f"seed {s}, fix {'on' if fix else 'off'}", tinted[i * len(azimuths):(i + 1) * len(azimuths)])
                     for i, s in enumerate(seeds)]
    finally:
        generator.fix_background = saved
    fig = Figure(figsize=(2.2 * len(azimuths), 2.3 * len(rows)))
    axes = fig.subplots(len(rows), len(azimuths), squeeze=False)
    for r, (label, cells) in enumerate(rows):
        for c, cell in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(cell)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"azimuth {azimuths[c]:g}°", fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle("IDE-3D renders (background class tinted blue)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m bridges.ide3d --checkpoint PKL --repo IDE-3D --out DIR``: a preview grid PNG."""
    import argparse

    parser = argparse.ArgumentParser(description="Render IDE-3D faces at several yaws, with and without the "
                                                 "FaceLift §4 background fix, into a PNG grid.")
    parser.add_argument("--checkpoint", required=True, help="ide3d-ffhq-64-512.pkl")
    parser.add_argument("--repo", required=True, help="the IDE-3D checkout (legacy.py, dnnlib/, torch_utils/)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seeds", default="0,1", help="comma-separated latent seeds")
    parser.add_argument("--azimuths", default="-90,-45,0,45,90", help="comma-separated yaws in degrees")
    parser.add_argument("--elevation", type=float, default=0.0)
    parser.add_argument("--truncation-psi", type=float, default=0.7)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--device", default=None)
    parser.add_argument("--fov", default=None, help="the renderer's field of view in degrees, or 'label' "
                                                    "(default: read from the generator)")
    parser.add_argument("--ray-grid", type=int, default=None, help="the renderer's ray-grid width (default: from G)")
    parser.add_argument("--check-intrinsics", action="store_true",
                        help="render one latent under two label K's and say whether the renderer uses the label's K")
    args = parser.parse_args(argv)
    fov = None if args.fov is None else (args.fov if args.fov == "label" else float(args.fov))
    generator = IDE3DGenerator(args.checkpoint, args.repo, truncation_psi=args.truncation_psi, device=args.device,
                               fov=fov, ray_grid=args.ray_grid)
    out_dir = Path(args.out)
    if args.check_intrinsics:
        report = check_label_intrinsics(generator, seed=int(_parse_floats(args.seeds)[0]))
        verdict = ("the renderer USES the label's K (images differ)" if report["label_k_used"] else
                   "the renderer IGNORES the label's K (identical images): project with the generator's own K")
        text = (f"label focals {report['focals'][0]:.4f} vs {report['focals'][1]:.4f}: max |difference| "
                f"{report['max_abs_difference']} → {verdict}; generator intrinsics: {report['intrinsics']}")
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "intrinsics_check.txt").write_text(text + "\n")
        print(text)
        return out_dir / "intrinsics_check.txt"
    if generator.intrinsics.focal is not None:
        print(f"rendering with the generator's own K: focal {generator.intrinsics.focal:.4f} "
              f"({generator.intrinsics.source})")
    path = write_preview(generator, [int(s) for s in _parse_floats(args.seeds)], _parse_floats(args.azimuths),
                         Path(args.out) / "ide3d_views.png", elevation=args.elevation, image_size=args.image_size)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
