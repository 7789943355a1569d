"""Ablation "Ours (100)": 100 videos and 100 GAN latents instead of 10K each.

    python -m facelift_jax.train --config configs/samples_100.py --workdir runs/samples_100          # paper scale
    python -m facelift_jax.train --config configs/samples_100.py:default --workdir runs/samples_100  # CPU, synthetic

The number of optimization steps is the base config's (the same training budget on fewer
samples); on the ``default`` base both counts become 1/100 of the base's (at least 1).
"""

from configs import with_samples

SAMPLES = 100


def get_config(base: str = "paper"):
    return with_samples(base, SAMPLES)
