"""Evaluation sets: the held-out synthetic set and readers for DAD-3DHeads and Multiface.

``load(spec, config, data_dir=None) -> EvalSet`` where spec is
  "synthetic" or "synthetic:N"      the held-out synthetic set (config.eval), first N images;
  "dad3dheads:PATH"                 DAD-3DHeads ``<subset>`` folder or its ``<subset>.json``;
  "multiface:PATH"                  one Multiface capture folder (``m--…--GHS``);
  "annotated[:DIR]"                 hand-annotated photos (.pts/.ljson, 68 points; annotated.py), fed as
                                    predict feeds them (the MediaPipe bridge's face box,
                                    ``config.predict.crop_scale``), the bridge's own points as a baseline.
The spec is parsed in one place (``spec.parse``).
Reader options come from ``config.eval`` (crop_scale, limit, dad3dheads.landmark_embedding,
multiface.sequences / cameras / frame_step / face_vertices / landmark_vertices).
"""

from __future__ import annotations

from facelift_jax.evaluation.datasets import spec as data_spec
from facelift_jax.evaluation.datasets.base import DatasetFormatError, EvalSample, EvalSet, read_image_rgb

__all__ = ["DatasetFormatError", "EvalSample", "EvalSet", "load", "read_image_rgb"]


def load(spec: str, config, data_dir=None) -> EvalSet:
    """The evaluation set named by ``spec`` (see module doc)."""
    try:
        kind, arg = data_spec.parse(spec)
    except ValueError as e:
        raise ValueError(f"data spec {spec!r}: {e}") from None
    ev = config.eval
    limit = int(ev.limit)
    crop_scale = float(ev.crop_scale)
    if kind == "synthetic":
        from facelift_jax.evaluation.datasets.synthetic import SyntheticTestSet

        return SyntheticTestSet(config, data_dir=data_dir, limit=int(arg) if arg else limit)
    if kind == "annotated":
        from facelift_jax.evaluation.datasets import annotated

        return annotated.AnnotatedPhotos(arg or annotated.default_folder(),
                                         crop_scale=float(predict_section(config).crop_scale), detect=face_detector(),
                                         limit=limit)
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
    raise AssertionError(kind)  # spec.parse knows no other kind


def predict_section(config):
    """``config.predict``, or the default one for a config written before it existed."""
    if "predict" in config:
        return config.predict
    from facelift_jax.config import predict_config

    return predict_config()


def face_detector():
    """``MediaPipeDetector().detect`` (every face), the detector predict crops with."""
    try:
        from bridges.mediapipe import MediaPipeDetector  # optional [bridges] extra
    except ImportError as e:
        raise RuntimeError("the annotated-photo set is fed as predict feeds a photo, through the MediaPipe bridge's "
                           f"face box: install the [bridges] extra (ai-edge-litert): {e}") from e
    return MediaPipeDetector().detect
