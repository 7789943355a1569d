"""Extract MediaPipe's face detectors and face landmark model from their npm packages.

How ``bridges/assets/face_detection_short_range.tflite``, ``bridges/assets/face_landmark.tflite``
and ``bridges/assets/face_detection_full_range.tflite`` were obtained (and how to obtain them again):

    python scripts/extract_mediapipe_models.py      # runs `npm pack` for both packages
    python scripts/extract_mediapipe_models.py --tarball mediapipe-face_mesh-0.4.1657299874.tgz \
        --detection-tarball mediapipe-face_detection-0.4.1657300184.tgz

The npm package ``@mediapipe/face_mesh`` (Apache-2.0) ships its models concatenated in
``face_mesh_solution_packed_assets.data``; ``face_mesh_solution_packed_assets_loader.js`` lists each
file's byte range (``{"filename": ..., "start": ..., "end": ...}``). This script reads that table,
cuts the two models out, checks that each is a TFLite flatbuffer (file identifier ``TFL3`` at byte 4)
and writes them with their SHA-256 next to ``bridges/assets/NOTICE``.

The npm package ``@mediapipe/face_detection`` (Apache-2.0) ships the full-range BlazeFace model as a
plain file, ``package/face_detection_full_range.tflite``; it is copied unmodified (same checks).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import re
import subprocess
import tarfile
import tempfile

PACKAGE = "@mediapipe/face_mesh"
VERSION = "0.4.1657299874"
WANTED = ("face_detection_short_range.tflite", "face_landmark.tflite")
DETECTION_PACKAGE = "@mediapipe/face_detection"
DETECTION_VERSION = "0.4.1657300184"
DETECTION_WANTED = ("face_detection_full_range.tflite",)
ASSETS = pathlib.Path(__file__).resolve().parents[1] / "bridges" / "assets"


def npm_pack(version: str, workdir: pathlib.Path, package: str = PACKAGE) -> pathlib.Path:
    """Download the package tarball with npm (the only network access) into ``workdir``."""
    out = subprocess.run(["npm", "pack", f"{package}@{version}"], cwd=workdir, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return workdir / out


def byte_ranges(loader_js: str) -> dict[str, tuple[int, int]]:
    """{basename: (start, end)} from the ``loadPackage({"files": [...]})`` call of the loader."""
    match = re.search(r'loadPackage\((\{"files".*?\})\);', loader_js, flags=re.S)
    if match is None:
        raise ValueError("face_mesh_solution_packed_assets_loader.js: no loadPackage({...}) table found")
    table = json.loads(match.group(1))
    return {pathlib.PurePosixPath(f["filename"]).name: (int(f["start"]), int(f["end"])) for f in table["files"]}


def write_model(out_dir: pathlib.Path, name: str, blob: bytes, source: str) -> str:
    """Check that ``blob`` is a TFLite flatbuffer, write it to ``out_dir/name``; returns its sha256.

    source: where the bytes came from, for the messages."""
    if blob[4:8] != b"TFL3":
        raise ValueError(f"{name}: {source} is not a TFLite flatbuffer (no TFL3 identifier)")
    (out_dir / name).write_bytes(blob)
    digest = hashlib.sha256(blob).hexdigest()
    print(f"{name}: {source} -> {out_dir / name} sha256 {digest}")
    return digest


def extract(tarball: pathlib.Path, out_dir: pathlib.Path) -> dict[str, str]:
    """Write the WANTED models from ``tarball`` into ``out_dir``; returns {name: sha256}."""
    with tarfile.open(tarball) as tar:
        loader = tar.extractfile("package/face_mesh_solution_packed_assets_loader.js").read().decode()
        data = tar.extractfile("package/face_mesh_solution_packed_assets.data").read()
        package_json = json.loads(tar.extractfile("package/package.json").read())
    ranges = byte_ranges(loader)
    out_dir.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name in WANTED:
        if name not in ranges:
            raise KeyError(f"{name} not listed in the loader table; listed: {sorted(ranges)}")
        start, end = ranges[name]
        if not 0 <= start < end <= len(data):
            raise ValueError(f"{name}: byte range [{start}, {end}) outside the {len(data)}-byte data file")
        digests[name] = write_model(out_dir, name, data[start:end], f"bytes [{start}, {end})")
    print(f"from {package_json['name']}@{package_json['version']} ({package_json['license']})")
    return digests


def extract_detection(tarball: pathlib.Path, out_dir: pathlib.Path) -> dict[str, str]:
    """Copy the DETECTION_WANTED models out of the ``@mediapipe/face_detection`` tarball into
    ``out_dir``; returns {name: sha256}."""
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
        package_json = json.loads(tar.extractfile("package/package.json").read())
        blobs = {}
        for name in DETECTION_WANTED:
            if f"package/{name}" not in names:
                raise KeyError(f"{name} not in {tarball}; it holds {sorted(n for n in names if n.endswith('.tflite'))}")
            blobs[name] = tar.extractfile(f"package/{name}").read()
    out_dir.mkdir(parents=True, exist_ok=True)
    digests = {name: write_model(out_dir, name, blob, f"{len(blob)} bytes of {tarball.name}")
               for name, blob in blobs.items()}
    print(f"from {package_json['name']}@{package_json['version']} ({package_json['license']})")
    return digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarball", type=pathlib.Path, help=f"an already downloaded {PACKAGE} npm tarball")
    parser.add_argument("--version", default=VERSION, help=f"{PACKAGE} version (default {VERSION})")
    parser.add_argument("--detection-tarball", type=pathlib.Path,
                        help=f"an already downloaded {DETECTION_PACKAGE} npm tarball")
    parser.add_argument("--detection-version", default=DETECTION_VERSION,
                        help=f"{DETECTION_PACKAGE} version (default {DETECTION_VERSION})")
    parser.add_argument("--out", type=pathlib.Path, default=ASSETS, help=f"output folder (default {ASSETS})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or npm_pack(args.version, pathlib.Path(tmp))
        extract(tarball, args.out)
        detection = args.detection_tarball or npm_pack(args.detection_version, pathlib.Path(tmp), DETECTION_PACKAGE)
        extract_detection(detection, args.out)


if __name__ == "__main__":
    main()
