"""Preprocessing throughput (render 13 views → detect → lift, chunk by chunk, as ``preprocess.py``):
latents/s of the three ways to run it, measured in the same run (the CPU may be shared, so only
the ratios are comparable across runs):

  (a) sequential, 1 process   — each chunk rendered, then detected, then lifted (the baseline);
  (b) overlapped, 1 process   — render, detect and lift/save in three overlapped threads (default);
  (c) overlapped, N processes — ``--process_index/--process_count``: each process its stride of the
                                chunks, process 0 waits for the others and assembles.

Every variant compiles first on a throw-away chunk of the same shapes (the N processes each do,
then start together), so the rates are steady-state; the variants run interleaved ``--repeats``
times and the best time of each counts. The pseudo-labels of (a), (b), (c) are
compared bit for bit at the end.

    python benchmarks/bench_preprocess.py [--latents 128] [--chunk-size 32] [--image-size 64] [--processes 2]
    python benchmarks/bench_preprocess.py --latents 4 --chunk-size 2 --image-size 32 --repeats 1   # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # configs, facelift_jax from the checkout

from configs import default as default_config  # noqa: E402
from facelift_jax import preprocess  # noqa: E402


def make_config(args, first_latent: int = 0, num_latents: int | None = None):
    c = default_config.get_config()
    if args.image_size:
        c.image_size = args.image_size
    c.preprocess.num_latents = num_latents or args.latents
    c.preprocess.first_latent = first_latent
    c.preprocess.chunk_size = args.chunk_size
    if args.render_batch:
        c.preprocess.render_batch = args.render_batch
    return c


def warm_up(args, folder: pathlib.Path) -> None:
    """Compile the renderer, detector and lifting for this run's shapes: one full chunk of other
    latents (same chunk size, so the same render batches and lifting shapes)."""
    preprocess.run_multiview(make_config(args, first_latent=10**6, num_latents=args.chunk_size), folder,
                             progress=False)


def timed(args, out: pathlib.Path, overlap: bool) -> float:
    t = time.perf_counter()
    preprocess.run_multiview(make_config(args), out, progress=False, overlap=overlap)
    return time.perf_counter() - t


def worker(args) -> None:
    """One of the N processes of (c): warm up, say READY, wait for the go file, run, print times."""
    warm_up(args, pathlib.Path(args.out).parent / f"warm_{args.worker}")
    print("READY", flush=True)
    while not os.path.exists(args.go):
        time.sleep(0.01)
    start = time.time()  # wall clock: comparable between the processes on this machine
    preprocess.run_multiview(make_config(args), pathlib.Path(args.out), progress=False,
                             process_index=args.worker, process_count=args.processes, poll_s=0.05)
    print(json.dumps(dict(start=start, end=time.time())), flush=True)


def processes(args, tmp: pathlib.Path) -> float:
    """Wall time of (c), from the first process's start to the last one's end."""
    tmp.mkdir(parents=True, exist_ok=True)
    out, go = tmp / "c", tmp / "go"
    cmd = [sys.executable, os.path.abspath(__file__), "--out", str(out), "--go", str(go),
           "--latents", str(args.latents), "--chunk-size", str(args.chunk_size), "--processes", str(args.processes),
           "--image-size", str(args.image_size), "--render-batch", str(args.render_batch)]
    logs = [open(tmp / f"worker{k}.log", "w+") for k in range(args.processes)]
    procs = [subprocess.Popen(cmd + ["--worker", str(k)], stdout=subprocess.PIPE, stderr=logs[k], text=True)
             for k in range(args.processes)]
    try:
        for k, p in enumerate(procs):
            line = p.stdout.readline()
            if line.strip() != "READY":
                p.wait()
                logs[k].seek(0)
                raise RuntimeError(f"worker {k} failed before starting (rc {p.returncode}):\n{logs[k].read()[-3000:]}")
        go.touch()
        times = []
        for k, p in enumerate(procs):
            rest, _ = p.communicate()
            if p.returncode != 0:
                logs[k].seek(0)
                raise RuntimeError(f"worker {k} exited {p.returncode}:\n{logs[k].read()[-3000:]}")
            times.append(json.loads(rest.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for f in logs:
            f.close()
    return max(t["end"] for t in times) - min(t["start"] for t in times)


def identical(*folders: pathlib.Path) -> bool:
    loaded = []
    for d in folders:
        with np.load(d / "multiview" / "pseudo_labels.npz") as f:
            loaded.append({k: f[k] for k in f.files})
    return all(x.keys() == loaded[0].keys() and all(np.array_equal(x[k], loaded[0][k], equal_nan=True) for k in x)
               for x in loaded[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--latents", type=int, default=128, help="latents preprocessed per variant")
    ap.add_argument("--chunk-size", type=int, default=32, help="latents per chunk (a multiple divides --latents best)")
    ap.add_argument("--image-size", type=int, default=0, help="render size (0: the default config's)")
    ap.add_argument("--render-batch", type=int, default=0, help="images per render call (0: the default config's)")
    ap.add_argument("--processes", type=int, default=2, help="processes of variant (c)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repetitions; the best time of each variant counts")
    ap.add_argument("--worker", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--go", help=argparse.SUPPRESS)
    args = ap.parse_args()
    base = default_config.get_config()
    args.image_size = args.image_size or int(base.image_size)
    args.render_batch = args.render_batch or int(base.preprocess.render_batch)
    if args.worker >= 0:
        return worker(args)

    from facelift_jax import views

    n = args.latents
    print(f"preprocessing {n} latents × {len(views.LIFTING_VIEWS)} views at {args.image_size}², chunks of "
          f"{args.chunk_size}, render batch {args.render_batch}, {len(os.sched_getaffinity(0))} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        warm_up(args, tmp / "warm")
        a = b = c = np.inf
        for r in range(args.repeats):  # interleaved, best of each: load from other jobs hits all alike
            sub = tmp / f"r{r}"
            a = min(a, timed(args, sub / "a", overlap=False))
            b = min(b, timed(args, sub / "b", overlap=True))
            c = min(c, processes(args, sub))
        tmp = tmp / "r0"
        print(f"(a) sequential, 1 process     {n / a:8.2f} latents/s  ({a:.2f} s)")
        print(f"(b) overlapped, 1 process     {n / b:8.2f} latents/s  ({b:.2f} s)  ratio (b)/(a) = {a / b:.2f}x")
        print(f"(c) overlapped, {args.processes} processes   {n / c:8.2f} latents/s  ({c:.2f} s)  "
              f"ratio (c)/(b) = {b / c:.2f}x, (c)/(a) = {a / c:.2f}x")
        same = identical(tmp / "a", tmp / "b", tmp / "c")
        print(f"pseudo-labels of (a), (b), (c) bit-identical: {'yes' if same else 'NO'}")
        if not same:
            sys.exit("the variants disagree: overlapping or splitting changed the numbers")


if __name__ == "__main__":
    main()
