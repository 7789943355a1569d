"""Evaluate a FaceLift model on a test set: NME / NMLC per region and category (paper Tables 1-2).

    python -m facelift_jax.evaluate --checkpoint DIR [--data SPEC] [--out OUT_DIR]

DIR: an export (``metadata.json`` + ``params/``), a training workdir, its ``checkpoints/`` folder
or one ``<step>/`` folder. SPEC (``evaluation.datasets.load``): ``synthetic`` (default: the
held-out synthetic set of the config; ``synthetic:N`` the first N), ``dad3dheads:PATH``,
``multiface:PATH``, ``annotated[:DIR]`` (hand-annotated 68-point photos, ``.pts`` / ``.ljson``; without
DIR the ones ``make`` installs). OUT_DIR defaults to ``<export or workdir>/eval/<dataset kind>``.

The held-out synthetic set goes through the training loop's own evaluator
(``evaluation.evaluator.Evaluator``: the same code, so the same tables as training's
``eval/categories``): OUT_DIR receives ``results.md`` / ``results.json`` with NME, NMLC, 3D and
pose error per region and per pose category for the model and both baselines (template with the
true pose; 2D detector + PnP template fit). The set is cached under the workdir's ``data/test``
(an export inside a workdir, ``<workdir>/export``, uses it and the workdir's config too; else
``OUT_DIR/test``). ``--points 68`` on it, and the real-photo sets, go through the per-image path
(the same scorer, ``evaluation.scoring``); OUT_DIR receives

* ``results.md``  — the table (rows NMLC and, when the set has a landmark definition, NME;
  columns full, contours, brows, nose, eyes, mouth, then pose / expression / occlusions classes),
  plus one table per other category attribute;
* ``results.json`` — the same numbers, the NMLC vertex assignment K, 3D and pose errors when the
  set has 3D truth (synthetic);
* ``per_image.csv`` — one row per image: name, categories, NMLC, NME, predicted yaw/pitch/roll, …;
* ``examples.png`` — the best and worst images (by per-image NMLC, else NME) with ground truth
  (green) and predictions (red) overlaid.

The annotated photos are fed to the model as ``predict`` feeds a photo (the MediaPipe bridge's
face box, ``config.predict.crop_scale``), and the bridge's own landmarks on the same face are a
baseline row ("MediaPipe face mesh (its crop)", blue in ``examples.png``, ``baseline_nme`` in the
CSV), scored by the same scorer.

Landmarks: predictions have 98 WFLW points; on 68-point sets (DAD-3DHeads, Multiface) the 68
subset (landmarks.to68) is scored, as in the paper. All errors ×100 of sqrt(w·h) of the set's
face box.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

import numpy as np
from flax import nnx

from facelift_jax import config_check, logs
from facelift_jax import workdir as workdir_lib
from facelift_jax.cli import common
from facelift_jax.evaluation.datasets import spec as data_spec
from facelift_jax.evaluation.evaluator import Evaluator
from facelift_jax.evaluation.report import (BASELINE_NAME, TABLE_CATEGORIES, evaluate, load_model, load_predictor,
                                            markdown_table, plot_examples, ranking, run_predictions, score,
                                            score_baseline, write_csv)
from facelift_jax.inference.predictor import Predictor

__all__ = ["BASELINE_NAME", "TABLE_CATEGORIES", "evaluate", "evaluate_heldout", "load_model", "load_predictor",
           "main", "markdown_table", "plot_examples", "ranking", "run_predictions", "score", "score_baseline",
           "write_csv"]


# ----------------------------------------------------------------------------------------------
# The held-out synthetic set (the training loop's evaluator); the per-image path and its tables
# live in evaluation.report, re-exported here for the command line and the library's users
# ----------------------------------------------------------------------------------------------

def evaluate_heldout(model, out_dir, *, config, data_dir=None, limit: int = 0, batch_size: int | None = None) -> dict:
    """The held-out synthetic set through the training loop's evaluator (``evaluation.evaluator``):
    ``results.md`` / ``results.json`` in ``out_dir``, the same tables as training's
    ``eval/categories``. The set is cached under ``data_dir/test`` (default ``out_dir/test``).
    Returns the scores (model and both baselines per part) and ``files``."""
    out_dir = pathlib.Path(out_dir)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    evaluator = Evaluator(config, data_dir if data_dir is not None else out_dir, graphdef, batch_size=batch_size,
                          template=np.asarray(model.template[...]), limit=limit)
    results = evaluator.run(params, rest)
    results.pop("predictions")
    return {**results, "files": evaluator.write_tables(results, out_dir)}


# Config fields that a flag of this command sets (the flag wins over the config and --config.x=v).
FLAGS = {"eval.data": "--data", "eval.limit": "--limit", "eval.crop_scale": "--crop-scale",
         "eval.batch_size": "--batch-size", "eval.dad3dheads.landmark_embedding": "--landmark-embedding",
         **{f"eval.multiface.{key}": "--" + key.replace("_", "-")
            for key in ("sequences", "cameras", "frame_step", "landmark_vertices", "face_vertices")}}


@logs.main_guard
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facelift_jax.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="export dir, training workdir, checkpoints/ or <step>/")
    p.add_argument("--data", default=None, help="synthetic[:N] | dad3dheads:PATH | multiface:PATH | annotated[:DIR] "
                   "(default: config.eval.data)")
    p.add_argument("--out", default=None, help="output directory (default: <export or workdir>/eval/<data kind>)")
    p.add_argument("--config", default=None, help="config .py[:arg]/.json (default: the workdir's config.json, also "
                   "for <workdir>/export, else facelift_jax.config); --config.eval.x=v overrides a field")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--crop-scale", type=float, default=None, help="real data: crop side / face box side")
    p.add_argument("--landmark-embedding", default=None, help="DAD-3DHeads: FLAME 68-landmark embedding .npz (→ NME)")
    p.add_argument("--sequences", nargs="*", default=None, help="Multiface: sequences to use")
    p.add_argument("--cameras", nargs="*", default=None, help="Multiface: cameras to use")
    p.add_argument("--frame-step", type=int, default=None, help="Multiface: every n-th frame")
    p.add_argument("--landmark-vertices", default=None, help="Multiface: vertex indices of the landmarks (→ NME)")
    p.add_argument("--face-vertices", default=None, help="Multiface: vertex indices of the face (box)")
    p.add_argument("--name", default="Ours", help="model name in the table")
    p.add_argument("--points", type=int, choices=(98, 68), default=None,
                   help="landmarks in the table (default: the set's; 68 on the synthetic set = the 68 subset)")
    p.add_argument("--no-progress", action="store_true")
    logs.add_verbosity(p)
    args, assignments = common.parse(p, argv)
    with logs.session("evaluate", args.verbosity) as session:
        return _run(args, assignments, session)


def _run(args, assignments: list[str], session) -> int:
    """The command after parsing: inputs and config resolved and checked first, then the work."""
    ckpt = pathlib.Path(args.checkpoint)
    if not ckpt.exists():
        raise config_check.input_error("--checkpoint", str(ckpt), "no such folder; give an export, a training "
                                       "workdir, its checkpoints/ or one <step>/ folder")
    workdir = None
    if not (ckpt / "metadata.json").is_file():
        with logs.user_input("--checkpoint", str(ckpt)):
            workdir, _ = workdir_lib.locate_checkpoint(ckpt)
    # A training workdir's data/ and config.json serve its export (<workdir>/export) too.
    home = workdir if workdir is not None else ckpt.resolve().parent
    config = common.resolve_config(args.config, assignments, home / workdir_lib.CONFIG_FILE)
    common.set_from_flags(config, args, FLAGS)
    common.check(config, "evaluate", args, FLAGS)
    ev = config.eval
    spec = ev.data
    data_dir = home / "data" if (home / "data").is_dir() else None
    # Default output: beside the export, or in the training workdir (never inside Orbax's step folders).
    kind, arg = data_spec.parse(spec)  # checked by config_check above
    out = pathlib.Path(args.out) if args.out else (workdir or ckpt) / "eval" / kind
    session.log_to(workdir or (home if (home / workdir_lib.CONFIG_FILE).is_file() else out))
    model, metadata, _, _ = load_model(ckpt, config=config if workdir is not None else None)
    if kind == "synthetic" and args.points in (None, 98):
        limit = int(arg or ev.limit)  # an integer: config_check
        summary = evaluate_heldout(model, out, config=config, data_dir=data_dir, limit=limit,
                                   batch_size=args.batch_size)
    else:
        predictor = Predictor(model, image_size=metadata["image_size"], batch_size=args.batch_size or 16,
                              metadata=metadata)
        summary = evaluate(predictor, spec, out, config=config, data_dir=data_dir, batch_size=args.batch_size,
                           model_name=args.name, progress=not args.no_progress, num_points=args.points)
    print((out / "results.md").read_text())
    print(f"written: {', '.join(summary['files'].values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
