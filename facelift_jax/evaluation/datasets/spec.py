"""The one parser of an evaluation-set spec (``config.eval.data``, ``evaluate --data``).

    "synthetic" | "synthetic:N"      the held-out synthetic set, first N images
    "dad3dheads:PATH"                DAD-3DHeads subset folder or its <subset>.json
    "multiface:PATH"                 one Multiface capture folder
    "annotated" | "annotated:DIR"    hand-annotated photos (.pts / .ljson, 68 points); without DIR the
                                     photos ``make`` installs (datasets/annotated.py ``default_folder``)

Kinds are case-insensitive and ignore ``-`` and ``_`` ("DAD-3DHeads", "dad_3dheads").
"""

from __future__ import annotations

KINDS = ("synthetic", "dad3dheads", "multiface", "annotated")
USAGE = "'synthetic[:N]', 'dad3dheads:PATH', 'multiface:PATH' or 'annotated[:DIR]'"
_NEEDS_PATH = ("dad3dheads", "multiface")


def parse(spec) -> tuple[str, str]:
    """(kind, argument) of ``spec``; ValueError saying what is wrong (the caller names the field)."""
    kind, _, arg = str(spec).partition(":")
    kind = kind.lower().replace("-", "").replace("_", "")
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; use {USAGE}")
    if kind == "synthetic" and arg and not arg.isdigit():
        raise ValueError("'synthetic:N' needs an integer N")
    if kind in _NEEDS_PATH and not arg:
        raise ValueError(f"needs a path: {kind}:PATH")
    return kind, arg


def has_path(kind: str) -> bool:
    """Whether the kind reads files named by its argument (checked to exist before evaluating)."""
    return kind != "synthetic"
