"""Ablation "Ours (100)": 100 videos and 100 GAN latents instead of 10K each.

    python -m facelift_jax.train --config configs/samples_100.py --workdir runs/samples_100          # paper scale
    python -m facelift_jax.train --config configs/samples_100.py:default --workdir runs/samples_100  # CPU, synthetic

The number of optimization steps is the base config's (the same training budget on fewer
samples); on the ``default`` base both counts become 1/100 of the base's (at least 1).
"""

from configs import base_config

SAMPLES = 100


def get_config(base: str = "paper"):
    c = base_config(base)
    if (base or "paper") == "paper":
        c.preprocess.num_latents = SAMPLES
        c.preprocess.num_videos = SAMPLES
    else:
        c.preprocess.num_latents = max(c.preprocess.num_latents // 100, 1)
        c.preprocess.num_videos = max(c.preprocess.num_videos // 100, 1)
    return c
