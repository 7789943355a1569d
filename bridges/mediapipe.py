"""An offline face detector + 468-point face mesh (MediaPipe's TFLite models) → 98 WFLW landmarks.

Models (vendored in ``bridges/assets/``, Apache-2.0, from the npm packages ``@mediapipe/face_mesh``
0.4.1657299874 and ``@mediapipe/face_detection`` 0.4.1657300184; ``scripts/extract_mediapipe_models.py``
shows how they were taken out of them):

* ``face_detection_short_range.tflite`` — BlazeFace short range: input (1,128,128,3) float in
  [-1, 1], outputs ``regressors`` (1,896,16) and ``classificators`` (1,896,1).
* ``face_detection_full_range.tflite`` — BlazeFace full range: input (1,192,192,3) float in
  [-1, 1], outputs (1,2304,16) and (1,2304,1) on a 48×48 anchor grid, same 16 values per box.
* ``face_landmark.tflite`` — input (1,192,192,3) float in [0, 1], outputs 468×(x,y,z) in crop
  pixels and a face-presence logit.

They run on CPU with ``ai_edge_litert.interpreter.Interpreter`` (the optional ``[mediapipe]``
extra, also in ``[bridges]``); no torch is needed.

Pipeline (MediaPipe's face_mesh graph, re-written in NumPy/OpenCV):

1. Letterbox the image to 128² (aspect kept, zero padding), values to [-1, 1], run BlazeFace
   short range; letterbox it to 192² and run the full-range model; run the full-range model on
   a pyramid of overlapping square tiles (:func:`tile_grid`) so that faces down to ``min_face``
   (1/20 of the image's short side) are seen at ≥ 32 of its 192 input pixels; weak candidates
   (score 0.1-0.5) get a second look on a tile 3× their size. Which of these run
   is ``MediaPipeDetector(detectors=...)``: "short", "full", "tiled" or "all" (default).
2. Decode the SSD anchors (:func:`ssd_anchors`, :func:`decode_detections`; 896 short range, 2304
   full range): box centre/size and 6 keypoints (eye on the image left, eye on the image right,
   nose tip, mouth centre, ear tragion on the image left, on the image right) relative to the
   anchor, scores = σ(clip(logit, ±100)); keep scores ≥ ``min_score``; map every pass back to
   image pixels, drop tile detections cut by an inner tile edge; one weighted non-maximum
   suppression (IoU 0.3) over all passes averages the overlapping boxes with their scores as
   weights (:func:`weighted_nms`).
3. Face crop (:func:`roi_from_detection`): centre of the box, side 1.5 × the box's long side
   (square), rotated so the crop's x axis runs along the eye-to-eye vector (MediaPipe's
   ``DetectionsToRects`` + ``RectTransformation``). The crop is warped to 192² in [0, 1]
   (:func:`crop_transform`, exact affine), the landmark model runs, and its 468 points go back to
   image pixels through the same affine (:func:`crop_to_image`), so the two are exact inverses.
4. Refinement (``refine_passes``, default 1): like MediaPipe's tracking graph, the crop is
   re-centred on the 468 points (eye line 33→263 sets the rotation, their extent in that rotated
   frame sets the size, × 1.5) and the landmark model runs again. On a still image this replaces
   the coarse BlazeFace box by the mesh's own extent, which steadies the points.
5. 468 → 98 (bridges/mediapipe_wflw.py: :func:`wflw98_from_mediapipe468`, tables
   ``WFLW_POLYLINES`` and ``WFLW_VERTICES``); pupils from the dark iris in the image (:func:`iris_centre`) or
   the eye centres.

Limits: in-plane rotation is followed up to about ±90° (tested at 30° and -90°); beyond that
BlazeFace's eye keypoints are unreliable and the landmarks are wrong, as in MediaPipe itself. The
short-range detector alone (``detectors="short"``) is made for faces filling a good part of the
frame (selfie / video-call framing) and misses small faces in a large photo; the default
``"all"`` finds faces from ``min_face`` (1/20 of the short side) to the whole image
(tests/test_mediapipe.py measures recall by face size on pasted renders).

Entry points: :class:`MediaPipeDetector` (photos), :class:`MediaPipeSource` and
:func:`make_detector` (the ``"mediapipe"`` detector source for frames and videos),
:func:`label_video` (a user's video → ``landmarks2d``/``confidence`` npz for the multi-frame
branch), and ``python -m bridges.mediapipe INPUT... --out DIR`` (overlay PNGs, labels).

Coordinates: image pixels, continuous, origin at the top-left CORNER of the image (pixel (i, j)
covers [j, j+1) × [i, i+1)); ``normalized = pixels / (W, H)`` is the project's normalized image
frame (facelift_jax.camera). ``landmarks468[:, 2]`` is MediaPipe's relative depth, scaled to the
same pixel units as x and y (smaller = closer to the camera).
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from typing import Any, Sequence

import cv2
import numpy as np

from bridges.mediapipe_wflw import NUM_MESH_POINTS, PUPIL_EYE_LOOPS, iris_centre, wflw98_from_mediapipe468
from facelift_jax import media

ASSETS = pathlib.Path(__file__).resolve().parent / "assets"
DETECTOR_MODEL = ASSETS / "face_detection_short_range.tflite"
FULL_RANGE_MODEL = ASSETS / "face_detection_full_range.tflite"
LANDMARK_MODEL = ASSETS / "face_landmark.tflite"

DETECTOR_SIZE = 128
FULL_RANGE_SIZE = 192
LANDMARK_SIZE = 192
# BlazeFace keypoint order. MediaPipe names 0 "right eye" (the subject's right), which is the eye on
# the image left of an unmirrored photo; likewise 4 is the subject's right ear tragion.
DETECTOR_KEYPOINTS = ("eye_image_left", "eye_image_right", "nose_tip", "mouth_center",
                      "ear_image_left", "ear_image_right")
ROI_SCALE = 1.5  # crop side / face box side, MediaPipe's RectTransformation for face_landmark
NMS_IOU = 0.3
SCORE_CLIP = 100.0


# --------------------------------------------------------------------------------------------- #
# BlazeFace decoding
# --------------------------------------------------------------------------------------------- #
def ssd_anchors(input_size: int = DETECTOR_SIZE, strides: Sequence[int] = (8, 16, 16, 16),
                anchor_offset: float = 0.5, interpolated: bool = True) -> np.ndarray:
    """(N, 2) anchor centres (x, y) in normalized [0, 1] detector-input coordinates.

    MediaPipe's SsdAnchorsCalculator with aspect ratio 1 and ``fixed_anchor_size`` (every anchor
    has width = height = 1, so the regressors are in units of the input size). Each layer puts one
    anchor per grid cell, plus one more for the interpolated scale when
    ``interpolated_scale_aspect_ratio`` > 0 (``interpolated``); consecutive layers with the same
    stride share a grid. Order: grid, then row, column, anchor.

    * short range (the defaults): 128² input, 4 layers with strides (8, 16, 16, 16), interpolated
      → a 16×16 grid with 2 anchors per cell and an 8×8 grid with 6: 896 anchors;
    * full range (:data:`FULL_RANGE_ANCHORS`): 192² input, 1 layer with stride 4, no interpolated
      scale (``interpolated_scale_aspect_ratio: 0``) → a 48×48 grid with 1 anchor per cell: 2304.
    """
    per_layer = 2 if interpolated else 1
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        repeats = 0
        while layer < len(strides) and strides[layer] == stride:
            repeats += per_layer
            layer += 1
        side = math.ceil(input_size / stride)
        ys, xs = np.meshgrid((np.arange(side) + anchor_offset) / side,
                             (np.arange(side) + anchor_offset) / side, indexing="ij")
        grid = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, repeats, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


ANCHORS = ssd_anchors()
FULL_RANGE_ANCHORS = ssd_anchors(FULL_RANGE_SIZE, (4,), interpolated=False)


def decode_detections(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray = ANCHORS,
                      input_size: int = DETECTOR_SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw BlazeFace outputs → boxes, keypoints and scores in normalized detector-input coords.

    regressors: (N, 16) = (x_c, y_c, w, h, 6 × (x, y)) in input pixels, x/y relative to the anchor
    centre; logits: (N,) or (N, 1). Returns ``boxes (N, 4)`` as (x0, y0, x1, y1), ``keypoints
    (N, 6, 2)`` and ``scores (N,)`` = sigmoid(clip(logit, ±100)).
    """
    regressors = np.asarray(regressors, np.float32).reshape(-1, 16)
    logits = np.asarray(logits, np.float32).reshape(-1)
    if regressors.shape[0] != anchors.shape[0] or logits.shape[0] != anchors.shape[0]:
        raise ValueError(f"expected {anchors.shape[0]} anchors, got regressors {regressors.shape} and "
                         f"logits {logits.shape}")
    centre = regressors[:, 0:2] / input_size + anchors
    half = regressors[:, 2:4] / input_size / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = regressors[:, 4:16].reshape(-1, 6, 2) / input_size + anchors[:, None, :]
    scores = (1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))).astype(np.float32)
    return boxes, keypoints, scores


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box (x0, y0, x1, y1) with each of (N, 4) boxes → (N,)."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0.0, None), axis=-1)
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                 iou_threshold: float = NMS_IOU) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's WEIGHTED non-maximum suppression.

    Repeatedly takes the best remaining detection and every remaining one overlapping it with
    IoU > ``iou_threshold``; the cluster's box and keypoints are their score-weighted mean and its
    score is the best one. Returns [(box (4,), keypoints (6, 2), score)] sorted by score.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.arange(len(scores))
    out = []
    while remaining.size:
        best = remaining[0]
        cluster = remaining[box_iou(boxes[best], boxes[remaining]) > iou_threshold]
        cluster = np.union1d(cluster, [best])
        w = scores[cluster] / scores[cluster].sum()
        out.append((w @ boxes[cluster], np.einsum("n,nkd->kd", w, keypoints[cluster]),
                    float(scores[best])))
        remaining = np.setdiff1d(remaining, cluster, assume_unique=True)
        remaining = remaining[np.argsort(-scores[remaining], kind="stable")]
    return out


# --------------------------------------------------------------------------------------------- #
# Crops: an exact affine between crop pixels and image pixels
# --------------------------------------------------------------------------------------------- #
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


# --------------------------------------------------------------------------------------------- #
# Small faces: a pyramid of overlapping tiles for the full-range model
# --------------------------------------------------------------------------------------------- #
DETECTORS = ("short", "full", "tiled", "all")
# A tile side / the smallest face box the tiles are made for: such a face is 32 of the model's 192
# input pixels. On synthetic faces pasted on a photo (tests/test_mediapipe.py), ratio 8 (24 px)
# found 97 % at 1/20 of the short side and 66 % at 1/30; ratio 6 found 97 % and 91 %.
TILE_FACE_RATIO = 6.0
# Neighbouring tiles share this fraction of their side, so every face box up to TILE_OVERLAP × the
# side lies whole inside some tile; with consecutive levels at most TILE_OVERLAP × TILE_FACE_RATIO
# (1.5×) apart in side, the next coarser level (made for faces from 1/TILE_FACE_RATIO of its side)
# takes over before a face outgrows TILE_OVERLAP of a tile.
TILE_OVERLAP = 0.25
# Tile detections whose box comes closer than this fraction of the side to an edge the tile shares
# with a neighbour are dropped: they are faces cut by the tile, found whole in another tile.
TILE_EDGE_MARGIN = 0.02
# A second look: with tiles, candidates scoring in [CANDIDATE_SCORE, min_score) are run again on a
# square tile VERIFY_ZOOM × their box side around them, where the face is ~64 of 192 pixels (at
# the smallest tile level it had ~24 and clutter around small faces pulls their score down: faces
# 1/20 of a 1080-px side pasted on a photo scored 0.15-0.45 there, 0.6-0.9 in the zoomed tile;
# zooms of 4-6 lost faces cut by the image edge, 2.5-3 kept them).
# (A second look by the short-range model too found no more faces there and added false ones, with
# landmark presence up to 0.55, on skimage's astronaut ×2.5 and rocket.)
CANDIDATE_SCORE = 0.1
VERIFY_ZOOM = 3.0
# Two faces whose final crops (after the mesh refinement) overlap by more than this IoU are one face
# found twice (e.g. a small tile saw an eye or mouth region of a large face as a face); the one
# with the higher landmark presence stays.
DUPLICATE_IOU = 0.5
# With the full-range model loaded, a face whose landmark presence is below CONFIRM_PRESENCE must be
# found again by it (score ≥ CONFIRM_SCORE) in its final crop zoomed out 2×. True faces pasted on a
# photo scored 0.2-0.95 there; the false faces the tiles let through (presence 0.55-0.65, on
# skimage's astronaut and rocket) scored < 0.02.
CONFIRM_PRESENCE = 0.9
CONFIRM_SCORE = 0.1


def tile_grid(width: int, height: int, min_face: float) -> list[tuple[int, int, int]]:
    """Square tiles (x0, y0, side) in image pixels for faces down to ``min_face`` pixels (box side).

    Levels of tile sides from the image's short side S down to TILE_FACE_RATIO × ``min_face``
    (but never below the model's 192 input: tiles are not upsampled), evenly spaced in log scale
    with consecutive sides at most TILE_OVERLAP × TILE_FACE_RATIO apart; on each level the tiles cover the image with
    TILE_OVERLAP overlap, first and last flush with the image edges. A single tile equal to the
    whole image is left out (the whole-image pass sees it). Empty when ``min_face`` ≥ S /
    TILE_FACE_RATIO and the image is square.
    """
    short = min(width, height)
    smallest = max(TILE_FACE_RATIO * float(min_face), float(FULL_RANGE_SIZE))
    step = TILE_OVERLAP * TILE_FACE_RATIO
    levels = max(0, math.ceil(math.log(short / smallest) / math.log(step))) if smallest < short else 0
    ratio = (short / smallest) ** (1.0 / levels) if levels else 1.0
    out = []
    for k in range(levels + 1):
        side = int(round(short / ratio**k))
        xs = _tile_starts(width, side)
        ys = _tile_starts(height, side)
        if len(xs) == len(ys) == 1 and side == width == height:
            continue
        out += [(x, y, side) for y in ys for x in xs]
    return out


def _tile_starts(length: int, side: int) -> list[int]:
    """Starts of tiles of ``side`` along ``length`` with TILE_OVERLAP overlap, flush at both ends."""
    if side >= length:
        return [0]
    count = math.ceil((length - side) / (side * (1.0 - TILE_OVERLAP))) + 1
    return sorted({int(round(v)) for v in np.linspace(0, length - side, count)})


def _inside_tile(boxes: np.ndarray, tile: tuple[int, int, int], width: int, height: int) -> np.ndarray:
    """(N,) bool: box (x0, y0, x1, y1) pixels stays TILE_EDGE_MARGIN × side clear of every tile edge
    that is not an image edge (a face cut by such an edge is found whole in a neighbouring tile)."""
    x0, y0, side = tile
    m = TILE_EDGE_MARGIN * side
    ok = np.ones(len(boxes), bool)
    if x0 > 0:
        ok &= boxes[:, 0] >= x0 + m
    if y0 > 0:
        ok &= boxes[:, 1] >= y0 + m
    if x0 + side < width:
        ok &= boxes[:, 2] <= x0 + side - m
    if y0 + side < height:
        ok &= boxes[:, 3] <= y0 + side - m
    return ok


class BlazeFace:
    """One BlazeFace model: a square RGB uint8 canvas (size, size, 3) → decoded detections.

    ``__call__`` returns ``decode_detections``'s (boxes (N, 4), keypoints (N, 6, 2), scores (N,)) in
    normalized canvas coordinates; input values are mapped to [-1, 1] like MediaPipe's graph does.
    """

    def __init__(self, path: pathlib.Path, size: int, anchors: np.ndarray, num_threads: int | None = None):
        self.interpreter = _interpreter(path, num_threads)
        self.size, self.anchors = int(size), anchors
        details = self.interpreter.get_input_details()[0]
        if tuple(details["shape"]) != (1, size, size, 3):
            raise ValueError(f"{path.name}: input shape {tuple(details['shape'])}, expected (1, {size}, {size}, 3)")
        self._in = details["index"]
        # regressors (1, N, 16) and classificators (1, N, 1); their names differ between the models.
        outs = {int(d["shape"][-1]): d for d in self.interpreter.get_output_details()}
        self._reg, self._cls = outs[16]["index"], outs[1]["index"]
        if outs[16]["shape"][1] != len(anchors):
            raise ValueError(f"{path.name}: {outs[16]['shape'][1]} boxes, but {len(anchors)} anchors")

    def __call__(self, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.interpreter.set_tensor(self._in, canvas.astype(np.float32)[None] / 127.5 - 1.0)
        self.interpreter.invoke()
        return decode_detections(self.interpreter.get_tensor(self._reg)[0], self.interpreter.get_tensor(self._cls)[0],
                                 self.anchors, self.size)


# --------------------------------------------------------------------------------------------- #
# The detector
# --------------------------------------------------------------------------------------------- #
def _check_image(image: Any, name: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except Exception as e:  # noqa: BLE001 - report what was passed
            raise TypeError(f"{name} must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}") from e
    if image.ndim != 3:
        raise ValueError(f"{name} must have shape (H, W, 3) (RGB), got shape {image.shape}")
    if image.shape[2] != 3:
        raise ValueError(f"{name} must have 3 channels (RGB), got {image.shape[2]} channels "
                         f"(shape {image.shape}); convert RGBA/gray to RGB first")
    if image.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8 RGB in [0, 255], got dtype {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"{name} is too small: shape {image.shape}")
    return np.ascontiguousarray(image)


def _interpreter(path: pathlib.Path, num_threads: int | None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ImportError("bridges.mediapipe needs the TFLite runtime: pip install 'facelift-jax[mediapipe]' "
                          "(or pip install ai-edge-litert)") from e
    if not path.is_file():
        raise FileNotFoundError(f"MediaPipe model {path} is missing; recreate it with "
                                "python scripts/extract_mediapipe_models.py")
    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    interpreter.allocate_tensors()
    return interpreter


class MediaPipeDetector:
    """MediaPipe face detection + face mesh on RGB images, with WFLW-98 landmarks.

    ``min_score``: BlazeFace score threshold (MediaPipe's default 0.5). ``min_presence``: faces
    whose landmark model's face-presence probability is below this are dropped (MediaPipe's
    tracking threshold 0.5). ``max_faces``: keep at most this many (highest score first).
    ``refine_passes``: extra landmark passes on the crop re-centred on the previous pass's mesh.
    ``pupils``: "iris" (the dark iris in the image, :func:`iris_centre`, falling back to the eye
    centre) or "centre" (the lid polygon's centroid only).

    ``detectors`` chooses where faces are looked for (all candidates are merged by one weighted
    NMS, then each goes through the landmark model):

    * ``"short"``: BlazeFace short range on the whole image letterboxed to 128² (MediaPipe's
      model_selection 0): faces larger than about 1/5 of the image's long side; one model run.
    * ``"full"``: BlazeFace full range on the whole image letterboxed to 192² (model_selection 1):
      faces larger than about 1/8 of the long side; one run.
    * ``"tiled"``: ``"full"`` plus the full-range model on a pyramid of overlapping square tiles
      (:func:`tile_grid`) down to faces of ``min_face`` × the image's short side, and a zoomed second
      look at weak candidates; about 70 model runs for 1920×1080 at ``min_face`` 1/20.
    * ``"all"`` (default): ``"short"`` and ``"tiled"``.

    ``min_face``: smallest face box side searched for by the tiles, as a fraction of the image's
    shorter side (default 1/20). The face box is BlazeFace's (brows to chin, cheek to cheek).
    """

    def __init__(self, min_score: float = 0.5, *, min_presence: float = 0.5, max_faces: int | None = None,
                 refine_passes: int = 1, pupils: str = "iris", num_threads: int | None = None,
                 detectors: str = "all", min_face: float = 1 / 20):
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if not 0.0 <= min_presence <= 1.0:
            raise ValueError(f"min_presence must be in [0, 1], got {min_presence}")
        if refine_passes < 0:
            raise ValueError(f"refine_passes must be >= 0, got {refine_passes}")
        if pupils not in ("iris", "centre"):
            raise ValueError(f"pupils must be 'iris' or 'centre', got {pupils!r}")
        self.pupils = pupils
        self.min_score = float(min_score)
        self.min_presence = float(min_presence)
        self.max_faces = max_faces
        self.refine_passes = int(refine_passes)
        if detectors not in DETECTORS:
            raise ValueError(f"detectors must be one of {DETECTORS}, got {detectors!r}")
        if not 0.0 < min_face <= 1.0:
            raise ValueError(f"min_face is a fraction of the image's short side in (0, 1], got {min_face}")
        self.detectors = detectors
        self.min_face = float(min_face)
        self._short = (BlazeFace(DETECTOR_MODEL, DETECTOR_SIZE, ANCHORS, num_threads)
                       if detectors in ("short", "all") else None)
        self._full = (BlazeFace(FULL_RANGE_MODEL, FULL_RANGE_SIZE, FULL_RANGE_ANCHORS, num_threads)
                      if detectors != "short" else None)
        self._landmarker = _interpreter(LANDMARK_MODEL, num_threads)
        self._lm_in = self._landmarker.get_input_details()[0]["index"]
        # The mesh output has 1404 values, the presence output 1.
        lm_outs = {int(np.prod(d["shape"])): d["index"] for d in self._landmarker.get_output_details()}
        self._lm_mesh, self._lm_flag = lm_outs[NUM_MESH_POINTS * 3], lm_outs[1]

    # -- stage 1: boxes --------------------------------------------------------------------- #
    def detect_faces(self, image: np.ndarray) -> list[dict]:
        """Face boxes of an RGB uint8 (H, W, 3) image, best first.

        Returns [dict(box=(x0, y0, x1, y1) pixels, score, keypoints (6, 2) pixels)], keypoints in
        :data:`DETECTOR_KEYPOINTS` order; the passes chosen by ``detectors`` (with tiles, plus a
        zoomed second look at weak candidates), merged by one weighted NMS.
        """
        image = _check_image(image)
        h, w = image.shape[:2]
        tiled = self.detectors in ("tiled", "all")
        floor = min(self.min_score, CANDIDATE_SCORE) if tiled else self.min_score
        found = []  # (boxes (n, 4), keypoints (n, 6, 2), scores (n,)) in image pixels, per pass

        def run(model: BlazeFace, canvas, scale, offset, tile=None):
            boxes, keypoints, scores = model(canvas)
            keep = scores >= floor
            boxes = ((boxes[keep].reshape(-1, 2, 2) * model.size - offset) / scale).reshape(-1, 4)
            keypoints = (keypoints[keep] * model.size - offset) / scale
            scores = scores[keep]
            if tile is not None:
                inside = _inside_tile(boxes, tile, w, h)
                boxes, keypoints, scores = boxes[inside], keypoints[inside], scores[inside]
            found.append((boxes, keypoints, scores))

        def run_tile(x0: int, y0: int, side: int, model: BlazeFace):
            crop = image[y0:y0 + side, x0:x0 + side]
            interp = cv2.INTER_AREA if side > model.size else cv2.INTER_LINEAR
            canvas = cv2.resize(crop, (model.size, model.size), interpolation=interp)
            k = model.size / side  # canvas_xy = (image_xy - (x0, y0)) * k
            run(model, canvas, np.full(2, k), -k * np.array([x0, y0], np.float64), (x0, y0, side))

        def around(box: np.ndarray, zoom: float) -> tuple[int, int, int]:
            """The square tile ``zoom`` × the box's long side centred on it, shifted into the image."""
            centre = (box[:2] + box[2:]) / 2
            side = max(2, int(round(min(zoom * float(np.max(box[2:] - box[:2])), w, h))))
            x0, y0 = (int(round(np.clip(c - side / 2, 0, n - side))) for c, n in zip(centre, (w, h)))
            return x0, y0, side

        if self._short is not None:
            run(self._short, *letterbox(image, DETECTOR_SIZE))
        if self._full is not None:
            run(self._full, *letterbox(image, FULL_RANGE_SIZE))
        if tiled:
            for tile in tile_grid(w, h, self.min_face * min(w, h)):
                run_tile(*tile, self._full)
            weak = [box for box, _, score in weighted_nms(*(np.concatenate(p) for p in zip(*found)))
                    if score < self.min_score]
            for box in weak:  # the second look
                run_tile(*around(box, VERIFY_ZOOM), self._full)
        boxes, keypoints, scores = (np.concatenate(parts) for parts in zip(*found))
        strong = scores >= self.min_score
        merged = weighted_nms(boxes[strong], keypoints[strong], scores[strong])
        faces = [dict(box=tuple(float(v) for v in box), score=score, keypoints=kps) for box, kps, score in merged]
        return faces[: self.max_faces] if self.max_faces else faces

    # -- stage 2: mesh ---------------------------------------------------------------------- #
    def mesh(self, image: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """Run the landmark model on ``roi`` of an RGB uint8 (H, W, 3) image.

        Returns (points (468, 3) image pixels, z in the same pixel scale; presence probability).
        """
        crop = warp_crop(_check_image(image), roi, LANDMARK_SIZE).astype(np.float32)[None] / 255.0
        self._landmarker.set_tensor(self._lm_in, crop)
        self._landmarker.invoke()
        raw = self._landmarker.get_tensor(self._lm_mesh).reshape(NUM_MESH_POINTS, 3).astype(np.float64)
        logit = float(self._landmarker.get_tensor(self._lm_flag).reshape(()))
        points = np.empty_like(raw)
        points[:, :2] = crop_to_image(raw[:, :2], roi, LANDMARK_SIZE)
        points[:, 2] = raw[:, 2] * roi.size / LANDMARK_SIZE
        return points, 1.0 / (1.0 + math.exp(-np.clip(logit, -SCORE_CLIP, SCORE_CLIP)))

    def landmarks_from_roi(self, image: np.ndarray, roi: Roi) -> tuple[np.ndarray, float, Roi]:
        """Mesh on ``roi`` then ``refine_passes`` re-centred passes: (points, presence, last roi)."""
        points, presence = self.mesh(image, roi)
        for _ in range(self.refine_passes):
            roi = roi_from_mesh(points)
            points, presence = self.mesh(image, roi)
        return points, presence, roi

    def landmarks98(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(98, 2) WFLW pixels from mesh ``points`` (468, 3) of ``image``, pupils per ``self.pupils``."""
        out = wflw98_from_mediapipe468(points)
        if self.pupils == "iris":
            for k, loop in zip((96, 97), PUPIL_EYE_LOOPS):
                centre = iris_centre(image, points[list(loop), :2])
                if centre is not None:
                    out[k] = centre
        return out

    def _confirmed(self, image: np.ndarray, roi: Roi) -> bool:
        """Whether the full-range model finds a face at the centre of ``roi`` zoomed out 2× (True
        without the full-range model: nothing to ask)."""
        if self._full is None:
            return True
        canvas = warp_crop(image, Roi(roi.center, 2.0 * roi.size, roi.angle), FULL_RANGE_SIZE)
        boxes, _, scores = self._full(canvas)
        central = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - 0.5, axis=1) < 0.15
        return bool((scores[central] >= CONFIRM_SCORE).any())

    def detect(self, image: np.ndarray) -> list[dict]:
        """All faces of an RGB uint8 (H, W, 3) image, highest detector score first.

        Returns [dict(box=(x0, y0, x1, y1) pixels (BlazeFace), score (detector), presence (landmark
        model), keypoints (6, 2), roi (:class:`Roi`, the final crop), landmarks468 (468, 3) float32,
        landmarks98 (98, 2) float32 pixels (WFLW))]. Faces below ``min_presence`` are dropped, those
        below CONFIRM_PRESENCE unless the full-range model (when loaded) finds them in their crop, and
        of two faces whose meshes' boxes overlap by IoU > DUPLICATE_IOU the one with the lower
        presence (the same face found twice).
        """
        image = _check_image(image)
        out = []
        for face in self.detect_faces(image):
            roi = roi_from_detection(np.asarray(face["box"]), face["keypoints"])
            points, presence, roi = self.landmarks_from_roi(image, roi)
            if presence < self.min_presence or (presence < CONFIRM_PRESENCE and not self._confirmed(image, roi)):
                continue
            out.append(dict(face, presence=presence, roi=roi, landmarks468=points.astype(np.float32),
                            landmarks98=self.landmarks98(image, points).astype(np.float32)))
        mesh_boxes = np.array([np.r_[f["landmarks468"][:, :2].min(0), f["landmarks468"][:, :2].max(0)] for f in out],
                              np.float64).reshape(-1, 4)
        kept: list[int] = []
        for i in sorted(range(len(out)), key=lambda i: -out[i]["presence"]):
            if not kept or box_iou(mesh_boxes[i], mesh_boxes[kept]).max() <= DUPLICATE_IOU:
                kept.append(i)
        return [out[i] for i in sorted(kept)]


# --------------------------------------------------------------------------------------------- #
# Detector source for frames (multi-frame branch, real videos)
# --------------------------------------------------------------------------------------------- #
def _frames_of(source: Any) -> np.ndarray:
    """(B, H, W, 3) uint8 frames from an array or anything with an ``.image`` attribute."""
    frames = getattr(source, "image", source)
    frames = np.asarray(frames)
    if frames.ndim == 3:
        raise ValueError(f"frames must be a batch (B, H, W, 3); got one image {frames.shape}, add a leading axis")
    if frames.ndim != 4:
        raise ValueError(f"frames must have shape (B, H, W, 3), got {frames.shape}")
    return frames


class MediaPipeSource:
    """The MediaPipe detector behind the synthetic detector's interface (for real frames).

    ``detect(frames, key=None, return_confidence=False)``: ``frames`` is (B, H, W, 3) uint8 RGB or
    an object with an ``.image`` of that shape (e.g. a ``RenderOutput``); ``key`` is accepted and
    ignored (the detector is deterministic). Returns landmarks (B, 98, 2) float32 in normalized
    image coordinates (pixels / (W, H)) and, on request, confidence (B, 98) float32 in [0, 1].

    Frames are independent in :meth:`detect` (the largest face of each is taken) and consecutive
    in :meth:`track`. Confidence is the landmark model's face-presence probability, the same for
    all 98 points (MediaPipe gives no per-point confidence). A frame without a face gets
    landmarks 0 and confidence 0, so a confidence mask drops it.
    """

    def __init__(self, detector: MediaPipeDetector | None = None, **kwargs):
        self.detector = detector if detector is not None else MediaPipeDetector(**kwargs)

    def _one(self, frame: np.ndarray, roi: Roi | None) -> tuple[np.ndarray, float, Roi | None]:
        """(98, 2) normalized landmarks, presence and crop of one checked frame; starts from ``roi``
        (the previous frame's crop) when given, else detects and takes the largest face."""
        size = np.array(frame.shape[1::-1], np.float64)  # (W, H)
        if roi is not None:
            points, presence, roi = self.detector.landmarks_from_roi(frame, roi)
            if presence >= self.detector.min_presence:
                return self.detector.landmarks98(frame, points) / size, presence, roi
        faces = self.detector.detect(frame)
        if not faces:
            return np.zeros((98, 2)), 0.0, None
        face = max(faces, key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))
        return face["landmarks98"] / size, face["presence"], face["roi"]

    def _run(self, frames: Any, track: bool, return_confidence: bool, progress: bool):
        from tqdm import tqdm

        frames = _frames_of(frames)
        landmarks = np.zeros((len(frames), 98, 2), np.float32)
        presence = np.zeros(len(frames), np.float32)
        roi = None
        desc = "mediapipe tracking" if track else "mediapipe"
        for i, frame in enumerate(tqdm(frames, desc=desc, unit="frame", disable=not progress)):
            landmarks[i], presence[i], roi = self._one(_check_image(frame, f"frames[{i}]"), roi if track else None)
        if not return_confidence:
            return landmarks
        return landmarks, np.repeat(presence[:, None], 98, axis=1)

    def detect(self, frames: Any, key: Any = None, return_confidence: bool = False, progress: bool = False):
        """Each frame on its own: BlazeFace, then the landmark model on the largest face."""
        return self._run(frames, False, return_confidence, progress)

    def track(self, frames: Any, return_confidence: bool = False, progress: bool = False):
        """Consecutive video frames: each frame's crop starts from the previous frame's mesh
        (MediaPipe's tracking), falling back to detection when the face is lost (presence <
        ``min_presence``). Steadier than per-frame detection and skips BlazeFace while tracking."""
        return self._run(frames, True, return_confidence, progress)


def make_detector(config: Any = None) -> MediaPipeSource:
    """The ``"mediapipe"`` detector source; ``config.mediapipe`` (optional) may set ``min_score``,
    ``min_presence``, ``refine_passes``, ``pupils``, ``detectors``, ``min_face``."""
    section = getattr(config, "mediapipe", None) if config is not None else None
    kwargs = {k: section[k] for k in ("min_score", "min_presence", "refine_passes", "pupils", "detectors", "min_face")
              if section is not None and k in section}
    return MediaPipeSource(**kwargs)


# --------------------------------------------------------------------------------------------- #
# Pictures, video labels and the command line
# --------------------------------------------------------------------------------------------- #
# RGB colours per WFLW region, so a swapped side or region is visible at a glance.
_REGION_COLOURS = {"contours": (255, 210, 0), "brows": (255, 120, 0), "nose": (0, 200, 255),
                   "eyes": (0, 255, 80), "mouth": (255, 60, 160), "pupils": (255, 255, 255)}


def draw_faces(image: np.ndarray, faces: Sequence[dict], numbers: bool = False) -> np.ndarray:
    """A copy of RGB ``image`` with each face's ``box`` (if given), ``landmarks98`` (pixels,
    coloured by region) and, with ``numbers``, their indices; the image-left eye's outer corner
    60 is ringed, so a left/right swap shows."""
    from facelift_jax import landmarks as wflw

    out = _check_image(image).copy()
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
                cv2.circle(out, centre, int(16 * 1.5 * r), _REGION_COLOURS[region], -1, cv2.LINE_AA, shift=4)
                if numbers:
                    cv2.putText(out, str(i), (int(pts[i, 0] + 2 * r), int(pts[i, 1] - 2 * r)),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.25 * r, (255, 255, 255), 1, cv2.LINE_AA)
        cv2.circle(out, tuple(int(v) for v in np.round(pts[60] * 16)), int(16 * 4 * r), (255, 0, 0), 1,
                   cv2.LINE_AA, shift=4)
    return out


def label_video(path: str | pathlib.Path, out: str | pathlib.Path | None = None,
                source: MediaPipeSource | None = None, track: bool = True, filter: str = "kalman") -> pathlib.Path:
    """2D pseudo-labels of a user's video for the multi-frame branch.

    Writes ``out`` (default: ``<video stem>.npz`` beside the video) with ``landmarks2d (T, 98, 2)``
    normalized image coordinates and ``confidence (T, 98)`` — the keys of the synthetic clips'
    label files — plus ``image_size (2,) = (W, H)`` and ``fps``. Returns the npz path.

    ``filter`` ("kalman", "one_euro", "none"; facelift_jax.temporal) smooths the landmarks over
    time: ``landmarks2d`` is filtered, ``landmarks2d_raw`` the per-frame mesh, ``filter`` its name.
    MediaPipe predicts no covariance, so the Kalman filter's measurement noise is a fixed isotropic
    σ = ``MEDIAPIPE_SIGMA`` face sizes per landmark (an assumed value, not measured on MediaPipe);
    frames without a face are predicted, not measured, and keep landmarks 0.
    """
    path = pathlib.Path(path)
    out = pathlib.Path(out) if out is not None else path.with_suffix(".npz")
    frames, (_, fps) = media.read_video(path), media.video_properties(path)
    source = source or MediaPipeSource()
    run = source.track if track else source.detect
    landmarks, confidence = run(frames, return_confidence=True, progress=True)
    h, w = frames.shape[1:3]
    from facelift_jax import temporal

    found = confidence[:, 0] > 0
    config = temporal.FilterConfig(kind=filter, fps=fps)
    smooth = temporal.filter_clip(config, temporal.observation(landmarks * (w, h), valid=found,
                                                               sigma2d=MEDIAPIPE_SIGMA))["landmarks2d"]
    smooth = np.where(found[:, None, None], np.asarray(smooth) / (w, h), 0.0).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, landmarks2d=smooth, landmarks2d_raw=landmarks, confidence=confidence,
                        image_size=np.array([w, h]), fps=np.float32(fps), filter=np.array(filter))
    return out


MEDIAPIPE_SIGMA = 0.01  # face sizes: the isotropic measurement noise label_video's Kalman filter assumes


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bridges.mediapipe INPUT... --out DIR``: overlays for photos, labels for videos.

    Photos: ``DIR/<stem>_mediapipe.png`` (overlay) and ``DIR/<stem>_mediapipe.npz`` (per face
    ``boxes (F, 4)``, ``scores (F,)``, ``landmarks98 (F, 98, 2)``, ``landmarks468 (F, 468, 3)``,
    pixels). Videos: ``DIR/<stem>.npz`` (see :func:`label_video`) and ``DIR/<stem>_preview.png``.
    ``astronaut`` as INPUT runs on ``skimage.data.astronaut()``.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bridges.mediapipe", description=main.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image or video files (or 'astronaut')")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output folder")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--detectors", choices=DETECTORS, default="all",
                        help="short: BlazeFace short range (close-up faces, fastest); full: full range on the "
                        "whole image; tiled: full range on tiles down to --min-face; all (default): short + tiled")
    parser.add_argument("--min-face", type=float, default=1 / 20,
                        help="smallest face searched for by the tiles, as a fraction of the image's short side")
    parser.add_argument("--numbers", action="store_true", help="write landmark indices on the overlay")
    parser.add_argument("--filter", default="kalman", choices=("kalman", "one_euro", "none"),
                        help="videos: temporal filter of the labels (see label_video)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    detector = MediaPipeDetector(min_score=args.min_score, detectors=args.detectors, min_face=args.min_face)
    for item in args.inputs:
        path = pathlib.Path(item)
        if media.is_video(path):
            npz = label_video(path, args.out / f"{path.stem}.npz", MediaPipeSource(detector), filter=args.filter)
            labels = np.load(npz)
            frames = media.read_video(path)
            picks = np.linspace(0, len(frames) - 1, min(4, len(frames))).astype(int)
            h, w = frames.shape[1:3]
            tiles = []
            for t in picks:
                face = dict(landmarks98=labels["landmarks2d"][t] * (w, h))
                tiles.append(draw_faces(frames[t], [face] if labels["confidence"][t, 0] > 0 else []))
            cv2.imwrite(str(args.out / f"{path.stem}_preview.png"), cv2.cvtColor(np.concatenate(tiles, 1), cv2.COLOR_RGB2BGR))
            found = int((labels["confidence"][:, 0] > 0).sum())
            print(f"{path}: face in {found}/{len(frames)} frames -> {npz}")
            continue
        if item == "astronaut" and not path.exists():
            from skimage import data

            image = data.astronaut()
        else:
            image = media.read_image(path)
        faces = detector.detect(image)
        overlay = draw_faces(image, faces, numbers=args.numbers)
        cv2.imwrite(str(args.out / f"{path.stem}_mediapipe.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        np.savez_compressed(args.out / f"{path.stem}_mediapipe.npz",
                            boxes=np.array([f["box"] for f in faces], np.float32).reshape(-1, 4),
                            scores=np.array([f["score"] for f in faces], np.float32),
                            landmarks98=np.array([f["landmarks98"] for f in faces], np.float32).reshape(-1, 98, 2),
                            landmarks468=np.array([f["landmarks468"] for f in faces], np.float32).reshape(-1, 468, 3))
        print(f"{path}: {len(faces)} face(s) -> {args.out / f'{path.stem}_mediapipe.png'}")


if __name__ == "__main__":
    main()
