"""Evaluation on the held-out synthetic test set during and after training.

Numbers (all against the exact ground truth of the synthetic source, ×100 where normalized):
* ``nme`` per region: eq. (5) with the WFLW definition, normalized by sqrt(w·h) of the true 2D
  landmark box;
* ``nmlc`` per region: eq. (6), against the projected mesh vertices (multi-view part);
* ``landmarks3d_error``: mean ‖L̂3D − L3D‖ in world units, and ``landmarks3d_nme`` the same per
  landmark divided by the true 3D outer-eye-corner distance (×100);
* ``pose_error_deg``: mean geodesic angle between predicted and true rotation (degrees).
The template baseline is the same numbers for the template (the landmark-wise mean of the 3D
pseudo-labels, the model's starting point) projected with the TRUE camera: a model that learnt
nothing about identity or expression but knew the pose exactly.
"""

from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facelift_jax import camera, metrics, rotation
from facelift_jax.data import labels as labels_lib
from facelift_jax.data import testset as testset_lib

EYE_CORNERS = (60, 72)  # outer eye corners (WFLW)
NON_PUPIL = np.r_[0:96]


def landmarks3d_errors(pred3d, true3d) -> dict:
    """(M, 98, 3) world → mean error (world units) and mean error / outer-eye-corner distance ×100."""
    d = np.linalg.norm(np.asarray(pred3d, np.float64) - true3d, axis=-1)[:, NON_PUPIL]
    iod = np.linalg.norm(true3d[:, EYE_CORNERS[0]] - true3d[:, EYE_CORNERS[1]], axis=-1)
    return {"landmarks3d_error": float(d.mean()), "landmarks3d_nme": float(100.0 * (d / iod[:, None]).mean())}


def pose_error_deg(pred_R, true_R) -> float:
    return float(np.rad2deg(np.asarray(rotation.geodesic_distance(jnp.asarray(pred_R), jnp.asarray(true_R)))).mean())


def score(pred2d, pred3d, pred_R, truth: testset_lib.TestImages) -> dict:
    """All numbers for predictions (M, 98, 2) / (M, 98, 3) / (M, 3, 3) on ``truth``."""
    report = metrics.landmark_report(np.asarray(pred2d), truth.box_size, target=truth.landmarks2d,
                                     vertices=truth.vertices2d)
    out = {"nme": report["nme"]["regions"], "num_images": len(truth)}
    if "nmlc" in report:
        out["nmlc"] = report["nmlc"]["regions"]
    out.update(landmarks3d_errors(pred3d, truth.landmarks3d))
    out["pose_error_deg"] = pose_error_deg(pred_R, truth.rotation)
    return out


def template_baseline(template, truth: testset_lib.TestImages) -> dict:
    """``score`` of the template projected with the true cameras (and true rotations)."""
    cams = camera.Camera(K=jnp.broadcast_to(camera.intrinsics(), truth.rotation.shape), R=jnp.asarray(truth.rotation),
                         t=jnp.asarray(truth.translation))
    m = len(truth)
    template3d = np.broadcast_to(np.asarray(template, np.float32), (m, 98, 3))
    pred2d = np.asarray(camera.project(jnp.asarray(template3d), cams))
    return score(pred2d, template3d, truth.rotation, truth)


class Evaluator:
    """Runs the model on the cached held-out test set; the template baseline is computed once."""

    def __init__(self, config, data_dir, graphdef, placement, batch_size: int | None = None):
        self.config = config
        self.placement = placement
        self.testset = testset_lib.load_or_build(config, data_dir)
        self.template = labels_lib.load_template(data_dir)
        n_dev = jax.device_count()
        size = int(batch_size or config.eval.get("batch_size", 16))
        self.batch_size = max(n_dev, size - size % n_dev)
        self._predict = jax.jit(lambda params, rest, images: nnx.merge(graphdef, params, rest)(images))
        self.baseline = {name: template_baseline(self.template, part) for name, part in self._parts()}

    def _parts(self):
        yield "multiview", self.testset.multiview
        if self.testset.multiframe is not None:
            yield "multiframe", self.testset.multiframe

    def predict(self, params, rest, images) -> dict:
        """images (M, S, S, 3) uint8 → numpy landmarks2d, landmarks3d, rotation, translation."""
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            pad = self.batch_size - len(chunk)
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
            pred = self._predict(params, rest, self.placement.shard_batch(padded))
            out.append(jax.tree.map(lambda x, n=len(chunk): np.asarray(x)[:n], jax.device_get(pred)))
        keys = ("landmarks2d", "landmarks3d", "rotation", "translation")
        return {k: np.concatenate([getattr(p, k) for p in out]) for k in keys}

    def run(self, params, rest) -> dict:
        results = {"baseline": self.baseline, "predictions": {}}
        for name, part in self._parts():
            pred = self.predict(params, rest, part.image)
            results[name] = score(pred["landmarks2d"], pred["landmarks3d"], pred["rotation"], part)
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
        """``eval/results.json`` and the two PNGs under ``plots/``; returns their paths."""
        from facelift_jax import plots

        workdir = pathlib.Path(workdir)
        (workdir / "eval").mkdir(parents=True, exist_ok=True)
        plain = {k: v for k, v in results.items() if k != "predictions"}
        (workdir / "eval" / "results.json").write_text(json.dumps(plain, indent=2, default=float))
        mv = self.testset.multiview
        n = min(int(self.config.train.get("plot_examples", 8)), len(mv))
        pred = results["predictions"]["multiview"]
        paths = {
            "curves": plots.training_curves(workdir / "metrics.jsonl", workdir / "plots" / "training_curves.png",
                                            baseline=self.scalars({"baseline": self.baseline})),
            "grid": plots.prediction_grid(mv.image[:n], pred["landmarks2d"][:n], mv.landmarks2d[:n],
                                          workdir / "plots" / "test_predictions.png"),
        }
        return {k: str(v) for k, v in paths.items()}


def summary(results: dict) -> str:
    """A few lines for the terminal: the held-out numbers next to the template baseline."""
    lines = []
    for name in ("multiview", "multiframe"):
        if name not in results:
            continue
        r, b = results[name], results["baseline"][name]
        for metric in ("nmlc", "nme"):
            if metric in r:
                lines.append(f"{name:10s} {metric.upper():5s} full {r[metric]['full']:.3f} "
                             f"(template baseline {b[metric]['full']:.3f})  "
                             + " ".join(f"{k} {v:.2f}" for k, v in r[metric].items() if k != "full"))
        lines.append(f"{name:10s} 3D error {r['landmarks3d_nme']:.2f}% IOD (baseline {b['landmarks3d_nme']:.2f}), "
                     f"pose error {r['pose_error_deg']:.2f}°")
    if results.get("images_per_second"):
        lines.append(f"throughput {results['images_per_second']:.1f} images/s")
    return "\n".join(lines)
