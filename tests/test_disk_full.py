"""A disk that fills up mid-write (ENOSPC, injected): preprocessing chunks, the rendered training
pool and exports stop with io.DiskFullError naming the file, leave no half-written file that a
rerun could take for a finished one, keep what was finished, and a rerun once there is room again
ends with the same arrays as a run that never failed."""

import errno
import io
import json

import numpy as np
import pytest

from facelift_jax import checkpointing, preprocess
from facelift_jax import io as fio
from facelift_jax.input_pipeline import pool as pool_lib
from facelift_jax.input_pipeline.labels import PseudoLabels

from _training_data import tiny_config


def _disk_fills_on(monkeypatch, fragment: str) -> list[str]:
    """From now on, the first ``np.savez`` into a file whose name holds ``fragment`` writes half of
    its bytes and then fails as a full disk does (the kernel's ENOSPC); later ones succeed (space
    freed). Returns the list of files it failed on."""
    real = np.savez
    failed = []

    def savez(file, *args, **kwds):
        name = str(getattr(file, "name", file))
        if fragment not in name or failed:
            return real(file, *args, **kwds)
        failed.append(name)
        buf = io.BytesIO()
        real(buf, *args, **kwds)
        half = buf.getvalue()[: len(buf.getvalue()) // 2]
        if hasattr(file, "write"):
            file.write(half)
            file.flush()
        else:
            with open(file, "wb") as f:
                f.write(half)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez)
    return failed


def _arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _assert_same_arrays(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k], equal_nan=True), k


def _assert_full_disk_error(err: fio.DiskFullError, path):
    msg = str(err)
    assert err.path == path and str(path) in msg, msg
    assert "no space left on the device" in msg and "free on that filesystem" in msg and "run the same command" in msg


def _no_temporary_files(folder):
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name]


def _preprocess_config():
    c = tiny_config()
    c.preprocess.num_latents, c.preprocess.chunk_size, c.preprocess.num_videos = 3, 1, 0
    return c


def test_full_disk_during_a_preprocessing_chunk(tmp_path, monkeypatch):
    config = _preprocess_config()
    chunk_dir = tmp_path / "run" / "multiview" / "chunks"
    second = chunk_dir / "chunk_000000001_000000001.npz"
    failed = _disk_fills_on(monkeypatch, second.name)
    with pytest.raises(fio.DiskFullError) as info:
        preprocess.run_multiview(config, tmp_path / "run", progress=False, overlap=False)
    assert len(failed) == 1
    _assert_full_disk_error(info.value, second)
    # the first chunk is finished and sealed; of the second nothing is there, not even a part
    names = sorted(p.name for p in chunk_dir.iterdir())
    assert names == ["chunk_000000000_000000000.npz", "chunk_000000000_000000000.seal.json"], names
    assert not _no_temporary_files(tmp_path / "run")
    first = chunk_dir / names[0]
    first_bytes = first.read_bytes()

    lifted = []
    real_lift = preprocess.lift_chunk
    monkeypatch.setattr(preprocess, "lift_chunk", lambda *a, **k: (lifted.append(1), real_lift(*a, **k))[1])
    preprocess.run_multiview(config, tmp_path / "run", progress=False, overlap=False)  # room again
    assert len(lifted) == 2  # chunks 1 and 2: the finished one is kept, not redone
    assert first.read_bytes() == first_bytes

    monkeypatch.setattr(preprocess, "lift_chunk", real_lift)
    preprocess.run_multiview(config, tmp_path / "fresh", progress=False, overlap=False)
    for name in ("pseudo_labels.npz", "template.npy"):
        got, want = tmp_path / "run" / "multiview" / name, tmp_path / "fresh" / "multiview" / name
        if name.endswith(".npy"):
            assert np.array_equal(np.load(got), np.load(want))
        else:
            _assert_same_arrays(_arrays(got), _arrays(want))
    for p in sorted((tmp_path / "fresh" / "multiview" / "chunks").glob("chunk_*.npz")):
        _assert_same_arrays(_arrays(chunk_dir / p.name), _arrays(p))


def _labels(config) -> PseudoLabels:
    """Exact 3D landmarks of four latents as the pseudo-labels (no preprocessing needed to render a pool)."""
    from facelift_jax import sources

    latents = np.arange(4, dtype=np.int64)
    points = np.asarray(sources.make_generator(config).landmarks3d(latents), np.float32)
    return PseudoLabels(latents, points, np.ones(points.shape[:2], bool), points.mean(0))


def test_full_disk_while_rendering_the_training_pool(tmp_path, monkeypatch):
    work, fresh = tmp_path / "data", tmp_path / "fresh"
    config = tiny_config()
    config.data.pool_size = 10
    monkeypatch.setattr(pool_lib, "_CHUNK", 4)  # three chunk files: 0-4, 4-8, 8-10
    labels = _labels(config)
    root = pool_lib._root(config, work, labels)
    second = root / "chunk_0000004_0000008.npz"

    failed = _disk_fills_on(monkeypatch, second.name)
    with pytest.raises(fio.DiskFullError) as info:
        pool_lib.load_or_render(config, work, labels, progress=False)
    assert len(failed) == 1
    _assert_full_disk_error(info.value, second)
    assert sorted(p.name for p in root.glob("chunk_*")) == ["chunk_0000000_0000004.npz"]
    assert not _no_temporary_files(work / "pool")

    rendered = []
    real_render = pool_lib.camera.sample_cameras
    monkeypatch.setattr(pool_lib.camera, "sample_cameras", lambda *a, **k: (rendered.append(1), real_render(*a, **k))[1])
    resumed = pool_lib.load_or_render(config, work, labels, progress=False)
    assert len(rendered) == 2  # chunks 4-8 and 8-10 only
    monkeypatch.setattr(pool_lib.camera, "sample_cameras", real_render)
    want = pool_lib.load_or_render(config, fresh, labels, progress=False)
    for k in ("images", "index", "R", "t", "roll"):
        assert np.array_equal(getattr(resumed, k), getattr(want, k)), k
    assert len(resumed) == 10


def _params(value: float):
    rng = np.random.default_rng(0)
    return {"encoder": {0: {"kernel": rng.normal(size=(16, 8)).astype(np.float32) + value}},
            "head": {"bias": np.full((8,), value, np.float32)}}


def test_full_disk_during_an_export(tmp_path, monkeypatch):
    export = tmp_path / "export"
    checkpointing.save_export(export, _params(1.0), {"version": 1})  # an older export is there
    real_save = checkpointing.ocp.StandardCheckpointer.save

    def disk_full(self, directory, *args, **kwargs):
        # No file name in the error (tensorstore's often has none): the path in the message must be ours.
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpointing.ocp.StandardCheckpointer, "save", disk_full)
    with pytest.raises(fio.DiskFullError) as info:
        checkpointing.save_export(export, _params(2.0), {"version": 2})
    _assert_full_disk_error(info.value, export / checkpointing.EXPORT_PARAMS)
    # neither the old export nor a mix of old and new is taken for a finished one
    with pytest.raises(FileNotFoundError, match="not a complete export"):
        checkpointing.load_export(export)
    assert not (export / checkpointing.EXPORT_METADATA).exists()

    monkeypatch.setattr(checkpointing.ocp.StandardCheckpointer, "save", real_save)
    checkpointing.save_export(export, _params(2.0), {"version": 2})
    params, meta = checkpointing.load_export(export)
    assert meta == {"version": 2}
    np.testing.assert_array_equal(params["encoder"][0]["kernel"], _params(2.0)["encoder"][0]["kernel"])
    np.testing.assert_array_equal(params["head"]["bias"], np.full((8,), 2.0, np.float32))
    assert json.loads((export / checkpointing.EXPORT_METADATA).read_text()) == {"version": 2}


def test_full_disk_during_predict(tmp_path, monkeypatch):
    """predict's outputs go through io.atomic_write: a full disk on the second image's arrays stops
    the run with DiskFullError naming that file, the first image's outputs are complete, no part of
    the second's arrays is there, and a rerun writes the arrays of an uninterrupted run."""
    import cv2
    from flax import nnx

    from facelift_jax import export, predict
    from facelift_jax.model import build_model
    from test_export_predict import SIZE, tiny_config as predict_config, tiny_template

    config = predict_config()
    model = build_model(config.model, tiny_template(), rngs=nnx.Rngs(3))
    model_dir = export.save_model(model, tmp_path / "export", image_size=SIZE,
                                  metadata=export.make_metadata(config.model, SIZE, tiny_template(), source={"test": True}))
    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a", "b"):
        cv2.imwrite(str(inputs / f"{name}.png"), rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8))
    out = tmp_path / "out"
    failed = _disk_fills_on(monkeypatch, "b.npz")
    with pytest.raises(fio.DiskFullError) as info:
        predict.run([str(inputs)], model_dir, out, detector="none", progress=False)
    assert len(failed) == 1
    _assert_full_disk_error(info.value, out / "b.npz")
    assert not (out / "b.npz").exists() and not _no_temporary_files(out)
    first = _arrays(out / "a.npz")

    predict.run([str(inputs)], model_dir, out, detector="none", progress=False)  # room again
    predict.run([str(inputs)], model_dir, tmp_path / "fresh", detector="none", progress=False)
    for name in ("a.npz", "b.npz"):
        _assert_same_arrays(_arrays(out / name), _arrays(tmp_path / "fresh" / name))
    _assert_same_arrays(first, _arrays(tmp_path / "fresh" / "a.npz"))
