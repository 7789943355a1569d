"""The vendored TFLite model files, their input sizes, the interpreter that runs them, and the
check of an image before it reaches them."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np

ASSETS = pathlib.Path(__file__).resolve().parent.parent / "assets"
DETECTOR_MODEL = ASSETS / "face_detection_short_range.tflite"
FULL_RANGE_MODEL = ASSETS / "face_detection_full_range.tflite"
LANDMARK_MODEL = ASSETS / "face_landmark.tflite"

DETECTOR_SIZE = 128
FULL_RANGE_SIZE = 192
LANDMARK_SIZE = 192


def check_image(image: Any, name: str = "image") -> np.ndarray:
    """``image`` as a contiguous (H, W, 3) uint8 RGB array, or a TypeError/ValueError naming ``name``."""
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


def load_interpreter(path: pathlib.Path, num_threads: int | None):
    """A TFLite interpreter on ``path`` with its tensors allocated (ai-edge-litert is imported here,
    so the package imports without it)."""
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
