"""BlazeFace: SSD anchors, decoding of the raw outputs, IoU, MediaPipe's weighted NMS, and one
model behind a call (square canvas → detections)."""

from __future__ import annotations

import math
import pathlib
from typing import Sequence

import numpy as np

from bridges.mediapipe.runtime import DETECTOR_SIZE, FULL_RANGE_SIZE, load_interpreter

# BlazeFace keypoint order. MediaPipe names 0 "right eye" (the subject's right), which is the eye on
# the image left of an unmirrored photo; likewise 4 is the subject's right ear tragion.
DETECTOR_KEYPOINTS = ("eye_image_left", "eye_image_right", "nose_tip", "mouth_center",
                      "ear_image_left", "ear_image_right")
NMS_IOU = 0.3
SCORE_CLIP = 100.0


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



class BlazeFace:
    """One BlazeFace model: a square RGB uint8 canvas (size, size, 3) → decoded detections.

    ``__call__`` returns ``decode_detections``'s (boxes (N, 4), keypoints (N, 6, 2), scores (N,)) in
    normalized canvas coordinates; input values are mapped to [-1, 1] like MediaPipe's graph does.
    """

    def __init__(self, path: pathlib.Path, size: int, anchors: np.ndarray, num_threads: int | None = None):
        self.interpreter = load_interpreter(path, num_threads)
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
