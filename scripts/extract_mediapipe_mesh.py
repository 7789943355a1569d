"""Extract MediaPipe's canonical face mesh into facelift_jax/assets/mediapipe_canonical_face.npz.

Source: the npm package ``@mediapipe/face_mesh`` (Apache-2.0). Its
``face_mesh_solution_packed_assets.data`` concatenates several files; the byte range of each is
listed in ``face_mesh_solution_packed_assets_loader.js``. One of them,
``geometry_pipeline_metadata_landmarks.binarypb``, is a ``GeometryPipelineMetadata`` protobuf
(mediapipe/modules/face_geometry/protos/geometry_pipeline_metadata.proto):

  GeometryPipelineMetadata { 1: Mesh3d canonical_mesh; 2: repeated WeightedLandmarkRef
      procrustes_landmark_basis {1: landmark_id uint32, 2: weight float}; 3: input_source (enum) }
  Mesh3d { 1: vertex_type (enum, 0 = VERTEX_PT: x y z u v); 2: primitive_type (enum, 0 = TRIANGLE);
      3: repeated float vertex_buffer; 4: repeated uint32 index_buffer }
  (the shipped file stores the repeated fields unpacked, one tag per value; packed is accepted too).

The wire format is decoded here with NumPy and a few lines of varint parsing, without protobuf.

Usage:
    cd /tmp && npm pack @mediapipe/face_mesh && mkdir fm && tar xzf mediapipe-face_mesh-*.tgz -C fm
    python scripts/extract_mediapipe_mesh.py /tmp/fm/package [--out facelift_jax/assets/...npz]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re

import numpy as np

ASSET = "geometry_pipeline_metadata_landmarks.binarypb"
DEFAULT_OUT = pathlib.Path(__file__).resolve().parents[1] / "facelift_jax" / "assets" / "mediapipe_canonical_face.npz"


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint at ``pos``; returns (value, next position)."""
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def parse_fields(buf: bytes) -> list[tuple[int, int, object]]:
    """Top-level (field number, wire type, value) of one message; LEN values stay raw bytes."""
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} for field {number}")
        fields.append((number, wire, value))
    return fields


def packed_varints(buf: bytes) -> np.ndarray:
    out, pos = [], 0
    while pos < len(buf):
        v, pos = read_varint(buf, pos)
        out.append(v)
    return np.asarray(out, np.int64)


def asset_bytes(package_dir: pathlib.Path, name: str = ASSET) -> bytes:
    """The bytes of ``name`` cut out of the packed data file by the loader's byte range."""
    loader = (package_dir / "face_mesh_solution_packed_assets_loader.js").read_text()
    m = re.search(r'"filename":\s*"[^"]*' + re.escape(name) + r'",\s*"start":\s*(\d+),\s*"end":\s*(\d+)', loader)
    if m is None:
        raise ValueError(f"{name} not listed in the loader of {package_dir}")
    start, end = int(m.group(1)), int(m.group(2))
    data = (package_dir / "face_mesh_solution_packed_assets.data").read_bytes()
    return data[start:end]


def decode_metadata(buf: bytes) -> dict[str, np.ndarray]:
    """GeometryPipelineMetadata bytes → vertices (468,3), uv (468,2), triangles (898,3), procrustes."""
    mesh, basis_ids, basis_w = None, [], []
    for number, wire, value in parse_fields(buf):
        if number == 1 and wire == 2:
            mesh = value
        elif number == 2 and wire == 2:
            ref = {n: v for n, _, v in parse_fields(value)}
            basis_ids.append(ref.get(1, 0))
            basis_w.append(np.frombuffer(ref[2], "<f4")[0] if 2 in ref else 0.0)
    if mesh is None:
        raise ValueError("no canonical_mesh (field 1) in the metadata")
    floats, indices = [], []
    for number, wire, value in parse_fields(mesh):
        if number == 1 and value != 0:
            raise ValueError(f"vertex_type {value} is not VERTEX_PT")
        if number == 3:  # packed (wire 2) or a single float (wire 5)
            floats.append(np.frombuffer(value, "<f4"))
        elif number == 4:
            indices.append(packed_varints(value) if wire == 2 else np.array([value]))
        elif number == 2 and value != 0:
            raise ValueError(f"primitive_type {value} is not TRIANGLE")
    vb = np.concatenate(floats).reshape(-1, 5)
    tri = np.concatenate(indices).reshape(-1, 3).astype(np.int32)
    return dict(vertices=vb[:, :3].astype(np.float32), uv=vb[:, 3:].astype(np.float32), triangles=tri,
                procrustes_ids=np.asarray(basis_ids, np.int32), procrustes_weights=np.asarray(basis_w, np.float32))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("package_dir", type=pathlib.Path, help="unpacked npm package folder (…/package)")
    p.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    version = json.loads((args.package_dir / "package.json").read_text())["version"]
    mesh = decode_metadata(asset_bytes(args.package_dir))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **mesh, source=np.array(f"npm @mediapipe/face_mesh {version}: {ASSET}"))
    print(f"{args.out}: {len(mesh['vertices'])} vertices, {len(mesh['triangles'])} triangles, "
          f"vertex 234 = {mesh['vertices'][234]}")


if __name__ == "__main__":
    main()
