"""Cache stamps: what decided a cached file's contents, kept beside it and compared on every reuse.

Preprocessing output (``multiview/plan.json``), the held-out test set (``test/settings.json``) and
the rendered training pool (a folder named by ``digest``) all go through here, so a changed config
never silently reuses stale pseudo-labels, renders or test images: it is refused with the keys
that differ, or (for what is cheap to redo) rebuilt.

A seal (``seal`` / ``seal_status``) is a stamp for one finished file: its size, SHA-256 and the
stamp of what made it, written beside it after the file itself. A file without a seal is
unfinished; one whose bytes or stamp no longer match its seal (truncated, corrupt, overwritten by
another run's file) is redone, never loaded.

A stamp is a JSON-able dict; it is compared after a JSON round trip (tuples become lists), so the
same config always gives the same stamp.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np

from facelift_jax import io as fio


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
    """Write the stamp atomically (``io.atomic_write``)."""
    fio.atomic_write(path, json.dumps(canonical(what), indent=2, sort_keys=True) + "\n")


def differences(path, what: dict) -> list[str] | None:
    """Top-level keys whose values differ between the stamp at ``path`` and ``what``; None when
    there is no readable stamp."""
    old = read(path)
    return None if old is None else _keys_differing(old, what)


def matches(path, what: dict) -> bool:
    return differences(path, what) == []


class StampMismatchError(ValueError):
    """A cache on disk was made with another plan than the one asked for (the message says how to fix it)."""


def check(path, what: dict, *, what_is_there: str, fix: str) -> None:
    """Refuse a stamp at ``path`` that differs from ``what`` (ValueError naming the keys); write
    ``what`` there when there is none yet."""
    diff = differences(path, what)
    if diff is None:
        write(path, what)
    elif diff:
        raise StampMismatchError(f"{pathlib.Path(path).parent} holds {what_is_there} (differs in {diff}); {fix}")


# ---------------------------------------------------------------------------------------- seals


def seal_path(path) -> pathlib.Path:
    """Where the seal of ``path`` lives: ``name.npz`` → ``name.seal.json`` in the same folder."""
    path = pathlib.Path(path)
    return path.with_name(path.stem + ".seal.json")


def file_sha256(path) -> str:
    """Hex SHA-256 of the file's bytes (read in 1 MiB blocks: chunk files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seal(path, what: dict) -> None:
    """Record that the finished file ``path`` is complete and was made by ``what``: size, SHA-256
    and ``what`` go (atomically) to ``seal_path(path)``. Call it after ``path`` is in place."""
    path = pathlib.Path(path)
    write(seal_path(path), dict(bytes=path.stat().st_size, sha256=file_sha256(path), made_by=canonical(what)))


MISSING, SEALED, BAD = "missing", "sealed", "bad"


def seal_status(path, what: dict) -> tuple[str, str]:
    """(status, why) of the file ``path`` against its seal and the stamp ``what``:

    ``SEALED``: complete, same bytes as when sealed, made by ``what``; safe to load.
    ``MISSING``: no file or no seal yet (unfinished, or still being written by another process).
    ``BAD``: the seal is unreadable, or the size, checksum or stamp differ (``why`` says which):
    the file must be redone, not loaded.
    """
    path, sp = pathlib.Path(path), seal_path(path)
    if not path.exists() or not sp.exists():
        return MISSING, f"{path.name} or its seal is not there yet"
    got = read(sp)
    if not isinstance(got, dict) or not {"bytes", "sha256", "made_by"} <= set(got):
        return BAD, f"the seal {sp.name} is unreadable"
    if got["made_by"] != canonical(what):
        return BAD, f"{path.name} was made by another plan (differs in {_keys_differing(got['made_by'], what)})"
    try:
        size = path.stat().st_size
        if size != got["bytes"]:
            return BAD, f"{path.name} has {size} bytes, its seal says {got['bytes']} (truncated or overwritten)"
        if file_sha256(path) != got["sha256"]:
            return BAD, f"{path.name} does not match the SHA-256 of its seal (corrupt or overwritten)"
    except OSError as e:  # vanished or unreadable between the checks
        return MISSING, f"{path.name} could not be read ({e})"
    return SEALED, ""


def _keys_differing(old, what: dict) -> list[str]:
    """Top-level keys whose values differ between a read stamp ``old`` and ``what`` (all of
    ``what``'s when ``old`` is not a dict)."""
    new = canonical(what)
    if not isinstance(old, dict):
        return sorted(new)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
