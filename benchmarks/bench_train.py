"""Training throughput: the jitted step alone vs the input pipeline alone vs both, in the same run.

    .venv/bin/python benchmarks/bench_train.py                      # default config, its batch and pool
    .venv/bin/python benchmarks/bench_train.py --steps 2 --image-size 32 --encoder-width 16 \
        --decoder-width 16 --decoder-depth 1 --multiview 2 --multiframe 2 --pool-size 8   # smoke size
    .venv/bin/python benchmarks/bench_train.py --config configs/vit_tiny.py  # on-the-fly renders, ViT
    .venv/bin/python benchmarks/bench_train.py --workdir runs/default  # the data/ of an existing run
    .venv/bin/python benchmarks/bench_train.py --malloc compare --pool-size 256   # glibc malloc: default vs tuned

configs/default.py (or ``--config``), shrunk by the flags, with its real library pieces
(train.create_train_state with the config's pretrained encoder weights, train.make_train_step,
data.train_iterator, views.normal_template). With ``data.pool_size`` > 0 (the default config) the
multi-view branch gathers from the rendered pool (input_pipeline/pool.py; rendered, and the video frames
decoded, before any timing — in a temporary directory that is never reused) and re-draws each
sample's roll; with 0 it renders every sample on the fly. ``--pool-size`` overrides the size;
rendering the default's 16,384 takes minutes on a CPU, and the gather's speed hardly depends on it.

  (a) step     — the jitted train step on ONE fixed batch (placed with train.Placement), repeated,
                 blocking on every step's metrics: the step's own speed, no input;
  (b) pipeline — ``next()`` on the training iterator alone (grain: multi-view renders + decoded
                 video frames, ``data.num_threads`` threads, ``data.prefetch`` batches ahead);
  (c) loop     — what train.train_loop does per step: next(iterator), shard, step, fetch metrics.

Printed: a table of steps/s and images/s, and the ratios (c)/(a) (the fraction of the step's speed
the real loop keeps: 1 means the input pipeline is free, lower means it costs the step) and
(b)/(a) (> 1: the pipeline alone is faster than the step). Compilation and warm-up (the first
renders, grain's thread start, the prefetch buffer) are left out of every timing.

Data: ``--workdir DIR`` uses DIR/data (an existing run's pseudo-labels and videos; preprocessed
there with the tiny settings below when missing). Without it, a tiny dataset (``--num-latents``
latents, ``--num-videos`` clips of ``--frames-per-video`` frames) is preprocessed into a temporary
directory that is removed at the end. Throughput hardly depends on the dataset's size, as long as
it holds more than a batch. On a shared CPU the pipeline and the step compete for the same cores,
and timings are noisy: compare the ratios of one run, not absolute numbers across runs.

Memory allocator: ``--malloc tuned`` (the default, as ``python -m facelift_jax.train`` runs) applies
facelift_jax/allocator.tune_malloc first; ``--malloc default`` leaves glibc's malloc as it is;
``--malloc compare`` runs this benchmark twice as subprocesses, default then tuned (``--rounds`` N
pairs, alternating), on one dataset, and prints tuned/default ratios of sys %, faults per step and
images/s for (a) and (c). XLA:CPU's per-step temporary buffer (654 MB at the default) is what
glibc's default mmaps and unmaps every step (see allocator.py).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from facelift_jax import allocator  # noqa: E402


def _malloc_flag(argv) -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--malloc", default="tuned")
    return pre.parse_known_args(argv)[0].malloc


# Before jax (and every other library's threads) starts: glibc fixes its arena limit at the first
# allocation of a second thread, so M_ARENA_MAX set later does nothing (allocator.py).
if _malloc_flag(sys.argv[1:]) == "tuned":
    allocator.tune_malloc()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from facelift_jax import input_pipeline  # noqa: E402
from facelift_jax import train, views  # noqa: E402
from facelift_jax import workdir as workdir_lib  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


ENCODER_SECTION = {"vit": "vit", "efficientnet_lite0": "efficientnet", "resnet50": "resnet", "resnet152": "resnet"}


def make_config(args):
    c = workdir_lib.load_config(args.config)
    if args.image_size:  # model.image_size follows (a reference)
        c.image_size = args.image_size
    if args.encoder_width:  # the active encoder's token width (EfficientNet/ViT) or base width (ResNet)
        section = ENCODER_SECTION[c.model.encoder]
        c.model[section]["base_width" if section == "resnet" else "width"] = args.encoder_width
    for section, values in (("vit", dict(width=args.vit_width, depth=args.vit_depth, heads=args.heads)),
                            ("decoder", dict(width=args.decoder_width, depth=args.decoder_depth, heads=args.heads))):
        c.model[section].update({k: v for k, v in values.items() if v})
    if args.multiview is not None:
        c.batch.multiview = args.multiview
    if args.multiframe is not None:
        c.batch.multiframe = args.multiframe
    if args.pool_size is not None:
        c.data.pool_size = args.pool_size
    if args.from_scratch:
        c.model.pretrained = ""
    if args.num_threads is not None:
        c.data.num_threads = args.num_threads
    if args.prefetch is not None:
        c.data.prefetch = args.prefetch
    # Only used when a dataset has to be made (temporary dir, or a --workdir without data/).
    c.preprocess.update(num_latents=args.num_latents, chunk_size=args.num_latents, num_videos=args.num_videos,
                        frames_per_video=args.frames_per_video, preview_latents=0)
    train.check_config(c)
    return c


def _usage():
    u = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process (XLA's, grain's, the pool's)
    return time.perf_counter(), u.ru_utime, u.ru_stime, u.ru_minflt, u.ru_majflt


def timed(fn, n: int, usage: dict | None = None) -> float:
    """Seconds for ``n`` calls of ``fn``; with ``usage`` also this process's user/system CPU seconds and
    minor/major page faults over them (resource.getrusage deltas) stored in it."""
    before = _usage()
    for _ in range(n):
        fn()
    after = _usage()
    if usage is not None:
        usage.update(zip(("wall_s", "user_s", "sys_s", "minflt", "majflt"), (b - a for a, b in zip(before, after))))
    return after[0] - before[0]


def bench(config, data_dir: pathlib.Path, steps: int, warmup: int) -> dict:
    placement = train.Placement.create()
    template = input_pipeline.load_template(data_dir)
    steps_per_epoch = input_pipeline.steps_per_epoch(config, data_dir)
    state = train.create_train_state(config, template, steps_per_epoch, placement)
    normals = jnp.asarray(views.normal_template(template))
    train_step = train.make_train_step(state.graphdef, state.tx, state.schedule, config.loss, normals)
    t0 = time.perf_counter()
    batches = input_pipeline.train_iterator(config, data_dir)  # renders the pool / decodes frames when pooled
    iterator_s = time.perf_counter() - t0
    images_per_step = int(config.batch.multiview) + int(config.batch.multiframe)
    params, opt_state, counter = state.params, state.opt_state, [0]

    def step(batch):
        nonlocal params, opt_state
        params, opt_state, metrics = train_step(params, opt_state, state.rest, batch, jnp.asarray(counter[0]))
        counter[0] += 1
        return metrics

    # Compile (and the first renders / grain start-up): not timed.
    t0 = time.perf_counter()
    fixed = placement.shard_batch(next(batches))
    first_batch_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(step(fixed))
    compile_s = time.perf_counter() - t0

    # (a) the step alone, on the fixed batch.
    usage = {key: {} for key in ("step", "pipeline", "loop")}
    timed(lambda: jax.block_until_ready(step(fixed)), warmup)
    step_s = timed(lambda: jax.block_until_ready(step(fixed)), steps, usage["step"])

    # (b) the pipeline alone. The prefetch buffer filled up while (a) ran: drain it (and warm up)
    # in a tight loop first, so the timing sees batches made at the pipeline's own pace.
    timed(lambda: next(batches), int(config.data.prefetch) + warmup)
    pipeline_s = timed(lambda: next(batches), steps, usage["pipeline"])

    # (c) the real loop, as train.train_loop does it (metrics fetched to the host every step).
    def loop_once():
        metrics = step(placement.shard_batch(next(batches)))
        jax.device_get(metrics)

    timed(loop_once, warmup)
    loop_s = timed(loop_once, steps, usage["loop"])

    def rates(seconds, u):
        return dict(seconds=seconds, steps_per_s=steps / seconds, images_per_s=steps * images_per_step / seconds, **u)

    return dict(step=rates(step_s, usage["step"]), pipeline=rates(pipeline_s, usage["pipeline"]),
                loop=rates(loop_s, usage["loop"]), compile_s=compile_s,
                iterator_s=iterator_s, first_batch_s=first_batch_s, images_per_step=images_per_step)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "default.py"), help="a configs/*.py file")
    p.add_argument("--workdir", default="", help="use WORKDIR/data (preprocessed there when missing)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (batches) per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before each measurement")
    p.add_argument("--multiview", type=int, default=None, help="global multi-view batch (default: the config's)")
    p.add_argument("--multiframe", type=int, default=None, help="global multi-frame batch (default: the config's)")
    p.add_argument("--image-size", type=int, default=0,
                   help="0: the config's")
    p.add_argument("--encoder-width", type=int, default=0,
                   help="0: the config's; the active encoder's width (efficientnet/vit tokens, resnet base_width)")
    p.add_argument("--pool-size", type=int, default=None,
                   help="data.pool_size (default: the config's; 0 renders on the fly; tiny for a smoke run)")
    p.add_argument("--from-scratch", action="store_true",
                   help="skip the config's pretrained encoder weights (model.pretrained = ''; no torch needed)")
    p.add_argument("--vit-width", type=int, default=0, help="0: the config's (same for the flags below)")
    p.add_argument("--vit-depth", type=int, default=0)
    p.add_argument("--decoder-width", type=int, default=0)
    p.add_argument("--decoder-depth", type=int, default=0)
    p.add_argument("--heads", type=int, default=0, help="encoder and decoder heads")
    p.add_argument("--num-threads", type=int, default=None, help="data.num_threads (default: the config's)")
    p.add_argument("--prefetch", type=int, default=None, help="data.prefetch (default: the config's)")
    p.add_argument("--num-latents", type=int, default=32, help="tiny dataset: lifted latents")
    p.add_argument("--num-videos", type=int, default=2, help="tiny dataset: videos")
    p.add_argument("--frames-per-video", type=int, default=8, help="tiny dataset: frames per video")
    p.add_argument("--malloc", choices=("tuned", "default", "compare"), default="tuned",
                   help="tuned: allocator.tune_malloc() first (as training does); default: glibc as it is; "
                        "compare: both, as subprocesses, with their ratios")
    p.add_argument("--rounds", type=int, default=1, help="--malloc compare: (default, tuned) pairs, alternating")
    p.add_argument("--json", default="", help="also write the results to this file")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        p.error("--steps and --rounds must be >= 1 and --warmup >= 0")
    if args.malloc == "tuned":
        print(f"malloc tuned: {allocator.tune_malloc() or 'nothing (not glibc / FACELIFT_MALLOC=default)'}", flush=True)
    else:
        print("malloc: glibc defaults" if args.malloc == "default" else "malloc: compare", flush=True)
    config = make_config(args)
    if args.malloc == "compare":
        return compare_malloc(config, args, sys.argv[1:] if argv is None else list(argv))

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        if args.workdir:
            data_dir = train.prepare_data(config, pathlib.Path(args.workdir))
        else:
            from facelift_jax import preprocess

            t0 = time.perf_counter()
            data_dir = preprocess.run_preprocess(config, pathlib.Path(tmp) / "data", progress=False)
            print(f"preprocessed a tiny dataset ({args.num_latents} latents, {args.num_videos}×"
                  f"{args.frames_per_video} frames) in {time.perf_counter() - t0:.1f} s", flush=True)
        m, d = config.model, config.model.decoder
        e = m[ENCODER_SECTION[m.encoder]]
        enc = (f"width {e.width} depth {e.depth}" if m.encoder == "vit" else
               f"width {e.width}" if "width" in e else f"base width {e.base_width}")
        pool = int(config.data.get("pool_size", 0))
        print(f"jax {jax.__version__} on {jax.device_count()}× {jax.devices()[0].platform}, cpus {os.cpu_count()} | "
              f"{m.encoder} {enc} (pretrained {m.get('pretrained', '') or 'none'}), decoder width {d.width} "
              f"depth {d.depth}, {config.image_size}², "
              f"batch {config.batch.multiview} mv + {config.batch.multiframe} mf, "
              f"multi-view {'pool of ' + str(pool) if pool > 0 else 'rendered on the fly'}, "
              f"data threads {config.data.num_threads} prefetch {config.data.prefetch} | data {data_dir}", flush=True)
        r = bench(config, data_dir, args.steps, args.warmup)
    report(r, args)
    return r


def report(r: dict, args) -> None:
    print(f"iterator set-up {r['iterator_s']:.1f} s (pool render), compile + first step {r['compile_s']:.1f} s, "
          f"first batch {r['first_batch_s']:.1f} s (not timed); "
          f"{args.steps} timed steps each, {r['images_per_step']} images per step")
    print(f"{'':28s} {'s/step':>8s} {'steps/s':>8s} {'images/s':>9s} {'CPU %':>6s} {'sys %':>6s} "
          f"{'faults/step':>11s}   (CPU % = user+sys CPU / wall, all threads; sys % = system share of that CPU)")
    names = {"step": "(a) step alone (fixed batch)", "pipeline": "(b) input pipeline alone",
             "loop": "(c) loop: next() + step"}
    for key, label in names.items():
        x = r[key]
        cpu = x["user_s"] + x["sys_s"]
        print(f"{label:28s} {x['seconds'] / args.steps:8.4f} {x['steps_per_s']:8.2f} {x['images_per_s']:9.1f} "
              f"{100 * cpu / x['wall_s']:6.0f} {100 * x['sys_s'] / max(cpu, 1e-9):6.1f} "
              f"{x['minflt'] / args.steps:11.0f}")
    for key, label in names.items():
        x = r[key]
        print(f"{label}: user {x['user_s']:.2f} s, sys {x['sys_s']:.2f} s, minor page faults "
              f"{x['minflt']} ({x['minflt'] / args.steps:.0f} per step), major {x['majflt']}")
    a = r["step"]["images_per_s"]
    print(f"ratio (c)/(a) = {r['loop']['images_per_s'] / a:.2f}  (share of the step's speed the real loop keeps; "
          f"1 = the input pipeline costs nothing)")
    print(f"ratio (b)/(a) = {r['pipeline']['images_per_s'] / a:.2f}  (> 1: the pipeline alone outruns the step)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(r))


def _without(argv: list, flag: str, takes_value: bool = True) -> list:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = takes_value
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def compare_malloc(config, args, argv: list) -> dict:
    """Run this benchmark as subprocesses with --malloc default and tuned (alternating, ``args.rounds``
    pairs) on one dataset; print their sys %, faults per step, images/s and the tuned/default ratios."""
    child = _without(_without(_without(argv, "--malloc"), "--json"), "--rounds")
    with tempfile.TemporaryDirectory(prefix="bench_train_malloc_") as tmp:
        if not args.workdir:  # one tiny dataset for every subprocess
            child = _without(child, "--workdir") + ["--workdir", tmp]
            train.prepare_data(config, pathlib.Path(tmp))
        runs = {"default": [], "tuned": []}
        for i in range(args.rounds):
            for mode in ("default", "tuned") if i % 2 == 0 else ("tuned", "default"):
                out = pathlib.Path(tmp) / f"{mode}_{i}.json"
                cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), *child, "--malloc", mode, "--json", str(out)]
                print(f"--- round {i + 1}, malloc {mode}", flush=True)
                subprocess.run(cmd, check=True)
                runs[mode].append(json.loads(out.read_text()))

    def stats(rs, key):
        x = [r[key] for r in rs]
        cpu = sum(u["user_s"] + u["sys_s"] for u in x)
        return dict(sys_pct=100 * sum(u["sys_s"] for u in x) / cpu, faults=sum(u["minflt"] for u in x) / (len(x) * args.steps),
                    images_per_s=sum(u["images_per_s"] for u in x) / len(x),
                    cpu_pct=100 * cpu / sum(u["wall_s"] for u in x))

    print(f"=== malloc compare ({args.rounds} round(s) of default and tuned; {args.steps} steps each)")
    result = {}
    for key, label in (("step", "(a) step alone"), ("loop", "(c) loop")):
        d, t = stats(runs["default"], key), stats(runs["tuned"], key)
        result[key] = dict(default=d, tuned=t)
        print(f"{label:16s} default: sys {d['sys_pct']:5.1f} %, {d['faults']:8.0f} faults/step, {d['images_per_s']:6.1f} img/s, "
              f"CPU {d['cpu_pct']:4.0f} % | tuned: sys {t['sys_pct']:5.1f} %, {t['faults']:8.0f} faults/step, "
              f"{t['images_per_s']:6.1f} img/s, CPU {t['cpu_pct']:4.0f} %")
        print(f"{label}: ratio tuned/default images/s = {t['images_per_s'] / d['images_per_s']:.2f}, "
              f"faults/step = {t['faults'] / max(d['faults'], 1):.3f}, sys % = {t['sys_pct'] / max(d['sys_pct'], 1e-9):.2f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
