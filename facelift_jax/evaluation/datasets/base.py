"""What every evaluation set hands the evaluator: one image at a time with its ground truth.

Coordinate frame: pixels of the full image, origin at the top-left corner, x right, y down.

Images are read by ``facelift_jax.media`` (``read_image_rgb``): the same files predict and the
bridges accept (grayscale, 16-bit, alpha, CMYK converted to RGB; EXIF orientation applied).
Bad files: a reader raises ``DatasetFormatError`` (or ``FileNotFoundError``) naming the file or
sample; ``evaluate`` then skips that sample with a warning and lists it, with the error, under
"skipped" in results.json, so the metrics cover the rest and the report says what is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np

from facelift_jax import media

MIN_IMAGE_SIDE = 8  # the smallest image side predict.check_image accepts


class DatasetFormatError(ValueError):
    """A file of a dataset does not have the documented format (the message names the file)."""


@dataclasses.dataclass
class EvalSample:
    """One test image.

    name: unique id (used in the per-image CSV).
    image: (H, W, 3) uint8 RGB, the full image.
    box: (4,) float (x0, y0, x1, y1) pixels, the face box whose sqrt(w·h) normalizes the errors.
    crop_box: (4,) float (x0, y0, x1, y1) pixels of the square region fed to the model, or None to
      feed the whole image (already framed like the training renders).
    landmarks2d: (N, 2) pixels, the dataset's own landmark definition (for NME), or None.
    vertices2d: (|V|, 2) pixels, projected ground-truth mesh vertices (for NMLC), or None.
    categories: {attribute: value} such as {"pose": "front", "expression": "True"}.
    extra: anything else a reader knows (e.g. exact 3D truth for the synthetic set).
    """

    name: str
    image: np.ndarray
    box: np.ndarray
    crop_box: np.ndarray | None = None
    landmarks2d: np.ndarray | None = None
    vertices2d: np.ndarray | None = None
    categories: Mapping[str, str] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        # Checked here, where the sample's name is known: inside a batch of the model the same
        # image would stop the whole evaluation with an error that names no file.
        shape, dtype = np.shape(self.image), np.asarray(self.image).dtype
        if len(shape) != 3 or shape[2] != 3 or dtype != np.uint8:
            raise DatasetFormatError(f"sample {self.name}: the image must be (H, W, 3) uint8, got {shape} {dtype}")
        if min(shape[:2]) < MIN_IMAGE_SIDE:
            raise DatasetFormatError(f"sample {self.name}: the image is {shape[1]}×{shape[0]} pixels, too small "
                                     f"(at least {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE})")


class EvalSet:
    """A sized, indexable collection of ``EvalSample`` that loads lazily.

    Subclasses set ``name`` (shown in tables), ``num_points`` (98 or 68: the landmark definition
    the table uses) and implement ``__len__`` and ``__getitem__``.
    """

    name: str = "dataset"
    num_points: int = 98

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int) -> EvalSample:
        raise NotImplementedError

    def __iter__(self) -> Iterator[EvalSample]:
        for i in range(len(self)):
            yield self[i]


def read_image_rgb(path) -> np.ndarray:
    """``media.read_image`` (the project's one image policy) with this package's error type."""
    try:
        return media.read_image(path)
    except media.MediaError as e:
        raise DatasetFormatError(f"image {e.path} is {e.reason}") from e


def array_field(source: str, obj: Mapping, key: str, shape: tuple, dtype=np.float64) -> np.ndarray:
    """``obj[key]`` as an array of ``shape`` (−1 = any length), finite; errors name ``source``."""
    if key not in obj:
        raise DatasetFormatError(f"{source}: missing field {key!r} (has {sorted(obj)[:10]})")
    try:
        a = np.asarray(obj[key], dtype)
    except (TypeError, ValueError) as e:
        raise DatasetFormatError(f"{source}: field {key!r} is not a numeric array: {e}") from e
    ok = a.ndim == len(shape) and all(s == -1 or s == d for s, d in zip(shape, a.shape))
    if not ok:
        want = "×".join("N" if s == -1 else str(s) for s in shape)
        raise DatasetFormatError(f"{source}: field {key!r} must be {want}, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DatasetFormatError(f"{source}: field {key!r} has non-finite values")
    return a


def points_box(points: np.ndarray) -> np.ndarray:
    """(N, 2) points → (4,) tight box (x0, y0, x1, y1)."""
    return np.concatenate([points.min(0), points.max(0)]).astype(np.float64)


def square_box(box, scale: float = 1.0) -> np.ndarray:
    """(4,) box → the square (x0, y0, x1, y1) about its centre with side scale·max(w, h)."""
    box = np.asarray(box, np.float64)
    centre = (box[:2] + box[2:]) / 2
    half = scale * np.max(box[2:] - box[:2]) / 2
    return np.concatenate([centre - half, centre + half])


def whole_image_box(height: int, width: int) -> np.ndarray:
    """The square (x0, y0, x1, y1) that contains the whole image, centred (pads the short side)."""
    side = max(height, width)
    x0, y0 = (width - side) / 2, (height - side) / 2
    return np.array([x0, y0, x0 + side, y0 + side], np.float64)


def face_crop_box(landmarks, crop_scale: float) -> np.ndarray:
    """The model input of a face found by its landmarks (N, 2) pixels: the square of side
    ``crop_scale`` × their box's longer side about its centre (what predict feeds the model)."""
    return square_box(points_box(np.asarray(landmarks, np.float64)), crop_scale)
