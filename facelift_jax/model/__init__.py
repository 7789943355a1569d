"""The FaceLift 3D landmark regressor (Fig. 4) in Flax NNX.

``build_model(config.model, template, rngs=nnx.Rngs(seed))`` → ``FaceLiftRegressor``;
``model(images) → Prediction``; ``Prediction.outputs()`` → the output dict of ``OUTPUT_FRAMES``
(what predict, export and the evaluator return). See ``regressor.py`` for frames and head parametrizations.
"""

from facelift_jax.model.decoder import LandmarkPoseDecoder
from facelift_jax.model.efficientnet import EfficientNetLite
from facelift_jax.model.face_mesh import FaceMeshEncoder, FaceMeshNet
from facelift_jax.model.layers import count_parameters
from facelift_jax.model.regressor import (
    ENCODERS,
    OUTPUT_FRAMES,
    FaceLiftRegressor,
    Prediction,
    Template,
    build_encoder,
    build_model,
    input_size,
    parameter_counts,
    scale_tril_from_raw,
)
from facelift_jax.model.resnet import ResNet
from facelift_jax.model.vit import CLIP_MEAN, CLIP_STD, VisionTransformer

__all__ = [
    "CLIP_MEAN", "CLIP_STD", "ENCODERS", "EfficientNetLite", "FaceLiftRegressor", "FaceMeshEncoder", "FaceMeshNet", "LandmarkPoseDecoder", "OUTPUT_FRAMES",
    "Prediction", "ResNet", "Template",
    "VisionTransformer", "build_encoder", "build_model", "count_parameters", "input_size", "parameter_counts",
    "scale_tril_from_raw",
]
