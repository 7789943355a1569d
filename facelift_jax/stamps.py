"""Cache stamps: what decided a cached file's contents, kept beside it and compared on every reuse.

Preprocessing output (``multiview/plan.json``), the held-out test set (``test/settings.json``) and
the rendered training pool (a folder named by ``digest``) all go through here, so a changed config
never silently reuses stale pseudo-labels, renders or test images: it is refused with the keys
that differ, or (for what is cheap to redo) rebuilt.

A stamp is a JSON-able dict; it is compared after a JSON round trip (tuples become lists), so the
same config always gives the same stamp.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile

import numpy as np


def canonical(what: dict) -> dict:
    """``what`` as it reads back from JSON (tuples → lists, numpy scalars → numbers)."""
    return json.loads(json.dumps(what, sort_keys=True, default=_plain))


def _plain(x):
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


def digest(what: dict, *arrays: np.ndarray) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of ``what`` and the bytes of ``arrays``."""
    h = hashlib.sha256(json.dumps(canonical(what), sort_keys=True).encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


def read(path) -> dict | None:
    path = pathlib.Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write(path, what: dict) -> None:
    """Write the stamp atomically (temporary file in the same folder, then rename)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(canonical(what), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def differences(path, what: dict) -> list[str] | None:
    """Top-level keys whose values differ between the stamp at ``path`` and ``what``; None when
    there is no readable stamp."""
    old = read(path)
    if old is None:
        return None
    new = canonical(what)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def matches(path, what: dict) -> bool:
    return differences(path, what) == []


def check(path, what: dict, *, what_is_there: str, fix: str) -> None:
    """Refuse a stamp at ``path`` that differs from ``what`` (ValueError naming the keys); write
    ``what`` there when there is none yet."""
    diff = differences(path, what)
    if diff is None:
        write(path, what)
    elif diff:
        raise ValueError(f"{pathlib.Path(path).parent} holds {what_is_there} (differs in {diff}); {fix}")
