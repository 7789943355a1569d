"""The one scorer: every number of every evaluation, model and baselines alike, under one set of names.

``score`` takes predictions and truth in one coordinate frame (normalized image coordinates for
the held-out set, pixels for the real-photo sets; errors are ratios, so the frame cancels) and
returns ``metrics.landmark_report``'s entries plus, where the truth has them:
* ``nme`` / ``nmlc``: {"regions", "categories", "per_image", "K" (NMLC)} — eq. (5) / eq. (6), ×100
  of sqrt(w·h) of the face box;
* ``landmarks3d_error``: mean ‖L̂3D − L3D‖ in world units over the 96 non-pupil landmarks;
  ``landmarks3d_nme``: the same per landmark divided by the true 3D outer-eye-corner distance
  (``EYE_CORNERS``), ×100; ``per_image_landmarks3d_nme`` (M,);
* ``pose_error_deg``: mean geodesic angle between predicted and true rotation (degrees);
  ``pose_error_frobenius`` = mean ‖I − R̂ Rᵀ‖_F = 2·sqrt(2)·sin(θ/2) (DAD-3DHeads' benchmark
  number); ``per_image_pose_error_deg`` (M,);
* ``categories_3d``: {attribute: {"landmarks3d_nme" | "pose_error_deg": {value: mean}}}.
``summary`` reduces a report to the scalars the training loop logs (regions, pose categories).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from facelift_jax import landmarks as lm
from facelift_jax import metrics
from facelift_jax import rotation as rotation_lib

EYE_CORNERS = (60, 72)  # WFLW outer eye corners: the 3D error normalizer


def landmarks3d_distances(pred3d, true3d) -> tuple[np.ndarray, np.ndarray]:
    """(M, 98, 3) world → (M, 96) ‖L̂3D − L3D‖ of the non-pupil landmarks and (M,) true
    outer-eye-corner distances (the 3D normalizer)."""
    true3d = np.asarray(true3d)  # its own precision for the normalizer (float32 held-out truth)
    d = np.linalg.norm(np.asarray(pred3d, np.float64) - true3d, axis=-1)[:, lm.NON_PUPILS]
    iod = np.linalg.norm(true3d[:, EYE_CORNERS[0]] - true3d[:, EYE_CORNERS[1]], axis=-1)
    return d, iod


def pose_errors_deg(pred_R, true_R) -> np.ndarray:
    """(M, 3, 3) rotations → (M,) geodesic angles in degrees (float32 maths, as the model)."""
    ang = rotation_lib.geodesic_distance(jnp.asarray(pred_R, jnp.float32), jnp.asarray(true_R, jnp.float32))
    return np.degrees(np.asarray(ang))


def _category_means(per_image, labels) -> dict[str, float]:
    per_image, labels = np.asarray(per_image, np.float64), np.asarray(labels).astype(str)
    return {v: float(per_image[labels == v].mean()) for v in sorted(set(labels.tolist()))}


def score(pred2d, box_size, *, target=None, vertices=None, categories: Mapping[str, np.ndarray] | None = None,
          pred3d=None, true3d=None, pred_R=None, true_R=None,
          block_elements: int = metrics.DEFAULT_BLOCK_ELEMENTS) -> dict:
    """All numbers (module doc) of predictions pred2d (M, N, 2) [, pred3d (M, 98, 3), pred_R (M, 3, 3)]
    against target (M, N, 2) / vertices (M, |V|, 2) [, true3d, true_R]; ``categories`` {attribute:
    (M,) labels}."""
    report = metrics.landmark_report(pred2d, box_size, target=target, vertices=vertices,
                                     categories=categories or None, block_elements=block_elements)
    cats3d: dict = {}
    if true3d is not None and pred3d is not None:
        d, iod = landmarks3d_distances(pred3d, true3d)
        report["landmarks3d_error"] = float(d.mean())
        report["landmarks3d_nme"] = float(100 * (d / iod[:, None]).mean())
        nme = 100 * (d / iod[:, None]).mean(1)
        report["per_image_landmarks3d_nme"] = nme
        for name, labels in (categories or {}).items():
            cats3d.setdefault(name, {})["landmarks3d_nme"] = _category_means(nme, labels)
    if true_R is not None and pred_R is not None:
        ang = pose_errors_deg(pred_R, true_R)
        report["pose_error_deg"] = float(ang.mean())
        report["per_image_pose_error_deg"] = ang
        report["pose_error_frobenius"] = float(np.mean(2 * np.sqrt(2) * np.sin(np.radians(ang) / 2)))
        for name, labels in (categories or {}).items():
            cats3d.setdefault(name, {})["pose_error_deg"] = _category_means(ang, labels)
    if cats3d:
        report["categories_3d"] = cats3d
    return report


def summary(report: dict, attribute: str = "pose") -> dict:
    """The scalars of a report: {"num_images", "nme" / "nmlc": {region: v}, "landmarks3d_error",
    "landmarks3d_nme", "pose_error_deg", "pose_error_frobenius", "categories": {metric: {value: v}}
    for ``attribute``}."""
    out: dict = {"num_images": int(report["num_images"])}
    cats: dict = {}
    for m in ("nme", "nmlc"):
        if m in report:
            out[m] = dict(report[m]["regions"])
            if attribute in report[m].get("categories", {}):
                cats[m] = dict(report[m]["categories"][attribute])
    for k in ("landmarks3d_error", "landmarks3d_nme", "pose_error_deg", "pose_error_frobenius"):
        if k in report:
            out[k] = report[k]
    cats.update(report.get("categories_3d", {}).get(attribute, {}))
    if cats:
        out["categories"] = cats
    return out


def score_images(pred2d, pred3d, pred_R, truth, categories=None) -> dict:
    """``summary`` of ``score`` for predictions (M, 98, 2) normalized / (M, 98, 3) / (M, 3, 3) on
    held-out images ``truth`` (a ``TestImages``); ``categories`` (M,) pose category labels."""
    report = score(np.asarray(pred2d), truth.box_size, target=truth.landmarks2d, vertices=truth.vertices2d,
                   categories=None if categories is None else {"pose": np.asarray(categories)},
                   pred3d=pred3d, true3d=truth.landmarks3d, pred_R=pred_R, true_R=truth.rotation)
    return summary(report)


def format_number(value) -> str:
    """A score as a table cell: two decimals, "–" where there is none (None, NaN: a region or
    category with no image) so that a missing number never reads as 0.00."""
    return "–" if value is None or not np.isfinite(value) else f"{value:.2f}"
