"""DAD-3DHeads reader (Martyniuk et al., CVPR 2022), written from the dataset's documentation.

Layout (PinataFarms/DAD-3DHeads README and dad_3dheads_benchmark/generate_gt.py)::

    DAD-3DHeadsDataset/<subset>/          subset ∈ {train, val, test}
        <subset>.json                     metadata: a list of entries
        images/<item_id>.png
        annotations/<item_id>.json        {"vertices": 5023×3, "model_view_matrix": 4×4,
                                           "projection_matrix": 4×4}   (no annotations for test)

A metadata entry: {"item_id", "annotation_path", "img_path", "bbox": [x, y, w, h],
"attributes": {"quality": hq|lq, "gender", "expression": bool, "age", "occlusions": bool,
"pose": front|sided|atypical, "standard light": bool}} (val carries no attributes).

Head pose: ``rotation_from_model_view`` (the benchmark's ``get_gt_rot_mat``) gives the true rotation
for the pose error.

Projection (the benchmark's ``HeadAnnotation.landmarks_68_2d``): homogeneous FLAME vertices →
model_view → projection → divide x, y by w → pixel x, and pixel y = image height − y.

The benchmark's 68 landmarks are barycentric points of the FLAME mesh (17 contour points of the
dynamic embedding evaluated at zero pose + 51 static points). The embedding files are part of
FLAME (separate licence) and are not shipped here: pass ``landmark_embedding=`` an .npz with
``faces (F, 3) int``, ``lmk_face_idx (68,) int``, ``lmk_b_coords (68, 3) float`` (the
concatenation dynamic-at-zero-pose then static, as ``get_68_landmarks`` builds it) to get NME;
without it only NMLC (which needs no landmark definition) is computed.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from facelift_jax.evaluation.datasets.base import (DatasetFormatError, EvalSample, EvalSet, array_field, read_image_rgb,
                                        square_box)

NUM_FLAME_VERTICES = 5023


def project(vertices, model_view, projection, image_height: float) -> np.ndarray:
    """(V, 3) FLAME model-space vertices → (V, 2) pixels (x right, y down), as the benchmark does."""
    homo = np.concatenate([vertices, np.ones_like(vertices[:, :1])], -1)
    clip = homo @ model_view.T @ projection.T
    xy = clip[:, :2] / clip[:, 3:4]
    return np.stack([xy[:, 0], image_height - xy[:, 1]], -1)


def rotation_from_model_view(model_view) -> np.ndarray:
    """(3, 3) model→camera rotation in OpenCV axes (x right, y down, z forward) of a 4×4 model_view.

    The benchmark's ``get_gt_rot_mat``: diag(1, −1, −1) · model_view[:3, :3] (OpenGL → OpenCV);
    the polar factor removes any scale the model-view matrix carries. FLAME's model frame (y up,
    the face looking toward +z, x toward the subject's left) is the GAN world frame of camera.py,
    so this is comparable with the model's predicted world→camera rotation.
    """
    m = np.diag([1.0, -1.0, -1.0]) @ np.asarray(model_view, np.float64)[:3, :3]
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:
        raise ValueError("model_view_matrix has a reflection; not a pose")
    return r


def load_embedding(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(faces (F, 3), lmk_face_idx (68,), lmk_b_coords (68, 3)) from an .npz; clear errors."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmark embedding {path} does not exist")
    try:
        z = np.load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same message
        raise DatasetFormatError(f"landmark embedding {path} is not a readable .npz: {e}") from e
    src = f"landmark embedding {path}"
    faces = array_field(src, z, "faces", (-1, 3), np.int64)
    idx = array_field(src, z, "lmk_face_idx", (68,), np.int64)
    bary = array_field(src, z, "lmk_b_coords", (68, 3))
    if idx.min() < 0 or idx.max() >= len(faces):
        raise DatasetFormatError(f"{src}: lmk_face_idx must index the {len(faces)} faces")
    if faces.min() < 0 or faces.max() >= NUM_FLAME_VERTICES:
        raise DatasetFormatError(f"{src}: faces must index the {NUM_FLAME_VERTICES} FLAME vertices")
    return faces, idx, bary


def barycentric_points(vertices, faces, face_idx, bary) -> np.ndarray:
    """(V, D) vertices → (L, D) points Σ_k bary[l, k] · vertices[faces[face_idx[l], k]]."""
    return np.einsum("lk,lkd->ld", bary, vertices[faces[face_idx]])


def _read_json(path: pathlib.Path, what: str):
    if not path.is_file():
        raise FileNotFoundError(f"DAD-3DHeads {what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetFormatError(f"DAD-3DHeads {what} {path} is not valid JSON: {e}") from e


class DAD3DHeads(EvalSet):
    """The DAD-3DHeads val (or train) subset as an ``EvalSet`` of 68-point landmarks.

    root: the ``DAD-3DHeadsDataset/<subset>`` folder (or its metadata ``<subset>.json``).
    landmark_embedding: optional .npz (see the module docstring) → 68 ground-truth landmarks (NME).
    crop_scale: the model input is the square of side crop_scale·max(w, h) about the bbox centre.
    limit: evaluate only the first ``limit`` entries (0 = all).
    """

    num_points = 68

    def __init__(self, root, landmark_embedding=None, crop_scale: float = 1.2, limit: int = 0):
        root = pathlib.Path(root)
        if root.is_file():
            meta_path, root = root, root.parent
        else:
            meta_path = root / f"{root.name}.json"
            if not meta_path.is_file():
                found = sorted(root.glob("*.json")) if root.is_dir() else []
                if not root.is_dir():
                    raise FileNotFoundError(f"DAD-3DHeads folder {root} does not exist")
                if len(found) != 1:
                    raise FileNotFoundError(
                        f"DAD-3DHeads metadata {meta_path} does not exist (expected <subset>/<subset>.json)")
                meta_path = found[0]
        self.root = root
        self.name = f"DAD-3DHeads/{root.name}"
        entries = _read_json(meta_path, "metadata")
        if not isinstance(entries, list):
            raise DatasetFormatError(f"DAD-3DHeads metadata {meta_path} must hold a JSON list of entries")
        for i, e in enumerate(entries):
            if not isinstance(e, dict) or "item_id" not in e or "bbox" not in e:
                raise DatasetFormatError(
                    f"DAD-3DHeads metadata {meta_path}: entry {i} needs 'item_id' and 'bbox' fields")
        self.entries = entries[:limit] if limit else entries
        self.meta_path = meta_path
        self.crop_scale = float(crop_scale)
        self.embedding = load_embedding(landmark_embedding) if landmark_embedding else None

    def __len__(self) -> int:
        return len(self.entries)

    def _resolve(self, entry: dict, key: str, folder: str, suffix: str) -> pathlib.Path:
        """The file of an entry: <root>/<folder>/<item_id><suffix>, else the entry's own path."""
        candidates = [self.root / folder / f"{entry['item_id']}{suffix}"]
        if entry.get(key):
            rel = pathlib.Path(entry[key])
            candidates += [self.root / rel, self.root.parent / rel, self.root.parent.parent / rel]
        for c in candidates:
            if c.is_file():
                return c
        raise FileNotFoundError(
            f"DAD-3DHeads item {entry['item_id']!r}: no {folder[:-1]} file among {[str(c) for c in candidates]}"
            + (" (the test subset ships no annotations; use val)" if folder == "annotations" else ""))

    def __getitem__(self, index: int) -> EvalSample:
        entry = self.entries[index]
        item = str(entry["item_id"])
        image = read_image_rgb(self._resolve(entry, "img_path", "images", ".png"))
        ann_path = self._resolve(entry, "annotation_path", "annotations", ".json")
        ann = _read_json(ann_path, "annotation")
        src = f"DAD-3DHeads annotation {ann_path}"
        if not isinstance(ann, dict):
            raise DatasetFormatError(f"{src} must hold a JSON object")
        vertices = array_field(src, ann, "vertices", (NUM_FLAME_VERTICES, 3))
        model_view = array_field(src, ann, "model_view_matrix", (4, 4))
        projection = array_field(src, ann, "projection_matrix", (4, 4))
        x, y, w, h = array_field(f"DAD-3DHeads metadata {self.meta_path} item {item!r}", entry, "bbox", (4,))
        if w <= 0 or h <= 0:
            raise DatasetFormatError(f"DAD-3DHeads metadata {self.meta_path} item {item!r}: bbox w, h must be > 0")
        height = image.shape[0]
        vertices2d = project(vertices, model_view, projection, height)
        if not np.all(np.isfinite(vertices2d)):
            raise DatasetFormatError(f"{src}: projection gives non-finite pixels (w = 0 for some vertex)")
        landmarks2d = None
        if self.embedding is not None:
            faces, idx, bary = self.embedding
            landmarks2d = project(barycentric_points(vertices, faces, idx, bary), model_view, projection, height)
        box = np.array([x, y, x + w, y + h], np.float64)
        attributes = entry.get("attributes") or {}
        categories = {k: str(v) for k, v in attributes.items() if not isinstance(v, (list, dict))}
        try:
            extra = {"rotation": rotation_from_model_view(model_view)}
        except ValueError as e:
            raise DatasetFormatError(f"{src}: model_view_matrix: {e}") from e
        return EvalSample(name=item, image=image, box=box, crop_box=square_box(box, self.crop_scale),
                          landmarks2d=landmarks2d, vertices2d=vertices2d, categories=categories, extra=extra)
