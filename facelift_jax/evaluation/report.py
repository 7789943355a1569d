"""The per-image evaluation path and its tables: every image of an ``EvalSet`` predicted, scored by
``evaluation.scoring`` (the same scorer as the held-out evaluator), and written as ``results.md`` /
``results.json`` / ``per_image.csv`` / ``examples.png``.

The real-photo sets (DAD-3DHeads, Multiface, annotated photos) and ``--points 68`` on the synthetic
set take this path; ``python -m facelift_jax.evaluate`` is its command line (``evaluate.py`` keeps
only argument and config resolution). The held-out synthetic set's own tables are
``evaluation.evaluator``'s.
"""

from __future__ import annotations

import csv
import json
import logging
import pathlib

import numpy as np
from tqdm import tqdm

from facelift_jax import export
from facelift_jax import landmarks as lm
from facelift_jax import metrics
from facelift_jax import workdir as workdir_lib
from facelift_jax.evaluation import scoring
from facelift_jax.evaluation.datasets import DatasetFormatError, EvalSet
from facelift_jax.evaluation.datasets import load as load_dataset
from facelift_jax.evaluation.scoring import format_number
from facelift_jax.inference.crops import whole_image_box
from facelift_jax.inference.predictor import PredictionResult, Predictor

log = logging.getLogger(__name__)

TABLE_CATEGORIES = {"pose": ("front", "sided", "atypical"), "expression": ("True", "False"),
                    "occlusions": ("True", "False")}


# ----------------------------------------------------------------------------------------------
# Resolving the model
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
            row = [shown, m.upper(), *[format_number(r["regions"][k]) for k in lm.TABLE_REGIONS],
                   *[format_number(r["categories"].get(a, {}).get(v)) for a, v in main]]
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
                    cells = [format_number(rep[m]["categories"].get(a, {}).get(v)) for v in values]
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
# Library entry point
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
