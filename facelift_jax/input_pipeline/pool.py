"""A rendered pool: multi-view training samples rendered once, re-sampled in roll every time.

Rendering on the fly competes with the training step for a small CPU (the loop ran at 0.60 of
the step-alone throughput). So before training, ``pool_size`` multi-view samples are rendered
(latent i mod N, a camera from C drawn with the paper's acceptance rule and the landmark-box
constraint) and kept as uint8 images with their cameras; the training video frames are decoded
once into the same place. Training then only gathers arrays.

Roll is re-drawn at every use, exactly. A roll δ of the camera about its optical axis
(R' = Rz(δ)·R, t' = Rz(δ)·t, K with the principal point at the image centre) maps every
camera-space point p to Rz(δ)·p, so the new image is the old one rotated by δ about the principal
point, and the 2D labels rotate with it; the 3D labels (world) do not change. The acceptance rule
of C factorizes, exp(−(α/A)²)·exp(−(β/B)²)·exp(−(γ/Γ)²), so the new roll γ' is drawn from the
roll factor alone (uniform proposal on [−Γ, Γ], accepted with exp(−(γ'/Γ)²)) and also has to
pass the landmark-box constraint: a Gibbs step on γ given the other camera parameters, which
leaves the distribution of (α, β, γ) of C unchanged. (The camera-space offset Δt of C rotates
with the camera, t' = Rz(δ)·t, so Δt_xy's uniform square is turned by δ: a ≤ 0.05-unit
offset, kept as it is; the labels stay exact for the camera actually used.)

Layout: ``data_dir/pool/<stamp>/`` with ``chunk_*.npz`` (images (n, S, S, 3) uint8, index (n,)
into the pseudo-labels, R (n, 3, 3), t (n, 3), roll (n,) degrees) and ``stamp.json``, and
``data_dir/pool/frames_<hash>.npz`` (decoded training video frames (F, S, S, 3) uint8, hashed
by clip paths and size); the stamp hashes everything that
decides the contents (generator, camera space, size, seed, pseudo-labels), so a changed config
renders a new pool instead of reusing a stale one. Chunks are written atomically; a killed
render resumes at the first missing chunk.
"""

from __future__ import annotations

import dataclasses
import pathlib

import cv2
import jax
import numpy as np
from tqdm import tqdm

from facelift_jax import camera, stamps
from facelift_jax import random_streams as streams
from facelift_jax.io import load_npz_if_valid, save_npz  # the same atomic npz files as preprocessing
from facelift_jax.input_pipeline.labels import PseudoLabels, VideoLabels

_CHUNK = 512


@dataclasses.dataclass(frozen=True)
class RenderedPool:
    """images (P, S, S, 3) uint8; index (P,) row of the pseudo-labels; R (P, 3, 3) world→camera;
    t (P, 3); roll (P,) degrees (the γ of C the sample was drawn with)."""

    images: np.ndarray
    index: np.ndarray
    R: np.ndarray
    t: np.ndarray
    roll: np.ndarray

    def __len__(self) -> int:
        return len(self.index)


def _stamp(config, labels: PseudoLabels) -> str:
    what = dict(generator=config.generator,
                synthetic=config.synthetic.to_dict() if "synthetic" in config else None,
                camera=config.camera.to_dict(), image_size=int(config.image_size), seed=int(config.seed))
    return stamps.digest(what, labels.latents, labels.points3d)


def _root(config, data_dir, labels: PseudoLabels) -> pathlib.Path:
    return pathlib.Path(data_dir) / "pool" / _stamp(config, labels)


def load_or_render(config, data_dir, labels: PseudoLabels, *, progress: bool = True) -> RenderedPool:
    """The pool of ``config.data.pool_size`` renders of the pseudo-labelled latents (rendered once)."""
    size, n = int(config.image_size), int(config.data.pool_size)
    if n < 1:
        raise ValueError(f"data.pool_size must be ≥ 1 to build a pool, got {n}")
    root = _root(config, data_dir, labels)
    root.mkdir(parents=True, exist_ok=True)
    stamps.write(root / "stamp.json", dict(pool_size=n, image_size=size, num_latents=len(labels)))
    generator = None
    parts = []
    key = jax.random.fold_in(jax.random.key(int(config.seed)), streams.POOL_CAMERAS)
    starts = range(0, n, _CHUNK)
    bar = tqdm(total=n, desc="render training pool", unit="img", disable=not progress)
    for start in starts:
        stop = min(start + _CHUNK, n)
        path = root / f"chunk_{start:07d}_{stop:07d}.npz"
        part = load_npz_if_valid(path)
        if part is None:
            if generator is None:
                from facelift_jax import sources

                generator = sources.make_generator(config)
            index = np.arange(start, stop) % len(labels)
            cams = camera.sample_cameras(jax.random.fold_in(key, start), stop - start, config.camera,
                                         landmarks3d=labels.points3d[index])
            roll = _roll_of(cams)
            images = np.concatenate([np.asarray(generator.render(labels.latents[index[i:i + 64]], cams[i:i + 64],
                                                                 image_size=size).image, np.uint8)
                                     for i in range(0, len(index), 64)])
            part = dict(images=images, index=index, R=np.asarray(cams.R, np.float32),
                        t=np.asarray(cams.t, np.float32), roll=roll)
            save_npz(path, **part)
        parts.append(part)
        bar.update(stop - start)
    bar.close()
    return RenderedPool(**{k: np.concatenate([p[k] for p in parts]) for k in ("images", "index", "R", "t", "roll")})


def _roll_of(cams: camera.Camera) -> np.ndarray:
    """γ (degrees) of cameras of C. R = Rz(γ)·L where L's rows are the look-at camera's right axis r
    (no world-y component) and down axis d (d_y = −cos β < 0), so R[0, 1] = −sinγ·d_y and
    R[1, 1] = cosγ·d_y: γ = atan2(R[0, 1], −R[1, 1])."""
    R = np.asarray(cams.R, np.float64)
    return np.rad2deg(np.arctan2(R[:, 0, 1], -R[:, 1, 1])).astype(np.float32)


def decoded_frames(config, data_dir, videos: VideoLabels, *, progress: bool = True) -> np.ndarray:
    """Every training video frame (F, S, S, 3) uint8 at ``config.image_size``, decoded once."""
    size = int(config.image_size)
    path = pathlib.Path(data_dir) / "pool" / f"frames_{stamps.digest(dict(paths=list(videos.paths), size=size))}.npz"
    cached = load_npz_if_valid(path)
    if cached is not None and cached["frames"].shape == (len(videos), size, size, 3):
        return cached["frames"]
    from facelift_jax.input_pipeline.multiframe import FrameSource

    source = FrameSource(videos, size)
    frames = np.stack([source[i]["image"] for i in tqdm(range(len(videos)), desc="decode training frames",
                                                         unit="frame", disable=not progress)])
    save_npz(path, frames=frames)
    return frames


# ----------------------------------------------------------------------------------------------
# Roll re-sampling
# ----------------------------------------------------------------------------------------------

def project(points3d, R, t, focal: float = camera.FOCAL, principal: float = camera.PRINCIPAL) -> np.ndarray:
    """NumPy ``camera.project`` for the fixed intrinsics: world (..., N, 3) with R (..., 3, 3),
    t (..., 3) → normalized image coordinates (..., N, 2). Kept in NumPy: it runs per sample in the
    input pipeline, where a JAX dispatch per call would cost more than the arithmetic."""
    p = np.einsum("...ij,...nj->...ni", R, points3d) + np.asarray(t)[..., None, :]
    return focal * p[..., :2] / p[..., 2:3] + principal


def roll_matrix(delta_deg) -> np.ndarray:
    """Rz(δ) (3, 3): the camera-space rotation about the optical axis (OpenCV axes)."""
    d = np.deg2rad(float(delta_deg))
    c, s = np.cos(d), np.sin(d)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def roll_image(image: np.ndarray, delta_deg: float) -> np.ndarray:
    """(S, S, 3) image of camera (R, t) → the image of camera (Rz(δ)R, Rz(δ)t): the rotation by δ
    about the principal point (the image centre). Pixel (i, j) covers [j, j+1)×[i, i+1) in pixel
    units, so the centre is at (S/2 − ½, S/2 − ½) in OpenCV's pixel-centre coordinates."""
    s = image.shape[0]
    c = (s - 1) / 2.0
    a = roll_matrix(delta_deg)[:2, :2]
    M = np.concatenate([a, (np.array([c, c]) - a @ np.array([c, c]))[:, None]], 1)
    return cv2.warpAffine(image, M, (image.shape[1], s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def roll_points(points2d: np.ndarray, delta_deg: float, principal: float = camera.PRINCIPAL) -> np.ndarray:
    """(N, 2) normalized image points → their positions after the roll δ (about the principal point)."""
    a = roll_matrix(delta_deg)[:2, :2]
    return ((points2d - principal) @ a.T + principal).astype(np.float32)


def draw_roll(rng: np.random.Generator, roll_range: float) -> float:
    """γ from C's roll factor: uniform on [−Γ, Γ] accepted with probability exp(−(γ/Γ)²)."""
    while True:
        u = rng.uniform(-1.0, 1.0)
        if rng.uniform() < np.exp(-u * u):
            return float(u * roll_range)


def box_ok(points2d: np.ndarray, min_box_fraction: float) -> bool:
    lo, hi = points2d.min(0), points2d.max(0)
    return bool(np.all(lo >= 0) and np.all(hi <= 1) and np.min(hi - lo) > min_box_fraction)


def resample_roll(rng: np.random.Generator, roll: float, points2d: np.ndarray, camera_config,
                  tries: int = 8) -> float:
    """δ = γ' − γ for a fresh γ' of C whose landmark box passes the constraint; 0 (keep γ) when
    ``tries`` draws all fail, which the Gibbs step allows (the current γ passed the constraint)."""
    for _ in range(tries):
        delta = draw_roll(rng, float(camera_config.roll_range)) - float(roll)
        if box_ok(roll_points(points2d, delta), float(camera_config.min_box_fraction)):
            return delta
    return 0.0
