"""Reading the preprocessing output (``facelift_jax.preprocess``) that training consumes.

Layout under the data directory (see preprocess): ``multiview/pseudo_labels.npz`` and
``multiview/template.npy`` (3D pseudo-labels of GAN latents, world = GAN canonical space), and
``videos/index.json`` with one entry per clip (video file + npz of 2D pseudo-labels in normalized
image coordinates).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

from facelift_jax import landmarks as lm

MULTIVIEW_LABELS = "multiview/pseudo_labels.npz"
TEMPLATE = "multiview/template.npy"
VIDEO_INDEX = "videos/index.json"


@dataclasses.dataclass(frozen=True)
class PseudoLabels:
    """Lifted 3D pseudo-labels of the training latents (only those usable for training).

    latents: (N,) int64 generator seeds. points3d: (N, 98, 3) world; invalid points are replaced by
    the template's so every array is finite (they are masked out anyway). valid: (N, 98) bool.
    template: (98, 3) world, the landmark-wise mean of the valid pseudo-labels.
    """

    latents: np.ndarray
    points3d: np.ndarray
    valid: np.ndarray
    template: np.ndarray

    def __len__(self) -> int:
        return len(self.latents)


def has_pseudo_labels(data_dir) -> bool:
    data_dir = pathlib.Path(data_dir)
    return (data_dir / MULTIVIEW_LABELS).is_file() and (data_dir / TEMPLATE).is_file()


def load_template(data_dir) -> np.ndarray:
    path = pathlib.Path(data_dir) / TEMPLATE
    if not path.is_file():
        raise FileNotFoundError(f"no template at {path}; run preprocessing first (python -m facelift_jax.preprocess)")
    template = np.load(path).astype(np.float32)
    if template.shape != (lm.NUM_LANDMARKS, 3) or not np.isfinite(template).all():
        raise ValueError(f"{path}: template must be a finite ({lm.NUM_LANDMARKS}, 3) array, got {template.shape}")
    return template


def load_pseudo_labels(data_dir) -> PseudoLabels:
    """The usable latents: lifting status 0 and at least one valid non-pupil landmark."""
    path = pathlib.Path(data_dir) / MULTIVIEW_LABELS
    if not path.is_file():
        raise FileNotFoundError(f"no pseudo-labels at {path}; run preprocessing first (python -m facelift_jax.preprocess)")
    template = load_template(data_dir)
    with np.load(path) as f:
        missing = {"latents", "points3d", "valid"} - set(f.files)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}")
        latents = f["latents"].astype(np.int64)
        points = f["points3d"].astype(np.float32)
        valid = f["valid"].astype(bool)
        status = f["status"] if "status" in f.files else np.zeros(len(latents), np.int64)
    n = len(latents)
    if points.shape != (n, lm.NUM_LANDMARKS, 3) or valid.shape != (n, lm.NUM_LANDMARKS):
        raise ValueError(f"{path}: points3d {points.shape} / valid {valid.shape} do not match {n} latents")
    valid = valid & np.isfinite(points).all(-1)
    keep = (status == 0) & (valid & lm.NON_PUPIL_MASK).any(-1)
    if not keep.any():
        raise ValueError(f"{path}: none of the {n} lifted latents is usable (status 0 with a valid landmark)")
    points = np.where(valid[..., None], points, template)
    return PseudoLabels(latents=latents[keep], points3d=points[keep], valid=valid[keep], template=template)


@dataclasses.dataclass(frozen=True)
class VideoLabels:
    """2D pseudo-labels of the training clips, flattened to one row per frame.

    paths: per clip, the video file. frame_clip (F,) int: clip of each frame; frame_index (F,) int:
    frame number within its clip. landmarks2d (F, 98, 2) normalized image coords (non-finite
    replaced by 0.5 and masked); confidence (F, 98) in [0, 1] (0 where the detection is non-finite).
    """

    paths: tuple[str, ...]
    frame_clip: np.ndarray
    frame_index: np.ndarray
    landmarks2d: np.ndarray
    confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.frame_clip)


def load_video_labels(data_dir) -> VideoLabels:
    data_dir = pathlib.Path(data_dir)
    index_path = data_dir / VIDEO_INDEX
    if not index_path.is_file():
        raise FileNotFoundError(f"no video index at {index_path}; run preprocessing first")
    entries = json.loads(index_path.read_text())
    if isinstance(entries, dict):
        entries = entries.get("videos", entries.get("clips", []))
    paths, clips, frames, points, conf = [], [], [], [], []
    base = index_path.parent
    for i, entry in enumerate(entries):
        video = base / entry["video"]
        labels_path = base / entry["labels"]
        if not video.is_file() or not labels_path.is_file():
            raise FileNotFoundError(f"{index_path}: entry {i} names missing files {video} / {labels_path}")
        with np.load(labels_path) as f:
            p = f["landmarks2d"].astype(np.float32)
            c = f["confidence"].astype(np.float32) if "confidence" in f.files else np.ones(p.shape[:2], np.float32)
        t = int(entry.get("frames", len(p)))
        if p.shape[1:] != (lm.NUM_LANDMARKS, 2) or len(p) < t or c.shape[:1] != p.shape[:1]:
            raise ValueError(f"{labels_path}: landmarks2d {p.shape} / confidence {c.shape} do not fit {t} frames")
        finite = np.isfinite(p[:t]).all(-1)
        paths.append(str(video))
        clips.append(np.full(t, i, np.int64))
        frames.append(np.arange(t, dtype=np.int64))
        points.append(np.where(finite[..., None], p[:t], 0.5))
        conf.append(np.where(finite, np.clip(c[:t], 0.0, 1.0), 0.0))
    if not paths:
        raise ValueError(f"{index_path} lists no videos")
    return VideoLabels(paths=tuple(paths), frame_clip=np.concatenate(clips), frame_index=np.concatenate(frames),
                       landmarks2d=np.concatenate(points), confidence=np.concatenate(conf))
