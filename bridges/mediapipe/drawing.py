"""Overlays: faces' boxes and WFLW-98 landmarks drawn on an RGB image."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from bridges.mediapipe.runtime import check_image


def draw_faces(image: np.ndarray, faces: Sequence[dict], numbers: bool = False) -> np.ndarray:
    """A copy of RGB ``image`` with each face's ``box`` (if given), ``landmarks98`` (pixels,
    coloured by region) and, with ``numbers``, their indices; the image-left eye's outer corner
    60 is ringed, so a left/right swap shows."""
    from facelift_jax import landmarks as wflw

    out = check_image(image).copy()
    h, w = out.shape[:2]
    r = max(1.0, min(h, w) / 400)
    for face in faces:
        if "box" in face:
            x0, y0, x1, y1 = (int(round(v)) for v in face["box"])
            cv2.rectangle(out, (x0, y0), (x1, y1), (255, 0, 0), max(1, int(r)), cv2.LINE_AA)
        pts = np.asarray(face["landmarks98"], np.float64) - 0.5  # continuous → OpenCV pixel centres
        for region, idx in wflw.REGIONS_98.items():
            for i in idx:
                centre = tuple(int(v) for v in np.round(pts[i] * 16))
                cv2.circle(out, centre, int(16 * 1.5 * r), wflw.REGION_COLOURS[region], -1, cv2.LINE_AA, shift=4)
                if numbers:
                    cv2.putText(out, str(i), (int(pts[i, 0] + 2 * r), int(pts[i, 1] - 2 * r)),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.25 * r, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.circle(out, tuple(int(v) for v in np.round(pts[60] * 16)), int(16 * 4 * r), (255, 0, 0), 1,
                   cv2.LINE_AA, shift=4)
    return out
