"""bridges.dlpack: values, dtypes, devices, layouts, and the shared-memory caveat."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bridges import dlpack  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32,
                                   torch.float16, torch.bfloat16, torch.float32])
def test_to_jax_keeps_dtype_shape_and_values(dtype):
    gen = torch.Generator().manual_seed(0)
    t = (torch.randn(3, 4, 5, generator=gen) * 10).to(dtype)
    a = dlpack.to_jax(t)
    assert a.shape == (3, 4, 5)
    assert str(a.dtype) == str(t.dtype).removeprefix("torch.")
    # Compare through float32 numpy, which every dtype above converts to exactly.
    np.testing.assert_array_equal(np.asarray(a.astype(jnp.float32)), t.to(torch.float32).numpy())


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int32, torch.float16, torch.bfloat16,
                                   torch.float32])
def test_round_trip_torch_jax_torch(dtype):
    t = (torch.arange(24).reshape(2, 3, 4) % 7).to(dtype)
    back = dlpack.to_torch(dlpack.to_jax(t, copy=True))
    assert back.dtype == t.dtype and back.shape == t.shape
    assert torch.equal(back, t)


def test_to_torch_from_jax_and_numpy():
    x = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    t = dlpack.to_torch(x)
    np.testing.assert_array_equal(t.numpy(), np.asarray(x))
    n = np.arange(6, dtype=np.int16).reshape(2, 3)
    assert torch.equal(dlpack.to_torch(n), torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int16))


def test_non_contiguous_tensors():
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
    for view in (base.transpose(0, 2), base[:, ::2, 1:], base.permute(1, 2, 0), base.expand(2, 3, 4, 5)):
        a = dlpack.to_jax(view)
        assert a.shape == tuple(view.shape)
        np.testing.assert_array_equal(np.asarray(a), view.numpy())


def test_requires_grad_conj_and_neg_views():
    w = torch.ones(3, requires_grad=True) * 2.0
    np.testing.assert_array_equal(np.asarray(dlpack.to_jax(w)), [2.0, 2.0, 2.0])
    c = torch.tensor([1 + 2j, 3 - 1j], dtype=torch.complex64).conj()
    np.testing.assert_array_equal(np.asarray(dlpack.to_jax(c)), np.array([1 - 2j, 3 + 1j], np.complex64))


def test_shared_memory_caveat_and_copy_path():
    t = torch.zeros(8, dtype=torch.float32)
    shared = dlpack.to_jax(t)             # zero-copy on CPU
    copied = dlpack.to_jax(t, copy=True)  # JAX owns its buffer
    assert dlpack.shares_memory(t, shared)
    assert not dlpack.shares_memory(t, copied)
    t[3] = 7.0                            # reuse of the torch buffer ...
    assert float(shared[3]) == 7.0        # ... shows through the zero-copy view
    assert float(copied[3]) == 0.0        # ... and not through the copy


def test_jax_to_torch_aliases_unless_copied():
    x = jnp.arange(5.0)
    alias = dlpack.to_torch(x)
    own = dlpack.to_torch(x, copy=True)
    own[0] = -1.0
    assert float(x[0]) == 0.0
    alias[1] = 100.0                      # what the docstring forbids: it mutates the JAX array
    assert float(x[1]) == 100.0


def test_64_bit_dtypes_without_x64():
    if jax.config.jax_enable_x64:
        pytest.skip("only meaningful in JAX's default 32-bit mode")
    a = dlpack.to_jax(torch.tensor([1, -2, 2**31 - 1], dtype=torch.int64))
    assert a.dtype == jnp.int32 and a.tolist() == [1, -2, 2**31 - 1]
    f = dlpack.to_jax(torch.tensor([0.5, 1e-3], dtype=torch.float64))
    assert f.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(f), [0.5, 1e-3], rtol=1e-7)
    with pytest.raises(ValueError, match="int32 range"):
        dlpack.to_jax(torch.tensor([2**40], dtype=torch.int64))


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(TypeError, match="torch.Tensor"):
        dlpack.to_jax(np.zeros(3))
    with pytest.raises(TypeError, match="jax.Array or numpy"):
        dlpack.to_torch([1, 2, 3])
    with pytest.raises(ValueError, match="strided"):
        dlpack.to_jax(torch.eye(3).to_sparse())


def test_tree_helpers():
    tree = {"a": torch.ones(2), "b": [torch.zeros(1, dtype=torch.int32), "name"]}
    out = dlpack.tree_to_jax(tree, copy=True)
    assert isinstance(out["a"], jax.Array) and out["b"][1] == "name"
    back = dlpack.tree_to_torch(out)
    assert torch.equal(back["a"], tree["a"]) and back["b"][0].dtype == torch.int32


def test_devices_cpu():
    t = torch.arange(4.0)
    a = dlpack.to_jax(t)
    assert next(iter(a.devices())).platform == "cpu"
    assert dlpack.to_torch(a).device.type == "cpu"


@pytest.mark.gpu
def test_devices_cuda():
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    t = torch.arange(6.0, device="cuda").reshape(2, 3).T
    a = dlpack.to_jax(t)
    np.testing.assert_array_equal(np.asarray(a), t.cpu().numpy())
    jax_gpu = any(d.platform == "gpu" for d in jax.devices())
    assert next(iter(a.devices())).platform == ("gpu" if jax_gpu else "cpu")
    back = dlpack.to_torch(a, device="cuda")
    assert back.device.type == "cuda" and torch.equal(back, t)


def test_empty_scalar_and_read_only_inputs():
    assert dlpack.to_jax(torch.zeros(0, 3)).shape == (0, 3)
    assert float(dlpack.to_jax(torch.tensor(2.5))) == 2.5
    ro = np.arange(4.0)
    ro.flags.writeable = False
    t = dlpack.to_torch(ro)
    t[0] = 9.0  # writing the tensor must not reach the read-only array
    assert ro[0] == 0.0
    n = np.arange(3.0)
    dlpack.to_torch(n, copy=True)[0] = 5.0
    assert n[0] == 0.0
    dlpack.to_torch(n)[1] = 5.0  # the default numpy path is a view, like torch.from_numpy
    assert n[1] == 5.0
