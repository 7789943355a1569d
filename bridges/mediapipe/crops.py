"""Crops: the rotated square Roi, an exact affine between crop and image pixels, the letterbox of
the detector input, and the face crop from a detection or from a mesh."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

ROI_SCALE = 1.5  # crop side / face box side, MediaPipe's RectTransformation for face_landmark


@dataclasses.dataclass(frozen=True)
class Roi:
    """A square, rotated region of the image, in continuous image pixels.

    ``center`` (x, y); ``size`` side length; ``angle`` radians: the crop's +x axis points along
    (cos angle, sin angle) in the image (y down), i.e. a positive angle turns clockwise on screen.
    """

    center: tuple[float, float]
    size: float
    angle: float


def crop_transform(roi: Roi, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Affine (A (2,2), b (2,)) with image_xy = A @ crop_xy + b (both continuous pixels).

    Crop pixel (0, 0) (the crop's top-left corner) is the ROI's corner; (out_size, out_size) the
    opposite corner; the crop's axes are the ROI's rotated axes.
    """
    c, s = math.cos(roi.angle), math.sin(roi.angle)
    rot = np.array([[c, -s], [s, c]])
    a = rot * (roi.size / out_size)
    b = np.asarray(roi.center, np.float64) - rot @ np.array([roi.size / 2, roi.size / 2])
    return a, b


def crop_to_image(points: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """(..., 2) crop pixels → (..., 2) image pixels (continuous)."""
    a, b = crop_transform(roi, out_size)
    return np.asarray(points, np.float64) @ a.T + b


def image_to_crop(points: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """(..., 2) image pixels → (..., 2) crop pixels; the exact inverse of :func:`crop_to_image`."""
    a, b = crop_transform(roi, out_size)
    return (np.asarray(points, np.float64) - b) @ np.linalg.inv(a).T


def warp_crop(image: np.ndarray, roi: Roi, out_size: int) -> np.ndarray:
    """Resample ``roi`` of ``image`` (H, W, C) into an (out_size, out_size, C) crop (bilinear).

    Large faces are first shrunk with area averaging so the bilinear warp never decimates (no
    aliasing); the shrink is folded into the affine, so the crop ↔ image mapping stays exact.
    OpenCV indexes pixel centres, hence the half-pixel shifts around the continuous affine.
    """
    a, b = crop_transform(roi, out_size)
    shrink = out_size / roi.size
    if shrink < 0.5:
        h, w = image.shape[:2]
        new_w, new_h = max(1, round(w * shrink)), max(1, round(h * shrink))
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        scale = np.diag([new_w / w, new_h / h])
        a, b = scale @ a, scale @ b
    m = np.concatenate([a, (a @ np.full(2, 0.5) + b - 0.5)[:, None]], axis=1)
    return cv2.warpAffine(image, m, (out_size, out_size),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``image`` into a size² canvas keeping its aspect (zero padding, centred).

    Returns (canvas (size, size, 3), scale (2,), offset (2,)) with canvas_xy = image_xy * scale +
    offset in continuous pixels.
    """
    h, w = image.shape[:2]
    k = size / max(h, w)
    new_w, new_h = max(1, round(w * k)), max(1, round(h * k))
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    off = np.array([(size - new_w) // 2, (size - new_h) // 2])
    canvas = np.zeros((size, size, 3), image.dtype)
    canvas[off[1]:off[1] + new_h, off[0]:off[0] + new_w] = resized
    return canvas, np.array([new_w / w, new_h / h]), off.astype(np.float64)


def roi_from_detection(box: np.ndarray, keypoints: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """Face crop from a BlazeFace box (4,) and keypoints (6, 2), both in image pixels.

    Centre of the box, square side ``scale`` × the box's long side, rotated along the line from
    the eye on the image left (keypoint 0) to the other eye (keypoint 1).
    """
    d = keypoints[1] - keypoints[0]
    centre = (box[:2] + box[2:]) / 2
    side = scale * float(np.max(box[2:] - box[:2]))
    return Roi((float(centre[0]), float(centre[1])), side, math.atan2(d[1], d[0]))


# Eye outer corners in the 468-point mesh (image left, image right) that orient the tracking crop.
MESH_EYE_CORNERS = (33, 263)


def roi_from_mesh(points: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """Face crop from mesh points (468, ≥2) in image pixels (MediaPipe's FaceLandmarksToRoi).

    Rotation from the outer eye corners 33 → 263; centre and long side from the points' extent in
    that rotated frame (MediaPipe takes the axis-aligned extent, which over-sizes tilted faces).
    """
    xy = np.asarray(points, np.float64)[:, :2]
    d = xy[MESH_EYE_CORNERS[1]] - xy[MESH_EYE_CORNERS[0]]
    angle = math.atan2(d[1], d[0])
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    local = xy @ rot  # coordinates along the crop axes
    lo, hi = local.min(axis=0), local.max(axis=0)
    centre = rot @ ((lo + hi) / 2)
    return Roi((float(centre[0]), float(centre[1])), scale * float(np.max(hi - lo)), angle)

