"""The preprocessing command on the embedded synthetic source: output layout, accuracy against the
generator's exact 3D landmarks, restart after a kill, plan checks, and source selection."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import default as default_config
from facelift_jax import io as fio
from facelift_jax import landmarks, preprocess, sources, views


def _config(num_latents=5, chunk_size=2):
    c = default_config.get_config()
    c.image_size = 64  # the synthetic detector works on geometry; small images keep the test fast
    c.preprocess.num_latents = num_latents
    c.preprocess.chunk_size = chunk_size
    c.preprocess.render_batch = 32
    c.preprocess.num_videos = 1
    c.preprocess.frames_per_video = 4
    c.preprocess.preview_latents = 1
    return c


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    config = _config()
    preprocess.run_preprocess(config, out, progress=False)
    return config, out


def test_layout_matches_the_contract(finished):
    config, out = finished
    N = config.preprocess.num_latents
    with np.load(out / "multiview" / "pseudo_labels.npz") as f:
        d = {k: f[k] for k in f.files}
    assert d["latents"].dtype == np.int64 and np.array_equal(d["latents"], np.arange(N))
    shapes = dict(points3d=(N, 98, 3), valid=(N, 98), residual=(N, 98), num_views=(N, 98), status=(N,),
                  true3d=(N, 98, 3))
    for k, s in shapes.items():
        assert d[k].shape == s, k
    assert d["valid"].dtype == bool and np.isfinite(d["points3d"]).all()
    assert not d["valid"][:, landmarks.PUPILS].any()
    meta = json.loads((out / "multiview" / "metadata.json").read_text())
    assert meta["generator"] == "synthetic" and len(meta["views"]) == len(views.LIFTING_VIEWS)
    assert meta["invalid_points"]["total"] == int((~d["valid"]).sum())
    assert set(meta["view_masks"]) == {n for n, *_ in views.LIFTING_VIEWS}
    assert meta["lifting"]["optimizer"] == config.lifting.optimizer
    template = np.load(out / "multiview" / "template.npy")
    v = d["valid"][:, 10]
    np.testing.assert_allclose(template[10], d["points3d"][v, 10].mean(0), atol=1e-6)
    index = json.loads((out / "videos" / "index.json").read_text())
    assert len(index) == 1
    with np.load(out / "videos" / index[0]["labels"]) as f:
        assert f["landmarks2d"].shape == (index[0]["frames"], 98, 2) and f["confidence"].shape == (index[0]["frames"], 98)
    assert (out / "videos" / index[0]["video"]).stat().st_size > 0
    pngs = sorted(p.name for p in (out / "preview").glob("*.png"))
    assert "lifting_latent000000.png" in pngs and any(p.startswith("scatter3d") for p in pngs)


def test_pseudo_labels_are_close_to_the_exact_truth(finished):
    config, out = finished
    with np.load(out / "multiview" / "pseudo_labels.npz") as f:
        d = {k: f[k] for k in f.files}
    # independent truth: ask the generator directly
    truth = sources.make_generator(config).landmarks3d(d["latents"])
    np.testing.assert_allclose(d["true3d"], truth, atol=1e-5)
    face = np.linalg.norm(np.ptp(truth[:, :96], axis=1), axis=-1).mean()  # box diagonal, ~0.5
    err = np.linalg.norm(d["points3d"] - truth, axis=-1)
    assert d["valid"][:, :96].mean() > 0.9
    assert err[:, :96][d["valid"][:, :96]].mean() < 0.02 * face
    for region in ("eyes", "nose", "mouth"):  # the reliably detected regions lift best
        idx = landmarks.region_indices(region)
        assert err[:, idx][d["valid"][:, idx]].mean() < 0.01 * face, region


def test_restart_skips_finished_chunks(tmp_path, monkeypatch):
    config = _config(num_latents=5, chunk_size=2)
    config.preprocess.num_videos = 0
    calls = []
    real = preprocess.lift_chunk

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # "killed" while working on the second chunk
        return real(*args, **kwargs)

    monkeypatch.setattr(preprocess, "lift_chunk", dying)
    with pytest.raises(KeyboardInterrupt):
        preprocess.run_multiview(config, tmp_path, progress=False)
    chunks = sorted((tmp_path / "multiview" / "chunks").iterdir())
    # the finished chunk and its seal, no partial or temporary file
    assert [p.name for p in chunks] == ["chunk_000000000_000000001.npz", "chunk_000000000_000000001.seal.json"]
    first_mtime = chunks[0].stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(preprocess, "lift_chunk", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    preprocess.run_multiview(config, tmp_path, progress=False)
    assert len(calls) == 2  # chunks 2-3 and 4 only
    assert chunks[0].stat().st_mtime_ns == first_mtime
    with np.load(tmp_path / "multiview" / "pseudo_labels.npz") as f:
        resumed = f["points3d"]
        assert np.array_equal(f["latents"], np.arange(5))

    # an uninterrupted run gives the same numbers (per-chunk keys do not depend on the history)
    fresh = tmp_path / "fresh"
    monkeypatch.setattr(preprocess, "lift_chunk", real)
    preprocess.run_multiview(config, fresh, progress=False)
    with np.load(fresh / "multiview" / "pseudo_labels.npz") as f:
        np.testing.assert_allclose(f["points3d"], resumed, atol=1e-6)

    # a different plan into the same folder is refused
    config.preprocess.num_latents = 7
    with pytest.raises(ValueError, match="different preprocessing plan"):
        preprocess.run_multiview(config, tmp_path, progress=False)


@pytest.mark.slow
def test_command_survives_sigkill(tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "facelift_jax.preprocess", "--config", "configs/default.py", "--out", str(out),
            "--config.image_size=64", "--config.preprocess.num_latents=6", "--config.preprocess.chunk_size=2",
            "--config.preprocess.num_videos=1", "--config.preprocess.frames_per_video=4",
            "--config.preprocess.preview_latents=1"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(args, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chunk_dir = out / "multiview" / "chunks"
    deadline = time.time() + 240
    # a chunk is finished once its seal is written (after the chunk file)
    while time.time() < deadline and not (chunk_dir.exists() and any(chunk_dir.glob("chunk_*.seal.json"))):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in chunk_dir.glob("chunk_*.npz")
            if p.with_name(p.stem + ".seal.json").exists()}
    assert done, "no chunk finished before the kill"
    rerun = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for name, mtime in done.items():
        assert (chunk_dir / name).stat().st_mtime_ns == mtime  # not redone
    with np.load(out / "multiview" / "pseudo_labels.npz") as f:
        assert np.array_equal(f["latents"], np.arange(6))


def test_sources_by_name_and_no_torch_for_synthetic():
    c = default_config.get_config()
    c.generator = "stylegan9"
    with pytest.raises(ValueError, match="generator"):
        sources.make_generator(c)
    c.detector = "oracle"
    with pytest.raises(ValueError, match="detector"):
        sources.make_detector(c)
    script = ("import sys; from configs import default; from facelift_jax import sources, preprocess; "
              "c = default.get_config(); g = sources.make_generator(c); d = sources.make_detector(c); "
              "assert sources.has_exact_landmarks(g); "
              "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.') or m.startswith('bridges')]; "
              "assert not bad, bad; print('ok')")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


# ------------------------------------------------------------------ overlapped stages, damaged chunks


def _arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _assert_same_files(a, b):
    """Bit-identical pseudo-labels and chunk files in the multiview folders of two runs."""
    x, y = _arrays(a / "multiview" / "pseudo_labels.npz"), _arrays(b / "multiview" / "pseudo_labels.npz")
    assert x.keys() == y.keys()
    for k in x:
        assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k], equal_nan=True), k
    names = sorted(p.name for p in (a / "multiview" / "chunks").glob("chunk_*.npz"))
    assert names == sorted(p.name for p in (b / "multiview" / "chunks").glob("chunk_*.npz"))
    for n in names:
        x, y = _arrays(a / "multiview" / "chunks" / n), _arrays(b / "multiview" / "chunks" / n)
        for k in x:
            assert np.array_equal(x[k], y[k], equal_nan=True), (n, k)


def test_stage_threads_overlap_and_pass_errors_on():
    """_ahead computes item k+1 while the consumer still holds item k (it would deadlock, and time
    out, if the stages ran one after the other), keeps the order, and re-raises a stage's error."""
    import threading

    computed = [threading.Event() for _ in range(4)]
    threads = set()

    def stage(i):
        threads.add(threading.current_thread().name)
        computed[i].set()
        return i * i

    got = []
    for i in preprocess._ahead(stage, iter(range(4)), depth=1):
        if i < 3:  # still "lifting" item i: item i+1 must be under way meanwhile
            assert computed[i + 1].wait(timeout=30), "the next item was not computed while this one was used"
        got.append(i)
    assert got == [0, 1, 4, 9] and threading.current_thread().name not in threads

    def boom(i):
        if i == 2:
            raise ZeroDivisionError("stage failed")
        return i

    with pytest.raises(ZeroDivisionError, match="stage failed"):
        list(preprocess._ahead(boom, iter(range(5))))


def test_overlapped_pipeline_equals_sequential(finished, tmp_path):
    """run_preprocess (overlapped stages, the default) and a sequential run write the same bytes' worth
    of numbers: every array of every chunk and of the assembled pseudo-labels bit-identical."""
    config, out = finished
    preprocess.run_multiview(config, tmp_path, progress=False, overlap=False)
    _assert_same_files(out, tmp_path)


def _copy_multiview(src, dst):
    import shutil

    shutil.copytree(src / "multiview", dst / "multiview")
    return sorted((dst / "multiview" / "chunks").glob("chunk_*.npz"))


def _counting_lift(monkeypatch):
    calls = []
    real = preprocess.lift_chunk
    monkeypatch.setattr(preprocess, "lift_chunk", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    return calls


def test_truncated_or_corrupt_chunk_is_redone(finished, tmp_path, monkeypatch):
    """A truncated chunk and one with flipped bytes (their seals kept) are redone, the intact one is
    not touched, and the labels equal the undamaged run's."""
    config, out = finished
    chunks = _copy_multiview(out, tmp_path)
    assert len(chunks) == 3
    data = chunks[0].read_bytes()
    chunks[0].write_bytes(data[: len(data) // 2])  # a copy cut short / disk full
    data = bytearray(chunks[2].read_bytes())
    data[len(data) // 2: len(data) // 2 + 8] = bytes(b ^ 0xFF for b in data[len(data) // 2: len(data) // 2 + 8])
    chunks[2].write_bytes(bytes(data))  # bit rot inside the arrays, same size
    intact = chunks[1].stat().st_mtime_ns
    calls = _counting_lift(monkeypatch)
    preprocess.run_multiview(config, tmp_path, progress=False)
    assert len(calls) == 2  # chunks 0 and 2 only
    assert chunks[1].stat().st_mtime_ns == intact
    _assert_same_files(out, tmp_path)


def test_chunk_overwritten_by_another_file_is_redone(finished, tmp_path, monkeypatch):
    """A chunk replaced by a readable npz with other numbers (a file of another run copied over it):
    only its checksum can tell. Without the seal check its numbers would reach the pseudo-labels."""
    config, out = finished
    chunks = _copy_multiview(out, tmp_path)
    other = _arrays(chunks[1])
    other["points3d"] = other["points3d"] + np.float32(0.01)
    with open(chunks[1], "wb") as f:
        np.savez(f, **other)
    assert fio.load_npz(chunks[1]).keys() == other.keys()  # a valid file: loading alone cannot tell
    calls = _counting_lift(monkeypatch)
    preprocess.run_multiview(config, tmp_path, progress=False)
    assert len(calls) == 1
    _assert_same_files(out, tmp_path)


def test_seal_says_what_is_wrong(tmp_path):
    """stamps.seal / seal_status against hashlib and the file size, each failure named."""
    import hashlib

    from facelift_jax import stamps

    path = tmp_path / "chunk_a.npz"
    path.write_bytes(bytes(range(256)) * 4)
    what = dict(plan="abc", first_latent=0)
    assert stamps.seal_status(path, what)[0] == stamps.MISSING  # not sealed yet: unfinished
    stamps.seal(path, what)
    sealed = json.loads(stamps.seal_path(path).read_text())
    assert stamps.seal_path(path).name == "chunk_a.seal.json"
    assert sealed["bytes"] == 1024 and sealed["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert stamps.seal_status(path, what) == (stamps.SEALED, "")
    status, why = stamps.seal_status(path, dict(what, plan="xyz"))
    assert status == stamps.BAD and "another plan" in why and "plan" in why
    path.write_bytes(bytes(range(256)) * 3)
    status, why = stamps.seal_status(path, what)
    assert status == stamps.BAD and "768 bytes" in why and "1024" in why
    path.write_bytes(bytes(range(255, -1, -1)) * 4)  # same size, other bytes
    status, why = stamps.seal_status(path, what)
    assert status == stamps.BAD and "SHA-256" in why
    stamps.seal_path(path).write_text("{not json")
    assert stamps.seal_status(path, what)[0] == stamps.BAD
    path.unlink()
    assert stamps.seal_status(path, what)[0] == stamps.MISSING


def test_bad_process_numbers_are_refused(tmp_path):
    for index, count in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match=r"--process_index=.*--process_count=.*0 ≤ process_index < process_count"):
            preprocess.run_multiview(_config(), tmp_path, progress=False, process_index=index, process_count=count)
    assert not (tmp_path / "multiview").exists()  # refused before anything was written
