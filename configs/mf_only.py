"""Ablation "Ours (MF only)": multi-frame video samples only, no multi-view GAN samples.

    python -m facelift_jax.train --config configs/mf_only.py --workdir runs/mf_only          # paper scale
    python -m facelift_jax.train --config configs/mf_only.py:default --workdir runs/mf_only  # CPU, synthetic

Only the 2D multi-frame loss (eq. 4) supervises the model. The lifted GAN latents are still
computed by preprocessing (their landmark-wise mean is the model's template), but no multi-view
sample enters a batch. An epoch stays the paper's 2,500 steps (steps_per_epoch is explicit).
"""

from configs import base_config


def get_config(base: str = "paper"):
    c = base_config(base)
    c.batch.multiview = 0
    return c
