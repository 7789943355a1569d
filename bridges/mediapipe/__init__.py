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
5. 468 → 98 (bridges/mediapipe/wflw.py: :func:`wflw98_from_mediapipe468`, tables
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

Modules: ``runtime`` (model files, TFLite interpreter, the input check), ``blazeface`` (anchors,
decoding, NMS, one BlazeFace model), ``tiles`` (the tile pyramid), ``crops`` (Roi and its exact
affine, letterbox, crops from a detection or a mesh), ``landmarker`` (:class:`MediaPipeDetector`),
``wflw`` (468 → 98), ``source`` (:class:`MediaPipeSource`, :func:`make_detector`), ``drawing``
(:func:`draw_faces`), ``cli`` (:func:`label_video`, :func:`main`). This package re-exports their
public names, so ``bridges.mediapipe.X`` keeps working.
"""

from bridges.mediapipe.blazeface import (ANCHORS, DETECTOR_KEYPOINTS, FULL_RANGE_ANCHORS, NMS_IOU, SCORE_CLIP, BlazeFace,
                                         box_iou, decode_detections, ssd_anchors, weighted_nms)
from bridges.mediapipe.cli import MEDIAPIPE_SIGMA, label_video, main
from bridges.mediapipe.crops import (MESH_EYE_CORNERS, ROI_SCALE, Roi, crop_to_image, crop_transform, image_to_crop,
                                     letterbox, roi_from_detection, roi_from_mesh, warp_crop)
from bridges.mediapipe.drawing import draw_faces
from bridges.mediapipe.landmarker import (CANDIDATE_SCORE, CONFIRM_PRESENCE, CONFIRM_SCORE, DETECTORS, DUPLICATE_IOU,
                                          VERIFY_ZOOM, MediaPipeDetector)
from bridges.mediapipe.runtime import (ASSETS, DETECTOR_MODEL, DETECTOR_SIZE, FULL_RANGE_MODEL, FULL_RANGE_SIZE,
                                       LANDMARK_MODEL, LANDMARK_SIZE, check_image, load_interpreter)
from bridges.mediapipe.source import MediaPipeSource, make_detector
from bridges.mediapipe.tiles import TILE_EDGE_MARGIN, TILE_FACE_RATIO, TILE_OVERLAP, inside_tile, tile_grid
from bridges.mediapipe.wflw import (NUM_MESH_POINTS, PUPIL_EYE_LOOPS, WFLW_POLYLINES, WFLW_VERTICES, iris_centre,
                                    wflw98_from_mediapipe468)

__all__ = [
    "ANCHORS", "ASSETS", "BlazeFace", "CANDIDATE_SCORE", "CONFIRM_PRESENCE", "CONFIRM_SCORE", "DETECTORS",
    "DETECTOR_KEYPOINTS", "DETECTOR_MODEL", "DETECTOR_SIZE", "DUPLICATE_IOU", "FULL_RANGE_ANCHORS", "FULL_RANGE_MODEL",
    "FULL_RANGE_SIZE", "LANDMARK_MODEL", "LANDMARK_SIZE", "MEDIAPIPE_SIGMA", "MESH_EYE_CORNERS", "MediaPipeDetector",
    "MediaPipeSource", "NMS_IOU", "NUM_MESH_POINTS", "PUPIL_EYE_LOOPS", "ROI_SCALE", "Roi", "SCORE_CLIP",
    "TILE_EDGE_MARGIN", "TILE_FACE_RATIO", "TILE_OVERLAP", "VERIFY_ZOOM", "WFLW_POLYLINES", "WFLW_VERTICES",
    "box_iou", "check_image", "crop_to_image", "crop_transform", "decode_detections", "draw_faces", "image_to_crop",
    "inside_tile", "iris_centre", "label_video", "letterbox", "load_interpreter", "main", "make_detector",
    "roi_from_detection", "roi_from_mesh", "ssd_anchors", "tile_grid", "warp_crop", "weighted_nms",
    "wflw98_from_mediapipe468",
]
