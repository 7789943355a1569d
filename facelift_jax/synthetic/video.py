"""Synthetic talking-head clips written as real video files, with detections and hidden 3D truth.

``make_video(seed, path)`` draws one face and smooth trajectories — head pose (frontal-biased,
like in-the-wild video), speech-like jaw motion, blinks, slow smiles and brow movements —,
renders every frame, runs the simulated detector, writes the frames with OpenCV (``.avi`` → MJPG,
``.mp4`` → mp4v) and ``<stem>.npz`` beside the file:
    landmarks2d (T,98,2) detections (normalized image coordinates), confidence (T,98),
    landmarks3d (T,98,3) world truth, true2d (T,98,2) exact projection, visible (T,98),
    rotation (T,3,3) world→camera, translation (T,3), intrinsics (T,3,3), expression (T,Ke),
    latent (), fps ().
``facelift_jax.media.read_video`` / ``read_frame`` decode the file back (RGB uint8); the multi-frame
pipeline reads the file, never arrays kept in memory.
"""

from __future__ import annotations

import pathlib

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from facelift_jax import camera as cam
from facelift_jax import io as fio
from facelift_jax import random_streams as streams
from facelift_jax.synthetic import mesh
from facelift_jax.synthetic.detector import SyntheticDetector
from facelift_jax.synthetic.generator import SyntheticGenerator
from facelift_jax.synthetic.params import latent_keys, params_from_latents

_FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}


def _rng(seed: int, stream: int) -> np.random.Generator:
    u = np.asarray(seed, np.int64).reshape(()).view(np.uint64)
    return np.random.default_rng([int(u & np.uint64(0xFFFFFFFF)), int(u >> np.uint64(32)), stream])


def _smooth(rng, t, freqs=(0.08, 0.5), n=3):
    """A smooth random signal of time t (T,) seconds with amplitude ≈ 1: a sum of sinusoids."""
    f = rng.uniform(*freqs, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    amp = rng.uniform(0.5, 1.0, n)
    x = (amp[:, None] * np.sin(2 * np.pi * f[:, None] * t[None] + phase[:, None])).sum(0)
    return x / amp.sum() * 1.6


def trajectories(seed: int, frames: int, fps: float, neutral_expression: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame pose (degrees, camera-space translation) and expression coefficients (T, Ke)."""
    rng = _rng(seed, 1)
    t = np.arange(frames) / fps
    yaw_amp = rng.choice([15.0, 30.0, 55.0, 80.0], p=[0.35, 0.35, 0.2, 0.1])
    # head turns up to ~200°/s, like in-the-wild talking-head video
    yaw = np.clip(rng.normal(0, 8) + yaw_amp * _smooth(rng, t, (0.04, 0.25)), -100, 100)
    pitch = np.clip(rng.normal(0, 5) + rng.uniform(5, 18) * _smooth(rng, t), -45, 45)
    roll = np.clip(rng.normal(0, 4) + rng.uniform(2, 10) * _smooth(rng, t), -40, 40)
    trans = np.stack([0.03 * _smooth(rng, t), 0.03 * _smooth(rng, t), 0.1 * _smooth(rng, t, (0.05, 0.2))], -1)

    names = mesh.EXPRESSION_NAMES
    ex = np.repeat(neutral_expression[None].astype(np.float32), frames, 0) * 0.5
    # speech: syllables at 3-5 Hz gated by a slow talking envelope
    syll = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t + rng.uniform(0, 2 * np.pi))
    talking = np.clip(0.6 + _smooth(rng, t, (0.1, 0.4)), 0, 1)
    ex[:, names.index("jaw_open")] = np.clip(rng.uniform(0.3, 0.7) * syll * talking, 0, 1)
    ex[:, names.index("pucker")] = np.clip(0.15 * np.sin(2 * np.pi * 2.1 * t + rng.uniform(0, 6)) * talking, 0, 1)
    smile = np.clip(rng.uniform(-0.2, 0.6) + 0.4 * _smooth(rng, t, (0.05, 0.2)), 0, 1)
    asym = rng.uniform(0.7, 1.0, 2)
    ex[:, names.index("smile_right")], ex[:, names.index("smile_left")] = smile * asym[0], smile * asym[1]
    ex[:, names.index("brow_raise")] = np.clip(0.3 * _smooth(rng, t, (0.1, 0.5)), -0.5, 1)
    # blinks: Poisson events (~0.3/s), ≈ 0.2 s each, both eyes together
    blink = np.zeros(frames)
    n_events = rng.poisson(0.3 * frames / fps + 0.3)
    for c in rng.uniform(0, frames / fps, n_events):
        blink = np.maximum(blink, np.clip(1.0 - np.abs(t - c) / 0.1, 0, 1))
    ex[:, names.index("blink_right")] = ex[:, names.index("blink_left")] = blink
    return dict(yaw=yaw, pitch=pitch, roll=roll, translation=trans, expression=ex.astype(np.float32))


def make_video(seed: int, path, frames: int = 48, image_size: int = 224, fps: float = 25, *,
               generator: SyntheticGenerator | None = None, detector: SyntheticDetector | None = None,
               chunk: int = 64, focal: float = cam.FOCAL) -> pathlib.Path:
    """Write one synthetic clip to ``path`` (.avi or .mp4) and ``<stem>.npz`` beside it; returns path.

    ``focal``: the normalized focal of every frame's camera. Callers with a config pass
    ``config.camera.focal`` (``sources.generator_focal``), as the multi-view renders use, so the
    clips' images and labels obey the run's one K."""
    path = pathlib.Path(path)
    if path.suffix.lower() not in _FOURCC:
        raise ValueError(f"video path must end in .avi or .mp4, got {path}")
    if frames < 1 or image_size < 8:
        raise ValueError(f"frames must be ≥ 1 and image_size ≥ 8, got frames={frames}, image_size={image_size}")
    gen = generator or SyntheticGenerator()
    det = detector or SyntheticDetector()
    seeds = np.array([seed], np.int64)
    key = latent_keys(seeds, int(gen.config.base_seed) + streams.VIDEO_POPULATION)[0]
    face = params_from_latents(seeds, int(gen.config.base_seed) + streams.VIDEO_POPULATION, gen.config.identity_scale,
                               gen.config.expression_scale)[0]
    traj = trajectories(seed, frames, fps, np.asarray(face.expression))
    params = jax.tree_util.tree_map(lambda x: jnp.repeat(x[None], frames, 0), face)
    params = params.replace(expression=jnp.asarray(traj["expression"]))
    cameras = cam.camera_from_angles(traj["yaw"], traj["pitch"], traj["roll"], traj["translation"], focal=float(focal))

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*_FOURCC[path.suffix.lower()]), float(fps),
                             (image_size, image_size))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with codec {_FOURCC[path.suffix.lower()]}")
    keys = {k: [] for k in ("landmarks2d", "confidence", "landmarks3d", "true2d", "visible")}
    det_key = jax.random.fold_in(key, 1)
    try:
        for start in range(0, frames, chunk):
            sl = slice(start, min(start + chunk, frames))
            out = gen.render_params(params[sl], cameras[sl], image_size)
            d, c = det.detect(out, jax.random.fold_in(det_key, start), return_confidence=True)
            for frame in out.image:
                writer.write(np.ascontiguousarray(frame[..., ::-1]))
            keys["landmarks2d"].append(d)
            keys["confidence"].append(c)
            keys["landmarks3d"].append(out.landmarks3d)
            keys["true2d"].append(out.landmarks2d)
            keys["visible"].append(out.visible)
    finally:
        writer.release()
    fio.atomic_write(labels_path(path), lambda f: np.savez_compressed(
        f, **{k: np.concatenate(v) for k, v in keys.items()},
        rotation=np.asarray(cameras.R), translation=np.asarray(cameras.t), intrinsics=np.asarray(cameras.K),
        expression=traj["expression"], latent=np.int64(seed), fps=np.float32(fps)))
    return path


def labels_path(video_path) -> pathlib.Path:
    """``clip.avi`` → ``clip.npz`` (the labels beside a clip)."""
    return pathlib.Path(video_path).with_suffix(".npz")
