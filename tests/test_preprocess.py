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
    assert [p.name for p in chunks] == ["chunk_000000000_000000001.npz"]  # no partial or temporary file
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
    while time.time() < deadline and not (chunk_dir.exists() and any(chunk_dir.glob("chunk_*.npz"))):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in chunk_dir.glob("chunk_*.npz")}
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
