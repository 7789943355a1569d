"""Evaluation sets: the held-out synthetic set and readers for DAD-3DHeads and Multiface.

``load(spec, config, data_dir=None) -> EvalSet`` where spec is
  "synthetic" or "synthetic:N"      the held-out synthetic set (config.eval), first N images;
  "dad3dheads:PATH"                 DAD-3DHeads ``<subset>`` folder or its ``<subset>.json``;
  "multiface:PATH"                  one Multiface capture folder (``m--…--GHS``).
Reader options come from ``config.eval`` (crop_scale, limit, dad3dheads.landmark_embedding,
multiface.sequences / cameras / frame_step / face_vertices / landmark_vertices).
"""

from __future__ import annotations

from facelift_jax.evaluation.datasets.base import DatasetFormatError, EvalSample, EvalSet, read_image_rgb

__all__ = ["DatasetFormatError", "EvalSample", "EvalSet", "load", "read_image_rgb"]


def load(spec: str, config, data_dir=None) -> EvalSet:
    """The evaluation set named by ``spec`` (see module doc)."""
    kind, _, arg = str(spec).partition(":")
    kind = kind.lower().replace("-", "").replace("_", "")
    ev = config.eval
    limit = int(ev.limit)
    crop_scale = float(ev.crop_scale)
    if kind == "synthetic":
        if arg:
            try:
                limit = int(arg)
            except ValueError as e:
                raise ValueError(f"data spec {spec!r}: 'synthetic:N' needs an integer N") from e
        from facelift_jax.evaluation.datasets.synthetic import SyntheticTestSet

        return SyntheticTestSet(config, data_dir=data_dir, limit=limit)
    if not arg:
        raise ValueError(f"data spec {spec!r} needs a path: {kind}:PATH")
    if kind == "dad3dheads":
        from facelift_jax.evaluation.datasets.dad3dheads import DAD3DHeads

        opts = ev.dad3dheads
        return DAD3DHeads(arg, landmark_embedding=opts.landmark_embedding or None, crop_scale=crop_scale,
                          limit=limit)
    if kind == "multiface":
        from facelift_jax.evaluation.datasets.multiface import Multiface

        opts = ev.multiface
        return Multiface(arg, sequences=list(opts.sequences) or None,
                         cameras=list(opts.cameras) or None, frame_step=int(opts.frame_step),
                         limit=limit, face_vertices=opts.face_vertices or None,
                         landmark_vertices=opts.landmark_vertices or None, crop_scale=crop_scale)
    raise ValueError(f"unknown data spec {spec!r}; use one of: synthetic[:N], dad3dheads:PATH, multiface:PATH")
