"""Ablation "Ours (1K)": 1K videos and 1K GAN latents instead of 10K each.

    python -m facelift_jax.train --config configs/samples_1k.py --workdir runs/samples_1k          # paper scale
    python -m facelift_jax.train --config configs/samples_1k.py:default --workdir runs/samples_1k  # CPU, synthetic

The number of optimization steps is the base config's (the same training budget on fewer
samples); on the ``default`` base both counts become 1/10 of the base's.
"""

from configs import base_config

SAMPLES = 1_000


def get_config(base: str = "paper"):
    c = base_config(base)
    if (base or "paper") == "paper":
        c.preprocess.num_latents = SAMPLES
        c.preprocess.num_videos = SAMPLES
    else:
        c.preprocess.num_latents = max(c.preprocess.num_latents // 10, 1)
        c.preprocess.num_videos = max(c.preprocess.num_videos // 10, 1)
    return c
