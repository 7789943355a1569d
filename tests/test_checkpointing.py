"""Orbax checkpoints: round trip, keep-N, killed saves, exports."""

import errno
import json
import os
import pathlib
import re
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


# ----------------------------------------------------------------------------------------------
# Damaged checkpoints: training resumes from the newest readable one, reading raises a clear error
# ----------------------------------------------------------------------------------------------

_TOY_TX = optax.adam(0.05)


def _toy_batch(i: int):
    """Batch i of a deterministic stand-in for the data iterator (its state: the next i)."""
    rng = np.random.default_rng(1000 + i)
    return rng.normal(size=(8, 64)).astype(np.float32), rng.normal(size=(8, 32)).astype(np.float32)


def _toy_init():
    params = {"w": np.random.default_rng(0).normal(size=(64, 32)).astype(np.float32), "b": np.zeros(32, np.float32)}
    return params, _TOY_TX.init(params), {"next": 0}


def _toy_train(directory, first: int, last: int, params, opt_state, data_state):
    """Steps first … last of least squares with Adam, each checkpointed; the final (params, opt_state)."""
    import jax.numpy as jnp

    def loss(p, x, y):
        return 0.5 * jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    with checkpointing.Checkpointer(directory, keep=10) as ck:
        for step in range(first, last + 1):
            x, y = _toy_batch(data_state["next"])
            updates, opt_state = _TOY_TX.update(jax.grad(loss)(params, x, y), opt_state, params)
            params, data_state = optax.apply_updates(params, updates), {"next": data_state["next"] + 1}
            ck.save(step, params, opt_state, data_state, {"toy": True})
    return params, opt_state


def _largest_file(directory: pathlib.Path) -> pathlib.Path:
    return max((p for p in directory.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _truncate(path: pathlib.Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _damage(step_dir: pathlib.Path, how: str) -> None:
    if how == "truncated params data":
        big = _largest_file(step_dir / "params")
        assert big.stat().st_size > 4096, big  # the array bytes, not a small metadata file
        _truncate(big)
    elif how == "missing opt_state item":
        import shutil

        shutil.rmtree(step_dir / "opt_state")
    elif how == "truncated meta JSON":
        _truncate(step_dir / "meta" / "metadata")
    else:
        raise AssertionError(how)


_WHY = {"truncated params data": "OUT_OF_RANGE", "missing opt_state item": "opt_state",
        "truncated meta JSON": "JSONDecodeError"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """Four toy steps without interruption: (directory, final params, params at step 2, params at step 3)."""
    directory = tmp_path_factory.mktemp("uninterrupted")
    final, _ = _toy_train(directory, 1, 4, *_toy_init())
    at = {s: checkpointing.restore_params(directory, _toy_init()[0], step=s) for s in (2, 3)}
    return directory, final, at[2], at[3]


@pytest.mark.parametrize("how", sorted(_WHY))
def test_damaged_newest_checkpoint_resumes_from_previous(tmp_path, uninterrupted, how, caplog):
    _, final, at2, at3 = uninterrupted
    assert max(np.abs(at3["w"] - at2["w"]).max(), 0) > 1e-3  # step 3 really differs from step 2
    directory = tmp_path / "ck"
    _toy_train(directory, 1, 3, *_toy_init())  # preempted after step 3 …
    _damage(directory / "3", how)  # … while (or after) step 3 was written
    params0, opt0, _ = _toy_init()
    with caplog.at_level("WARNING", logger="facelift_jax.checkpointing"):
        with checkpointing.Checkpointer(directory, keep=10) as ck:
            restored = ck.restore_latest(params0, opt0)
            assert ck.all_steps() == [1, 2]  # step 3 no longer listed: it can be saved again
    assert restored.step == 2 and restored.data_state == {"next": 2}
    assert [s for s, _, _ in restored.skipped] == [3] and _WHY[how] in restored.skipped[0][1]
    moved = directory / checkpointing.DAMAGED_DIR / "3"
    assert restored.skipped[0][2] == str(moved) and moved.is_dir() and not (directory / "3").exists()
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "resuming from the checkpoint of step 2" in warning and "step 3 (" in warning
    assert _WHY[how] in warning and str(moved) in warning
    # Going on from step 2 gives exactly the uninterrupted run (same data, same optimizer state).
    params, _ = _toy_train(directory, 3, 4, restored.params, restored.opt_state, restored.data_state)
    jax.tree.map(np.testing.assert_array_equal, params, final)
    assert checkpointing.latest_step(directory) == 4
    np.testing.assert_array_equal(checkpointing.restore_params(directory, params0, step=3)["w"], at3["w"])


def test_no_readable_checkpoint_starts_from_scratch_with_a_warning(tmp_path, caplog):
    params, opt, data = _toy_init()
    _toy_train(tmp_path, 1, 2, params, opt, data)
    _truncate(_largest_file(tmp_path / "1" / "params"))
    _truncate(tmp_path / "2" / "data" / "metadata")
    with caplog.at_level("WARNING", logger="facelift_jax.checkpointing"):
        with checkpointing.Checkpointer(tmp_path) as ck:
            assert ck.restore_latest(params, opt) is None
            assert ck.all_steps() == [] and ck.latest_step() is None
            ck.save(2, params, opt, data, {})  # the new run's step 2 does not collide with the damaged one
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "no readable checkpoint" in warning and "starts from scratch" in warning
    assert "step 2 (" in warning and "step 1 (" in warning
    assert sorted(p.name for p in (tmp_path / checkpointing.DAMAGED_DIR).iterdir()) == ["1", "2"]
    # Damaged a second time: kept beside the first one, not over it.
    _truncate(tmp_path / "2" / "meta" / "metadata")
    with checkpointing.Checkpointer(tmp_path) as ck:
        assert ck.restore_latest(params, opt) is None
    assert sorted(p.name for p in (tmp_path / checkpointing.DAMAGED_DIR).iterdir()) == ["1", "2", "2.1"]


def test_config_mismatch_is_raised_not_skipped(tmp_path):
    params = _params(1.0)
    _save_one(tmp_path, params, optax.adam(1e-3).init(params))
    with checkpointing.Checkpointer(tmp_path) as ck:
        with pytest.raises(checkpointing.CheckpointMismatchError, match="cannot restore 'opt_state'"):
            ck.restore_latest(params, optax.sgd(0.1, momentum=0.9).init(params))
        assert ck.all_steps() == [4]  # a healthy checkpoint is never moved aside
    assert not (tmp_path / checkpointing.DAMAGED_DIR).exists()


def test_reading_a_damaged_checkpoint_or_export_names_it(tmp_path):
    params, opt, data = _toy_init()
    _toy_train(tmp_path / "ck", 1, 3, params, opt, data)
    _truncate(_largest_file(tmp_path / "ck" / "3" / "params"))
    with pytest.raises(checkpointing.DamagedCheckpointError) as info:  # evaluate / export: no silent fallback
        checkpointing.restore_params(tmp_path / "ck", params)
    msg = str(info.value)
    assert f"{tmp_path / 'ck' / '3'} is damaged" in msg and "OUT_OF_RANGE" in msg
    assert "steps [1, 2]" in msg and str(tmp_path / "ck" / "2") in msg
    assert (tmp_path / "ck" / "3").is_dir()  # reading moves nothing
    np.testing.assert_array_equal(  # the older one named in the message reads
        checkpointing.restore_params(tmp_path / "ck", params, step=2)["b"],
        checkpointing.restore_params(tmp_path / "ck", params, step=2)["b"])
    with checkpointing.Checkpointer(tmp_path / "ck") as ck:
        with pytest.raises(checkpointing.DamagedCheckpointError, match=r"ck/3 is damaged"):
            ck.restore(3, params, opt)

    checkpointing.save_export(tmp_path / "export", params, {"v": 1})
    big = _largest_file(tmp_path / "export" / checkpointing.EXPORT_PARAMS)
    assert big.stat().st_size > 4096, big  # the array bytes
    _truncate(big)
    for target in (None, params):
        with pytest.raises(checkpointing.DamagedCheckpointError,
                           match=rf"the export {tmp_path / 'export'} is damaged.*facelift_jax.export"):
            checkpointing.load_export(tmp_path / "export", target)


@pytest.mark.parametrize("async_save", [True, False])
def test_failed_write_keeps_previous_checkpoint_and_says_so(tmp_path, monkeypatch, async_save):
    import errno

    from orbax.checkpoint._src.handlers import json_checkpoint_handler

    params, opt, _ = _toy_init()
    ck = checkpointing.Checkpointer(tmp_path, keep=5, async_save=async_save)
    ck.save(1, params, opt, {"next": 1}, {}, wait=True)

    async def disk_full(self, x, directory):
        raise OSError(errno.ENOSPC, "No space left on device", str(directory))

    monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", disk_full)
    with pytest.raises(checkpointing.CheckpointSaveError) as info:
        ck.save(2, jax.tree.map(lambda x: x + 1, params), opt, {"next": 2}, {}, wait=True)
    ck.close()  # reported once, not again on close
    monkeypatch.undo()
    msg = str(info.value)
    assert f"saving the checkpoint of step 2 to {tmp_path} failed" in msg and "No space left on device" in msg
    assert "intact (steps [1])" in msg and "resumes from step 1" in msg and "Free disk space" in msg
    assert checkpointing.latest_step(tmp_path) == 1
    # (Not saved again here: orbax's other writes of the failed save may still run in this process.)
    with checkpointing.Checkpointer(tmp_path, keep=5) as ck:
        restored = ck.restore_latest(params, opt)
    assert restored.step == 1 and restored.data_state == {"next": 1} and not restored.skipped
    np.testing.assert_array_equal(restored.params["w"], params["w"])


_FILE_SIZE_LIMIT = textwrap.dedent("""
    import json, resource, signal, sys
    import numpy as np
    import optax
    from facelift_jax import checkpointing

    directory = sys.argv[1]
    opt = optax.sgd(0.1).init({"w": np.zeros((256, 256), np.float32)})
    ck = checkpointing.Checkpointer(directory, keep=5)
    ck.save(1, {"w": np.full((256, 256), 1.0, np.float32)}, opt, {"i": 1}, {}, wait=True)
    # From here on no file may grow past 64 kB (the kernel answers EFBIG, as a full disk answers ENOSPC);
    # step 2's random 256 kB array cannot be written.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
    ck.save(2, {"w": np.random.default_rng(0).random((256, 256), np.float32)}, opt, {"i": 2}, {})
    try:
        ck.wait()
    except checkpointing.CheckpointSaveError as e:
        ck.close()
        print(json.dumps({"error": str(e)}))
    else:
        print(json.dumps({"error": None}))
""")


def test_write_past_a_file_size_limit_fails_clearly(tmp_path):
    pytest.importorskip("resource")
    proc = subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMIT, str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    msg = json.loads(proc.stdout.strip().splitlines()[-1])["error"]
    assert msg is not None, "the save past the size limit did not fail"
    assert f"saving the checkpoint of step 2 to {tmp_path} failed" in msg and "File too large" in msg
    assert "intact (steps [1])" in msg
    assert checkpointing.latest_step(tmp_path) == 1
    params = {"w": np.zeros((256, 256), np.float32)}
    with checkpointing.Checkpointer(tmp_path) as ck:
        restored = ck.restore_latest(params, optax.sgd(0.1).init(params))
        assert restored.step == 1 and not restored.skipped
        np.testing.assert_array_equal(restored.params["w"], 1.0)
        ck.save(2, params, optax.sgd(0.1).init(params), {"i": 2}, {})  # with room again, the failed step saves
    assert checkpointing.latest_step(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1", "2"]  # the partial write was cleaned up


# ----------------------------------------------------------------------------------------------
# Transient read faults stop the run and move nothing; only bad files are quarantined
# ----------------------------------------------------------------------------------------------

def _tree_digest(directory: pathlib.Path) -> dict:
    """{relative path: bytes} of every file under ``directory`` (what a fault must leave alone)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _inject_read_fault(monkeypatch, step_dir: pathlib.Path, where: str, error: Exception,
                       items=("data", "meta")) -> None:
    """Make every read of ``step_dir`` through ``where`` raise ``error``: "json" = orbax's JSON item
    reader (of ``items``), "arrays" = tensorstore's open (the params and opt_state arrays)."""
    import tensorstore
    from orbax.checkpoint._src.handlers import json_checkpoint_handler

    inside = str(step_dir) + "/"
    if where == "json":
        real = json_checkpoint_handler.JsonCheckpointHandler.restore

        def restore(self, directory, *args, **kwargs):
            if str(directory).startswith(inside) and pathlib.Path(directory).name in items:
                raise error
            return real(self, directory, *args, **kwargs)

        monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "restore", restore)
    else:
        real_open = tensorstore.open

        def ts_open(spec, *args, **kwargs):
            if inside in json.dumps(spec.to_json() if hasattr(spec, "to_json") else spec, default=str):
                raise error
            return real_open(spec, *args, **kwargs)

        monkeypatch.setattr(tensorstore, "open", ts_open)


# What the OS and tensorstore raise for faults that say nothing about the files (tensorstore's own
# message format: "<CODE>: ... [OS error <errno>: <name> <strerror>]").
_TRANSIENT = {
    "PermissionError on the meta item": ("json", PermissionError(errno.EACCES, "Permission denied")),
    "stale NFS handle on the data item": ("json", OSError(errno.ESTALE, "Stale file handle")),
    "I/O error on the data item": ("json", OSError(errno.EIO, "Input/output error")),
    "EIO reading the arrays": ("arrays", ValueError(
        'UNKNOWN: Error reading "w/0.0" in OCDBT database at local file "/ck/3/params/": Error reading local file '
        '"/ck/3/params/d/9b1e": [OS error 5: EIO Input/output error]')),
    "stale handle reading the arrays": ("arrays", ValueError(
        'ABORTED: Error reading local file "/ck/3/params/manifest.ocdbt": [OS error 116: ESTALE Stale file handle]')),
    "permission denied on the arrays": ("arrays", ValueError(
        'PERMISSION_DENIED: Error opening file "/ck/3/opt_state/manifest.ocdbt": [OS error 13: EACCES Permission '
        'denied]')),
    # A remote store's faults carry only the status code, no OS errno: the code alone must say "transient".
    "object store unavailable reading the arrays": ("arrays", ValueError(
        'UNAVAILABLE: Error reading "gs://bucket/ck/3/params/manifest.ocdbt": HTTP response code: 503')),
    "timeout reading the arrays": ("arrays", ValueError(
        'DEADLINE_EXCEEDED: Error reading "gs://bucket/ck/3/opt_state/manifest.ocdbt": deadline exceeded')),
}
# ... and for files that are bad (the same formats; tensorstore's codes for cut short or corrupt data).
_DAMAGE = {
    "corrupt array chunk": ("arrays", ValueError(
        'DATA_LOSS: Error reading "w/0.0" in OCDBT database at local file "/ck/3/params/": checksum mismatch')),
    "array file missing": ("arrays", ValueError(
        'NOT_FOUND: Error reading local file "/ck/3/params/d/9b1e": [OS error 2: ENOENT No such file or directory]')),
    "undecodable meta JSON": ("json", json.JSONDecodeError("Expecting value", "\x00\x00", 0)),
    "meta file missing": ("json", FileNotFoundError(errno.ENOENT, "No such file or directory")),
}


@pytest.mark.parametrize("fault", sorted(_TRANSIENT))
def test_transient_read_error_stops_naming_the_path_and_moves_nothing(tmp_path, uninterrupted, monkeypatch, fault):
    _, final, _, _ = uninterrupted
    directory = tmp_path / "ck"
    _toy_train(directory, 1, 3, *_toy_init())
    before = _tree_digest(directory)
    where, error = _TRANSIENT[fault]
    _inject_read_fault(monkeypatch, directory / "3", where, error)
    params0, opt0, _ = _toy_init()
    with checkpointing.Checkpointer(directory, keep=10) as ck:
        with pytest.raises(checkpointing.CheckpointReadError) as info:
            ck.restore_latest(params0, opt0)
        assert ck.all_steps() == [1, 2, 3]
    assert not isinstance(info.value, checkpointing.DamagedCheckpointError)
    msg = str(info.value)
    assert f"could not read the checkpoint {directory / '3'}" in msg and "nothing was moved" in msg
    assert type(error).__name__ in msg
    with checkpointing.Checkpointer(directory, keep=10) as ck:  # asked for by step: the same error
        with pytest.raises(checkpointing.CheckpointReadError, match=re.escape(str(directory / "3"))):
            ck.restore(3, params0, opt0)
    if where == "arrays":  # evaluate / export read the params alone: the same error, no fallback
        with pytest.raises(checkpointing.CheckpointReadError, match=re.escape(str(directory / "3"))):
            checkpointing.restore_params(directory, params0)
    # Nothing moved or changed: no damaged/ folder, every file byte for byte as it was.
    assert not (directory / checkpointing.DAMAGED_DIR).exists()
    assert _tree_digest(directory) == before
    # The fault passes: the run resumes from the newest step and ends where the uninterrupted one did.
    monkeypatch.undo()
    with checkpointing.Checkpointer(directory, keep=10) as ck:
        restored = ck.restore_latest(params0, opt0)
    assert restored.step == 3 and not restored.skipped and restored.data_state == {"next": 3}
    params, _ = _toy_train(directory, 4, 4, restored.params, restored.opt_state, restored.data_state)
    jax.tree.map(np.testing.assert_array_equal, params, final)


@pytest.mark.parametrize("fault", sorted(_DAMAGE))
def test_injected_damage_is_quarantined_and_the_run_resumes(tmp_path, uninterrupted, monkeypatch, fault):
    _, final, _, _ = uninterrupted
    directory = tmp_path / "ck"
    _toy_train(directory, 1, 3, *_toy_init())
    where, error = _DAMAGE[fault]
    _inject_read_fault(monkeypatch, directory / "3", where, error)
    params0, opt0, _ = _toy_init()
    with checkpointing.Checkpointer(directory, keep=10) as ck:
        restored = ck.restore_latest(params0, opt0)
        assert ck.all_steps() == [1, 2]
    assert restored.step == 2 and [s for s, _, _ in restored.skipped] == [3]
    assert type(error).__name__ in restored.skipped[0][1]
    assert (directory / checkpointing.DAMAGED_DIR / "3").is_dir() and not (directory / "3").exists()
    monkeypatch.undo()
    params, _ = _toy_train(directory, 3, 4, restored.params, restored.opt_state, restored.data_state)
    jax.tree.map(np.testing.assert_array_equal, params, final)


def test_transient_error_reading_an_export_is_not_called_damage(tmp_path, monkeypatch):
    params, _, _ = _toy_init()
    checkpointing.save_export(tmp_path / "export", params, {"v": 1})
    _inject_read_fault(monkeypatch, tmp_path / "export", "arrays", _TRANSIENT["EIO reading the arrays"][1])
    with pytest.raises(checkpointing.CheckpointReadError, match=rf"could not read the export {tmp_path / 'export'}"):
        checkpointing.load_export(tmp_path / "export")
    monkeypatch.undo()
    loaded, meta = checkpointing.load_export(tmp_path / "export")
    assert meta == {"v": 1}
    np.testing.assert_array_equal(loaded["w"], params["w"])


def test_transient_error_opening_the_checkpoint_folder_is_one_clear_error(tmp_path, monkeypatch):
    params, opt, data = _toy_init()
    _toy_train(tmp_path, 1, 2, params, opt, data)
    before = _tree_digest(tmp_path)
    # orbax reads each step's metadata when the folder is opened: a stale handle there
    _inject_read_fault(monkeypatch, tmp_path / "2", "json", OSError(errno.ESTALE, "Stale file handle"),
                       items=("metrics",))
    with pytest.raises(checkpointing.CheckpointReadError,
                       match=rf"could not open the checkpoints in {tmp_path}: OSError: .*Stale file handle"):
        checkpointing.Checkpointer(tmp_path)
    assert _tree_digest(tmp_path) == before
    monkeypatch.undo()
    with checkpointing.Checkpointer(tmp_path) as ck:
        assert ck.restore_latest(params, opt).step == 2
