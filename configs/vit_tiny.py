"""The CPU-sized ViT start: a from-scratch tiny ViT (conv stem) at 128², the previous default.

Run:     python -m facelift_jax.train --config configs/vit_tiny.py --workdir runs/vit_tiny

The paper's encoder is a ViT (FaRL ViT-B/16, ``configs/paper.py``); this is its CPU-sized
from-scratch counterpart, kept so that the ViT start and the pretrained EfficientNet start of
``configs/default.py`` can be compared side by side. It is exactly the 2026-12-01 default:
4-block width-96 ViT with a convolutional stem (Xiao et al. 2021), 128² renders made on the fly,
8 multi-view + 4 multi-frame images per step, lr 3e-4, 1,600 steps.

Measured (2026-12-01, 2-core CPU, from an empty workdir): 14 min 06 s wall; held-out multi-view
NMLC 15.7 (×100, full face), NME 16.0, pose error 28.1°; video frames NME 8.2, pose error 15.5°
(template with the TRUE pose: NMLC 3.16, NME 2.80). The curves were still falling (NMLC 19.6 at
step 800): the from-scratch ViT trunk learns head pose slowly on a CPU budget.
"""

from configs import default


def get_config():
    c = default.get_config()
    c.image_size = 128
    c.model.encoder = "vit"
    c.model.pretrained = ""
    c.batch.multiview, c.batch.multiframe = 8, 4
    c.optim.learning_rate, c.optim.decay_rate = 3e-4, 0.9
    c.data.pool_size = 0
    c.train.num_steps = 1600
    c.train.eval_every = 800
    return c
