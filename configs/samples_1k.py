"""Ablation "Ours (1K)": 1K videos and 1K GAN latents instead of 10K each.

    python -m facelift_jax.train --config configs/samples_1k.py --workdir runs/samples_1k          # paper scale
    python -m facelift_jax.train --config configs/samples_1k.py:default --workdir runs/samples_1k  # CPU, synthetic

The number of optimization steps is the base config's (the same training budget on fewer
samples); on the ``default`` base both counts become 1/10 of the base's.
"""

from configs import with_samples

SAMPLES = 1_000


def get_config(base: str = "paper"):
    return with_samples(base, SAMPLES)
