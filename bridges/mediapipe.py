"""An offline face detector + 468-point face mesh (MediaPipe's TFLite models) → 98 WFLW landmarks.

Models (vendored in ``bridges/assets/``, Apache-2.0, from the npm package ``@mediapipe/face_mesh``
0.4.1657299874; ``scripts/extract_mediapipe_models.py`` shows how they were cut out of it):

* ``face_detection_short_range.tflite`` — BlazeFace short range: input (1,128,128,3) float in
  [-1, 1], outputs ``regressors`` (1,896,16) and ``classificators`` (1,896,1).
* ``face_landmark.tflite`` — input (1,192,192,3) float in [0, 1], outputs 468×(x,y,z) in crop
  pixels and a face-presence logit.

They run on CPU with ``ai_edge_litert.interpreter.Interpreter`` (the optional ``[mediapipe]``
extra, also in ``[bridges]``); no torch is needed.

Pipeline (MediaPipe's face_mesh graph, re-written in NumPy/OpenCV):

1. Letterbox the image to 128² (aspect kept, zero padding), values to [-1, 1], run BlazeFace.
2. Decode the 896 SSD anchors (:func:`ssd_anchors`, :func:`decode_detections`): box centre/size
   and 6 keypoints (eye on the image left, eye on the image right, nose tip, mouth centre, ear
   tragion on the image left, on the image right) relative to the anchor, scores = σ(clip(logit,
   ±100)); keep scores ≥ ``min_score``; weighted non-maximum suppression (IoU 0.3) averages the
   overlapping boxes with their scores as weights (:func:`weighted_nms`).
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
short-range detector is made for faces filling a good part of the frame (selfie / video-call
framing); tiny faces in a large photo are missed.

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
LANDMARK_MODEL = ASSETS / "face_landmark.tflite"

DETECTOR_SIZE = 128
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
                anchor_offset: float = 0.5) -> np.ndarray:
    """(896, 2) anchor centres (x, y) in normalized [0, 1] detector-input coordinates.

    MediaPipe's SsdAnchorsCalculator for face_detection_short_range: 4 layers with strides
    (8, 16, 16, 16), aspect ratio 1 plus one interpolated scale → 2 anchors per layer and cell;
    consecutive layers with the same stride share a grid, so the 16×16 grid has 2 anchors per
    cell and the 8×8 grid 6. ``fixed_anchor_size``: every anchor has width = height = 1, so the
    regressors are in units of the input size. Order: grid, then row, column, anchor.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        repeats = 0
        while layer < len(strides) and strides[layer] == stride:
            repeats += 2
            layer += 1
        side = math.ceil(input_size / stride)
        ys, xs = np.meshgrid((np.arange(side) + anchor_offset) / side,
                             (np.arange(side) + anchor_offset) / side, indexing="ij")
        grid = np.stack([xs, ys], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, repeats, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


ANCHORS = ssd_anchors()


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
    """

    def __init__(self, min_score: float = 0.5, *, min_presence: float = 0.5, max_faces: int | None = None,
                 refine_passes: int = 1, pupils: str = "iris", num_threads: int | None = None):
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
        self._detector = _interpreter(DETECTOR_MODEL, num_threads)
        self._landmarker = _interpreter(LANDMARK_MODEL, num_threads)
        self._det_in = self._detector.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._detector.get_output_details()}
        self._det_reg, self._det_cls = outs["regressors"], outs["classificators"]
        self._lm_in = self._landmarker.get_input_details()[0]["index"]
        # The mesh output has 1404 values, the presence output 1.
        lm_outs = {int(np.prod(d["shape"])): d["index"] for d in self._landmarker.get_output_details()}
        self._lm_mesh, self._lm_flag = lm_outs[NUM_MESH_POINTS * 3], lm_outs[1]

    # -- stage 1: boxes --------------------------------------------------------------------- #
    def detect_faces(self, image: np.ndarray) -> list[dict]:
        """Face boxes of an RGB uint8 (H, W, 3) image, best first.

        Returns [dict(box=(x0, y0, x1, y1) pixels, score, keypoints (6, 2) pixels)], keypoints in
        :data:`DETECTOR_KEYPOINTS` order.
        """
        image = _check_image(image)
        canvas, scale, offset = letterbox(image, DETECTOR_SIZE)
        x = canvas.astype(np.float32)[None] / 127.5 - 1.0
        self._detector.set_tensor(self._det_in, x)
        self._detector.invoke()
        boxes, keypoints, scores = decode_detections(self._detector.get_tensor(self._det_reg)[0],
                                                     self._detector.get_tensor(self._det_cls)[0])
        keep = scores >= self.min_score
        faces = []
        for box, kps, score in weighted_nms(boxes[keep], keypoints[keep], scores[keep]):
            box_px = (box.reshape(2, 2) * DETECTOR_SIZE - offset) / scale
            kps_px = (kps * DETECTOR_SIZE - offset) / scale
            faces.append(dict(box=tuple(float(v) for v in box_px.reshape(4)), score=score, keypoints=kps_px))
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

    def detect(self, image: np.ndarray) -> list[dict]:
        """All faces of an RGB uint8 (H, W, 3) image, highest detector score first.

        Returns [dict(box=(x0, y0, x1, y1) pixels (BlazeFace), score (detector), presence (landmark
        model), keypoints (6, 2), roi (:class:`Roi`, the final crop), landmarks468 (468, 3) float32,
        landmarks98 (98, 2) float32 pixels (WFLW))]. Faces below ``min_presence`` are dropped.
        """
        image = _check_image(image)
        out = []
        for face in self.detect_faces(image):
            roi = roi_from_detection(np.asarray(face["box"]), face["keypoints"])
            points, presence, roi = self.landmarks_from_roi(image, roi)
            if presence < self.min_presence:
                continue
            out.append(dict(face, presence=presence, roi=roi, landmarks468=points.astype(np.float32),
                            landmarks98=self.landmarks98(image, points).astype(np.float32)))
        return out


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
    ``min_presence``, ``refine_passes``, ``pupils``."""
    section = getattr(config, "mediapipe", None) if config is not None else None
    kwargs = {k: section[k] for k in ("min_score", "min_presence", "refine_passes", "pupils")
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
                source: MediaPipeSource | None = None, track: bool = True) -> pathlib.Path:
    """2D pseudo-labels of a user's video for the multi-frame branch.

    Writes ``out`` (default: ``<video stem>.npz`` beside the video) with ``landmarks2d (T, 98, 2)``
    normalized image coordinates and ``confidence (T, 98)`` — the keys of the synthetic clips'
    label files — plus ``image_size (2,) = (W, H)`` and ``fps``. Returns the npz path.
    """
    path = pathlib.Path(path)
    out = pathlib.Path(out) if out is not None else path.with_suffix(".npz")
    frames, (_, fps) = media.read_video(path), media.video_properties(path)
    source = source or MediaPipeSource()
    run = source.track if track else source.detect
    landmarks, confidence = run(frames, return_confidence=True, progress=True)
    h, w = frames.shape[1:3]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, landmarks2d=landmarks, confidence=confidence, image_size=np.array([w, h]),
                        fps=np.float32(fps))
    return out


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
    parser.add_argument("--numbers", action="store_true", help="write landmark indices on the overlay")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    detector = MediaPipeDetector(min_score=args.min_score)
    for item in args.inputs:
        path = pathlib.Path(item)
        if media.is_video(path):
            npz = label_video(path, args.out / f"{path.stem}.npz", MediaPipeSource(detector))
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
