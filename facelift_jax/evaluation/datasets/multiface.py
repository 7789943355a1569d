"""Multiface reader (Wuu et al., 2022), written from facebookresearch/multiface's documentation.

One capture ("entity") folder, e.g. ``m--20180227--0000--6795937--GHS`` (documentation/
DATA_STRUCTURE.md)::

    KRT                                   camera calibration of every camera (text, see below)
    frame_list.txt                        "<sequence> <frame>" per line (optional here)
    images/<sequence>/<camera>/<frame>.png        raw photos (v1 rigs: 1334 × 2048 portrait)
    tracked_mesh/<sequence>/<frame>.bin           float32, |V|·3 (x, y, z) of the tracked mesh
    tracked_mesh/<sequence>/<frame>_transform.txt 3×4 (or 4×4) head pose [R_f | t_f]

KRT (dataset.py ``load_krt``): per camera a name line, 3 lines of the 3×3 intrinsics (pixels),
one line of distortion coefficients, 3 lines of the 3×4 extrinsics [R_C | t_C], one blank line.

Projection (dataset.py / utils.py ``Renderer``): M = K·[R_C·R_f | R_C·t_f + t_C];
(u, v, w) = M·(x, y, z, 1); pixel = (u/w, v/w), x right, y down. Like the official renderer we
ignore the lens distortion coefficients.

Assumptions (the dataset has no 2D landmark annotation):
* The normalizing face box is the tight box of the projected vertices (of ``face_vertices``
  when given: an .npy/.txt of vertex indices of the face region, which excludes neck and ears).
* NME needs a landmark definition on the mesh: ``landmark_vertices`` (.npy/.txt of 68 or 98
  vertex indices). Without it only NMLC (the paper's Table 2 metric) is computed.
* The model input is the square of side ``crop_scale``·max(w, h) about the face box centre.
* ``sequences`` / ``cameras`` choose the subset (the paper picked 6 sequences), ``frame_step``
  subsamples frames; each (sequence, frame, camera) with an existing image is one test image.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

from facelift_jax.evaluation.datasets.base import (DatasetFormatError, EvalSample, EvalSet, points_box, read_image_rgb,
                                        square_box)


def _floats(line: str, n: int | None, path, lineno: int) -> list[float]:
    try:
        values = [float(x) for x in line.split()]
    except ValueError as e:
        raise DatasetFormatError(f"Multiface KRT {path} line {lineno}: not numbers: {line.strip()!r}") from e
    if n is not None and len(values) != n:
        raise DatasetFormatError(
            f"Multiface KRT {path} line {lineno}: expected {n} numbers, got {len(values)}: {line.strip()!r}")
    return values


def load_krt(path) -> dict[str, dict[str, np.ndarray]]:
    """{camera name: {"K" (3, 3), "dist" (n,), "extrinsics" (3, 4)}} from a KRT file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Multiface calibration {path} does not exist")
    lines = path.read_text().splitlines()
    cameras: dict[str, dict[str, np.ndarray]] = {}
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        name = lines[i].strip()
        block = lines[i + 1:i + 8]
        if len(block) < 7:
            raise DatasetFormatError(f"Multiface KRT {path}: camera {name!r} at line {i + 1} is truncated")
        K = np.array([_floats(block[r], 3, path, i + 2 + r) for r in range(3)])
        dist = np.array(_floats(block[3], None, path, i + 5))
        ext = np.array([_floats(block[4 + r], 4, path, i + 6 + r) for r in range(3)])
        if name in cameras:
            raise DatasetFormatError(f"Multiface KRT {path}: camera {name!r} appears twice")
        if i + 8 < len(lines) and lines[i + 8].strip():
            raise DatasetFormatError(
                f"Multiface KRT {path} line {i + 9}: expected the blank line that ends camera {name!r}")
        cameras[name] = {"K": K, "dist": dist, "extrinsics": ext}
        i += 8
    if not cameras:
        raise DatasetFormatError(f"Multiface KRT {path} holds no camera")
    return cameras


def load_transform(path) -> np.ndarray:
    """(3, 4) head pose [R_f | t_f] from ``<frame>_transform.txt``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Multiface head pose {path} does not exist")
    try:
        m = np.loadtxt(path, ndmin=2)
    except ValueError as e:
        raise DatasetFormatError(f"Multiface head pose {path} is not a numeric matrix: {e}") from e
    if m.shape not in ((3, 4), (4, 4)) or not np.all(np.isfinite(m)):
        raise DatasetFormatError(f"Multiface head pose {path} must be a finite 3×4 or 4×4 matrix, got {m.shape}")
    return m[:3]


def load_mesh_bin(path, num_vertices: int | None = None) -> np.ndarray:
    """(|V|, 3) float32 vertices of a tracked mesh ``.bin``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Multiface mesh {path} does not exist")
    raw = np.fromfile(path, dtype="<f4")
    if raw.size == 0 or raw.size % 3:
        raise DatasetFormatError(f"Multiface mesh {path}: {raw.size} floats is not a positive multiple of 3")
    v = raw.reshape(-1, 3)
    if num_vertices is not None and len(v) != num_vertices:
        raise DatasetFormatError(f"Multiface mesh {path} has {len(v)} vertices, the capture's meshes have {num_vertices}")
    if not np.all(np.isfinite(v)):
        raise DatasetFormatError(f"Multiface mesh {path} has non-finite coordinates")
    return v


def projection_matrix(camera: dict[str, np.ndarray], head_pose: np.ndarray) -> np.ndarray:
    """(3, 4) M = K·[R_C·R_f | R_C·t_f + t_C] mapping mesh coordinates to homogeneous pixels."""
    Rc, tc = camera["extrinsics"][:, :3], camera["extrinsics"][:, 3]
    Rf, tf = head_pose[:, :3], head_pose[:, 3]
    return camera["K"] @ np.concatenate([Rc @ Rf, (Rc @ tf + tc)[:, None]], 1)


def project(vertices, M) -> np.ndarray:
    """(V, 3) mesh vertices, (3, 4) M → (V, 2) pixels."""
    uvw = vertices @ M[:, :3].T + M[:, 3]
    return uvw[:, :2] / uvw[:, 2:3]


def _load_indices(path, what: str) -> np.ndarray:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Multiface {what} file {path} does not exist")
    try:
        idx = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=1)
    except Exception as e:  # noqa: BLE001
        raise DatasetFormatError(f"Multiface {what} file {path} is not a list of vertex indices: {e}") from e
    idx = np.asarray(idx)
    if idx.ndim != 1 or idx.size == 0 or not np.all(idx == np.round(idx)):
        raise DatasetFormatError(f"Multiface {what} file {path} must be a 1-D list of integer vertex indices")
    return idx.astype(np.int64)


class Multiface(EvalSet):
    """Multiface test images with projected tracked-mesh vertices (NMLC) of one capture.

    root: the capture folder; sequences / cameras: names to keep (None = all found);
    frame_step: keep every n-th frame of a sequence; limit: at most this many images (0 = all).
    """

    num_points = 68

    def __init__(self, root, sequences: Sequence[str] | None = None, cameras: Sequence[str] | None = None,
                 frame_step: int = 1, limit: int = 0, face_vertices=None, landmark_vertices=None,
                 crop_scale: float = 1.2):
        root = pathlib.Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"Multiface capture folder {root} does not exist")
        self.root = root
        self.name = f"Multiface/{root.name}"
        self.krt = load_krt(root / "KRT")
        for needed in ("images", "tracked_mesh"):
            if not (root / needed).is_dir():
                raise FileNotFoundError(f"Multiface capture {root} has no {needed}/ folder")
        if frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {frame_step}")
        self.crop_scale = float(crop_scale)
        self.face_vertices = _load_indices(face_vertices, "face_vertices") if face_vertices else None
        self.landmark_vertices = _load_indices(landmark_vertices, "landmark_vertices") if landmark_vertices else None
        if self.landmark_vertices is not None and len(self.landmark_vertices) not in (68, 98):
            raise DatasetFormatError(f"landmark_vertices must list 68 or 98 vertices, got {len(self.landmark_vertices)}")
        if self.landmark_vertices is not None:
            self.num_points = len(self.landmark_vertices)

        seqs = sorted(p.name for p in (root / "tracked_mesh").iterdir() if p.is_dir())
        if sequences:
            missing = sorted(set(sequences) - set(seqs))
            if missing:
                raise FileNotFoundError(f"Multiface capture {root}: sequences {missing} not in tracked_mesh/")
            seqs = [s for s in seqs if s in set(sequences)]
        cams = sorted(self.krt)
        if cameras:
            missing = sorted(set(map(str, cameras)) - set(cams))
            if missing:
                raise DatasetFormatError(f"Multiface capture {root}: cameras {missing} not in KRT")
            cams = [c for c in cams if c in set(map(str, cameras))]
        items = []
        for seq in seqs:
            frames = sorted(p.stem for p in (root / "tracked_mesh" / seq).glob("*.bin"))
            for frame in frames[::frame_step]:
                for cam in cams:
                    if (root / "images" / seq / cam / f"{frame}.png").is_file():
                        items.append((seq, frame, cam))
        if not items:
            raise FileNotFoundError(
                f"Multiface capture {root}: no (sequence, frame, camera) with both images/<seq>/<cam>/<frame>.png "
                "and tracked_mesh/<seq>/<frame>.bin")
        self.items = items[:limit] if limit else items
        self._num_vertices = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> EvalSample:
        seq, frame, cam = self.items[index]
        mesh_dir = self.root / "tracked_mesh" / seq
        vertices = load_mesh_bin(mesh_dir / f"{frame}.bin", self._num_vertices)
        self._num_vertices = len(vertices)
        for name, idx in (("face_vertices", self.face_vertices), ("landmark_vertices", self.landmark_vertices)):
            if idx is not None and (idx.min() < 0 or idx.max() >= len(vertices)):
                raise DatasetFormatError(f"Multiface {name} index out of range for {len(vertices)} mesh vertices")
        M = projection_matrix(self.krt[cam], load_transform(mesh_dir / f"{frame}_transform.txt"))
        depth = vertices @ M[2, :3] + M[2, 3]
        if np.any(depth <= 0):
            raise DatasetFormatError(
                f"Multiface {seq}/{frame} camera {cam}: {int(np.sum(depth <= 0))} vertices behind the camera; "
                "KRT or transform does not match the documented conventions")
        vertices2d = project(vertices, M)
        image = read_image_rgb(self.root / "images" / seq / cam / f"{frame}.png")
        face = vertices2d if self.face_vertices is None else vertices2d[self.face_vertices]
        box = points_box(face)
        landmarks2d = None if self.landmark_vertices is None else vertices2d[self.landmark_vertices]
        return EvalSample(name=f"{seq}/{frame}/{cam}", image=image, box=box, crop_box=square_box(box, self.crop_scale),
                          landmarks2d=landmarks2d, vertices2d=vertices2d,
                          categories={"sequence": seq, "camera": cam})
