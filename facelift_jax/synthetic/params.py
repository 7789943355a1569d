"""Latent → face parameters (identity, expression, appearance), deterministic by seed.

A latent is any integer (int64 range). It is split into two 32-bit words folded into a PRNG key,
so that seeds ≥ 2³¹ and negative seeds are distinct and valid. Sampling is written for one latent
and vmapped.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from facelift_jax.batching import next_power_of_two, pad_batch
from facelift_jax.synthetic import mesh

NUM_IDENTITY = len(mesh.IDENTITY_NAMES)
NUM_EXPRESSION = len(mesh.EXPRESSION_NAMES)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FaceParams:
    """One face (or a batch, leading axes ...).

    identity (..., Ki) coefficients of mesh.IDENTITY_NAMES (≈ N(0, 1); hair_volume in [0, 1];
    eye_opening in [0.15, 0.45]: the resting lid opening beyond the canonical mesh's);
    expression (..., Ke) of mesh.EXPRESSION_NAMES (jaw_open, smiles, pucker, blinks in [0, 1] where a
    blink of 1 closes the eye; brow_raise in [−0.5, 1]); colours (..., 3) linear RGB in [0, 1]: skin, hair, brows, lips, iris;
    light_dir (..., 3) unit world vector toward the light; light (..., 2) ambient, diffuse;
    background (..., 2, 3) top and bottom colours; hairline (..., 3) mesh-frame cm: hairline height
    at the forehead, nape height, and the depth z behind which the scalp is hair.
    """

    identity: jax.Array
    expression: jax.Array
    skin: jax.Array
    hair: jax.Array
    brows: jax.Array
    lips: jax.Array
    iris: jax.Array
    light_dir: jax.Array
    light: jax.Array
    background: jax.Array
    hairline: jax.Array

    def __getitem__(self, index) -> "FaceParams":
        return jax.tree_util.tree_map(lambda x: x[index], self)

    def replace(self, **kw) -> "FaceParams":
        return dataclasses.replace(self, **kw)


_SKIN_LIGHT = jnp.array([0.95, 0.80, 0.70])
_SKIN_DARK = jnp.array([0.36, 0.23, 0.16])
_HAIR = jnp.array([[0.05, 0.04, 0.035], [0.22, 0.13, 0.07], [0.42, 0.28, 0.16], [0.80, 0.65, 0.40],
                   [0.55, 0.22, 0.10], [0.62, 0.60, 0.58]])
_HAIR_P = jnp.array([0.3, 0.25, 0.18, 0.12, 0.07, 0.08])
_IRIS = jnp.array([[0.30, 0.17, 0.08], [0.12, 0.07, 0.04], [0.25, 0.42, 0.60], [0.30, 0.45, 0.25]])


def latent_keys(latents, base_seed: int = 0) -> jax.Array:
    """(B,) integer latents → (B,) PRNG keys; any int64 value is valid."""
    lat = np.asarray(latents)
    if lat.ndim != 1 or not np.issubdtype(lat.dtype, np.integer):
        raise ValueError(f"latents must be a 1-D array of integer seeds, got dtype {lat.dtype} shape {lat.shape}")
    u = lat.astype(np.int64).view(np.uint64)
    hi = (u >> np.uint64(32)).astype(np.uint32)
    lo = (u & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    base = jax.random.key(base_seed)
    return jax.vmap(lambda h, l: jax.random.fold_in(jax.random.fold_in(base, h), l))(hi, lo)


def sample_params(key, identity_scale: float = 1.0, expression_scale: float = 1.0) -> FaceParams:
    """One face's parameters from one PRNG key."""
    ks = iter(jax.random.split(key, 48))
    u = lambda shape=(), lo=0.0, hi=1.0: jax.random.uniform(next(ks), shape, minval=lo, maxval=hi)  # noqa: E731
    identity = jnp.clip(jax.random.normal(next(ks), (NUM_IDENTITY,)), -2.5, 2.5) * identity_scale
    identity = identity.at[-2].set(u())  # hair volume ≥ 0
    # MediaPipe's canonical eyes are narrow: eyes at rest open wider than the mesh by this fraction
    identity = identity.at[-1].set(u(lo=0.15, hi=0.45))
    # expressions: mostly near neutral, sometimes strong, like faces in the wild
    strong = u((NUM_EXPRESSION,)) < jnp.array([0.3, 0.35, 0.35, 0.12, 0.12, 0.12, 0.25])
    amount = jnp.where(strong, u((NUM_EXPRESSION,), 0.4, 1.0), u((NUM_EXPRESSION,), 0.0, 0.2))
    smile = u() < 0.35
    asym = u((2,), 0.6, 1.0)
    amount = amount.at[1:3].set(jnp.where(smile, amount[1:3].max() * asym, amount[1:3] * 0.3))
    both_blink = u() < 0.06
    amount = amount.at[4:6].set(jnp.where(both_blink, u(lo=0.8), amount[4:6]))

    amount = amount.at[6].set(amount[6] * jnp.where(u() < 0.3, -0.5, 1.0))
    expression = amount * expression_scale

    tone = u()
    skin = (1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK
    skin = jnp.clip(skin * (1 + 0.06 * jax.random.normal(next(ks), (3,))), 0, 1)
    hair = _HAIR[jax.random.choice(next(ks), len(_HAIR), p=_HAIR_P)] * u(lo=0.8, hi=1.2) * u((3,), 0.95, 1.05)
    brows = 0.75 * hair * u(lo=0.6, hi=1.0) + 0.12 * skin
    lips = jnp.clip(skin * jnp.array([0.92, 0.58, 0.58]) * u((3,), 0.85, 1.1), 0, 1)
    iris = _IRIS[jax.random.randint(next(ks), (), 0, len(_IRIS))] * u((3,), 0.8, 1.2)
    az, el = jnp.deg2rad(u(lo=-70, hi=70)), jnp.deg2rad(u(lo=-15, hi=55))
    light_dir = jnp.stack([jnp.cos(el) * jnp.sin(az), jnp.sin(el), jnp.cos(el) * jnp.cos(az)])
    light = jnp.stack([u(lo=0.28, hi=0.45), u(lo=0.55, hi=0.85)])
    background = u((2, 3), 0.05, 0.95) * u(lo=0.5, hi=1.0)
    bald = u() < 0.06
    hairline = jnp.stack([jnp.where(bald, 20.0, u(lo=6.2, hi=8.6)), u(lo=-9.0, hi=-3.0), u(lo=-6.5, hi=-3.8)])
    return FaceParams(identity=identity, expression=expression, skin=skin, hair=jnp.clip(hair, 0, 1),
                      brows=jnp.clip(brows, 0, 1), lips=lips, iris=jnp.clip(iris, 0, 1), light_dir=light_dir,
                      light=light, background=background, hairline=hairline)


def params_from_latents(latents, base_seed: int = 0, identity_scale: float = 1.0,
                        expression_scale: float = 1.0) -> FaceParams:
    """(B,) integer latents → batched FaceParams (B, ...)."""
    keys = latent_keys(latents, base_seed)
    return _sample_batch(keys, identity_scale, expression_scale)


@jax.jit
def _sample_batch_jit(keys, identity_scale, expression_scale):
    return jax.vmap(sample_params, in_axes=(0, None, None))(keys, identity_scale, expression_scale)


def bucket(n: int) -> int:
    """Batch sizes are padded to powers of two (at least 8) so that jitted functions compile only a
    few times; the geometry of a padded face costs far less than a compilation."""
    return max(8, next_power_of_two(n))


def _sample_batch(keys, identity_scale, expression_scale):
    n = keys.shape[0]
    out = _sample_batch_jit(pad_batch(keys, bucket(n)), jnp.float32(identity_scale), jnp.float32(expression_scale))
    return out[:n]
