"""The evaluator of the held-out synthetic set: one code path in the training loop and offline.

``Evaluator(config, data_dir, graphdef)`` loads (or builds) the cached held-out set
(``evaluation.datasets.synthetic``), computes both baselines once per part (``baselines.py``:
template with the true pose; 2D detector + PnP template fit), and ``run(params, rest)`` predicts
each part once with the model given by its graph and parameters — the training loop's in-memory
parameters, or an exported/checkpointed model split by ``python -m facelift_jax.evaluate`` — and
scores it with the one scorer (``scoring.py``). The same ``run`` result makes every output:
``scalars`` (the metrics.jsonl / TensorBoard rows), ``write_tables`` (``results.md`` + ``.json``:
NME, NMLC, 3D and pose error per region and per pose category for the model and both baselines),
``write_report`` (training: ``eval/results.json``, the curves and the prediction grid).

Result keys per part ("multiview", "multiframe") and for ``baseline`` / ``detector_baseline``
{part: …}: ``nme`` / ``nmlc`` {region: ×100}, ``landmarks3d_error``, ``landmarks3d_nme``,
``pose_error_deg``, ``pose_error_frobenius``, ``categories`` {metric: {front|sided|atypical: v}}
(scoring.summary); the detector baseline adds ``detector_nme``, ``pnp_fallbacks``, ``pnp_points``.
Pose categories: ``datasets.synthetic.pose_categories`` with ``config.eval``'s thresholds.

In the training loop ``config.train.eval_every`` decides when it runs: N > 0 every N steps and
after the last; 0 only after the last step; −1 never (no evaluator is built: no held-out set,
no ``eval/`` tables, no plots).
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facelift_jax import camera
from facelift_jax import landmarks as lm
from facelift_jax.batching import pad_batch
from facelift_jax.evaluation import baselines
from facelift_jax.evaluation.datasets import synthetic as heldout_set
from facelift_jax.evaluation.scoring import format_number, score_images

POSE_CATEGORIES = ("front", "sided", "atypical")


class Evaluator:
    """The held-out evaluation (module doc); the baselines are computed once, at construction.

    graphdef: the model's static graph (``nnx.split(model, nnx.Param, ...)``); placement: the
    training loop's ``Placement`` (batches sharded over its mesh) or None (default device);
    template: (98, 3) for the baselines (default: the pseudo-label template under ``data_dir``);
    limit: score only the first ``limit`` multi-view images (0 = all).
    """

    def __init__(self, config, data_dir, graphdef, placement=None, batch_size: int | None = None, *,
                 template=None, limit: int = 0):
        self.config = config
        self.placement = placement
        testset = heldout_set.load_or_build(config, data_dir)
        if limit:
            testset = heldout_set.TestSet(testset.multiview.take(int(limit)), testset.multiframe)
        self.testset = testset
        if template is None:
            from facelift_jax.input_pipeline import labels as labels_lib

            template = labels_lib.load_template(data_dir)
        self.template = np.asarray(template, np.float32)
        n_dev = jax.device_count() if placement is not None else 1
        size = int(batch_size or config.eval.batch_size)
        self.batch_size = max(n_dev, size - size % n_dev)
        self._predict = jax.jit(lambda params, rest, images: nnx.merge(graphdef, params, rest)(images))
        self.categories = {name: heldout_set.pose_categories_of(config, part.rotation) for name, part in self._parts()}
        focal = camera.config_focal(config.camera)
        self.baseline = {name: baselines.template_baseline(self.template, part, self.categories[name], focal=focal)
                         for name, part in self._parts()}
        self.detector_baseline = {name: baselines.detector_baseline(self.template, part, self.categories[name],
                                                                    focal=focal)
                                  for name, part in self._parts() if part.detections is not None}

    def _parts(self):
        yield "multiview", self.testset.multiview
        if self.testset.multiframe is not None:
            yield "multiframe", self.testset.multiframe

    def predict(self, params, rest, images) -> dict:
        """images (M, S, S, 3) uint8 → numpy landmarks2d, landmarks3d, rotation, translation."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            padded = pad_batch(chunk, self.batch_size)
            batch = self.placement.shard_batch(padded) if self.placement is not None else jnp.asarray(padded)
            pred = self._predict(params, rest, batch)
            out.append(jax.tree.map(lambda x, n=len(chunk): np.asarray(x)[:n], jax.device_get(pred)))
        keys = ("landmarks2d", "landmarks3d", "rotation", "translation")
        return {k: np.concatenate([getattr(p, k) for p in out]) for k in keys}

    def run(self, params, rest) -> dict:
        """Predict every held-out part once and score it: {part: scores, "baseline": {part: …},
        "detector_baseline": {part: …}, "predictions": {part: arrays}}."""
        results = {"baseline": self.baseline, "detector_baseline": self.detector_baseline, "predictions": {}}
        for name, part in self._parts():
            pred = self.predict(params, rest, part.image)
            results[name] = score_images(pred["landmarks2d"], pred["landmarks3d"], pred["rotation"], part,
                                         self.categories[name])
            results["predictions"][name] = pred
        return results

    @staticmethod
    def scalars(results: dict) -> dict:
        """Flat {"multiview/nmlc/full": value, ..., "baseline/multiview/nmlc/full": ...}."""
        flat = {}

        def walk(prefix, node):
            for k, v in node.items():
                if isinstance(v, dict):
                    walk(f"{prefix}{k}/", v)
                elif np.ndim(v) == 0 and isinstance(v, (int, float, np.floating, np.integer)):
                    flat[f"{prefix}{k}"] = float(v)

        walk("", {k: v for k, v in results.items() if k != "predictions"})
        return flat

    def write_report(self, results: dict, workdir) -> dict:
        """``eval/results.json`` and the PNGs under ``plots/`` (training curves, learning curve, test
        predictions); returns their paths."""
        from facelift_jax import plots

        workdir = pathlib.Path(workdir)
        (workdir / "eval").mkdir(parents=True, exist_ok=True)
        plain = {k: v for k, v in results.items() if k != "predictions"}
        (workdir / "eval" / "results.json").write_text(json.dumps(plain, indent=2, default=float))
        mv = self.testset.multiview
        n = min(int(self.config.train.plot_examples), len(mv))
        pred = results["predictions"]["multiview"]
        paths = {
            "curves": plots.training_curves(workdir / "metrics.jsonl", workdir / "plots" / "training_curves.png",
                                            baseline=self.scalars({"baseline": self.baseline})),
            "learning_curve": plots.learning_curve(
                workdir / "metrics.jsonl", workdir / "plots" / "learning_curve.png",
                images_per_step=int(self.config.batch.multiview) + int(self.config.batch.multiframe),
                baselines=self.scalars({"baseline": self.baseline, "detector_baseline": self.detector_baseline})),
            "grid": plots.prediction_grid(mv.image[:n], pred["landmarks2d"][:n], mv.landmarks2d[:n],
                                          workdir / "plots" / "test_predictions.png"),
        }
        return {k: str(v) for k, v in paths.items()}

    def write_tables(self, results: dict, out_dir) -> dict:
        """``results.md`` and ``results.json`` in ``out_dir`` (training: ``eval/categories``): NME,
        NMLC, 3D and pose error per pose category (front / sided / atypical / all) and NME/NMLC per
        region, for the model and both baselines, multi-view set and video frames, from one ``run``
        (nothing is predicted again)."""
        out_dir = pathlib.Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        table = category_tables(results, self.categories)
        files = {"markdown": out_dir / "results.md", "json": out_dir / "results.json"}
        files["markdown"].write_text(categories_markdown(table))
        files["json"].write_text(json.dumps(table, indent=1, default=float))
        return {k: str(v) for k, v in files.items()}


METHODS = (("model", "FaceLift (ours)"), ("detector_baseline", "2D detector + template fit (PnP)"),
           ("baseline", "template, true pose (oracle pose)"))
CATEGORY_METRICS = (("nme", "NME"), ("nmlc", "NMLC"), ("landmarks3d_nme", "3D error (% outer-eye-corner dist.)"),
                    ("pose_error_deg", "pose error (°)"))
_ALL_VALUE = {"nme": lambda r: r["nme"]["full"], "nmlc": lambda r: r["nmlc"]["full"],
              "landmarks3d_nme": lambda r: r["landmarks3d_nme"], "pose_error_deg": lambda r: r["pose_error_deg"],
              "detector_nme": lambda r: r["detector_nme"]["full"]}


def category_tables(results: dict, categories: dict) -> dict:
    """{part: {"num_images", "counts" {category: n}, "methods" {method: {metric: {category | "all": v}}},
    "regions" {method: {nme | nmlc | detector_nme: {region: v}}}, "pnp_fallbacks"}} from a ``run``
    result; ``categories`` {part: (M,) pose category labels}; methods: "model", "detector_baseline",
    "baseline" (template with the true pose)."""
    out = {}
    for part in ("multiview", "multiframe"):
        if part not in results:
            continue
        labels = np.asarray(categories[part]).astype(str)
        entry = {"num_images": int(len(labels)),
                 "counts": {c: int((labels == c).sum()) for c in POSE_CATEGORIES}, "methods": {}}
        for method, _ in METHODS:
            r = results[part] if method == "model" else results.get(method, {}).get(part)
            if r is None:
                continue
            table = {}
            for metric in (*(m for m, _ in CATEGORY_METRICS), "detector_nme"):
                if metric not in r:
                    continue
                per_cat = r.get("categories", {}).get(metric, {})
                table[metric] = {c: per_cat.get(c) for c in POSE_CATEGORIES}
                table[metric]["all"] = float(_ALL_VALUE[metric](r))
            entry["methods"][method] = table
            entry.setdefault("regions", {})[method] = {m: dict(r[m]) for m in ("nme", "nmlc", "detector_nme") if m in r}
            if method == "detector_baseline":
                entry["pnp_fallbacks"] = r["pnp_fallbacks"]
        out[part] = entry
    return out


def categories_markdown(tables: dict) -> str:
    """The ``category_tables`` as markdown: one table per part, rows metric × method."""
    names = dict(METHODS)
    titles = {"multiview": "Held-out multi-view set (exact truth)", "multiframe": "Held-out video frames"}
    lines = ["# Held-out evaluation per pose category and region", "",
             "NME / NMLC ×100 of sqrt(w·h) of the true landmark box (full face, pupils left out); 3D error ×100 of "
             "the true outer-eye-corner distance; pose error = mean geodesic angle to the true rotation. "
             "Baselines: the mean template posed by PnP on the 2D detector's confident landmarks (what a user does "
             "without FaceLift), and the template with the TRUE pose (an oracle for pose, no shape).", ""]
    for part, entry in tables.items():
        counts = entry["counts"]
        head = ["Metric", "Method", *[f"{c} ({counts[c]})" for c in POSE_CATEGORIES], f"all ({entry['num_images']})"]
        lines += [f"## {titles.get(part, part)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for metric, label in CATEGORY_METRICS:
            for method, _ in METHODS:
                row = entry["methods"].get(method, {}).get(metric)
                if row is not None:
                    lines.append(f"| {label} | {names[method]} | "
                                 + " | ".join(format_number(row[c]) for c in (*POSE_CATEGORIES, "all")) + " |")
        det = entry["methods"].get("detector_baseline", {}).get("detector_nme")
        if det is not None:
            lines.append("| NME | 2D detector's own landmarks | "
                         + " | ".join(format_number(det[c]) for c in (*POSE_CATEGORIES, "all")) + " |")
        regions = list(lm.TABLE_REGIONS)
        lines += ["", "| Metric | Method | " + " | ".join(regions) + " |", "|" + "---|" * (len(regions) + 2)]
        for metric, label in (("nme", "NME"), ("nmlc", "NMLC"), ("detector_nme", "NME")):
            for method, _ in METHODS:
                row = entry.get("regions", {}).get(method, {}).get(metric)
                if row is not None:
                    who = "2D detector's own landmarks" if metric == "detector_nme" else names[method]
                    cells = " | ".join(format_number(row.get(r)) for r in regions)
                    lines.append(f"| {label} | {who} | {cells} |")
        if "pnp_fallbacks" in entry:
            lines += ["", f"PnP fits that fell back to the frontal pose (too few confident points): "
                          f"{entry['pnp_fallbacks']} of {entry['num_images']}."]
        lines.append("")
    return "\n".join(lines)
