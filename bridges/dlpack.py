"""torch ↔ JAX array hand-over by DLPack, without copies where the two runtimes allow it.

Memory sharing (the caveat every caller must know)
---------------------------------------------------
* ``to_jax(tensor)`` on CPU usually returns a JAX array that *aliases* the tensor's memory: writing
  into the tensor afterwards (``t[0] = 1``, ``t.add_(...)``, a reused output buffer, an
  ``out=`` argument) silently changes the "immutable" JAX array. Pass ``copy=True`` whenever the
  torch side may be written to again. JAX copies by itself (no aliasing) when the buffer is not
  suitably aligned, e.g. a slice starting at a storage offset; do not rely on either outcome.
* ``to_torch(array)`` aliases the JAX buffer: never write into the returned tensor in place unless
  ``copy=True`` was passed (JAX assumes its arrays never change).

Dtypes: bool, uint8, int8/16/32, float16, bfloat16, float32 and complex64 cross unchanged. 64-bit
dtypes (int64, float64, complex128) become their 32-bit counterparts when JAX runs without
``jax_enable_x64`` (JAX's default), which is a copy; integers that do not fit in int32 raise
instead of wrapping around.

Devices: a CPU tensor becomes a JAX array on JAX's CPU device; a CUDA tensor stays on its GPU when
JAX has a GPU backend and is otherwise copied to host first. ``to_torch`` gives a tensor on the
device that holds the JAX array unless ``device`` asks for another one.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

_INT32 = np.iinfo(np.int32)
_NARROW = {torch.float64: torch.float32, torch.complex128: torch.complex64}


def _x64() -> bool:
    return bool(jax.config.jax_enable_x64)


def _jax_has_gpu() -> bool:
    try:
        return len(jax.devices("gpu")) > 0
    except RuntimeError:
        return False


def _narrow_for_jax(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """Cast 64-bit dtypes to 32 bits when JAX is in 32-bit mode, refusing lossy integer casts."""
    if _x64():
        return tensor
    if tensor.dtype == torch.int64:
        if tensor.numel() and (int(tensor.min()) < _INT32.min or int(tensor.max()) > _INT32.max):
            raise ValueError(
                f"{name}: int64 values outside the int32 range cannot enter JAX without jax_enable_x64 "
                f"(min {int(tensor.min())}, max {int(tensor.max())}); enable x64 or reduce the values")
        return tensor.to(torch.int32)
    if tensor.dtype in _NARROW:
        return tensor.to(_NARROW[tensor.dtype])
    return tensor


def to_jax(tensor: torch.Tensor, copy: bool = False, name: str = "tensor") -> jax.Array:
    """A torch tensor (any shape) as a JAX array with the same shape and values.

    copy=False shares memory where DLPack allows (see the module caveat); copy=True always gives
    JAX its own buffer, so the tensor may be reused or modified freely afterwards. Gradients are
    detached; non-contiguous or conjugate/negative-view tensors are materialized first (a copy).
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    t = tensor.detach()
    if t.is_conj():
        t = t.resolve_conj()
    if t.is_neg():
        t = t.resolve_neg()
    if t.layout != torch.strided:
        raise ValueError(f"{name}: only dense (strided) tensors can cross by DLPack, got layout {t.layout}")
    if t.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: tensors on {t.device} cannot cross to JAX; move them to cpu or cuda first")
    if t.device.type == "cuda" and not _jax_has_gpu():
        t = t.cpu()  # JAX has no GPU backend here: the host copy is the only way across
    t = _narrow_for_jax(t, name).contiguous()
    if copy and t.device == tensor.device and t.data_ptr() == tensor.data_ptr():
        t = t.clone()  # every step above that copied already moved the data elsewhere
    if t.device.type == "cuda":
        # DLPack export must be ordered after the work that produced the tensor on torch's stream.
        torch.cuda.current_stream(t.device).synchronize()
    return jnp.from_dlpack(t)


def to_torch(array: Any, copy: bool = False, device: str | torch.device | None = None,
             name: str = "array") -> torch.Tensor:
    """A JAX (or NumPy) array as a torch tensor with the same shape, dtype and values.

    copy=False aliases the JAX buffer (never write into the result in place); copy=True gives
    torch its own memory. ``device`` moves the result (a copy when it differs).
    """
    if isinstance(array, np.ndarray):
        a = np.ascontiguousarray(array)
        # torch has no read-only tensors: a view of a read-only array would invite writes into it.
        if (copy and np.shares_memory(a, array)) or not a.flags.writeable:
            a = a.copy()
        t = torch.from_numpy(a)
    elif isinstance(array, jax.Array):
        if len(array.devices()) != 1:
            raise ValueError(f"{name} is sharded over {len(array.devices())} devices; DLPack hands over one "
                             "buffer: gather it first (e.g. jax.device_put(array, jax.devices()[0]))")
        array.block_until_ready()
        t = torch.from_dlpack(array)
        if copy:
            t = t.clone()
    else:
        raise TypeError(f"{name} must be a jax.Array or numpy.ndarray, got {type(array).__name__}")
    if device is not None and t.device != torch.device(device):
        t = t.to(device)
    return t


def tree_to_jax(tree: Any, copy: bool = False) -> Any:
    """``to_jax`` on every torch tensor leaf of a pytree (dicts, lists, tuples); other leaves pass."""
    return jax.tree_util.tree_map(
        lambda x: to_jax(x, copy=copy) if isinstance(x, torch.Tensor) else x, tree,
        is_leaf=lambda x: isinstance(x, torch.Tensor))


def tree_to_torch(tree: Any, copy: bool = False, device: str | torch.device | None = None) -> Any:
    """``to_torch`` on every JAX array leaf of a pytree; other leaves pass unchanged."""
    return jax.tree_util.tree_map(
        lambda x: to_torch(x, copy=copy, device=device) if isinstance(x, jax.Array) else x, tree)


def shares_memory(tensor: torch.Tensor, array: jax.Array) -> bool:
    """True when ``array``'s single device buffer starts where ``tensor``'s data does."""
    try:
        return array.unsafe_buffer_pointer() == tensor.data_ptr()
    except (AttributeError, RuntimeError, ValueError):
        return False
