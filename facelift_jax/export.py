"""Export a trained FaceLift model for inference: parameters only (Orbax) + what rebuilds it.

    python -m facelift_jax.export --checkpoint WORKDIR_OR_CHECKPOINT_DIR --out EXPORT_DIR [--format onnx]

EXPORT_DIR layout::

    params/                 the trained nnx.Param state (Orbax, host numpy arrays; no optimizer state)
    metadata.json           format, model config, image size, template (98, 3), landmark definition,
                            source checkpoint and step, output frames, the StableHLO file's name
    inference.jax_export    (optional) ``jax.export`` serialization of images → outputs with the
                            parameters baked in: StableHLO for CPU and CUDA, symbolic batch size;
                            runs with ``load_stablehlo`` and jax alone, no facelift_jax model code
    inference.onnx          (optional, ``--format onnx``) the same function as an ONNX model
                            (opset 23, converted by jax2onnx), parameters baked in; runs in
                            onnxruntime (``load_onnx``) without jax. Symbolic batch "B":
                              input   images          uint8   (B, S, S, 3) RGB, S = image_size
                              outputs landmarks3d     float32 (B, 98, 3)
                                      landmarks2d     float32 (B, 98, 2)
                                      covariances     float32 (B, 98, 2, 2)
                                      rotation        float32 (B, 3, 3)
                                      translation     float32 (B, 3)
                                      euler_degrees   float32 (B, 3)
                            frames and units as in ``metadata.json["outputs"]``
                            (``model.OUTPUT_FRAMES``); the output order is ``ONNX_OUTPUTS``.
                            Needs the ``[onnx]`` extra (jax2onnx, onnx, onnxruntime).

``facelift_jax.predict.load(EXPORT_DIR)`` restores a ready ``Predictor``. All Orbax calls go
through ``facelift_jax.checkpointing`` (save_export / load_export / restore_params).

Where a checkpoint's pieces are found (``facelift_jax.workdir``): ``WORKDIR/checkpoints/<step>/``
(or the checkpoints folder itself), the config in ``WORKDIR/config.json`` (or ``--config``
.json/.py), the template in ``WORKDIR/data/multiview/template.npy`` (or ``--template``). The
outputs and their frames are the model's (``Prediction.outputs``, ``model.OUTPUT_FRAMES``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import pathlib
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from facelift_jax import checkpointing, config_check, logs
from facelift_jax import landmarks as lm
from facelift_jax import workdir as workdir_lib
from facelift_jax.cli import common
from facelift_jax.model import OUTPUT_FRAMES, build_model, efficientnet, input_size

log = logging.getLogger(__name__)

FORMAT = "facelift_jax.export/1"
STABLEHLO_FILE = "inference.jax_export"
ONNX_FILE = "inference.onnx"
ONNX_INPUT = "images"
ONNX_OUTPUTS = tuple(OUTPUT_FRAMES)  # landmarks3d, landmarks2d, covariances, rotation, translation, euler_degrees
ONNX_OPSET = 23


def landmark_definition() -> dict:
    """The WFLW-98 definition as JSON: regions, mirror permutation, 98→68 map, pupils."""
    return {
        "name": "WFLW-98",
        "num_landmarks": lm.NUM_LANDMARKS,
        "regions": {k: v.tolist() for k, v in lm.REGIONS_98.items()},
        "mirror": lm.MIRROR_98.tolist(),
        "to68": lm.WFLW98_TO_68.tolist(),
        "pupils": lm.PUPILS.tolist(),
    }


# ----------------------------------------------------------------------------------------------
# Rebuilding a model (where a checkpoint's config and template are: ``facelift_jax.workdir``)
# ----------------------------------------------------------------------------------------------

def model_config_of(config: ml_collections.ConfigDict) -> tuple[ml_collections.ConfigDict, int]:
    """(model section, input image size) of a full config or of an export's model section."""
    model = config.model if "model" in config else config
    return model, int(config.image_size) if "model" in config else input_size(model)


def _build(model_config, template, abstract: bool):
    make = lambda: build_model(model_config, template, rngs=nnx.Rngs(0))  # noqa: E731
    return nnx.eval_shape(make) if abstract else make()


def _fill(abstract_model, params: dict, template) -> nnx.Module:
    """An abstract model (eval_shape) + a params pure dict + the template → a concrete model."""
    graphdef, param_state, rest = nnx.split(abstract_model, nnx.Param, ...)
    param_state.replace_by_pure_dict(params)
    rest_pure = rest.to_pure_dict()
    if set(rest_pure) != {"template"}:
        raise ValueError(f"unexpected non-parameter model state {sorted(rest_pure)}; only 'template' is restorable")
    rest.replace_by_pure_dict({"template": jnp.asarray(template, jnp.float32)})
    return nnx.merge(graphdef, param_state, rest)


def model_from_checkpoint(path, *, step: int | None = None, config=None, template=None):
    """(model, metadata) restored from a training checkpoint (params only, optimizer state unread)."""
    workdir, ckpt_dir = workdir_lib.locate_checkpoint(path)
    if pathlib.Path(path).name.isdigit() and step is None:
        step = int(pathlib.Path(path).name)
    if config is None:
        config = workdir / workdir_lib.CONFIG_FILE
        if not config.is_file():
            raise FileNotFoundError(f"no {workdir_lib.CONFIG_FILE} in {workdir}; "
                                    "pass config= (a .json or configs/*.py file)")
    if not isinstance(config, ml_collections.ConfigDict):
        config = workdir_lib.load_config(config)
    if template is None:
        template = workdir_lib.template_path(workdir)
        if not template.is_file():
            raise FileNotFoundError(f"no template at {template}; pass template= (a (98, 3) .npy)")
    if not isinstance(template, np.ndarray):
        template = np.load(template)
    template = np.asarray(template, np.float32)
    model_config, image_size = model_config_of(config)
    abstract = _build(model_config, template, abstract=True)
    abstract_params = nnx.state(abstract, nnx.Param).to_pure_dict()
    step = step if step is not None else checkpointing.latest_step(ckpt_dir)
    params = checkpointing.restore_params(ckpt_dir, abstract_params, step=step)
    model = _fill(abstract, params, template)
    return model, make_metadata(model_config, image_size, template, source={"checkpoint": str(ckpt_dir), "step": step})


def make_metadata(model_config, image_size: int, template, source: dict | None = None) -> dict:
    cfg = model_config.to_dict() if isinstance(model_config, ml_collections.ConfigDict) else dict(model_config)
    return {
        "format": FORMAT,
        "model": json.loads(json.dumps(cfg)),  # tuples → lists
        "image_size": int(image_size),
        "template": np.asarray(template, np.float32).astype(np.float64).tolist(),  # exact float32 values
        "landmarks": landmark_definition(),
        "outputs": OUTPUT_FRAMES,
        "source": source or {},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "jax_version": jax.__version__,
    }


# ----------------------------------------------------------------------------------------------
# Export and load
# ----------------------------------------------------------------------------------------------

def inference_function(model):
    """images (B, S, S, 3) uint8 → dict of the outputs documented in ``model.OUTPUT_FRAMES``."""

    def f(images):
        return model(images).outputs()

    return f


def export_stablehlo(model, image_size: int, path, platforms=("cpu", "cuda")) -> tuple[str, ...]:
    """Serialize the inference function (parameters baked in, symbolic batch) with ``jax.export``
    to ``path``; returns the platforms it was lowered for."""
    (b,) = jax.export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((b, image_size, image_size, 3), jnp.uint8)
    fn = jax.jit(inference_function(model))
    try:
        exported = jax.export.export(fn, platforms=tuple(platforms))(spec)
    except Exception as e:  # noqa: BLE001 - a platform may lack lowering rules here; CPU always works
        log.warning("StableHLO export for %s failed (%s); exporting for cpu only", platforms, e)
        exported = jax.export.export(fn, platforms=("cpu",))(spec)
    pathlib.Path(path).write_bytes(exported.serialize())
    return tuple(exported.platforms)


def load_stablehlo(path):
    """A callable images (B, S, S, 3) uint8 → outputs dict, from ``inference.jax_export`` alone."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / STABLEHLO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no serialized inference function at {path}")
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    return exported.call


def _jax2onnx():
    try:
        from jax2onnx import to_onnx
    except ImportError as e:
        raise ImportError("ONNX export needs jax2onnx, onnx and onnxruntime: pip install 'facelift-jax[onnx]' "
                          "&& pip install --no-deps jax2onnx==0.17.1") from e
    return to_onnx


def export_onnx(model, image_size: int, path, *, depthwise: str = "grouped") -> pathlib.Path:
    """Convert the inference function (parameters baked in) to ONNX with jax2onnx and write ``path``.

    Input ``images``: uint8 (B, image_size, image_size, 3) RGB with a symbolic batch "B"; outputs
    named and ordered as ``ONNX_OUTPUTS`` (the ``OUTPUT_FRAMES`` entries, float32); all standard
    ONNX ops. ``depthwise``: how EfficientNet's depthwise convolutions are written into the graph:
    "grouped" (default: one grouped ``Conv`` each; the same numbers as the shifted sums XLA:CPU
    runs, tests/test_onnx_export.py, and in onnxruntime 3.9× the batched throughput of "shift",
    whose k² slices become ~1000 Slice/Mul/Add nodes; conversion 2 s instead of 17 s), "shift" or
    "auto" (what the current jax backend would run).
    """
    to_onnx = _jax2onnx()
    # A copy built for the graph form ONNX wants: the caller's model and every other trace keep theirs.
    infer = inference_function(efficientnet.with_depthwise_impl(model, depthwise))

    def fn(images):
        out = infer(images)
        return tuple(out[k] for k in ONNX_OUTPUTS)

    (b,) = jax.export.symbolic_shape("B")
    spec = jax.ShapeDtypeStruct((b, image_size, image_size, 3), jnp.uint8)
    # jax2onnx imports its optional example plugins (equinox, dm_pix) and logs each one missing,
    # and onnx_ir warns about untyped shape constants: noise for this model, kept out of the log.
    quiet = [logging.getLogger(n) for n in ("jax2onnx", "onnx_ir")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        proto = to_onnx(fn, [spec], model_name="facelift", opset=ONNX_OPSET, input_names=[ONNX_INPUT],
                        output_names=list(ONNX_OUTPUTS))
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    path = pathlib.Path(path)
    path.write_bytes(proto.SerializeToString())
    return path


def load_onnx(path, providers=("CPUExecutionProvider",)):
    """A callable images (B, S, S, 3) uint8 → outputs dict (numpy), from ``inference.onnx`` alone
    (an export directory or the file), run by onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("running the ONNX export needs onnxruntime: pip install 'facelift-jax[onnx]'") from e
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / ONNX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX model at {path}; export with python -m facelift_jax.export --format onnx")
    session = ort.InferenceSession(str(path), providers=list(providers))
    names = [o.name for o in session.get_outputs()]

    def run(images):
        return dict(zip(names, session.run(names, {ONNX_INPUT: np.asarray(images, np.uint8)})))

    run.session = session
    return run


def save_model(model, out_dir, *, image_size: int, metadata: dict | None = None, stablehlo: bool = True,
               onnx: bool = False) -> pathlib.Path:
    """Write an export of a live model (params via Orbax, metadata, optional StableHLO and ONNX)."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if metadata is None or "model" not in metadata:
        raise ValueError("save_model needs metadata from make_metadata(model_config, image_size, template)")
    # The template is model state, not a parameter: it travels in the metadata.
    template = np.asarray(model.template[...], np.float32).astype(np.float64)
    metadata = dict(metadata, image_size=int(image_size), template=template.tolist())
    if stablehlo:
        platforms = export_stablehlo(model, image_size, out_dir / STABLEHLO_FILE)
        metadata["stablehlo"] = STABLEHLO_FILE
        metadata["stablehlo_platforms"] = list(platforms)
    else:
        (out_dir / STABLEHLO_FILE).unlink(missing_ok=True)
        metadata["stablehlo"] = None
    if onnx:
        export_onnx(model, image_size, out_dir / ONNX_FILE)
        metadata["onnx"] = {"file": ONNX_FILE, "opset": ONNX_OPSET, "input": ONNX_INPUT,
                            "outputs": list(ONNX_OUTPUTS), "depthwise": "grouped"}
    else:
        (out_dir / ONNX_FILE).unlink(missing_ok=True)
        metadata["onnx"] = None
    params = nnx.state(model, nnx.Param).to_pure_dict()
    return checkpointing.save_export(out_dir, params, metadata)


def export_model(workdir_or_checkpoint, out_dir, *, step: int | None = None, config=None, template=None,
                 stablehlo: bool = True, onnx: bool = False) -> pathlib.Path:
    """Export a training checkpoint (newest unless ``step``) to ``out_dir``; returns out_dir."""
    model, metadata = model_from_checkpoint(workdir_or_checkpoint, step=step, config=config, template=template)
    return save_model(model, out_dir, image_size=metadata["image_size"], metadata=metadata, stablehlo=stablehlo,
                      onnx=onnx)


def load_model(directory):
    """(model, metadata) from an export directory: rebuilds the architecture from the metadata and
    restores the parameters in its structure."""
    directory = pathlib.Path(directory)
    meta_path = directory / checkpointing.EXPORT_METADATA
    if not meta_path.is_file():
        raise FileNotFoundError(f"{directory} is not a FaceLift export (no {checkpointing.EXPORT_METADATA})")
    metadata = json.loads(meta_path.read_text())
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format {metadata.get('format')!r} is not {FORMAT!r}")
    template = np.asarray(metadata["template"], np.float32)
    abstract = _build(ml_collections.ConfigDict(metadata["model"]), template, abstract=True)
    abstract_params = nnx.state(abstract, nnx.Param).to_pure_dict()
    params, metadata = checkpointing.load_export(directory, abstract_params=abstract_params)
    return _fill(abstract, params, template), metadata


@logs.main_guard
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m facelift_jax.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="training workdir, its checkpoints/ folder, or a <step>/ folder")
    p.add_argument("--out", required=True, help="export directory to write")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--config", default=None, help="config .json or configs/*.py[:arg] (default: WORKDIR/config.json); "
                   "--config.x=v overrides a field")
    p.add_argument("--template", default=None, help="(98, 3) .npy (default: WORKDIR/data/multiview/template.npy)")
    p.add_argument("--no-stablehlo", action="store_true", help="skip the jax.export inference function")
    p.add_argument("--format", action="append", choices=["onnx"], default=[],
                   help="also write this format beside the Orbax params and StableHLO: 'onnx' writes "
                   f"{ONNX_FILE} (needs the [onnx] extra); repeatable")
    logs.add_verbosity(p)
    args, assignments = common.parse(p, argv)
    with logs.session("export", args.verbosity) as session:
        return _run(args, assignments, session)


def _run(args, assignments: list[str], session) -> int:
    """The command after parsing: inputs and config resolved and checked first, then the export."""
    with logs.user_input("--checkpoint", args.checkpoint):
        workdir, ckpt_dir = workdir_lib.locate_checkpoint(args.checkpoint)
    if args.step is not None and not (ckpt_dir / str(args.step)).is_dir():
        steps = sorted(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
        raise config_check.input_error("--step", args.step, f"no such checkpoint in {ckpt_dir}; steps there: {steps}")
    config = common.resolve_config(args.config, assignments, workdir / workdir_lib.CONFIG_FILE,
                                   fallback_required=True)
    common.check(config, "export", args)
    template = args.template
    if template is not None and not pathlib.Path(template).is_file():
        raise config_check.input_error("--template", template, "no such file; give a (98, 3) .npy")
    if template is None and not workdir_lib.template_path(workdir).is_file():
        raise config_check.input_error("--checkpoint", args.checkpoint, f"no template at "
                                       f"{workdir_lib.template_path(workdir)}; pass --template (a (98, 3) .npy)")
    session.log_to(workdir)
    out = export_model(args.checkpoint, args.out, step=args.step, config=config, template=template,
                       stablehlo=not args.no_stablehlo, onnx="onnx" in args.format)
    meta = json.loads((out / checkpointing.EXPORT_METADATA).read_text())
    print(f"exported step {meta['source'].get('step')} of {meta['source'].get('checkpoint')} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
