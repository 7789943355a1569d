"""Ablation "Ours (MV only)": multi-view GAN samples only, no multi-frame video samples.

    python -m facelift_jax.train --config configs/mv_only.py --workdir runs/mv_only          # paper scale
    python -m facelift_jax.train --config configs/mv_only.py:default --workdir runs/mv_only  # CPU, synthetic

The batch keeps the paper's 4 multi-view samples per step (no multi-frame half).
"""

from configs import base_config


def get_config(base: str = "paper"):
    c = base_config(base)
    c.batch.multiframe = 0
    c.preprocess.num_videos = 0
    return c
