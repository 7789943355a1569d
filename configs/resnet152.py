"""Ablation "Ours (Resnet152)": a ResNet-152 encoder (~60M parameters, ImageNet-pretrained in the
paper) in place of the FaRL ViT-B/16 (~87M).

    python -m facelift_jax.train --config configs/resnet152.py --workdir runs/resnet152          # paper scale
    python -m facelift_jax.train --config configs/resnet152.py:default --workdir runs/resnet152  # CPU, synthetic
"""

from configs import base_config


def get_config(base: str = "paper"):
    c = base_config(base)
    c.model.encoder = "resnet152"
    c.model.pretrained = ""  # from scratch: no ImageNet ResNet weights ship in a registry package here
    return c
