"""The held-out synthetic test set: latents and videos never used in training, with exact truth.

Built here (``load_or_build``); scored by ``evaluation.evaluator.Evaluator`` in the training loop
and offline (``python -m facelift_jax.evaluate``); wrapped as an ``EvalSet`` (``SyntheticTestSet``)
for the generic per-image evaluation.

Multi-view part: ``config.eval.num_latents`` latents from ``config.eval.first_latent``, each
rendered once from a camera of C (acceptance rule + landmark-box constraint on the TRUE landmarks),
seeded by ``config.seed``. Multi-frame part: ``config.eval.num_videos`` synthetic clips from
``config.eval.first_video`` (``frames_per_video`` frames each), decoded from the video files.
Each image also keeps what the configured 2D detector (``sources.make_detector``, run on the
render as preprocessing runs it; the clips' own detections for the video frames) says about it:
the input of the "detector + template fit" baseline (evaluation/baselines.py).

``TestImages``: normalized image coordinates ([0, 1]², origin top-left); 3D in world space;
rotation world→camera. Built once and cached under ``<data_dir>/test/``.

``SyntheticTestSet`` (pixels, origin top-left): with a ``data_dir`` the set cached there, without
it rendered in memory.

Per image: landmarks2d (98, 2) = exact projection of the true 3D landmarks (NME), vertices2d
(|V|, 2) = the generator's deformed mesh projected with the same camera (NMLC), box = tight box of
the true 2D landmarks, the whole render is the model input (it is framed like the training data).
Categories:
* pose — from the true camera's (yaw, pitch, roll) (rotation.euler_degrees): "front" if
  |yaw| < pose_thresholds[0], "sided" if below pose_thresholds[1], else "atypical"; also
  "atypical" when |pitch| ≥ atypical_pitch or |roll| ≥ atypical_roll (unusual head tilts, as in
  DAD-3DHeads' pose classes);
* expression — "True" when some expression coefficient of the latent's face (jaw open, smiles,
  pucker, blinks, brow raise) has magnitude ≥ expression_threshold (synthetic generator only).
Extra truth for 3D metrics: landmarks3d (98, 3) world, rotation (3, 3), translation (3,).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import jax
import numpy as np
from tqdm import tqdm

from facelift_jax import camera, media, stamps
from facelift_jax import random_streams as streams
from facelift_jax import rotation as rotation_lib
from facelift_jax.evaluation.datasets.base import EvalSample, EvalSet, points_box

CACHE = "test"
CACHE_VERSION = 2  # 2: detections and their confidences are cached with the truth


@dataclasses.dataclass(frozen=True)
class TestImages:
    """M test images with their exact ground truth.

    image (M, S, S, 3) uint8; landmarks2d (M, 98, 2) true projection; landmarks3d (M, 98, 3) world
    truth; rotation (M, 3, 3); translation (M, 3); visible (M, 98) bool; vertices2d (M, V, 2)
    projected mesh vertices (for NMLC) or None; box_size (M,) sqrt(w·h) of the true 2D landmark box;
    detections (M, 98, 2) the 2D detector's landmarks and detection_confidence (M, 98), or None.
    """

    image: np.ndarray
    landmarks2d: np.ndarray
    landmarks3d: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    visible: np.ndarray
    vertices2d: np.ndarray | None
    box_size: np.ndarray
    detections: np.ndarray | None = None
    detection_confidence: np.ndarray | None = None

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
    for name in ("vertices2d", "detections", "detection_confidence"):
        d.setdefault(name, None)
    return TestImages(**d)


def render_multiview(config, generator, chunk: int = 16, detector=None) -> TestImages:
    """The multi-view part (module doc); with a ``detector``, its detections of every render too."""
    n = int(config.eval.num_latents)
    latents = np.arange(int(config.eval.first_latent), int(config.eval.first_latent) + n, dtype=np.int64)
    out = {k: [] for k in ("image", "landmarks2d", "landmarks3d", "rotation", "translation", "visible", "vertices2d",
                           "detections", "detection_confidence")}
    key = jax.random.fold_in(jax.random.key(int(config.seed)), streams.TEST_CAMERAS)
    det_key = jax.random.fold_in(jax.random.key(int(config.seed)), streams.TEST_DETECTOR)
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
        if detector is not None:
            det, conf = detector.detect(r, jax.random.fold_in(det_key, start), return_confidence=True)
            out["detections"].append(np.asarray(det, np.float32))
            out["detection_confidence"].append(np.asarray(conf, np.float32))
        if has_vertices:
            out["vertices2d"].append(np.asarray(camera.project(np.asarray(generator.vertices3d(lat), np.float32), cams),
                                                np.float32))
    arrays = {k: np.concatenate(v) for k, v in out.items() if v}
    return TestImages(box_size=box_size(arrays["landmarks2d"]).astype(np.float32), **arrays)


def render_multiframe(config, out_dir: pathlib.Path) -> TestImages | None:
    from facelift_jax import synthetic

    n = int(config.eval.num_videos)
    if n <= 0:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = int(config.eval.frames_per_video)
    parts = {k: [] for k in ("image", "landmarks2d", "landmarks3d", "rotation", "translation", "visible", "detections",
                             "detection_confidence")}
    # The configured synthetic generator and detector, as the training videos use (make_video
    # draws synthetic clips only; another source keeps the embedded defaults).
    from facelift_jax import sources

    gen = sources.make_generator(config) if config.generator == "synthetic" else None
    det = sources.make_detector(config) if config.detector == "synthetic" else None
    for seed in tqdm(range(int(config.eval.first_video), int(config.eval.first_video) + n),
                     desc="test set: held-out videos", leave=False):
        path = pathlib.Path(synthetic.make_video(seed, out_dir / f"test_{seed}.avi", frames=frames,
                                                 image_size=int(config.image_size), generator=gen, detector=det,
                                                 focal=camera.config_focal(config.camera)))
        video = media.read_video(path)
        with np.load(path.with_suffix(".npz")) as f:
            t = min(len(video), len(f["true2d"]))
            parts["image"].append(video[:t])
            parts["landmarks2d"].append(f["true2d"][:t].astype(np.float32))
            parts["landmarks3d"].append(f["landmarks3d"][:t].astype(np.float32))
            parts["rotation"].append(f["rotation"][:t].astype(np.float32))
            parts["translation"].append(f["translation"][:t].astype(np.float32))
            parts["visible"].append(f["visible"][:t].astype(bool))
            parts["detections"].append(f["landmarks2d"][:t].astype(np.float32))  # the clip's own detections
            parts["detection_confidence"].append(f["confidence"][:t].astype(np.float32))
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
               camera=json.loads(config.camera.to_json()), detector=config.detector,
               synthetic=config.synthetic.to_dict() if "synthetic" in config else None,  # held-out videos too
               version=CACHE_VERSION)
    stamp = cache / "settings.json"
    mv_path, mf_path = cache / "multiview.npz", cache / "multiframe.npz"
    if stamps.matches(stamp, key) and mv_path.is_file():
        return TestSet(_load(mv_path), _load(mf_path) if mf_path.is_file() else None)
    cache.mkdir(parents=True, exist_ok=True)
    mv = render_multiview(config, sources.make_generator(config), detector=sources.make_detector(config))
    mf = render_multiframe(config, cache / "videos")
    np.savez(mv_path, **_fields(mv))
    if mf is not None:
        np.savez(mf_path, **_fields(mf))
    elif mf_path.exists():
        mf_path.unlink()
    stamps.write(stamp, key)
    return TestSet(mv, mf)

def _generator(config):
    from facelift_jax import sources

    return sources.make_generator(config)


def pose_categories(rotations, thresholds=(30.0, 60.0), atypical_pitch: float = 40.0,
                    atypical_roll: float = 45.0) -> np.ndarray:
    """(M, 3, 3) world→camera rotations → (M,) "front" / "sided" / "atypical" (see module doc)."""
    ypr = np.abs(np.asarray(rotation_lib.euler_degrees(np.asarray(rotations, np.float32)), np.float64))
    lo, hi = thresholds
    out = np.where(ypr[:, 0] < lo, "front", np.where(ypr[:, 0] < hi, "sided", "atypical"))
    tilted = (ypr[:, 1] >= atypical_pitch) | (ypr[:, 2] >= atypical_roll)
    return np.where(tilted, "atypical", out).astype(object)


def pose_categories_of(config, rotations) -> np.ndarray:
    """``pose_categories`` of (M, 3, 3) true rotations with ``config.eval``'s thresholds."""
    ev = config.eval
    return pose_categories(rotations, tuple(ev.pose_thresholds),
                           float(ev.atypical_pitch), float(ev.atypical_roll))


class SyntheticTestSet(EvalSet):
    """The held-out multi-view test images (see module doc). ``limit``: first n images (0 = all)."""

    name = "synthetic (held-out)"
    num_points = 98

    def __init__(self, config, data_dir=None, limit: int = 0):
        ev = config.eval
        if data_dir is not None:
            images = load_or_build(config, data_dir).multiview
        else:
            if limit:  # render only what is evaluated (same latents and cameras as the full set's first N)
                config = config.copy_and_resolve_references()
                config.eval.num_latents = min(int(limit), int(ev.num_latents))
            images = render_multiview(config, _generator(config))
        if images.vertices2d is None:
            raise ValueError("the synthetic test set has no projected mesh vertices (generator without vertices3d)")
        n = len(images) if not limit else min(int(limit), len(images))
        self.images = images.take(n)
        self.size = int(images.image.shape[1])
        self.latents = np.arange(int(ev.first_latent), int(ev.first_latent) + n, dtype=np.int64)
        self.pose = pose_categories_of(config, self.images.rotation)
        self.expression = None
        gen = _generator(config)
        if hasattr(gen, "params"):
            coeffs = np.asarray(gen.params(self.latents).expression)
            self.expression = np.abs(coeffs).max(-1) >= float(ev.expression_threshold)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> EvalSample:
        t, s = self.images, self.size
        lm2d = t.landmarks2d[index].astype(np.float64) * s
        cats = {"pose": str(self.pose[index])}
        if self.expression is not None:
            cats["expression"] = str(bool(self.expression[index]))
        return EvalSample(
            name=f"latent{self.latents[index]}", image=t.image[index], box=points_box(lm2d), crop_box=None,
            landmarks2d=lm2d, vertices2d=t.vertices2d[index].astype(np.float64) * s, categories=cats,
            extra={"landmarks3d": t.landmarks3d[index], "rotation": t.rotation[index],
                   "translation": t.translation[index], "visible": t.visible[index]})
