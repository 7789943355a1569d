"""ResNet-50 / ResNet-152 image encoders (the paper's backbone ablations), feature map as tokens.

torchvision layout (bottleneck v1.5: the stride sits on the 3×3 conv): 7×7/2 stem, 3×3/2 max
pool, four stages of bottlenecks (expansion 4), output stride 32, so a 224² image gives a 7×7×2048
map = 49 tokens. A learned positional embedding is added to the tokens because, unlike the ViT,
the conv features carry no explicit position for the decoder's cross-attention.

Normalization: ``norm="group"`` (default, GroupNorm with 32 groups) or ``norm="batch"``
(nnx.BatchNorm; ``model.train()`` / ``model.eval()`` switch batch vs running statistics).
GroupNorm is the default because FaceLift trains with batches of 4 + 4 images from two
domains (renders and video frames), where batch statistics are noisy and domain-dependent, and
because it keeps the model a pure function of its ``nnx.Param`` state, which is what the
checkpoints and exports of this project store. With ``norm="batch"`` the trainer must also carry
the ``nnx.BatchStat`` state.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from facelift_jax.model.layers import images_to_unit_float

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEPTHS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}


def _norm(kind: str, channels: int, groups: int, *, dtype, rngs, zero_init: bool = False):
    scale_init = nnx.initializers.zeros if zero_init else nnx.initializers.ones
    if kind == "group":
        num_groups = min(groups, channels)
        while channels % num_groups:  # small test widths: largest group count ≤ groups dividing channels
            num_groups -= 1
        return nnx.GroupNorm(channels, num_groups, epsilon=1e-5, dtype=dtype, scale_init=scale_init, rngs=rngs)
    if kind == "batch":
        return nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, dtype=dtype, scale_init=scale_init, rngs=rngs)
    raise ValueError(f"unknown ResNet norm {kind!r}; choose 'group' or 'batch'")


def _conv(cin, cout, k, stride=1, *, dtype, rngs):
    pad = k // 2
    return nnx.Conv(cin, cout, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                    use_bias=False, dtype=dtype,
                    kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"), rngs=rngs)


class Bottleneck(nnx.Module):
    """1×1 → 3×3 (stride) → 1×1 (×4 channels), residual with an optional 1×1 projection."""

    def __init__(self, cin: int, planes: int, stride: int, norm: str, groups: int, *, dtype, rngs):
        cout = planes * 4
        self.conv1 = _conv(cin, planes, 1, dtype=dtype, rngs=rngs)
        self.norm1 = _norm(norm, planes, groups, dtype=dtype, rngs=rngs)
        self.conv2 = _conv(planes, planes, 3, stride, dtype=dtype, rngs=rngs)
        self.norm2 = _norm(norm, planes, groups, dtype=dtype, rngs=rngs)
        self.conv3 = _conv(planes, cout, 1, dtype=dtype, rngs=rngs)
        # Zero-init of the last norm's scale makes each block start as the identity (Goyal et al.).
        self.norm3 = _norm(norm, cout, groups, dtype=dtype, rngs=rngs, zero_init=True)
        if stride != 1 or cin != cout:
            self.downsample = nnx.Sequential(_conv(cin, cout, 1, stride, dtype=dtype, rngs=rngs),
                                             _norm(norm, cout, groups, dtype=dtype, rngs=rngs))
        else:
            self.downsample = None

    def __call__(self, x):
        y = nnx.relu(self.norm1(self.conv1(x)))
        y = nnx.relu(self.norm2(self.conv2(y)))
        y = self.norm3(self.conv3(y))
        return nnx.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nnx.Module):
    """images (B, S, S, 3) uint8 or float in [0, 1] → tokens (B, (S/32)², 32·base_width).

    Tokens are the last feature map in row-major order (top-left first) plus a learned
    positional embedding.
    """

    def __init__(self, depths=(3, 4, 6, 3), base_width: int = 64, image_size: int = 224, norm: str = "group",
                 groups: int = 32, *, dtype=jnp.float32, rngs: nnx.Rngs):
        if image_size % 32:
            raise ValueError(f"ResNet image_size must be a multiple of 32, got {image_size}")
        self.image_size, self.dtype = image_size, dtype
        self.conv1 = _conv(3, base_width, 7, 2, dtype=dtype, rngs=rngs)
        self.norm1 = _norm(norm, base_width, groups, dtype=dtype, rngs=rngs)
        blocks, cin = [], base_width
        for stage, n in enumerate(depths):
            planes = base_width * 2**stage
            for i in range(n):
                stride = 2 if (i == 0 and stage > 0) else 1
                blocks.append(Bottleneck(cin, planes, stride, norm, groups, dtype=dtype, rngs=rngs))
                cin = planes * 4
        self.blocks = nnx.List(blocks)
        self.width = cin
        grid = image_size // 32
        self.positional_embedding = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (grid * grid, cin)))

    @property
    def num_tokens(self) -> int:
        return (self.image_size // 32) ** 2

    def __call__(self, images):
        x = images_to_unit_float(images, self.image_size)
        x = ((x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)).astype(self.dtype)
        x = nnx.relu(self.norm1(self.conv1(x)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for block in self.blocks:
            x = block(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        return x + self.positional_embedding[...].astype(x.dtype)
