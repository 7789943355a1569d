"""Landmark-and-pose transformer decoder of Fig. 4.

A learned embedding gives one query token per landmark (98) and three pose tokens (rotation,
T_xy, T_z). Each of ``depth`` (3 in the paper) blocks applies, each with its own LayerNorm in
front (pre-LN): cross-attention of the tokens to the image tokens, self-attention over the
landmark+pose sequence, and an MLP.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from facelift_jax.model.layers import MLP, Attention, layer_norm

NUM_POSE_TOKENS = 3  # rotation, T_xy, T_z (in this order, after the landmark tokens)


class DecoderBlock(nnx.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.ln_cross = layer_norm(width, dtype=dtype, rngs=rngs)
        self.cross_attn = Attention(width, heads, dtype=dtype, rngs=rngs)
        self.ln_self = layer_norm(width, dtype=dtype, rngs=rngs)
        self.self_attn = Attention(width, heads, dtype=dtype, rngs=rngs)
        self.ln_mlp = layer_norm(width, dtype=dtype, rngs=rngs)
        self.mlp = MLP(width, int(round(width * mlp_ratio)), "gelu", dtype=dtype, rngs=rngs)

    def __call__(self, x, image_tokens):
        """x (B, Q, width) queries, image_tokens (B, L, width) → (B, Q, width)."""
        x = x + self.cross_attn(self.ln_cross(x), image_tokens)
        x = x + self.self_attn(self.ln_self(x))
        return x + self.mlp(self.ln_mlp(x))


class LandmarkPoseDecoder(nnx.Module):
    """image tokens (B, L, image_width) → (B, num_landmarks + 3, width) landmark and pose tokens.

    The image tokens are projected to the decoder width and layer-normalized once (they are the
    keys/values of every cross-attention); the output tokens get a final LayerNorm for the heads.
    """

    def __init__(self, image_width: int, width: int, depth: int = 3, heads: int = 8, mlp_ratio: float = 4.0,
                 num_landmarks: int = 98, *, dtype=jnp.float32, rngs: nnx.Rngs):
        self.num_landmarks = num_landmarks
        self.image_proj = nnx.Linear(image_width, width, dtype=dtype, rngs=rngs)
        self.ln_image = layer_norm(width, dtype=dtype, rngs=rngs)
        self.queries = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (num_landmarks + NUM_POSE_TOKENS, width)))
        self.blocks = nnx.List([DecoderBlock(width, heads, mlp_ratio, dtype=dtype, rngs=rngs) for _ in range(depth)])
        self.ln_out = layer_norm(width, dtype=dtype, rngs=rngs)

    def __call__(self, image_tokens):
        memory = self.ln_image(self.image_proj(image_tokens))
        q = self.queries[...].astype(memory.dtype)
        x = jnp.broadcast_to(q, (memory.shape[0],) + q.shape)
        for block in self.blocks:
            x = block(x, memory)
        return self.ln_out(x)
