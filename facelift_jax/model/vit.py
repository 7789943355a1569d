"""ViT image encoder in the exact layout of FaRL's image tower (OpenAI CLIP ``VisualTransformer``).

CLIP ViT-B/16 = width 768, 12 layers, 12 heads, patch 16, 224² input: 197 tokens (class + 14×14
patches), ≈ 86M parameters. Parameter names mirror the torch state dict under ``visual.``:
``conv1`` (bias-free patch embedding), ``class_embedding``, ``positional_embedding``, ``ln_pre``,
``resblocks[i]`` (``ln_1``, ``attn.{q,k,v,out}_proj``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``),
``ln_post``. CLIP's final ``proj`` (768→512, the contrastive embedding) is not part of this
encoder: the regressor consumes all tokens, not the pooled embedding.

``stem="conv"`` replaces the patch embedding by a convolutional stem (Xiao et al., "Early
Convolutions Help Transformers See Better", 2021): log2(patch) 3×3 stride-2 convolutions (each
GroupNorm + GELU, channels doubling up to ``stem_width``) and a 1×1 projection to the width. Same
token grid; its cost grows with ``stem_width`` (configs/default.py's 256 at 128²: ~62M
multiply-adds per image, about twice the tiny ViT's four blocks). A from-scratch ViT learns head
pose with it where the patch embedding did not (measurements in configs/default.py), which is
what the CPU-sized configs need.
FaRL/CLIP weights only fit ``stem="patch"`` (the default).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from facelift_jax.model.layers import ResidualAttentionBlock, gelu, images_to_unit_float, layer_norm

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


STEMS = ("patch", "conv")


class ConvStem(nnx.Module):
    """(B, S, S, 3) → (B, S/patch, S/patch, width): 3×3/2 convs (GroupNorm, GELU), then 1×1 to width."""

    def __init__(self, patch: int, width: int, stem_width: int | None = None, *, dtype, rngs: nnx.Rngs):
        n = patch.bit_length() - 1
        if patch < 2 or 2**n != patch:
            raise ValueError(f"stem='conv' needs a power-of-two patch >= 2, got {patch}")
        # The last conv has stem_width channels, each earlier one half as many: stem_width 256,
        # patch 16 → 32, 64, 128, 256 (default stem_width: the ViT width).
        stem_width = int(stem_width or width)
        if stem_width < 1:
            raise ValueError(f"stem_width must be positive, got {stem_width}")
        chans = [max(stem_width // 2 ** (n - 1 - i), 1) for i in range(n)]
        self.convs = nnx.List()
        self.norms = nnx.List()
        cin = 3
        for c in chans:
            self.convs.append(nnx.Conv(cin, c, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False,
                                       dtype=dtype, rngs=rngs))
            groups = next(g for g in (8, 4, 2, 1) if c % g == 0)
            self.norms.append(nnx.GroupNorm(c, groups, epsilon=1e-5, dtype=dtype, rngs=rngs))
            cin = c
        self.proj = nnx.Conv(cin, width, (1, 1), dtype=dtype, rngs=rngs)

    def __call__(self, x):
        for conv, norm in zip(self.convs, self.norms):
            x = gelu(norm(conv(x)))
        return self.proj(x)


class VisionTransformer(nnx.Module):
    """images (B, S, S, 3) uint8 or float in [0, 1] → tokens (B, 1 + (S/patch)², width).

    Token 0 is the class token; then the patches in row-major order (top-left first). The output
    is ``ln_post`` of the last block, as in CLIP before its projection.
    """

    def __init__(self, width: int = 768, depth: int = 12, heads: int = 12, patch: int = 16,
                 image_size: int = 224, mlp_ratio: float = 4.0, stem: str = "patch", stem_width: int | None = None,
                 *, dtype=jnp.float32, rngs: nnx.Rngs):
        if stem not in STEMS:
            raise ValueError(f"unknown ViT stem {stem!r}; choose from {STEMS}")
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch}")
        self.image_size, self.patch, self.width = image_size, patch, width
        self.dtype = dtype
        grid = image_size // patch
        scale = width**-0.5  # CLIP's init of the embeddings
        self.stem = stem
        if stem == "patch":
            self.conv1 = nnx.Conv(3, width, (patch, patch), strides=(patch, patch), padding="VALID",
                                  use_bias=False, dtype=dtype, rngs=rngs)
        else:
            self.conv_stem = ConvStem(patch, width, stem_width, dtype=dtype, rngs=rngs)
        self.class_embedding = nnx.Param(scale * nnx.initializers.normal(1.0)(rngs.params(), (width,)))
        self.positional_embedding = nnx.Param(
            scale * nnx.initializers.normal(1.0)(rngs.params(), (grid * grid + 1, width)))
        self.ln_pre = layer_norm(width, dtype=dtype, rngs=rngs)
        self.resblocks = nnx.List([
            ResidualAttentionBlock(width, heads, mlp_ratio, "quick_gelu", dtype=dtype, rngs=rngs)
            for _ in range(depth)])
        self.ln_post = layer_norm(width, dtype=dtype, rngs=rngs)

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch) ** 2 + 1

    def __call__(self, images):
        x = images_to_unit_float(images, self.image_size)
        x = (x - jnp.asarray(CLIP_MEAN)) / jnp.asarray(CLIP_STD)
        embed = self.conv1 if self.stem == "patch" else self.conv_stem
        x = embed(x.astype(self.dtype))  # (B, g, g, width)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        cls = jnp.broadcast_to(self.class_embedding[...].astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
        x = jnp.concatenate([cls, x], axis=1) + self.positional_embedding[...].astype(x.dtype)
        x = self.ln_pre(x)
        for block in self.resblocks:
            x = block(x)
        return self.ln_post(x)
