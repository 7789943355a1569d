"""Triangle-id rasterization on the CPU with OpenCV (painter's order).

The renderer is deferred: this module only decides which triangle covers each pixel; everything
else (depth, barycentrics, attributes, shading) is computed per pixel from the triangle id by
intersecting the pixel's ray with that triangle's plane (shading.py), which is exact.

Why painter's order and not a z-buffer: ``cv2.fillConvexPoly`` fills one triangle in about a
microsecond, and after back-face culling a closed head has few overlapping layers, which are
ordered correctly by sorting triangles on their mean camera depth (far first). Parts that
interpenetrate (neck, ears) are drawn into a separate buffer and merged by an exact per-pixel
z-test (shading.merge_nearest).
"""

from __future__ import annotations

import cv2
import numpy as np

SUBPIXEL_BITS = 4  # cv2 fixed point: coordinates in 1/16 pixel


def fixed_point(screen) -> np.ndarray:
    """(…, 3, 2) vertex positions in pixels → int32 cv2 fixed point (1/16 pixel), clipped to cv2's range.

    Pixels: x right, y down, origin at the image's top-left corner; pixel (i, j) covers
    [j, j+1) × [i, i+1), so a pixel's centre is at (j + ½, i + ½).
    """
    # the pixel-centre convention of cv2: integer coordinate = pixel centre
    pts = np.round((np.asarray(screen, np.float64) - 0.5) * (1 << SUBPIXEL_BITS))
    lim = 1 << 20  # keep far off-screen vertices inside cv2's coordinate range
    return np.clip(pts, -lim, lim).astype(np.int32)


def draw_order(sort_key, keep) -> np.ndarray:
    """Indices of the triangles to draw (keep (F,) bool), far first (sort_key (F,): larger = farther)."""
    order = np.flatnonzero(keep)
    return order[np.argsort(-np.asarray(sort_key)[order], kind="stable")]


def fill_ids(ids, pts, order) -> np.ndarray:
    """Fill triangles ``order`` (painter's order) with their ids into ``ids`` (H,W) int32, in place.

    pts: (F, 3, 2) int32 fixed point from ``fixed_point``. One cv2.fillConvexPoly per triangle: its
    cost (about a microsecond, mostly the call) is the floor of this renderer.
    """
    fill = cv2.fillConvexPoly
    for f, p in zip(order.tolist(), pts[order]):
        fill(ids, p, f, cv2.LINE_8, SUBPIXEL_BITS)
    return ids
