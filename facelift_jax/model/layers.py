"""Transformer building blocks shared by the ViT encoder and the landmark/pose decoder.

Token arrays are (B, L, D): batch, sequence, features. Parameter names follow OpenAI CLIP's
``ResidualAttentionBlock`` (``ln_1``, ``attn``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``) so that a
FaRL/CLIP checkpoint maps onto them one to one (see ``bridges/farl.py``); CLIP's packed
``in_proj_weight`` is kept as three separate projections ``q_proj``, ``k_proj``, ``v_proj``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

LAYER_NORM_EPS = 1e-5  # CLIP / FaRL (torch.nn.LayerNorm default)


def quick_gelu(x):
    """CLIP's QuickGELU, x·σ(1.702x)."""
    return x * jax.nn.sigmoid(1.702 * x)


def gelu(x):
    """Exact (erf) GELU, as torch.nn.GELU()."""
    return jax.nn.gelu(x, approximate=False)


ACTIVATIONS: dict[str, Callable] = {"quick_gelu": quick_gelu, "gelu": gelu}


def layer_norm(width: int, *, dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    return nnx.LayerNorm(width, epsilon=LAYER_NORM_EPS, dtype=dtype, rngs=rngs)


class Attention(nnx.Module):
    """Multi-head scaled dot-product attention, softmax(q kᵀ/√d_head) v, no mask.

    ``x`` (B, Lq, width) attends to ``context`` (B, Lk, context_width) (self-attention when
    ``context`` is None). Output (B, Lq, width).
    """

    def __init__(self, width: int, heads: int, *, context_width: int | None = None, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by heads {heads}")
        context_width = width if context_width is None else context_width
        init = nnx.initializers.xavier_uniform()
        kw = dict(dtype=dtype, kernel_init=init, rngs=rngs)
        self.heads = heads
        self.q_proj = nnx.Linear(width, width, **kw)
        self.k_proj = nnx.Linear(context_width, width, **kw)
        self.v_proj = nnx.Linear(context_width, width, **kw)
        self.out_proj = nnx.Linear(width, width, **kw)

    def __call__(self, x, context=None):
        context = x if context is None else context
        B, Lq, W = x.shape[0], x.shape[1], self.q_proj.out_features
        split = lambda t: t.reshape(t.shape[0], t.shape[1], self.heads, W // self.heads)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(context)), split(self.v_proj(context))
        out = jax.nn.dot_product_attention(q, k, v)  # (B, Lq, heads, head_dim)
        return self.out_proj(out.reshape(B, Lq, W))


class MLP(nnx.Module):
    """c_fc → activation → c_proj, (B, L, width) → (B, L, width)."""

    def __init__(self, width: int, hidden: int, activation: str = "gelu", *, dtype=jnp.float32, rngs: nnx.Rngs):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.c_fc = nnx.Linear(width, hidden, dtype=dtype, rngs=rngs)
        self.c_proj = nnx.Linear(hidden, width, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.c_proj(ACTIVATIONS[self.activation](self.c_fc(x)))


class ResidualAttentionBlock(nnx.Module):
    """CLIP's pre-LN block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, activation: str = "quick_gelu", *,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        self.ln_1 = layer_norm(width, dtype=dtype, rngs=rngs)
        self.attn = Attention(width, heads, dtype=dtype, rngs=rngs)
        self.ln_2 = layer_norm(width, dtype=dtype, rngs=rngs)
        self.mlp = MLP(width, int(round(width * mlp_ratio)), activation, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def count_parameters(module: nnx.Module) -> int:
    """Number of scalars in the module's nnx.Param leaves (works on nnx.eval_shape outputs too)."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(module, nnx.Param))))


def images_to_unit_float(images, image_size: int, dtype=jnp.float32):
    """(B, H, W, 3) uint8 in [0, 255] or float in [0, 1] → float in [0, 1], with shape checks."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (B, H, W, 3) RGB, got shape {tuple(images.shape)}")
    if images.shape[1] != image_size or images.shape[2] != image_size:
        raise ValueError(f"images must be {image_size}×{image_size} (config.image_size, the model input side), "
                         f"got {images.shape[1]}×{images.shape[2]}")
    if images.dtype == jnp.uint8:
        return images.astype(dtype) / 255.0
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    return images.astype(dtype)
