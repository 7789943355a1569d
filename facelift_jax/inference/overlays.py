"""Drawing predictions on images: landmarks by region, 1σ ellipses, the crop box, head-pose axes."""

from __future__ import annotations

import cv2
import numpy as np

from facelift_jax import camera as camera_lib
from facelift_jax import landmarks as lm
from facelift_jax.inference.crops import project_points
from facelift_jax.inference.predictor import PredictionResult

__all__ = ["draw_overlay"]


def draw_overlay(image: np.ndarray, result: PredictionResult, index: int = 0, *, label: str | None = None,
                 colour_override=None, focal: float = camera_lib.FOCAL, text_at_box: bool = False) -> np.ndarray:
    """RGB copy of ``image`` with the 98 landmarks (per-region colours), 1σ ellipses, the crop box,
    head-pose axes at the landmark centroid (x red, y green, z blue; projected with the model's
    ``focal``) and yaw/pitch/roll text (top left, or above the crop box with ``text_at_box``: one
    text per face when several are drawn)."""
    out = image.copy()
    h, w = out.shape[:2]
    scale = max(1, round(max(h, w) / 400))
    r = result[index]
    pts = r.landmarks2d
    for region, idx in lm.REGIONS_98.items():
        colour = colour_override or lm.REGION_COLOURS[region]  # the one table, as preprocess and the bridge draw
        for i in idx:
            evals, evecs = np.linalg.eigh(r.covariances[i])
            axes = np.sqrt(np.maximum(evals, 0))
            if np.all(axes > 1.5) and np.all(axes < max(h, w)):
                angle = float(np.degrees(np.arctan2(evecs[1, 1], evecs[0, 1])))
                cv2.ellipse(out, (int(pts[i, 0]), int(pts[i, 1])), (int(axes[1]), int(axes[0])), angle, 0, 360,
                            colour, 1, cv2.LINE_AA)
            cv2.circle(out, (int(round(pts[i, 0])), int(round(pts[i, 1]))), scale + 1, colour, -1, cv2.LINE_AA)
    b = r.crop_boxes.astype(int)
    cv2.rectangle(out, (b[0], b[1]), (b[2], b[3]), (200, 200, 200), 1)
    centre = r.landmarks3d.mean(0)
    length = 0.6 * float(np.max(np.ptp(r.landmarks3d, axis=0)))
    ends = project_points(np.stack([centre, *(centre + length * np.eye(3))]), r.rotation, r.translation,
                          r.crop_boxes, focal)
    if np.all(np.isfinite(ends)):
        for k, colour in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
            cv2.arrowedLine(out, tuple(int(v) for v in ends[0]), tuple(int(v) for v in ends[k + 1]), colour,
                            scale + 1, cv2.LINE_AA, tipLength=0.15)
    text = "yaw %.0f pitch %.0f roll %.0f" % tuple(r.euler_degrees)
    if label:
        text = f"{label}  {text}"
    corner = (max(5, int(b[0])), max(15 * scale, int(b[1]) - 4 * scale)) if text_at_box else (5, 15 * scale)
    if max(h, w) >= 160:  # text on tiny frames would hide the face
        cv2.putText(out, text, corner, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, (255, 255, 255), scale,
                    cv2.LINE_AA)
    return out
