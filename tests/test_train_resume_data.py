"""train after a kill in the middle of preprocessing: train.prepare_data sees the unfinished data
folder (pseudo-labels there, but no finished.json: the video index or the previews are not), runs
the restartable preprocessing again (the sealed lifting chunk and finished clips are kept, not
redone) and ends with a folder bit-identical to an uninterrupted run's; a finished folder is reused
as it is."""

import json
import pathlib

import numpy as np
import pytest

from facelift_jax import preprocess, synthetic, train

from _training_data import tiny_config, tiny_data_dir


class Killed(BaseException):
    """Stands in for SIGKILL / KeyboardInterrupt: not an Exception, so nothing on the way catches it."""


def _files(root: pathlib.Path) -> dict[str, pathlib.Path]:
    skip = {"done"}  # the shared fixture's own marker
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip and not p.name.startswith(".lock") and p.parts[len(root.parts)] != "test"}


def _assert_same_data(got: pathlib.Path, want: pathlib.Path):
    """Every array of the uninterrupted run's labels, chunks and clips, bit for bit; the index equal."""
    a, b = _files(got), _files(want)
    data = lambda names: {n for n in names if not n.startswith("preview/")}  # noqa: E731
    assert data(a) == data(b), sorted(data(a) ^ data(b))
    for name in data(b):
        if name.endswith(".npz"):
            with np.load(a[name]) as x, np.load(b[name]) as y:
                assert x.files == y.files, name
                for k in y.files:
                    assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k], equal_nan=True), (name, k)
        elif name.endswith(".npy"):
            assert np.array_equal(np.load(a[name]), np.load(b[name])), name
        elif name.endswith(".json") and name != "multiview/metadata.json":  # metadata holds timings
            assert json.loads(a[name].read_text()) == json.loads(b[name].read_text()), name
        elif name.endswith(".avi"):
            assert a[name].read_bytes() == b[name].read_bytes(), name
    previews = lambda names: sorted(n for n in names if n.startswith("preview/"))  # noqa: E731
    assert previews(a) == previews(b) and previews(b), previews(a)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return tiny_data_dir(tmp_path_factory)


def _count_calls(monkeypatch, module, name) -> list:
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    return calls


def test_kill_while_writing_the_videos_reruns_preprocessing_and_ends_as_uninterrupted(
        tmp_path, monkeypatch, uninterrupted):
    config, workdir = tiny_config(), tmp_path / "run"
    real_video = synthetic.make_video
    made = []

    def video_then_kill(*args, **kwargs):
        if made:  # the first clip is finished; the kill comes while the second one is rendered
            raise Killed()
        made.append(1)
        return real_video(*args, **kwargs)

    monkeypatch.setattr(synthetic, "make_video", video_then_kill)
    with pytest.raises(Killed):
        train.prepare_data(config, workdir)
    data = workdir / "data"
    # what a check for the pseudo-labels alone would have taken for a finished folder
    assert (data / "multiview" / "pseudo_labels.npz").is_file() and (data / "multiview" / "template.npy").is_file()
    assert not (data / "videos" / "index.json").exists() and not (data / "preview").exists()
    assert len(list((data / "videos").glob("video_*.avi"))) == 1
    assert not preprocess.finished(data)

    monkeypatch.setattr(synthetic, "make_video", real_video)
    lifted = _count_calls(monkeypatch, preprocess, "lift_chunk")
    videos = _count_calls(monkeypatch, synthetic, "make_video")
    assert train.prepare_data(config, workdir) == data
    assert lifted == [] and videos == [1]  # the sealed chunk and the finished clip are kept
    assert preprocess.finished(data)
    _assert_same_data(data, uninterrupted)

    # finished now: the next run reuses it without preprocessing again
    runs = _count_calls(monkeypatch, preprocess, "run_preprocess")
    train.prepare_data(config, workdir)
    assert runs == []


def test_kill_while_drawing_the_previews_reruns_them(tmp_path, monkeypatch, uninterrupted):
    import shutil

    from matplotlib.figure import Figure

    config, data = tiny_config(), tmp_path / "run" / "data"
    shutil.copytree(uninterrupted, data, ignore=shutil.ignore_patterns("done"))
    runs = _count_calls(monkeypatch, preprocess, "run_preprocess")
    train.prepare_data(config, tmp_path / "run")
    assert runs == []  # a finished folder (built by preprocess itself) is reused

    scatter = sorted((data / "preview").glob("scatter3d_*.png"))
    assert len(scatter) == 1
    whole = scatter[0].read_bytes()
    # as a run killed after its videos leaves it: no previews, no finished.json
    shutil.rmtree(data / "preview")
    (data / preprocess.FINISHED).unlink()
    real_savefig = Figure.savefig

    def savefig_then_kill(fig, fname, *args, **kwargs):
        real_savefig(fig, fname, *args, **kwargs)
        if "scatter3d" in str(fname):  # the kill comes while the 3D scatter (the last picture) is written
            with open(fname, "r+b") as f:
                f.truncate(len(whole) // 2)
            raise Killed()

    monkeypatch.setattr(Figure, "savefig", savefig_then_kill)
    with pytest.raises(Killed):
        train.prepare_data(config, tmp_path / "run")
    assert runs == [1] and not preprocess.finished(data)
    assert not scatter[0].exists() and not list((data / "preview").glob(".*"))  # no half PNG, no temporary file
    assert list((data / "preview").glob("lifting_*.png"))  # the pictures before it are whole and kept
    monkeypatch.setattr(Figure, "savefig", real_savefig)
    lifted = _count_calls(monkeypatch, preprocess, "lift_chunk")
    videos = _count_calls(monkeypatch, synthetic, "make_video")
    train.prepare_data(config, tmp_path / "run")
    assert runs == [1, 1] and lifted == [] and videos == []
    assert scatter[0].read_bytes()[-8:] == whole[-8:] and preprocess.finished(data)
    _assert_same_data(data, uninterrupted)
