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
import csv
import json
import logging
import pathlib
import sys
from collections.abc import Sequence

import numpy as np
from flax import nnx
from tqdm import tqdm

from facelift_jax import config_check, export, logs
from facelift_jax.cli import common
from facelift_jax import landmarks as lm
from facelift_jax import metrics
from facelift_jax import workdir as workdir_lib
from facelift_jax.evaluation import scoring
from facelift_jax.evaluation.datasets import DatasetFormatError, EvalSet
from facelift_jax.evaluation.datasets import load as load_dataset
from facelift_jax.evaluation.datasets import spec as data_spec
from facelift_jax.evaluation.evaluator import Evaluator
from facelift_jax.predict import PredictionResult, Predictor, whole_image_box

log = logging.getLogger(__name__)

TABLE_CATEGORIES = {"pose": ("front", "sided", "atypical"), "expression": ("True", "False"),
                    "occlusions": ("True", "False")}


# ----------------------------------------------------------------------------------------------
# Resolving the model and the data
# ----------------------------------------------------------------------------------------------

def load_model(path, *, config=None):
    """(nnx model, metadata, config or None, workdir or None) from an export dir or a training checkpoint."""
    path = pathlib.Path(path)
    if (path / "metadata.json").is_file():
        model, metadata = export.load_model(path)
        return model, metadata, config, None
    workdir, _ = workdir_lib.locate_checkpoint(path)
    model, metadata = export.model_from_checkpoint(path, config=config)
    if config is None:
        config = workdir_lib.load_config(workdir / workdir_lib.CONFIG_FILE)
    return model, metadata, config, workdir


def load_predictor(path, *, batch_size: int = 16, config=None):
    """(Predictor, config or None, workdir or None) from an export dir or a training checkpoint."""
    model, metadata, config, workdir = load_model(path, config=config)
    return Predictor(model, image_size=metadata["image_size"], batch_size=batch_size, metadata=metadata), config, workdir


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


def _as_predictor(predictor_or_model, config, batch_size: int):
    if isinstance(predictor_or_model, Predictor) or hasattr(predictor_or_model, "predict_crops"):
        return predictor_or_model  # a Predictor or anything with its predict_crops/batch_size
    if isinstance(predictor_or_model, (str, pathlib.Path)):
        return load_predictor(predictor_or_model, batch_size=batch_size, config=config)[0]
    if config is None:
        raise ValueError("evaluate(model, ...) needs config= (for the model's input image size)")
    return Predictor(predictor_or_model, image_size=int(config.image_size), batch_size=batch_size)


# ----------------------------------------------------------------------------------------------
# Running the model over a set
# ----------------------------------------------------------------------------------------------

def _stack_optional(items: list, what: str, dtype=np.float64):
    present = [x is not None for x in items]
    if not any(present):
        return None
    if not all(present):
        log.warning("%s missing for %d of %d images: not scored", what, present.count(False), len(items))
        return None
    shapes = {np.shape(x) for x in items}
    if len(shapes) != 1:
        raise ValueError(f"{what} shapes differ between images: {sorted(shapes)[:3]}")
    return np.stack(items).astype(dtype, copy=False)


def run_predictions(predictor, dataset: EvalSet, progress: bool = True) -> dict:
    """Predict every image of ``dataset``; returns predictions and the ground truth, stacked."""
    results, names, indices, boxes, lm2d, verts, cats, extras, skipped = [], [], [], [], [], [], [], [], []
    batch = []

    def flush():
        images = [s.image for s in batch]
        crops = [s.crop_box if s.crop_box is not None else whole_image_box(*s.image.shape[:2]) for s in batch]
        results.append(predictor.predict_crops(images, np.stack(crops)))
        batch.clear()

    for i in tqdm(range(len(dataset)), desc=f"evaluate {dataset.name}", unit="image", disable=not progress):
        try:
            s = dataset[i]
        except (DatasetFormatError, FileNotFoundError) as e:  # one bad file must not sink the evaluation
            log.warning("skipping image %d of %s: %s", i, dataset.name, e)
            skipped.append({"index": i, "error": str(e)})
            continue
        names.append(s.name)
        indices.append(i)
        boxes.append(np.asarray(s.box, np.float64))
        lm2d.append(s.landmarks2d)
        verts.append(None if s.vertices2d is None else np.asarray(s.vertices2d, np.float32))
        cats.append(dict(s.categories))
        extras.append(dict(s.extra))
        batch.append(s)
        if len(batch) == predictor.batch_size:
            flush()
    if batch:
        flush()
    if not names:
        detail = f"; all {len(skipped)} images failed, first: {skipped[0]['error']}" if skipped else ""
        raise ValueError(f"dataset {dataset.name} has no usable image{detail}")
    boxes = np.stack(boxes)
    attrs = sorted({k for c in cats for k in c})
    return {
        "names": names,
        "indices": indices,  # dataset index of each scored image (bad files are skipped)
        "prediction": PredictionResult.concatenate(results),
        "box": boxes,
        "box_size": np.sqrt(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)),
        "landmarks2d": _stack_optional(lm2d, "ground-truth landmarks"),
        "vertices2d": _stack_optional(verts, "projected vertices", np.float32),  # the big one: |V| per image
        "categories": {a: np.array([c.get(a, "n/a") for c in cats], dtype=object) for a in attrs},
        "landmarks3d": _stack_optional([e.get("landmarks3d") for e in extras], "3D landmarks"),
        "rotation": _stack_optional([e.get("rotation") for e in extras], "rotations"),
        # a reader's own baseline prediction (annotated photos: the detector's 98 points; NaN = none)
        "baseline_landmarks2d": _stack_optional([e.get("baseline_landmarks2d") for e in extras], "baseline landmarks"),
        "skipped": skipped,
    }


BASELINE_NAME = "MediaPipe face mesh (its crop)"  # the reader's baseline row (annotated photos)


def score_baseline(run: dict, num_points: int) -> dict | None:
    """The metrics of the reader's baseline points (``run["baseline_landmarks2d"]``, 98 WFLW) on the
    images where it has them, by the same scorer as the model; None without a baseline."""
    base = run.get("baseline_landmarks2d")
    if base is None or run["landmarks2d"] is None:
        return None
    have = np.all(np.isfinite(base), axis=(1, 2))
    if not have.any():
        return None
    pred = lm.to68(base[have]) if num_points == 68 else base[have]
    target = run["landmarks2d"][have]
    if target.shape[1] == 98 and num_points == 68:
        target = lm.to68(target)
    cats = {a: v[have] for a, v in run["categories"].items()} or None
    return scoring.score(pred, run["box_size"][have], target=target, categories=cats)


def score(run: dict, num_points: int, block_elements: int = metrics.DEFAULT_BLOCK_ELEMENTS) -> dict:
    """Metrics of a ``run_predictions`` output on a ``num_points`` (98 or 68) landmark set."""
    pred98 = run["prediction"].landmarks2d
    pred = lm.to68(pred98) if num_points == 68 else pred98
    target = run["landmarks2d"]
    if target is not None and target.shape[1] == 98 and num_points == 68:
        target = lm.to68(target)  # a 98-point set scored on the 68-point subset (paper's comparisons)
    if target is not None and target.shape[1] != num_points:
        raise ValueError(f"ground truth has {target.shape[1]} landmarks, the set declares {num_points}")
    pr = run["prediction"]
    return scoring.score(pred, run["box_size"], target=target, vertices=run["vertices2d"],
                         categories=run["categories"] or None, pred3d=pr.landmarks3d, true3d=run["landmarks3d"],
                         pred_R=pr.rotation, true_R=run["rotation"], block_elements=block_elements)


# ----------------------------------------------------------------------------------------------
# Writing the tables, CSV and pictures
# ----------------------------------------------------------------------------------------------

def _fmt(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.2f}"


def markdown_table(report: dict, model_name: str, dataset_name: str, baselines: dict | None = None) -> str:
    """The paper-style table(s) as markdown; ``baselines`` {name: report of the same scorer} add rows."""
    baselines = {k: v for k, v in (baselines or {}).items() if v is not None}
    metrics_present = [m for m in ("nmlc", "nme") if m in report]
    cats = report[metrics_present[0]].get("categories", {})
    main = [(a, v) for a, values in TABLE_CATEGORIES.items() if a in cats for v in values if v in cats[a]]
    head = ["Model", "Metric", *lm.TABLE_REGIONS, *[f"{a}: {v}" for a, v in main]]
    lines = [f"### {dataset_name} — {report['num_images']} images, {report['num_points']} landmarks "
             "(×100, normalized by sqrt(w·h) of the face box)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rep in [(model_name, report), *baselines.items()]:
        for m in metrics_present:
            if m not in rep:
                continue
            r = rep[m]
            shown = name if rep is report or rep["num_images"] == report["num_images"] else \
                f"{name} ({rep['num_images']} of {report['num_images']} images)"
            row = [shown, m.upper(), *[_fmt(r["regions"][k]) for k in lm.TABLE_REGIONS],
                   *[_fmt(r["categories"].get(a, {}).get(v)) for a, v in main]]
            lines.append("| " + " | ".join(row) + " |")
    others = [a for a in cats if a not in TABLE_CATEGORIES]
    for a in others:
        values = list(cats[a])
        if len(values) > 40:
            lines += ["", f"({a}: {len(values)} values, see results.json)"]
            continue
        lines += ["", f"#### by {a}", "", "| Model | Metric | " + " | ".join(values) + " |",
                  "|" + "---|" * (len(values) + 2)]
        for name, rep in [(model_name, report), *baselines.items()]:
            for m in metrics_present:
                if m in rep:
                    cells = [_fmt(rep[m]["categories"].get(a, {}).get(v)) for v in values]
                    lines.append(f"| {name} | {m.upper()} | " + " | ".join(cells) + " |")
    extra = []
    if "landmarks3d_nme" in report:
        extra.append(f"3D landmark error: {report['landmarks3d_error']:.4f} world units = "
                     f"{report['landmarks3d_nme']:.2f} % of the outer-eye-corner distance")
    if "pose_error_deg" in report:
        extra.append(f"head-pose error: {report['pose_error_deg']:.2f}° geodesic, "
                     f"{report['pose_error_frobenius']:.4f} as ‖I − R·R_trueᵀ‖_F (DAD-3DHeads benchmark)")
    if extra:
        lines += [""] + [f"- {e}" for e in extra]
    return "\n".join(lines) + "\n"


def _json_ready(report: dict) -> dict:
    out = {}
    for k, v in report.items():
        if k.startswith("per_image") or k == "errors":
            continue
        if isinstance(v, dict):
            out[k] = _json_ready(v)
        elif isinstance(v, np.ndarray):
            out[k] = v.tolist()
        else:
            out[k] = v
    return out


def write_csv(path: pathlib.Path, run: dict, report: dict, baseline: dict | None = None) -> None:
    cat_names = list(run["categories"])
    cols = ["index", "name", *cat_names, "box_size"]
    series = {}
    for m in ("nmlc", "nme"):
        if m in report:
            series[m] = report[m]["per_image"]
    if baseline is not None and "nme" in baseline:  # NaN where the baseline has no points
        have = np.all(np.isfinite(run["baseline_landmarks2d"]), axis=(1, 2))
        series["baseline_nme"] = np.full(len(have), np.nan)
        series["baseline_nme"][have] = baseline["nme"]["per_image"]
    for k in ("per_image_landmarks3d_nme", "per_image_pose_error_deg"):
        if k in report:
            series[k.removeprefix("per_image_")] = report[k]
    cols += list(series) + ["pred_yaw", "pred_pitch", "pred_roll"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        ypr = run["prediction"].euler_degrees
        for i, name in enumerate(run["names"]):
            w.writerow([run["indices"][i], name, *[run["categories"][c][i] for c in cat_names], f"{run['box_size'][i]:.3f}",
                        *[f"{series[s][i]:.4f}" for s in series], *[f"{v:.2f}" for v in ypr[i]]])


def ranking(report: dict) -> tuple[str, np.ndarray]:
    """(metric name, per-image errors) used to pick the best and worst images."""
    for m in ("nmlc", "nme"):
        if m in report:
            return m, np.asarray(report[m]["per_image"])
    raise ValueError("report has neither NMLC nor NME")


def plot_examples(path: pathlib.Path, dataset: EvalSet, run: dict, report: dict, num: int = 4) -> pathlib.Path:
    """A 2×num grid: best (top) and worst (bottom) images, ground truth green, prediction red (and
    the reader's baseline points blue, when it has them)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch (plots.py)

    metric, errors = ranking(report)
    order = np.argsort(np.where(np.isfinite(errors), errors, np.inf))
    num = max(1, min(num, len(order) // 2))  # best and worst rows never show the same image
    picks = [("best", i) for i in order[:num]] + [("worst", i) for i in order[::-1][:num]]
    to68 = report["num_points"] == 68
    K = np.asarray(report["nmlc"]["K"]) if "nmlc" in report else None
    fig = Figure(figsize=(3.2 * num, 6.8))
    axes = fig.subplots(2, num, squeeze=False)
    for k, (label, i) in enumerate(picks):
        ax = axes[k // num, k % num]
        sample = dataset[int(run["indices"][i])]
        pred = run["prediction"].landmarks2d[i]
        pred = lm.to68(pred) if to68 else pred
        if sample.landmarks2d is not None:
            truth = lm.to68(sample.landmarks2d) if to68 and len(sample.landmarks2d) == 98 else sample.landmarks2d
        elif K is not None and sample.vertices2d is not None:
            truth = sample.vertices2d[K]  # the model-specific definition NMLC found
        else:
            truth = None
        ax.imshow(sample.image)
        if truth is not None:
            ax.scatter(truth[:, 0], truth[:, 1], s=6, c="lime", linewidths=0)
            ax.plot(np.stack([truth[:, 0], pred[:, 0]]), np.stack([truth[:, 1], pred[:, 1]]), c="yellow", lw=0.5)
        base = run.get("baseline_landmarks2d")
        if base is not None and np.all(np.isfinite(base[i])):
            b = lm.to68(base[i]) if to68 else base[i]
            ax.scatter(b[:, 0], b[:, 1], s=5, c="deepskyblue", linewidths=0)
        ax.scatter(pred[:, 0], pred[:, 1], s=6, c="red", linewidths=0)
        view = run["prediction"].crop_boxes[i]
        ax.set_xlim(view[0], view[2])
        ax.set_ylim(view[3], view[1])
        ax.set_title(f"{label}: {sample.name[:28]}\n{metric.upper()} {errors[i]:.2f}", fontsize=8)
        ax.axis("off")
    also = ", baseline (blue)" if run.get("baseline_landmarks2d") is not None else ""
    fig.suptitle(f"{dataset.name}\nground truth (green), prediction (red){also}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


# ----------------------------------------------------------------------------------------------
# Library entry point and CLI
# ----------------------------------------------------------------------------------------------

def evaluate(predictor_or_model, dataset, out_dir, *, config=None, data_dir=None, batch_size: int | None = None,
             model_name: str = "Ours", num_examples: int | None = None, progress: bool = True,
             num_points: int | None = None, block_elements: int = metrics.DEFAULT_BLOCK_ELEMENTS) -> dict:
    """Evaluate and write results.md / results.json / per_image.csv / examples.png to ``out_dir``.

    predictor_or_model: a ``predict.Predictor``, an nnx model (needs ``config`` for the image size)
      or a path (export dir or training checkpoint).
    dataset: an ``EvalSet`` or a spec string for ``datasets.load`` (needs ``config``; ``data_dir``
      = a workdir's ``data/`` to reuse its cached synthetic test set).
    num_points: 98 or 68 landmarks in the table (default: the set's own definition; 68 on a 98-point
      set scores the landmarks.to68 subset).
    Returns the JSON-ready report: {"dataset", "num_images", "num_points", "nmlc": {"regions",
    "categories", "K"}, "nme": {...} (when the set has a landmark definition),
    "landmarks3d_error", "pose_error_deg" (synthetic), "files": {...}}.
    """
    if config is None and not isinstance(dataset, EvalSet):
        config = workdir_lib.default_config()
    bs = int(batch_size or (config.eval.batch_size if config is not None else 16))
    predictor = _as_predictor(predictor_or_model, config, bs)
    if not isinstance(dataset, EvalSet):
        dataset = load_dataset(dataset, config, data_dir=data_dir)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = run_predictions(predictor, dataset, progress=progress)
    num_points = int(num_points or dataset.num_points)
    if num_points not in (98, 68) or (num_points == 98 and dataset.num_points == 68):
        raise ValueError(f"num_points must be 98 or 68 (and 68 on the 68-point set {dataset.name}), got {num_points}")
    report = score(run, num_points, block_elements=block_elements)
    baseline = score_baseline(run, num_points)
    files = {"markdown": out_dir / "results.md", "json": out_dir / "results.json", "csv": out_dir / "per_image.csv",
             "examples": out_dir / "examples.png"}
    files["markdown"].write_text(markdown_table(report, model_name, dataset.name, {BASELINE_NAME: baseline}))
    write_csv(files["csv"], run, report, baseline)
    if num_examples is None:
        num_examples = int(config.eval.num_examples) if config is not None else 4
    plot_examples(files["examples"], dataset, run, report, num_examples)
    summary = {"dataset": dataset.name, **_json_ready(report), "skipped": run["skipped"],
               "files": {k: str(v) for k, v in files.items()}}
    if baseline is not None:
        summary["baselines"] = {BASELINE_NAME: _json_ready(baseline)}
    files["json"].write_text(json.dumps(summary, indent=1))
    return summary


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
