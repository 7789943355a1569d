"""Baselines scored exactly like a model prediction (scoring.score_images) on held-out images.

* ``template_baseline`` (template with the true pose): the template (the landmark-wise mean of the
  3D pseudo-labels, the model's starting point) projected with the TRUE camera: a model that
  learnt nothing about identity or expression but knew the pose exactly (an oracle for pose).
* ``detector_baseline`` (2D detector + template fit): what a practitioner does without FaceLift.
  The configured 2D detector's landmarks of each image (cached with the held-out set), the
  template's pose fitted to them by PnP (``fit_template_pose``: OpenCV EPnP, then iterative
  Levenberg–Marquardt refinement, on the non-pupil points with confidence > 0.5, known
  intrinsics), and the template projected with that pose; its rotation is the fitted one. Images
  with too few confident points (or a failed fit) fall back to the frontal pose
  (``pnp_fallbacks``). ``detector_nme`` is the detector's own 2D NME on the same images.
Frames: template (98, 3) world; 2D normalized image coordinates ([0, 1]², origin top-left);
rotations world→camera. Intrinsics: the run's normalized focal (``focal``, default ``camera.FOCAL``;
pass ``camera.config_focal(config.camera)``, the K the held-out cameras and the model use).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from facelift_jax import camera, metrics
from facelift_jax.evaluation.scoring import score_images
from facelift_jax.landmarks import NON_PUPILS

MIN_CONFIDENCE = 0.5  # detector confidence above which a point enters the template fit
MIN_PNP_POINTS = 6


def project_template(template, R, t, focal: float = camera.FOCAL) -> tuple[np.ndarray, np.ndarray]:
    """The template (98, 3) posed by (M, 3, 3) / (M, 3) → (M, 98, 2) normalized image coordinates (K of
    normalized focal ``focal``) and the (M, 98, 3) template itself (the 3D prediction of a baseline)."""
    R = np.asarray(R, np.float32)
    cams = camera.Camera(K=jnp.broadcast_to(camera.intrinsics(float(focal)), R.shape), R=jnp.asarray(R),
                         t=jnp.asarray(t, jnp.float32))
    template3d = np.broadcast_to(np.asarray(template, np.float32), (len(R), 98, 3))
    return np.asarray(camera.project(jnp.asarray(template3d), cams)), template3d


def template_baseline(template, truth, categories=None, focal: float = camera.FOCAL) -> dict:
    """Scores of the template projected with the true cameras (and true rotations), focal ``focal``."""
    pred2d, template3d = project_template(template, truth.rotation, truth.translation, focal)
    return score_images(pred2d, template3d, truth.rotation, truth, categories)


def frontal_pose() -> tuple[np.ndarray, np.ndarray]:
    """(R (3, 3), t (3,)) of the frontal camera of C (azimuth = elevation = roll = 0)."""
    cam = camera.camera_from_angles(0.0, 0.0, 0.0)
    return np.asarray(cam.R, np.float64), np.asarray(cam.t, np.float64)


def fit_template_pose(template, points2d, confidence, *, min_confidence: float = MIN_CONFIDENCE,
                      min_points: int = MIN_PNP_POINTS, focal: float = camera.FOCAL,
                      principal: float = camera.PRINCIPAL) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pose of the template (98, 3) world that best explains 2D landmarks, per image: PnP.

    points2d (M, 98, 2) normalized image coordinates ([0, 1]², origin top-left); confidence (M, 98).
    Uses the non-pupil points with confidence > ``min_confidence`` and the known intrinsics (the
    normalized K, scaled to a virtual 1000-pixel image for OpenCV): EPnP, then SOLVEPNP_ITERATIVE
    (Levenberg–Marquardt on the reprojection error) from the EPnP solution.
    Returns R (M, 3, 3) world→camera, t (M, 3), fitted (M,) bool; images with fewer than
    ``min_points`` confident points, a failed solve or the template behind the camera get the
    frontal pose (``frontal_pose``) and fitted False.
    """
    import cv2

    scale = 1000.0
    K = np.array([[focal * scale, 0.0, principal * scale], [0.0, focal * scale, principal * scale], [0.0, 0.0, 1.0]])
    obj_all = np.asarray(template, np.float64)[NON_PUPILS]
    pts = np.asarray(points2d, np.float64)[:, NON_PUPILS] * scale
    conf = np.asarray(confidence, np.float64)[:, NON_PUPILS]
    m = len(pts)
    R0, t0 = frontal_pose()
    Rs, ts, fitted = np.repeat(R0[None], m, 0), np.repeat(t0[None], m, 0), np.zeros(m, bool)
    for i in range(m):
        sel = (conf[i] > min_confidence) & np.isfinite(pts[i]).all(-1)
        if sel.sum() < min_points:
            continue
        obj, img = obj_all[sel].reshape(-1, 1, 3), pts[i, sel].reshape(-1, 1, 2)
        try:
            ok, rvec, tvec = cv2.solvePnP(obj, img, K, None, flags=cv2.SOLVEPNP_EPNP)
            if ok:
                ok, rvec, tvec = cv2.solvePnP(obj, img, K, None, rvec, tvec, useExtrinsicGuess=True,
                                              flags=cv2.SOLVEPNP_ITERATIVE)
        except cv2.error:
            ok = False
        if not ok or not (np.isfinite(rvec).all() and np.isfinite(tvec).all()):
            continue
        R = cv2.Rodrigues(rvec)[0]
        t = tvec.reshape(3)
        if ((obj_all @ R.T + t)[:, 2] <= 0).any():  # a mirror solution behind the camera
            continue
        Rs[i], ts[i], fitted[i] = R, t, True
    return Rs, ts, fitted


def detector_baseline(template, truth, categories=None, min_confidence: float = MIN_CONFIDENCE,
                      focal: float = camera.FOCAL) -> dict:
    """Scores of the template posed by PnP on the 2D detector's landmarks (module doc), plus
    ``detector_nme`` (the detections' own NME per region), ``pnp_fallbacks`` (images that got the
    frontal pose) and ``pnp_points`` (mean number of confident non-pupil points)."""
    if truth.detections is None or truth.detection_confidence is None:
        raise ValueError("the held-out set has no cached detections (rebuild it: delete <data_dir>/test)")
    R, t, fitted = fit_template_pose(template, truth.detections, truth.detection_confidence,
                                     min_confidence=min_confidence, focal=focal)
    pred2d, template3d = project_template(template, R, t, focal)
    out = score_images(pred2d, template3d, R, truth, categories)
    det = metrics.landmark_report(np.asarray(truth.detections), truth.box_size, target=truth.landmarks2d,
                                  categories=None if categories is None else {"pose": np.asarray(categories)})
    out["detector_nme"] = det["nme"]["regions"]
    if categories is not None:
        out["categories"]["detector_nme"] = det["nme"]["categories"]["pose"]
    out["pnp_fallbacks"] = int((~fitted).sum())
    conf = np.asarray(truth.detection_confidence)[:, NON_PUPILS]
    out["pnp_points"] = float((conf > min_confidence).sum(1).mean())
    return out
