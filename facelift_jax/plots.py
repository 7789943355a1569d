"""Pictures of a training run: training curves and test predictions vs truth.

Figures are ``matplotlib.figure.Figure`` objects written with ``savefig`` (PNG through Agg): no
pyplot, so no global backend switch and no figure registry to close."""

from __future__ import annotations

import json
import pathlib

import matplotlib
import numpy as np
from matplotlib.figure import Figure


def read_metrics(path) -> list[dict]:
    """Rows of ``metrics.jsonl`` (one JSON object per line); a torn last line is skipped."""
    rows = []
    for line in pathlib.Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _series(rows, split, key):
    pts = sorted((r["step"], r[key]) for r in rows if r.get("split") == split and key in r)
    # A resumed run rewrites steps after its checkpoint: keep the latest value per step.
    last = dict(pts)
    return np.array(list(last.keys())), np.array(list(last.values()))


def training_curves(metrics_path, out_png, baseline: dict | None = None) -> pathlib.Path:
    """Four panels: total loss, loss terms, learning rate, held-out NMLC/NME (with the template
    baseline as dashed lines when ``baseline`` — flat ``baseline/<part>/<metric>/full`` keys —
    is given)."""
    rows = read_metrics(metrics_path)
    out_png = pathlib.Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(20, 4.2))
    axes = fig.subplots(1, 4)

    ax = axes[0]
    ax.plot(*_series(rows, "train", "loss"), label="loss")
    ax.set_title("training loss (L_mv + L_mf)")
    ax.set_xlabel("step")

    ax = axes[1]
    keys = sorted({k for r in rows if r.get("split") == "train" for k in r
                   if "/" in k and k.split("/")[-1] not in ("total", "visible_fraction")})
    for k in keys:
        ax.plot(*_series(rows, "train", k), label=k)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_title("loss terms (unweighted)")
    ax.set_xlabel("step")
    if keys:
        ax.legend(fontsize=7)

    ax = axes[2]
    ax.plot(*_series(rows, "train", "learning_rate"))
    ax.set_title("learning rate")
    ax.set_xlabel("step")

    ax = axes[3]
    colors = iter(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])
    for part in ("multiview", "multiframe"):
        for metric in ("nmlc", "nme"):
            key = f"{part}/{metric}/full"
            steps, values = _series(rows, "eval", key)
            if not len(steps):
                continue
            color = next(colors)
            ax.plot(steps, values, "o-", color=color, label=f"{part} {metric.upper()}")
            b = (baseline or {}).get(f"baseline/{key}")
            if b is not None:
                ax.axhline(b, color=color, ls="--", lw=1, label=f"template baseline {metric.upper()} ({part})")
    ax.set_title("held-out test set (full face, ×100)")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    return out_png


def learning_curve(metrics_path, out_png, images_per_step: int, baselines: dict | None = None) -> pathlib.Path:
    """Held-out multi-view NMLC (full face) and head-pose error against images seen (step ×
    images per step), from the "eval" rows of ``metrics.jsonl``; the baselines as horizontal lines
    (flat keys ``baseline/multiview/...`` = template with the true pose, ``detector_baseline/
    multiview/...`` = 2D detector + template fit). Without eval rows the panels say so."""
    rows = read_metrics(metrics_path)
    out_png = pathlib.Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    lines = (("baseline", "template, true pose", "tab:green", ":"),
             ("detector_baseline", "2D detector + template fit", "tab:red", "--"))
    for ax, (key, title) in zip(axes, (("multiview/nmlc/full", "held-out multi-view NMLC (full face, ×100)"),
                                      ("multiview/pose_error_deg", "held-out head-pose error (°)"))):
        steps, values = _series(rows, "eval", key)
        if len(steps):
            ax.plot(steps * int(images_per_step), values, "o-", color="tab:blue", label="model")
        else:
            ax.text(0.5, 0.5, "no evaluation rows in metrics.jsonl", ha="center", va="center", transform=ax.transAxes)
        for prefix, label, color, style in lines:
            b = (baselines or {}).get(f"{prefix}/{key}")
            if b is not None:
                ax.axhline(b, color=color, ls=style, lw=1.2, label=f"{label} ({b:.2f})")
        ax.set_title(title)
        ax.set_xlabel("training images seen")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    return out_png


def prediction_grid(images, pred2d, true2d, out_png, ncols: int = 4) -> pathlib.Path:
    """Images (M, S, S, 3) uint8 with predicted (red) and true (green) 2D landmarks (M, 98, 2) in
    normalized image coordinates."""
    images = np.asarray(images)
    m = len(images)
    if m == 0:
        raise ValueError("prediction_grid: no images")
    out_png = pathlib.Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    ncols = min(ncols, m)
    nrows = -(-m // ncols)
    fig = Figure(figsize=(3 * ncols, 3 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= m:
            continue
        s = images[i].shape[0]
        ax.imshow(images[i])
        t, p = np.asarray(true2d[i]) * s, np.asarray(pred2d[i]) * s
        # Error segments from truth to prediction make offsets readable at thumbnail size.
        ax.plot(np.stack([t[:, 0], p[:, 0]]), np.stack([t[:, 1], p[:, 1]]), color="yellow", lw=0.5)
        ax.scatter(t[:, 0], t[:, 1], s=4, c="lime", label="truth")
        ax.scatter(p[:, 0], p[:, 1], s=4, c="red", label="prediction")
        ax.set_xlim(0, s)
        ax.set_ylim(s, 0)
    axes.flat[0].legend(loc="lower left", fontsize=7, markerscale=2)
    fig.suptitle("held-out test renders: prediction (red) vs truth (green)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    return out_png
