"""Orbax checkpoints: round trip, keep-N, killed saves, exports."""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest

from facelift_jax import checkpointing

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _params(value: float = 0.0):
    # The shape of an nnx pure dict: int keys for list-held layers, nested dicts of arrays.
    rng = np.random.default_rng(0)
    return {
        "encoder": {0: {"kernel": rng.normal(size=(3, 4)).astype(np.float32) + value,
                        "bias": np.full((4,), value, np.float32)},
                    1: {"kernel": rng.normal(size=(4, 2)).astype(np.float32) + value}},
        "head": {"scale": np.float32(value)},
    }


def _assert_tree_equal(a, b):
    import jax

    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_all_items(tmp_path):
    params = _params(1.5)
    tx = optax.adam(1e-3)
    opt_state = tx.init(params)
    # Make the optimizer state non-trivial: one real update.
    grads = {k: v for k, v in _params(0.25).items()}
    _, opt_state = tx.update(grads, opt_state, params)
    data_state = {"multiview": {"next_index": 17}, "multiframe": {"next_index": 3}}
    with checkpointing.Checkpointer(tmp_path / "ck", keep=2) as ck:
        ck.save(7, params, opt_state, data_state, {"config": {"lr": 0.1}})
    with checkpointing.Checkpointer(tmp_path / "ck", keep=2) as ck:
        zeros = {"params": _params(0.0), "opt": tx.init(_params(0.0))}
        restored = ck.restore_latest(zeros["params"], zeros["opt"])
    assert restored.step == 7
    _assert_tree_equal(restored.params, params)
    _assert_tree_equal(restored.opt_state, opt_state)
    assert restored.data_state == data_state
    assert restored.meta == {"config": {"lr": 0.1}, "step": 7}
    # Adam's first moment after one update from zero is (1 - b1) * g = 0.1 * g.
    mu = restored.opt_state[0].mu
    np.testing.assert_allclose(mu["head"]["scale"], 0.1 * 0.25, rtol=1e-6)
    np.testing.assert_array_equal(checkpointing.restore_params(tmp_path / "ck", _params(0.0))["head"]["scale"], 1.5)


def test_keep_n_and_should_save(tmp_path):
    params = _params()
    opt_state = optax.sgd(0.1).init(params)
    with checkpointing.Checkpointer(tmp_path, keep=2, every=5) as ck:
        assert [s for s in range(0, 21) if ck.should_save(s)] == [5, 10, 15, 20]
        for step in (5, 10, 15, 20):
            ck.save(step, _params(step), opt_state, None, {})
        ck.wait()
        assert ck.all_steps() == [15, 20]
        assert ck.latest_step() == 20
        with pytest.raises(FileNotFoundError, match="step 5"):
            ck.restore(5, params, opt_state)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["15", "20"]
    np.testing.assert_array_equal(checkpointing.restore_params(tmp_path, params, step=15)["head"]["scale"], 15.0)
    assert checkpointing.latest_step(tmp_path) == 20
    assert checkpointing.latest_step(tmp_path / "missing") is None


_KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import optax
    from orbax.checkpoint._src.path import atomicity
    from facelift_jax import checkpointing

    directory = sys.argv[1]
    params = {"w": np.full((256, 256), 1.0, np.float32)}
    opt = optax.sgd(0.1).init(params)
    ck = checkpointing.Checkpointer(directory, keep=5)
    ck.save(1, params, opt, {"i": 1}, {}, wait=True)

    async def die(self):  # every item written, the commit (rename) not yet done: the worst moment
        os.kill(os.getpid(), signal.SIGKILL)

    atomicity.AtomicRenameTemporaryPath.finalize = die
    ck.save(2, {"w": np.full((256, 256), 2.0, np.float32)}, opt, {"i": 2}, {}, wait=True)
    print("not killed")
""")


def test_killed_save_is_not_picked_up(tmp_path):
    pytest.importorskip("orbax.checkpoint._src.path.atomicity").AtomicRenameTemporaryPath  # fault injection hook
    proc = subprocess.run([sys.executable, "-c", _KILLED_SAVE, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    leftovers = [p.name for p in tmp_path.iterdir() if not p.name.isdigit()]
    assert any("tmp" in name for name in leftovers), f"the killed save left no partial directory: {leftovers}"
    assert checkpointing.latest_step(tmp_path) == 1
    params = {"w": np.zeros((256, 256), np.float32)}
    with checkpointing.Checkpointer(tmp_path, keep=5) as ck:
        restored = ck.restore_latest(params, optax.sgd(0.1).init(params))
        assert restored.step == 1 and restored.data_state == {"i": 1}
        np.testing.assert_array_equal(restored.params["w"], 1.0)
        # A fresh save after the crash works and becomes the latest.
        ck.save(2, {"w": np.full((256, 256), 2.0, np.float32)}, optax.sgd(0.1).init(params), {"i": 2}, {})
    assert checkpointing.latest_step(tmp_path) == 2


def test_export_round_trip(tmp_path):
    params = _params(3.0)
    meta = {"model": {"encoder": "vit", "width": 32}, "template": np.arange(6.0).tolist()}
    checkpointing.save_export(tmp_path / "export", params, meta)
    loaded, loaded_meta = checkpointing.load_export(tmp_path / "export")
    assert loaded_meta == meta
    _assert_tree_equal(loaded, params)  # int layer keys come back as ints
    # With a target structure.
    loaded2, _ = checkpointing.load_export(tmp_path / "export", _params(0.0))
    _assert_tree_equal(loaded2, params)
    # Overwriting an export replaces it.
    checkpointing.save_export(tmp_path / "export", _params(4.0), {"v": 2})
    loaded3, meta3 = checkpointing.load_export(tmp_path / "export")
    assert meta3 == {"v": 2} and float(loaded3["head"]["scale"]) == 4.0


def test_export_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a complete export"):
        checkpointing.load_export(tmp_path)
    with pytest.raises(TypeError, match="JSON"):
        checkpointing.save_export(tmp_path / "e", _params(), {"bad": object()})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpointing.restore_params(tmp_path / "nothing", _params())
    with pytest.raises(ValueError, match="keep"):
        checkpointing.Checkpointer(tmp_path / "c", keep=0)


def _save_one(directory, params, opt_state, step=4):
    with checkpointing.Checkpointer(directory) as ck:
        ck.save(step, params, opt_state, None, {})


def test_restore_with_another_optimizer_names_opt_state(tmp_path):
    # Saved with optim.clip_norm > 0 (train.make_optimizer: chain(clip_by_global_norm, adam)),
    # resumed with clip_norm = 0 (plain adam): same leaves, different tree paths.
    params = _params(1.0)
    clipped = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))
    _save_one(tmp_path / "ck", params, clipped.init(params))
    plain = optax.adam(1e-3)
    with checkpointing.Checkpointer(tmp_path / "ck") as ck:
        with pytest.raises(ValueError) as info:
            ck.restore_latest(_params(0.0), plain.init(_params(0.0)))
        # restore(step) goes through the same check.
        with pytest.raises(ValueError, match="cannot restore 'opt_state'"):
            ck.restore(4, _params(0.0), plain.init(_params(0.0)))
        # The matching optimizer still restores.
        assert ck.restore_latest(_params(0.0), clipped.init(_params(0.0))).step == 4
    msg = str(info.value)
    assert "cannot restore 'opt_state'" in msg
    assert f"step 4 in {tmp_path / 'ck'}" in msg
    assert "only in the checkpoint: 1/0/count" in msg  # the clip state shifts adam's state to index 1
    assert "only in the expected tree: 0/count" in msg
    assert "optim.clip_norm" in msg and "new workdir" in msg


def test_restore_with_changed_param_shape_names_params_and_shapes(tmp_path):
    params = _params(1.0)
    params["encoder"][0]["bias"] = np.zeros((96,), np.float32)
    tx = optax.adam(1e-3)
    _save_one(tmp_path / "ck", params, tx.init(params))
    wider = _params(0.0)
    wider["encoder"][0]["bias"] = np.zeros((128,), np.float32)
    with checkpointing.Checkpointer(tmp_path / "ck") as ck:
        with pytest.raises(ValueError) as info:
            ck.restore_latest(wider, tx.init(wider))
    msg = str(info.value)
    assert "cannot restore 'params'" in msg and f"step 4 in {tmp_path / 'ck'}" in msg
    assert "encoder/0/bias: saved (96,) vs expected (128,)" in msg
    assert "model config" in msg
    # The params-only restore (export, evaluation) checks too; the right shapes still load.
    with pytest.raises(ValueError, match=r"cannot restore 'params'.*saved \(96,\) vs expected \(128,\)"):
        checkpointing.restore_params(tmp_path / "ck", wider)
    restored = checkpointing.restore_params(tmp_path / "ck", _params(0.0) | {"encoder": params["encoder"]})
    jax.tree.map(np.testing.assert_array_equal, restored, params)


def test_restore_with_missing_param_names_the_key(tmp_path):
    params = _params(1.0)
    tx = optax.sgd(0.1)
    _save_one(tmp_path / "ck", params, tx.init(params))
    extra = _params(0.0)
    extra["head"]["offset"] = np.zeros((2,), np.float32)
    with pytest.raises(ValueError, match=r"cannot restore 'params'.*only in the expected tree: head/offset"):
        checkpointing.restore_params(tmp_path / "ck", extra)
