"""Predictor throughput and per-face latency: JAX (batched vs one image per call) and the same model
exported to ONNX and run in onnxruntime, measured in the same run.

Builds each model with random parameters (speed does not depend on the values). Per model it prints
images/s batched (one jit per bucket of ≤ batch_size images) and one image per call, their ratio,
then the per-face latency (one image per call, median) and batched images/s of JAX and of
onnxruntime (``export.export_onnx`` → ``export.load_onnx``) and their ratios.

    python benchmarks/bench_predict.py [--models default,paper] [--images 32] [--batch-size 16]
                                       [--image-size 0] [--no-onnx]

``--models``: config modules in configs/ (default: EfficientNet-Lite0 at 64²; paper: the FaRL
ViT-B/16 at 224², slow on a CPU). ``--image-size`` (0: each config's) also sets the encoder's own
input size (model.vit / model.efficientnet), for quick runs.
"""

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from flax import nnx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # configs, facelift_jax from the checkout

from facelift_jax import export  # noqa: E402
from facelift_jax.model import build_model  # noqa: E402
from facelift_jax.predict import Predictor  # noqa: E402


def _config(name: str, image_size: int):
    config = importlib.import_module(f"configs.{name}").get_config()
    config.model.pretrained = ""  # random weights: nothing to download or read
    vit = config.model.get("vit")
    if config.model.encoder == "vit" and "stem" not in vit:
        # configs/paper.py's vit section predates the stem option; FaRL's ViT-B/16 is a patch ViT.
        print(f"configs/{name}.py: model.vit has no 'stem'; using stem='patch' (FaRL/CLIP ViT-B/16)")
        vit.stem, vit.stem_width = "patch", 0
    if image_size:
        config.image_size = image_size
    return config


def _latency_ms(fn, images, repeats: int) -> float:
    """Median wall time (ms) of ``fn`` on one image, over ``repeats`` calls (after a warm-up)."""
    fn(images[:1])
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        fn(images[i % len(images)][None])
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def _images_per_s(fn, images, batch: int) -> float:
    """Images/s of ``fn`` on ``images`` in chunks of ``batch`` (after a warm-up chunk)."""
    fn(images[:batch])
    t = time.perf_counter()
    for i in range(0, len(images), batch):
        fn(images[i:i + batch])
    return len(images) / (time.perf_counter() - t)


def bench(name: str, args) -> None:
    config = _config(name, args.image_size)
    template = np.random.default_rng(0).normal(size=(98, 3)).astype(np.float32) * 0.1
    model = build_model(config.model, template, rngs=nnx.Rngs(0))
    size = int(config.image_size)
    images = np.random.default_rng(1).integers(0, 256, (args.images, size, size, 3), dtype=np.uint8)
    batched = Predictor(model, image_size=size, batch_size=args.batch_size)
    single = Predictor(model, image_size=size, batch_size=1)
    batched.predict_normalized(images[: args.batch_size])  # compile
    single.predict_normalized(images[:1])
    t = time.perf_counter()
    batched.predict_normalized(images)
    tb = time.perf_counter() - t
    t = time.perf_counter()
    for im in images:
        single.predict_normalized(im[None])
    ts = time.perf_counter() - t
    n = len(images)
    encoder = config.model.encoder
    print(f"predict {n} images {size}px, {encoder}: batched (batch {args.batch_size}) {n / tb:.1f} img/s, "
          f"one per call {n / ts:.1f} img/s, ratio batched/single = {ts / tb:.2f}x", flush=True)
    if args.no_onnx:
        return
    try:
        import jax2onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        print("  onnx: jax2onnx/onnxruntime not installed, left out (pip install 'facelift-jax[onnx]')")
        return
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = export.export_onnx(model, size, os.path.join(tmp, export.ONNX_FILE))
        convert_s = time.perf_counter() - t
        ort_run = export.load_onnx(path)
        jax_single = _latency_ms(single.predict_normalized, images, args.repeats)
        ort_single = _latency_ms(ort_run, images, args.repeats)
        jax_batched = _images_per_s(batched.predict_normalized, images, args.batch_size)
        ort_batched = _images_per_s(ort_run, images, args.batch_size)
        got, ref = ort_run(images[:2]), batched.predict_normalized(images[:2])
        err = max(float(np.abs(got[k] - ref[k]).max()) for k in ("landmarks2d", "landmarks3d", "rotation"))
    print(f"  {encoder} per-face latency (1 image/call, median of {args.repeats}): jax {jax_single:.2f} ms, "
          f"onnxruntime {ort_single:.2f} ms, ratio jax/onnxruntime = {jax_single / ort_single:.2f}x", flush=True)
    print(f"  {encoder} batched (batch {args.batch_size}): jax {jax_batched:.1f} img/s, onnxruntime "
          f"{ort_batched:.1f} img/s, ratio onnxruntime/jax = {ort_batched / jax_batched:.2f}x "
          f"(onnx conversion {convert_s:.1f} s, max |onnx - jax| {err:.1e})", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="default,paper", help="comma-separated config names in configs/")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--repeats", type=int, default=10, help="single-image calls timed for the latency")
    p.add_argument("--image-size", type=int, default=0, help="0: each config's image_size")
    p.add_argument("--no-onnx", action="store_true", help="JAX only")
    args = p.parse_args(argv)
    for name in args.models.split(","):
        bench(name.strip(), args)


if __name__ == "__main__":
    main()
