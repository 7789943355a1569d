"""The held-out synthetic test set: latents and videos never used in training, with exact truth.

Multi-view part: ``config.eval.num_latents`` latents from ``config.eval.first_latent``, each
rendered once from a camera of C (acceptance rule + landmark-box constraint on the TRUE landmarks),
seeded by ``config.seed``. Multi-frame part: ``config.eval.num_videos`` synthetic clips from
``config.eval.first_video`` (``frames_per_video`` frames each), decoded from the video files.

All 2D coordinates are normalized image coordinates ([0, 1]², origin top-left); 3D in world
space; rotation world→camera. Built once and cached under ``<data_dir>/test/``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np
from tqdm import tqdm

from facelift_jax import camera

CACHE = "test"
_CAMERA_STREAM = 7_000_003


@dataclasses.dataclass(frozen=True)
class TestImages:
    """M test images with their exact ground truth.

    image (M, S, S, 3) uint8; landmarks2d (M, 98, 2) true projection; landmarks3d (M, 98, 3) world
    truth; rotation (M, 3, 3); translation (M, 3); visible (M, 98) bool; vertices2d (M, V, 2)
    projected mesh vertices (for NMLC) or None; box_size (M,) sqrt(w·h) of the true 2D landmark box.
    """

    image: np.ndarray
    landmarks2d: np.ndarray
    landmarks3d: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    visible: np.ndarray
    vertices2d: np.ndarray | None
    box_size: np.ndarray

    def __len__(self) -> int:
        return len(self.image)

    def take(self, n: int) -> "TestImages":
        return dataclasses.replace(self, **{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[:n])
                                            for f in dataclasses.fields(self)})


@dataclasses.dataclass(frozen=True)
class TestSet:
    multiview: TestImages
    multiframe: TestImages | None


def box_size(points2d) -> np.ndarray:
    """(M, N, 2) → (M,) sqrt(w·h) of the tight landmark box (eq. 5's 1/z)."""
    extent = np.ptp(np.asarray(points2d, np.float64), axis=-2)
    return np.sqrt(extent[..., 0] * extent[..., 1])


def _fields(t: TestImages) -> dict:
    return {f.name: getattr(t, f.name) for f in dataclasses.fields(t) if getattr(t, f.name) is not None}


def _load(path: pathlib.Path) -> TestImages:
    with np.load(path) as f:
        d = {k: f[k] for k in f.files}
    d.setdefault("vertices2d", None)
    return TestImages(**d)


def render_multiview(config, generator, chunk: int = 16) -> TestImages:
    n = int(config.eval.num_latents)
    latents = np.arange(int(config.eval.first_latent), int(config.eval.first_latent) + n, dtype=np.int64)
    out = {k: [] for k in ("image", "landmarks2d", "landmarks3d", "rotation", "translation", "visible", "vertices2d")}
    key = jax.random.fold_in(jax.random.key(int(config.seed)), _CAMERA_STREAM)
    has_vertices = hasattr(generator, "vertices3d")
    for start in tqdm(range(0, n, chunk), desc="test set: rendering held-out latents", leave=False):
        lat = latents[start:start + chunk]
        truth3d = np.asarray(generator.landmarks3d(lat), np.float32)
        cams = camera.sample_cameras(jax.random.fold_in(key, start), len(lat), config.camera, landmarks3d=truth3d)
        r = generator.render(lat, cams, image_size=int(config.image_size))
        out["image"].append(np.asarray(r.image, np.uint8))
        out["landmarks2d"].append(np.asarray(camera.project(truth3d, cams), np.float32))
        out["landmarks3d"].append(truth3d)
        out["rotation"].append(np.asarray(cams.R, np.float32))
        out["translation"].append(np.asarray(cams.t, np.float32))
        out["visible"].append(np.asarray(r.visible, bool))
        if has_vertices:
            out["vertices2d"].append(np.asarray(camera.project(np.asarray(generator.vertices3d(lat), np.float32), cams),
                                                np.float32))
    arrays = {k: np.concatenate(v) for k, v in out.items() if v}
    arrays.setdefault("vertices2d", None)
    return TestImages(box_size=box_size(arrays["landmarks2d"]).astype(np.float32), **arrays)


def render_multiframe(config, out_dir: pathlib.Path) -> TestImages | None:
    from facelift_jax import synthetic

    n = int(config.eval.num_videos)
    if n <= 0:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = int(config.eval.frames_per_video)
    parts = {k: [] for k in ("image", "landmarks2d", "landmarks3d", "rotation", "translation", "visible")}
    for seed in tqdm(range(int(config.eval.first_video), int(config.eval.first_video) + n),
                     desc="test set: held-out videos", leave=False):
        path = pathlib.Path(synthetic.make_video(seed, out_dir / f"test_{seed}.avi", frames=frames,
                                                 image_size=int(config.image_size)))
        video = np.asarray(synthetic.read_video(path))
        with np.load(path.with_suffix(".npz")) as f:
            t = min(len(video), len(f["true2d"]))
            parts["image"].append(video[:t])
            parts["landmarks2d"].append(f["true2d"][:t].astype(np.float32))
            parts["landmarks3d"].append(f["landmarks3d"][:t].astype(np.float32))
            parts["rotation"].append(f["rotation"][:t].astype(np.float32))
            parts["translation"].append(f["translation"][:t].astype(np.float32))
            parts["visible"].append(f["visible"][:t].astype(bool))
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    if arrays["image"].shape[1:3] != (int(config.image_size),) * 2:
        import cv2

        s = int(config.image_size)
        arrays["image"] = np.stack([cv2.resize(im, (s, s), interpolation=cv2.INTER_AREA) for im in arrays["image"]])
    return TestImages(vertices2d=None, box_size=box_size(arrays["landmarks2d"]).astype(np.float32), **arrays)


def load_or_build(config, data_dir) -> TestSet:
    """The cached test set under ``<data_dir>/test`` (built on first use; rebuilt when the eval
    settings change)."""
    from facelift_jax import sources

    cache = pathlib.Path(data_dir) / CACHE
    key = {k: config.eval[k] for k in ("num_latents", "first_latent", "num_videos", "first_video", "frames_per_video")}
    key.update(seed=int(config.seed), image_size=int(config.image_size), generator=config.generator,
               camera=json.loads(config.camera.to_json()))
    stamp = cache / "settings.json"
    mv_path, mf_path = cache / "multiview.npz", cache / "multiframe.npz"
    if stamp.is_file() and json.loads(stamp.read_text()) == key and mv_path.is_file():
        return TestSet(_load(mv_path), _load(mf_path) if mf_path.is_file() else None)
    cache.mkdir(parents=True, exist_ok=True)
    mv = render_multiview(config, sources.make_generator(config))
    mf = render_multiframe(config, cache / "videos")
    np.savez(mv_path, **_fields(mv))
    if mf is not None:
        np.savez(mf_path, **_fields(mf))
    elif mf_path.exists():
        mf_path.unlink()
    stamp.write_text(json.dumps(key, indent=2))
    return TestSet(mv, mf)
