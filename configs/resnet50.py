"""Ablation "Ours (Resnet50)": a ResNet-50 encoder (the backbone of DAD-3DNet / 3DDFA-style
baselines) in place of the FaRL ViT.

    python -m facelift_jax.train --config configs/resnet50.py --workdir runs/resnet50          # paper scale
    python -m facelift_jax.train --config configs/resnet50.py:default --workdir runs/resnet50  # CPU, synthetic
"""

from configs import base_config


def get_config(base: str = "paper"):
    c = base_config(base)
    c.model.encoder = "resnet50"
    c.model.pretrained = ""  # from scratch: no ImageNet ResNet weights ship in a registry package here
    return c
