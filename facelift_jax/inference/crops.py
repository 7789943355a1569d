"""Square model-input boxes: cutting them out of images, finding them with a face detector, and
mapping the model's camera back into image pixels."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping

import cv2
import numpy as np

from facelift_jax import camera as camera_lib
from facelift_jax.config import DEFAULT_CROP_SCALE
from facelift_jax.evaluation.datasets.base import face_crop_box, whole_image_box
from facelift_jax.inference.tracking import pick_face

__all__ = ["FaceCropper", "crop_square", "face_crop_box", "project_points", "whole_image_box"]

log = logging.getLogger(__name__)


def _integer_square(box) -> tuple[int, int, int]:
    """(x0, y0, side) of the square on the integer pixel grid closest to ``box`` (4,) about its centre."""
    box = np.asarray(box, np.float64)
    side = max(1, int(round(float(np.max(box[2:] - box[:2])))))
    c = (box[:2] + box[2:]) / 2
    x0, y0 = (int(round(v - side / 2)) for v in c)
    return x0, y0, side


def crop_square(image: np.ndarray, box, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut the square ``box`` out of ``image`` (zero padding outside) and resize it to size².

    Returns (crop (size, size, 3) uint8, used box (4,) = (x0, y0, x0+side, y0+side) on the integer
    pixel grid). A crop point p (normalized, [0, 1]²) is image point x0y0 + p·side.
    """
    h, w = image.shape[:2]
    x0, y0, side = _integer_square(box)
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0) if pad else image
    patch = src[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = patch if side == size else cv2.resize(patch, (size, size), interpolation=interp)
    return np.ascontiguousarray(crop), np.array([x0, y0, x0 + side, y0 + side], np.float64)


def project_points(points3d, rotation, translation, crop_box, focal: float = camera_lib.FOCAL) -> np.ndarray:
    """World points (P, 3) seen by the predicted camera of the crop ``crop_box`` (4,) → (P, 2)
    pixels of the full image."""
    p = np.asarray(points3d) @ np.asarray(rotation).T + np.asarray(translation)
    uv = focal * p[:, :2] / p[:, 2:3] + camera_lib.PRINCIPAL
    side = crop_box[2] - crop_box[0]
    return crop_box[:2] + uv * side


class FaceCropper:
    """Square model-input boxes for images: MediaPipe face landmarks when available, else the image.

    ``mode``: "auto" (MediaPipe if importable, else whole image with a warning), "mediapipe"
    (required; errors if missing), "none" (whole image, no warning). ``max_faces``: at most this
    many faces per image, highest detector score first (0 = every face found).
    ``detector_options``: keyword arguments of ``bridges.mediapipe.MediaPipeDetector`` (the
    ``config.mediapipe`` section: min_score, min_presence, refine_passes, pupils, detectors,
    min_face); None = its defaults.
    """

    def __init__(self, mode: str = "auto", crop_scale: float = DEFAULT_CROP_SCALE, max_faces: int = 0,
                 detector_options: Mapping | None = None):
        if mode not in ("auto", "mediapipe", "none"):
            raise ValueError(f"detector mode must be auto, mediapipe or none, got {mode!r}")
        if int(max_faces) < 0:
            raise ValueError(f"max_faces must be >= 0 (0 = all), got {max_faces}")
        options = dict(detector_options or {})
        if "max_faces" in options:  # two sources for one number: say which one counts
            raise ValueError("detector_options may not set max_faces; pass FaceCropper(max_faces=...)")
        self.mode, self.crop_scale, self.max_faces = mode, float(crop_scale), int(max_faces)
        self.detector = None
        self.reason = "disabled (--detector none)"
        if mode != "none":
            try:
                from bridges.mediapipe import MediaPipeDetector  # optional [bridges] extra

                self.detector = MediaPipeDetector(max_faces=self.max_faces or None, **options)
            except (ImportError, OSError) as e:  # the optional runtime or its model files are missing
                if mode == "mediapipe":
                    raise RuntimeError(f"the MediaPipe face detector is not available: {e}") from e
                self.reason = f"bridges.mediapipe unavailable ({type(e).__name__}: {e})"
                warnings.warn(
                    f"no face detector: {self.reason}. Feeding the whole image (padded to a square); results are "
                    "only meaningful when the face fills the frame like the training renders.", stacklevel=2)

    def faces(self, image: np.ndarray) -> list[dict]:
        """Every face of an image, highest detector score first: [{"crop_box" (4,), "source"
        ("mediapipe" or "whole-image"), "score", "detector_box" (4,) or None}]. Without a detector,
        or when it finds no face, one entry: the whole image."""
        if self.detector is not None:
            found = self.detector.detect(image)
            if found:
                return [{"crop_box": face_crop_box(f["landmarks98"], self.crop_scale), "source": "mediapipe",
                         "score": float(f["score"]), "detector_box": np.asarray(f["box"], np.float64)}
                        for f in found]
            log.warning("no face found by MediaPipe; using the whole image")
        return [{"crop_box": whole_image_box(*image.shape[:2]), "source": "whole-image", "score": None,
                 "detector_box": None}]

    def box(self, image: np.ndarray, previous: np.ndarray | None = None) -> tuple[np.ndarray, str]:
        """(square crop box (4,), source) of the one face a video follows (``tracking.pick_face``:
        the largest): source "mediapipe", "previous" (no face found: ``previous`` is kept) or
        "whole-image"."""
        if self.detector is not None:
            face = pick_face(self.detector.detect(image))
            if face is not None:
                return face_crop_box(face["landmarks98"], self.crop_scale), "mediapipe"
            if previous is not None:
                return previous, "previous"
            log.warning("no face found by MediaPipe; using the whole image")
        return whole_image_box(*image.shape[:2]), "whole-image"
