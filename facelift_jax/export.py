"""Export a trained FaceLift model for inference: parameters only (Orbax) + what rebuilds it.

    python -m facelift_jax.export --checkpoint WORKDIR_OR_CHECKPOINT_DIR --out EXPORT_DIR

EXPORT_DIR layout::

    params/                 the trained nnx.Param state (Orbax, host numpy arrays; no optimizer state)
    metadata.json           format, model config, image size, template (98, 3), landmark definition,
                            source checkpoint and step, output frames, the StableHLO file's name
    inference.jax_export    (optional) ``jax.export`` serialization of images → outputs with the
                            parameters baked in: StableHLO for CPU and CUDA, symbolic batch size;
                            runs with ``load_stablehlo`` and jax alone, no facelift_jax model code

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

from facelift_jax import checkpointing
from facelift_jax import landmarks as lm
from facelift_jax import workdir as workdir_lib
from facelift_jax.model import OUTPUT_FRAMES, build_model

log = logging.getLogger(__name__)

FORMAT = "facelift_jax.export/1"
STABLEHLO_FILE = "inference.jax_export"


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
    size = int(config.get("image_size", 0) or model.get("vit", {}).get("image_size", 224))
    return model, size


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


def save_model(model, out_dir, *, image_size: int, metadata: dict | None = None, stablehlo: bool = True) -> pathlib.Path:
    """Write an export of a live model (params via Orbax, metadata, optional StableHLO)."""
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
    params = nnx.state(model, nnx.Param).to_pure_dict()
    return checkpointing.save_export(out_dir, params, metadata)


def export_model(workdir_or_checkpoint, out_dir, *, step: int | None = None, config=None, template=None,
                 stablehlo: bool = True) -> pathlib.Path:
    """Export a training checkpoint (newest unless ``step``) to ``out_dir``; returns out_dir."""
    model, metadata = model_from_checkpoint(workdir_or_checkpoint, step=step, config=config, template=template)
    return save_model(model, out_dir, image_size=metadata["image_size"], metadata=metadata, stablehlo=stablehlo)


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m facelift_jax.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="training workdir, its checkpoints/ folder, or a <step>/ folder")
    p.add_argument("--out", required=True, help="export directory to write")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
    p.add_argument("--config", default=None, help="config .json or configs/*.py[:arg] (default: WORKDIR/config.json); "
                   "--config.x=v overrides a field")
    p.add_argument("--template", default=None, help="(98, 3) .npy (default: WORKDIR/data/multiview/template.npy)")
    p.add_argument("--no-stablehlo", action="store_true", help="skip the jax.export inference function")
    argv, assignments = workdir_lib.split_overrides(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    config = args.config
    if assignments:
        config = workdir_lib.load_config(
            config or workdir_lib.locate_checkpoint(args.checkpoint)[0] / workdir_lib.CONFIG_FILE)
        workdir_lib.override(config, assignments)
    out = export_model(args.checkpoint, args.out, step=args.step, config=config, template=args.template,
                       stablehlo=not args.no_stablehlo)
    meta = json.loads((out / checkpointing.EXPORT_METADATA).read_text())
    print(f"exported step {meta['source'].get('step')} of {meta['source'].get('checkpoint')} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
