"""Batches for jitted functions: fixed shapes (few compile, padding rows are dropped after) and
the one-axis "data" mesh they are sharded on.

``pad_batch(tree, n)`` pads the leading axis of every leaf to ``n`` by repeating its last row
(numpy leaves stay numpy, jax leaves stay jax); ``next_power_of_two(n)`` is the usual bucket size;
``data_mesh()`` is the mesh of every device on one axis "data" (training and lifting).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def data_mesh() -> jax.sharding.Mesh:
    """Every device (of every host) on one axis "data". Auto axes: XLA propagates the shardings
    (explicit-sharding mode would make every op mixing batch-sharded and replicated operands spell
    out its output sharding)."""
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def next_power_of_two(n: int) -> int:
    """The smallest power of two ≥ n (1 for n ≤ 1)."""
    return 1 << max(int(n) - 1, 0).bit_length()


def pad_batch(tree, n: int):
    """Pad the leading axis of every leaf to ``n`` rows by repeating the last row (no-op if ≥ n)."""
    def pad(x):
        xp = jnp if isinstance(x, jax.Array) else np
        x = xp.asarray(x)
        return xp.concatenate([x, xp.repeat(x[-1:], n - x.shape[0], axis=0)]) if n > x.shape[0] else x

    return jax.tree_util.tree_map(pad, tree)
