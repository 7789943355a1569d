"""SyntheticDetector: 2D landmarks labelled the way humans and 2D detectors label them (§1).

Given a RenderOutput (which knows the exact geometry), ``detect`` returns what an annotator would
click, in normalized image coordinates (B,98,2):
* visible points: the exact projection plus anisotropic noise, σ per region along / across the
  landmark's curve, in units of the face size sqrt(box area);
* self-occluded contour points are "landmark-marched": moved to where their cheek polyline
  crosses the visible silhouette (the first visible surface point walking from the jaw inward);
* other self-occluded points are guessed: projection plus extra noise, lower confidence;
* brows follow the apparent (upper) brow boundary: 3D points shifted up by ``brow_offset``;
* pupils follow the camera (the GAN gaze bias): the rendered pupils, not the 3D landmarks 96/97;
* at extreme yaw a fraction of detections fail: a random similarity of the face plus large noise.
``detection_gap`` measures the difference to the exact projection per region: what lifting undoes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facelift_jax import camera as cam
from facelift_jax import landmarks as lmk

REGION_ORDER = ("contours", "brows", "nose", "eyes", "mouth", "pupils")
UPPER_BROWS = np.r_[33:38, 42:47]


def _loop(start, n, closed=True):
    idx = np.arange(start, start + n)
    prev, nxt = np.roll(idx, 1), np.roll(idx, -1)
    if not closed:
        prev[0], nxt[-1] = idx[0], idx[-1]
    return prev, nxt


def _neighbours():
    """(prev, next) index of each landmark along its curve (closed loops for brows, eyes, lips)."""
    prev, nxt = np.arange(98), np.arange(98)
    for start, n, closed in ((0, 33, False), (33, 9, True), (42, 9, True), (51, 4, False), (55, 5, False),
                             (60, 8, True), (68, 8, True), (76, 12, True), (88, 8, True)):
        p, q = _loop(start, n, closed)
        prev[start:start + n], nxt[start:start + n] = p, q
    return prev, nxt


PREV, NEXT = _neighbours()


def default_detector_config() -> ml_collections.ConfigDict:
    from facelift_jax.synthetic.generator import default_config

    return default_config().detector


def _sigma_table(sigma: dict) -> np.ndarray:
    """(98, 2) σ along / across per landmark from the per-region config."""
    table = np.zeros((98, 2), np.float32)
    for name in REGION_ORDER:
        if name not in sigma:
            raise ValueError(f"detector.sigma lacks region {name!r}; it has {sorted(sigma)}")
        table[lmk.REGIONS_98[name]] = np.asarray(sigma[name], np.float32)
    return table


def camera_yaw(camera: cam.Camera):
    """Azimuth (...,) in degrees of the camera centre about the head (0 = frontal, > 0 = the
    subject's left), as in camera.camera_from_angles."""
    c = camera.center
    return jnp.rad2deg(jnp.arctan2(c[..., 0], c[..., 2]))


def _detect_one(key, true2d, land3d, visible, K, R, t, cand3d, cand_vis, gaze3d, sigma, cfg):
    camera = cam.Camera(K=K, R=R, t=t)
    k_noise, k_occ, k_fail, k_conf, k_aff = jax.random.split(key, 5)
    size = cam.face_size(true2d[:96])
    det = true2d
    # brows: the apparent upper boundary sits above the 3D definition
    up = land3d[UPPER_BROWS] + jnp.array([0.0, 1.0, 0.0]) * cfg["brow_offset"]
    det = det.at[UPPER_BROWS].set(cam.project(up, camera))
    # pupils: the rendered eyes look at the camera
    det = det.at[96:98].set(cam.project(gaze3d, camera))
    # contour: self-occluded points marched to the silhouette along their cheek polyline
    first = jnp.argmax(cand_vis, axis=-1)                                       # (33,)
    any_vis = cand_vis.any(-1)
    marched_pts = cam.project(cand3d[jnp.arange(33), first], camera)
    marched = (~visible[:33]) & any_vis & cfg["march"]
    det = det.at[:33].set(jnp.where(marched[:, None], marched_pts, det[:33]))
    # anisotropic noise along / across each landmark's curve
    tangent = det[NEXT] - det[PREV]
    tangent = tangent / jnp.maximum(jnp.linalg.norm(tangent, axis=-1, keepdims=True), 1e-9)
    tangent = jnp.where(jnp.arange(98)[:, None] >= 96, jnp.array([1.0, 0.0]), tangent)
    normal = jnp.stack([-tangent[:, 1], tangent[:, 0]], -1)
    z = jax.random.normal(k_noise, (98, 2))
    det = det + size * (sigma[:, :1] * z[:, :1] * tangent + sigma[:, 1:] * z[:, 1:] * normal)
    guessed = ~visible & ~jnp.pad(marched, (0, 65))
    det = det + jnp.where(guessed[:, None], cfg["occluded_sigma"] * size * jax.random.normal(k_occ, (98, 2)), 0.0)
    # failures at extreme yaw: a wrong face (random similarity) plus large noise
    yaw = jnp.abs(camera_yaw(camera))
    p_fail = cfg["failure_rate"] * jnp.clip((yaw - cfg["failure_yaw"]) / jnp.maximum(110.0 - cfg["failure_yaw"], 1e-3),
                                            0.0, 1.0)
    ka, kb, kc, kd, ke = jax.random.split(k_aff, 5)
    fail = jax.random.uniform(k_fail) < p_fail
    centre = det[:96].mean(0)
    angle = jnp.deg2rad(25.0) * jax.random.normal(ka)
    scale = jnp.exp(0.15 * jax.random.normal(kb))
    rot = jnp.array([[jnp.cos(angle), -jnp.sin(angle)], [jnp.sin(angle), jnp.cos(angle)]])
    wrong = (det - centre) @ rot.T * scale + centre + cfg["failure_sigma"] * jax.random.normal(kc, (2,))
    wrong = wrong + cfg["failure_sigma"] / 3 * jax.random.normal(kd, (98, 2))
    det = jnp.where(fail, wrong, det)
    # confidences: what a detector reports; informative, not an oracle
    u = jax.random.uniform(k_conf, (98,))
    conf = jnp.where(visible, 0.85 + 0.15 * u, jnp.where(jnp.pad(marched, (0, 65)), 0.5 + 0.3 * u, 0.1 + 0.3 * u))
    conf = jnp.where(fail, 0.3 + 0.5 * jax.random.uniform(ke, (98,)), conf)
    return det.astype(jnp.float32), conf.astype(jnp.float32), fail


_detect_batch = jax.jit(jax.vmap(_detect_one, in_axes=(0,) * 10 + (None, None)))


class SyntheticDetector:
    """``config``: the ``config.synthetic`` section or its ``detector`` sub-section (optional).

    After each ``detect`` call, ``last_failed`` (B,) bool tells which images the simulated detector
    failed on (hidden truth for measurements; a real detector does not know it).
    """

    def __init__(self, config: ml_collections.ConfigDict | None = None):
        base = default_detector_config()
        if config is not None:
            cfg = config.to_dict() if hasattr(config, "to_dict") else dict(config)
            base.update(cfg["detector"] if "detector" in cfg else cfg)
        self.config = base
        self._sigma = jnp.asarray(_sigma_table(dict(base.sigma)))

    def detect(self, render_output, key, return_confidence: bool = False):
        """(B,98,2) detections in normalized image coordinates (and (B,98) confidences in [0,1]).

        ``key``: a JAX PRNG key (or an int seed); each image gets its own fold of it.
        """
        r = render_output
        if not hasattr(r, "landmarks2d") or not hasattr(r, "contour_candidates3d"):
            raise TypeError(f"SyntheticDetector.detect needs a RenderOutput of SyntheticGenerator.render (it labels "
                            f"renders from their exact geometry), got {type(r).__name__}; to label images or video "
                            f"files use a real detector (config.detector = 'pyfacer' or 'mediapipe')")
        if r.contour_candidates3d is None or r.contour_candidates_visible is None or r.gaze_pupils3d is None:
            raise ValueError("render_output lacks contour_candidates3d / _visible / gaze_pupils3d: the synthetic detector "
                             "needs a RenderOutput from SyntheticGenerator.render")
        if isinstance(key, (int, np.integer)):
            key = jax.random.key(int(key))
        batch = r.landmarks2d.shape[0]
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(batch))
        c = self.config
        cfg = dict(brow_offset=jnp.float32(c.brow_offset), march=jnp.bool_(c.march),
                   occluded_sigma=jnp.float32(c.occluded_sigma), failure_rate=jnp.float32(c.failure_rate),
                   failure_yaw=jnp.float32(c.failure_yaw), failure_sigma=jnp.float32(c.failure_sigma))
        det, conf, fail = _detect_batch(
            keys, jnp.asarray(r.landmarks2d), jnp.asarray(r.landmarks3d), jnp.asarray(r.visible),
            r.cameras.K, r.cameras.R, r.cameras.t, jnp.asarray(r.contour_candidates3d),
            jnp.asarray(r.contour_candidates_visible), jnp.asarray(r.gaze_pupils3d), self._sigma, cfg)
        self.last_failed = np.asarray(fail)
        if return_confidence:
            return np.asarray(det), np.asarray(conf)
        return np.asarray(det)


def detection_error(true2d, detections):
    """(B,98) error of detections vs the exact projection, in units of the face size sqrt(box area)."""
    true2d, detections = np.asarray(true2d), np.asarray(detections)
    if true2d.shape != detections.shape or true2d.shape[-2:] != (98, 2):
        raise ValueError(f"true2d and detections must both be (B,98,2), got {true2d.shape} and {detections.shape}")
    return np.linalg.norm(detections - true2d, axis=-1) / np.asarray(cam.face_size(true2d[..., :96, :]))[..., None]


def detection_gap(render_output, detections) -> dict[str, float]:
    """Mean error (face-size units) of detections vs the exact projection, per region and split by
    visibility: the 2D-vs-3D gap the lifting has to undo (keys: full, contours, brows, nose, eyes,
    mouth, pupils, contours_visible, contours_occluded, full_visible, full_occluded)."""
    err = detection_error(render_output.landmarks2d, detections)
    vis = np.asarray(render_output.visible)
    out = {"full": float(err[:, lmk.NON_PUPILS].mean())}
    for name in REGION_ORDER:
        out[name] = float(err[:, lmk.REGIONS_98[name]].mean())
    c = lmk.REGIONS_98["contours"]
    for tag, mask in (("visible", vis), ("occluded", ~vis)):
        m = mask[:, c]
        out[f"contours_{tag}"] = float(err[:, c][m].mean()) if m.any() else float("nan")
        m = mask[:, lmk.NON_PUPILS]
        out[f"full_{tag}"] = float(err[:, lmk.NON_PUPILS][m].mean()) if m.any() else float("nan")
    return out
