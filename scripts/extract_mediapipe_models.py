"""Extract MediaPipe's face detector and face landmark models from the npm package.

How ``bridges/assets/face_detection_short_range.tflite`` and ``bridges/assets/face_landmark.tflite``
were obtained (and how to obtain them again):

    python scripts/extract_mediapipe_models.py                 # runs `npm pack @mediapipe/face_mesh@VERSION`
    python scripts/extract_mediapipe_models.py --tarball mediapipe-face_mesh-0.4.1657299874.tgz

The npm package ``@mediapipe/face_mesh`` (Apache-2.0) ships its models concatenated in
``face_mesh_solution_packed_assets.data``; ``face_mesh_solution_packed_assets_loader.js`` lists each
file's byte range (``{"filename": ..., "start": ..., "end": ...}``). This script reads that table,
cuts the two models out, checks that each is a TFLite flatbuffer (file identifier ``TFL3`` at byte 4)
and writes them with their SHA-256 next to ``bridges/assets/NOTICE``.
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
ASSETS = pathlib.Path(__file__).resolve().parents[1] / "bridges" / "assets"


def npm_pack(version: str, workdir: pathlib.Path) -> pathlib.Path:
    """Download the package tarball with npm (the only network access) into ``workdir``."""
    out = subprocess.run(["npm", "pack", f"{PACKAGE}@{version}"], cwd=workdir, check=True,
                         capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return workdir / out


def byte_ranges(loader_js: str) -> dict[str, tuple[int, int]]:
    """{basename: (start, end)} from the ``loadPackage({"files": [...]})`` call of the loader."""
    match = re.search(r'loadPackage\((\{"files".*?\})\);', loader_js, flags=re.S)
    if match is None:
        raise ValueError("face_mesh_solution_packed_assets_loader.js: no loadPackage({...}) table found")
    table = json.loads(match.group(1))
    return {pathlib.PurePosixPath(f["filename"]).name: (int(f["start"]), int(f["end"])) for f in table["files"]}


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
        blob = data[start:end]
        if blob[4:8] != b"TFL3":
            raise ValueError(f"{name}: bytes [{start}, {end}) are not a TFLite flatbuffer (no TFL3 identifier)")
        (out_dir / name).write_bytes(blob)
        digests[name] = hashlib.sha256(blob).hexdigest()
        print(f"{name}: bytes [{start}, {end}) -> {out_dir / name} sha256 {digests[name]}")
    print(f"from {package_json['name']}@{package_json['version']} ({package_json['license']})")
    return digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tarball", type=pathlib.Path, help="an already downloaded npm tarball")
    parser.add_argument("--version", default=VERSION, help=f"npm package version (default {VERSION})")
    parser.add_argument("--out", type=pathlib.Path, default=ASSETS, help=f"output folder (default {ASSETS})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tarball = args.tarball or npm_pack(args.version, pathlib.Path(tmp))
        extract(tarball, args.out)


if __name__ == "__main__":
    main()
