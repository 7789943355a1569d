"""Predictor throughput: batched (one jit per bucket of ≤ batch_size images) vs one image per call.

Builds the default config's model with random parameters (throughput does not depend on the
values) and prints images/s of both and their ratio, measured in the same run.

    python benchmarks/bench_predict.py [--images 64] [--batch-size 16] [--image-size 32]

``--image-size`` (0: the config's) also sets the encoder's own input size (model.vit / model.efficientnet).
"""

import argparse
import os
import sys
import time

import numpy as np
from flax import nnx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # configs, facelift_jax from the checkout

from configs.default import get_config  # noqa: E402
from facelift_jax.model import build_model  # noqa: E402
from facelift_jax.predict import Predictor  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=0, help="0: the default config's image_size")
    args = p.parse_args(argv)
    config = get_config()
    if args.image_size:
        config.image_size = args.image_size
        for section in ("vit", "efficientnet"):
            config.model[section].image_size = args.image_size
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
    print(f"predict {n} images {size}px, {config.model.encoder}: batched (batch {args.batch_size}) {n / tb:.1f} img/s, "
          f"one per call {n / ts:.1f} img/s, ratio batched/single = {ts / tb:.2f}x")


if __name__ == "__main__":
    main()
