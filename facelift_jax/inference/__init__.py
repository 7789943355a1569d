"""Inference with an exported FaceLift model, as a library (the command line is ``facelift_jax.predict``).

* ``predictor``: ``Predictor`` / ``load`` (an export → ``PredictionResult`` in input pixels).
* ``crops``: square model-input boxes (``crop_square``, ``FaceCropper`` with the MediaPipe bridge).
* ``tracking``: following one face through a video (``FaceTracker``, ``pick_face``) and the
  streaming temporal filter (``ClipFilter``).
* ``overlays``: ``draw_overlay``.
* ``files``: per-file prediction (``predict_image``, ``predict_video``, ``run``).
"""

from facelift_jax.inference.crops import FaceCropper, crop_square, face_crop_box, project_points, whole_image_box
from facelift_jax.inference.files import expand_inputs, predict_image, predict_video, run
from facelift_jax.inference.overlays import draw_overlay
from facelift_jax.inference.predictor import PredictionResult, Predictor, check_image, compiled_forward_count, load
from facelift_jax.inference.tracking import ClipFilter, FaceTracker, TrackStep, filter_observation, pick_face
from facelift_jax.landmarks import REGION_COLOURS  # kept importable from here; landmarks is its home

__all__ = ["REGION_COLOURS", "ClipFilter", "FaceCropper", "FaceTracker", "PredictionResult", "Predictor", "TrackStep",
           "check_image", "compiled_forward_count", "crop_square", "draw_overlay", "expand_inputs", "face_crop_box",
           "filter_observation", "load", "pick_face", "predict_image", "predict_video", "project_points", "run",
           "whole_image_box"]
