"""MediaPipe's face-mesh CNN (``face_landmark.tflite``) as an NNX encoder: a face-pretrained trunk.

The network (read off the vendored ``bridges/assets/face_landmark.tflite``, Apache-2.0; weights
loaded by ``bridges/face_mesh.py``) was trained by Google on real face crops to regress a 468-point
3D mesh. Input: an RGB crop in [0, 1] (192² natively). Layout::

    stem      3×3 conv, stride 2, TF 'SAME' (3 → 16) → PReLU                         (S/2)², 16
    trunk     14 residual blocks, (out channels, stride):
              (16,1) (16,1) | (32,2) (32,1) (32,1) | (64,2) (64,1) (64,1) |
              (128,2) (128,1) (128,1) | (128,2) (128,1) (128,1)
              maps after blocks 1, 4, 7, 10, 13: strides 2, 4, 8, 16, 32
              (at 192²: 96²×16, 48²×32, 24²×64, 12²×128, 6²×128)
    mesh      from the stride-32 map: blocks (128,2) (128,1) (128,1) → 1×1 conv 128 → 32 → PReLU
              → block (32,1) → 3×3 'VALID' conv, stride 3 → 1404 = 468 × (x, y, z) crop pixels
    presence  from the stride-32 map: block (128,2) → 1×1 conv → 32 → PReLU → block (32,1)
              → 3×3 'VALID' conv → 1 face-presence logit

a residual block = 3×3 depthwise conv (TF 'SAME', stride s, + bias) → 1×1 conv (+ bias); the
skip is the input (s = 1) or its 2×2 max pool (s = 2), zero-padded in channels when the block
widens; then ``PReLU(skip + y)`` with one slope per channel. (TF 'SAME' at stride 2 on an even
side pads (0, 1): the bottom/right row only.) The mesh head needs a 3² map, i.e. 192² inputs;
the trunk (and so the tokens) runs at any multiple of 32.

Tokens for the decoder, as the EfficientNet encoder makes them: the maps of ``token_strides``
(a subset of 8, 16, 32, and 64 = the mesh branch's 128-channel map before its reduction, which
needs a multiple of 64) flattened row-major, each projected by its own ``nnx.Linear`` to
``width`` with a learned positional embedding (init N(0, 0.02²)), concatenated.
192² with strides (16, 32): 144 + 36 = 180 tokens. ``mesh_tokens`` adds one token per point of the
network's own 468-point mesh output (x, y, z / 192 → ``nnx.Linear`` to ``width`` + a learned
embedding per point): the face's geometry as the pretrained network sees it (192² inputs only).

``frozen_blocks`` = k > 0 stops the gradient after the stem and the first k − 1 trunk blocks
(k = 0: nothing frozen): their backward pass is not computed at all, which is where most of the
trunk's cost is (the high-resolution maps). The parameters stay ``nnx.Param`` (checkpointed and
exported like the others); they simply receive zero gradient.

The module is a pure function of its ``nnx.Param`` state (no batch statistics).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from facelift_jax.model.efficientnet import depthwise_conv, same_padding
from facelift_jax.model.layers import images_to_unit_float

STEM_WIDTH = 16
TRUNK = ((16, 1), (16, 1), (32, 2), (32, 1), (32, 1), (64, 2), (64, 1), (64, 1),
         (128, 2), (128, 1), (128, 1), (128, 2), (128, 1), (128, 1))
# output stride → index of the trunk block whose output is that map
MAP_BLOCKS = {2: 1, 4: 4, 8: 7, 16: 10, 32: 13}
MESH_BLOCKS, MESH_REDUCED, MESH_TAIL = ((128, 2), (128, 1), (128, 1)), 32, ((32, 1),)
PRESENCE_BLOCKS = ((128, 2),)
NUM_MESH_POINTS = 468
NATIVE_SIZE = 192
TOKEN_CHANNELS = {8: 64, 16: 128, 32: 128, 64: 128}


def prelu(x, alpha):
    """PReLU with per-channel slopes alpha (C,): x for x ≥ 0, alpha·x below."""
    return jnp.where(x >= 0, x, x * alpha)


def max_pool_2x2(x):
    """(B, H, W, C) → (B, H/2, W/2, C), 2×2 windows, stride 2 ('VALID'; H and W even)."""
    B, H, W, C = x.shape
    if H % 2 or W % 2:
        raise ValueError(f"2×2 max pool needs an even map, got {H}×{W} (image size not a multiple of 32?)")
    return x.reshape(B, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))


def _param(rngs: nnx.Rngs, shape, std: float):
    return nnx.Param(std * jax.random.normal(rngs.params(), shape))


class ResidualBlock(nnx.Module):
    """(B, H, W, cin) → (B, H/s, W/s, cout): PReLU(skip + pointwise(depthwise(x))) (module doc)."""

    def __init__(self, cin: int, cout: int, stride: int, *, dtype, rngs: nnx.Rngs):
        if stride not in (1, 2) or cout < cin or (stride == 1 and cout != cin):
            raise ValueError(f"unsupported block {cin}→{cout}, stride {stride}")
        self.dw_kernel = _param(rngs, (3, 3, cin), math.sqrt(2.0 / 9))
        self.dw_bias = nnx.Param(jnp.zeros((cin,)))
        self.pw_kernel = _param(rngs, (cin, cout), math.sqrt(1.0 / cin))
        self.pw_bias = nnx.Param(jnp.zeros((cout,)))
        self.alpha = nnx.Param(jnp.full((cout,), 0.25))
        self.cin, self.cout, self.stride, self.dtype = cin, cout, stride, dtype

    def __call__(self, x):
        p = lambda v: v[...].astype(self.dtype)  # noqa: E731
        y = depthwise_conv(x, p(self.dw_kernel), self.stride) + p(self.dw_bias)
        y = y @ p(self.pw_kernel) + p(self.pw_bias)
        skip = x if self.stride == 1 else max_pool_2x2(x)
        if self.cout > self.cin:
            skip = jnp.pad(skip, ((0, 0), (0, 0), (0, 0), (0, self.cout - self.cin)))
        return prelu(skip + y, p(self.alpha))


class PointwisePReLU(nnx.Module):
    """(…, cin) → (…, cout): 1×1 conv + bias → PReLU (the branches' channel reduction)."""

    def __init__(self, cin: int, cout: int, *, dtype, rngs: nnx.Rngs):
        self.kernel = _param(rngs, (cin, cout), math.sqrt(1.0 / cin))
        self.bias = nnx.Param(jnp.zeros((cout,)))
        self.alpha = nnx.Param(jnp.full((cout,), 0.25))
        self.dtype = dtype

    def __call__(self, x):
        p = lambda v: v[...].astype(self.dtype)  # noqa: E731
        return prelu(x @ p(self.kernel) + p(self.bias), p(self.alpha))


class ValidHead(nnx.Module):
    """(B, 3, 3, cin) → (B, out): a 3×3 'VALID' conv on a 3² map (a matmul on the flattened map)."""

    def __init__(self, cin: int, out: int, *, dtype, rngs: nnx.Rngs):
        self.kernel = _param(rngs, (3, 3, cin, out), math.sqrt(1.0 / (9 * cin)))
        self.bias = nnx.Param(jnp.zeros((out,)))
        self.dtype = dtype

    def __call__(self, x):
        if x.shape[1:3] != (3, 3):
            raise ValueError(f"the mesh head needs a 3×3 map ({NATIVE_SIZE}² input), got {x.shape[1]}×{x.shape[2]}")
        w = self.kernel[...].astype(self.dtype)
        return x.reshape(x.shape[0], -1) @ w.reshape(-1, w.shape[-1]) + self.bias[...].astype(self.dtype)


class Branch(nnx.Module):
    """The stride-32 map → [blocks] → 1×1 reduction + PReLU → [tail blocks] → 3×3 head."""

    def __init__(self, blocks, reduced: int, tail, out: int, *, dtype, rngs: nnx.Rngs):
        cin, layers = TRUNK[-1][0], []
        for cout, stride in blocks:
            layers.append(ResidualBlock(cin, cout, stride, dtype=dtype, rngs=rngs))
            cin = cout
        self.blocks = nnx.List(layers)
        self.reduce = PointwisePReLU(cin, reduced, dtype=dtype, rngs=rngs)
        self.tail = nnx.List([ResidualBlock(reduced, c, s, dtype=dtype, rngs=rngs) for c, s in tail])
        self.head = ValidHead(reduced, out, dtype=dtype, rngs=rngs)

    def features(self, x):
        """The branch's 128-channel map before the reduction (stride 64)."""
        for block in self.blocks:
            x = block(x)
        return x

    def __call__(self, x):
        return self.head_from_features(self.features(x))

    def head_from_features(self, x):
        """``features``' map → the head's output (B, out)."""
        x = self.reduce(x)
        for block in self.tail:
            x = block(x)
        return self.head(x)


class FaceMeshNet(nnx.Module):
    """The whole face-mesh network: images (B, S, S, 3) uint8 or [0, 1] float → maps, mesh, presence.

    ``branches=False`` builds the stem and trunk only (an encoder that needs no stride-64 map).
    """

    def __init__(self, image_size: int = NATIVE_SIZE, *, branches: bool = True, frozen_blocks: int = 0,
                 dtype=jnp.float32, rngs: nnx.Rngs):
        if image_size <= 0 or image_size % 32:
            raise ValueError(f"the face-mesh trunk needs an image size that is a positive multiple of 32 "
                             f"(output stride 32), got {image_size}")
        if not 0 <= frozen_blocks <= len(TRUNK) + 1:
            raise ValueError(f"frozen_blocks must be in [0, {len(TRUNK) + 1}], got {frozen_blocks}")
        self.image_size, self.frozen_blocks, self.dtype = int(image_size), int(frozen_blocks), dtype
        self.stem_kernel = _param(rngs, (3, 3, 3, STEM_WIDTH), math.sqrt(2.0 / 27))
        self.stem_bias = nnx.Param(jnp.zeros((STEM_WIDTH,)))
        self.stem_alpha = nnx.Param(jnp.full((STEM_WIDTH,), 0.25))
        blocks, cin = [], STEM_WIDTH
        for cout, stride in TRUNK:
            blocks.append(ResidualBlock(cin, cout, stride, dtype=dtype, rngs=rngs))
            cin = cout
        self.trunk = nnx.List(blocks)
        self.mesh = Branch(MESH_BLOCKS, MESH_REDUCED, MESH_TAIL, 3 * NUM_MESH_POINTS, dtype=dtype,
                           rngs=rngs) if branches else None
        self.presence = Branch(PRESENCE_BLOCKS, MESH_REDUCED, MESH_TAIL, 1, dtype=dtype,
                               rngs=rngs) if branches else None

    def _stem(self, images):
        x = images_to_unit_float(images, self.image_size).astype(self.dtype)
        w = self.stem_kernel[...].astype(self.dtype)
        pad = (same_padding(x.shape[1], 3, 2), same_padding(x.shape[2], 3, 2))
        y = jax.lax.conv_general_dilated(x, w, (2, 2), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return prelu(y + self.stem_bias[...].astype(self.dtype), self.stem_alpha[...].astype(self.dtype))

    def trunk_maps(self, images, last_stride: int = 32) -> dict[int, jax.Array]:
        """{output stride: map} for strides 2 … ``last_stride`` (module doc), running only the blocks needed."""
        x = self._stem(images)
        if self.frozen_blocks == 1:
            x = jax.lax.stop_gradient(x)
        maps, last = {}, MAP_BLOCKS[last_stride]
        for i, block in enumerate(self.trunk[:last + 1]):
            x = block(x)
            if self.frozen_blocks and i == self.frozen_blocks - 2:
                x = jax.lax.stop_gradient(x)
            for s, b in MAP_BLOCKS.items():
                if b == i:
                    maps[s] = x
        return maps

    def __call__(self, images) -> tuple[jax.Array, jax.Array]:
        """(mesh (B, 468, 3) in crop pixels of a 192² input, presence logit (B,)) — the .tflite outputs."""
        if self.mesh is None:
            raise ValueError("this FaceMeshNet was built with branches=False (no mesh or presence head)")
        x = self.trunk_maps(images)[32]
        return self.mesh(x).reshape(-1, NUM_MESH_POINTS, 3), self.presence(x)[:, 0]


class FaceMeshEncoder(nnx.Module):
    """images (B, S, S, 3) → tokens (B, Σ_s (S/s)², width) from the face-mesh maps of ``token_strides``."""

    def __init__(self, image_size: int = NATIVE_SIZE, width: int = 256, token_strides=(16, 32), *,
                 mesh_tokens: bool = False, frozen_blocks: int = 0, dtype=jnp.float32, rngs: nnx.Rngs):
        token_strides = tuple(int(s) for s in token_strides)
        if not token_strides or not set(token_strides) <= set(TOKEN_CHANNELS):
            raise ValueError(f"token_strides must be a non-empty subset of {tuple(TOKEN_CHANNELS)}, got {token_strides}")
        if 64 in token_strides and image_size % 64:
            raise ValueError(f"token stride 64 (the mesh branch's map) needs an image size that is a multiple of 64, "
                             f"got {image_size}")
        if mesh_tokens and image_size != NATIVE_SIZE:
            raise ValueError(f"mesh_tokens needs the network's native {NATIVE_SIZE}² input, got {image_size}")
        self.mesh_tokens = bool(mesh_tokens)
        self.net = FaceMeshNet(image_size, branches=64 in token_strides or self.mesh_tokens,
                               frozen_blocks=frozen_blocks, dtype=dtype, rngs=rngs)
        self.net.presence = None  # the face-presence branch gives no tokens
        self.token_strides, self.image_size, self.width, self.dtype = token_strides, int(image_size), int(width), dtype
        for s in token_strides:
            n = (self.image_size // s) ** 2
            setattr(self, f"proj{s}", nnx.Linear(TOKEN_CHANNELS[s], self.width, dtype=dtype, rngs=rngs))
            setattr(self, f"pos{s}", nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (n, self.width))))
        if self.mesh_tokens:
            self.proj_mesh = nnx.Linear(3, self.width, dtype=dtype, rngs=rngs)
            self.pos_mesh = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (NUM_MESH_POINTS, self.width)))

    @property
    def num_tokens(self) -> int:
        return sum((self.image_size // s) ** 2 for s in self.token_strides) + NUM_MESH_POINTS * self.mesh_tokens

    def features(self, images) -> dict[int, jax.Array]:
        """{stride: (B, S/s, S/s, C_s)} for the token strides."""
        maps = self._maps(images)
        return {s: maps[s] for s in self.token_strides}

    def _maps(self, images) -> dict:
        deep = 64 in self.token_strides or self.mesh_tokens
        maps = self.net.trunk_maps(images, 32 if deep else max(self.token_strides))
        if deep:
            maps[64] = self.net.mesh.features(maps[32])
        return maps

    def __call__(self, images):
        maps, tokens = self._maps(images), []
        for s in self.token_strides:
            f = maps[s]
            proj, pos = getattr(self, f"proj{s}"), getattr(self, f"pos{s}")
            tokens.append(proj(f.reshape(f.shape[0], -1, f.shape[-1])) + pos[...].astype(self.dtype))
        if self.mesh_tokens:
            mesh = self.net.mesh.head_from_features(maps[64]).reshape(-1, NUM_MESH_POINTS, 3) / NATIVE_SIZE
            tokens.append(self.proj_mesh(mesh) + self.pos_mesh[...].astype(self.dtype))
        return jnp.concatenate(tokens, axis=1)
