"""NMLC search (metrics.nmlc: chunked, jitted JAX scan) vs a NumPy baseline with the same memory bound.

Prints the seconds of each and the ratio (baseline / ours) measured in the same run, at the
DAD-3DHeads scale of the vertex set (|V| = 5023 FLAME vertices, N = 68 landmarks).

    python benchmarks/bench_nmlc.py [--images 500] [--vertices 5023]
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # configs, facelift_jax from the checkout

from facelift_jax import metrics  # noqa: E402


def numpy_nmlc(pred, vertices, box, chunk=64):
    """Baseline: the same per-landmark minimum, NumPy, vertex chunks of ``chunk``."""
    w = 100.0 / box[:, None]
    best = np.full(pred.shape[1], np.inf)
    arg = np.zeros(pred.shape[1], np.int64)
    for start in range(0, vertices.shape[1], chunk):
        v = vertices[:, start:start + chunk]
        d = np.sqrt(((pred[:, :, None, :] - v[:, None, :, :]) ** 2).sum(-1))  # (M, N, C)
        cost = np.einsum("mn,mnc->nc", w, d)
        local = cost.argmin(1)
        c = cost[np.arange(len(local)), local]
        better = c < best
        best[better], arg[better] = c[better], local[better] + start
    return best.sum() / pred.shape[0] / pred.shape[1], arg


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--vertices", type=int, default=5023, help="|V| (FLAME: 5023; smaller for a smoke run)")
    args = p.parse_args(argv)
    r = np.random.default_rng(0)
    m, n, v = args.images, 68, args.vertices
    vertices = (r.normal(size=(m, v, 2)) * 50).astype(np.float32)
    pred = vertices[:, :n] + r.normal(size=(m, n, 2)).astype(np.float32)
    box = np.full(m, 100.0)
    metrics.nmlc(pred[:8], vertices[:8], box[:8])  # compile outside the timing (shape-specific: warm once more below)
    metrics.nmlc(pred, vertices, box)
    t_ours, t_base = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        v_ours, k_ours = metrics.nmlc(pred, vertices, box)
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        v_base, k_base = numpy_nmlc(pred, vertices, box)
        t_base.append(time.perf_counter() - t)
    assert np.array_equal(k_ours, k_base), "the two searches disagree"
    a, b = min(t_ours), min(t_base)
    print(f"NMLC search, M={m} N={n} |V|={v}: metrics.nmlc {a:.2f} s, NumPy baseline {b:.2f} s, "
          f"ratio baseline/ours = {b / a:.2f}x (values {v_ours:.4f} vs {v_base:.4f})")


if __name__ == "__main__":
    main()
