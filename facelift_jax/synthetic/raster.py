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


def triangle_ids(screen, sort_key, keep, height: int, width: int) -> np.ndarray:
    """Triangle id per pixel of one image.

    screen: (F, 3, 2) vertex positions in pixels (x right, y down, origin at the image's top-left
    corner; pixel (i, j) covers [j, j+1) × [i, i+1)). sort_key: (F,) larger = farther (drawn first).
    keep: (F,) bool, triangles to draw (front-facing, in front of the camera).
    Returns (height, width) int32, −1 where no triangle covers the pixel centre.
    """
    screen = np.asarray(screen, np.float64)
    ids = np.full((height, width), -1, np.int32)
    order = np.flatnonzero(keep)
    order = order[np.argsort(-np.asarray(sort_key)[order], kind="stable")]
    # fixed point with the pixel-centre convention of cv2 (integer coordinate = pixel centre)
    pts = np.round((screen[order] - 0.5) * (1 << SUBPIXEL_BITS))
    lim = 1 << 20  # keep far off-screen vertices inside cv2's coordinate range
    pts = np.clip(pts, -lim, lim).astype(np.int32)
    fill = cv2.fillConvexPoly
    for f, p in zip(order.tolist(), pts):
        fill(ids, p, f, cv2.LINE_8, SUBPIXEL_BITS)
    return ids


def triangle_ids_batch(screen, sort_key, keep, height: int, width: int) -> np.ndarray:
    """(B, F, 3, 2), (B, F), (B, F) → (B, H, W) int32 triangle ids (see ``triangle_ids``)."""
    screen, sort_key, keep = np.asarray(screen), np.asarray(sort_key), np.asarray(keep)
    return np.stack([triangle_ids(s, k, m, height, width) for s, k, m in zip(screen, sort_key, keep)])
