"""io.save_npz / load_npz: the arrays come back exactly, a failed write leaves nothing behind (the
final name absent or its old contents intact, no temporary file), a missing file is named."""

import os

import numpy as np
import pytest

from facelift_jax import io as fio


def _arrays():
    r = np.random.default_rng(0)
    return {
        "f32": r.normal(size=(3, 4)).astype(np.float32),
        "i64": np.array([-(2**62), -1, 0, 2**62 + 7], np.int64),  # beyond float64's exact integers
        "mask": np.array([[True, False], [False, True]]),
        "img": r.integers(0, 256, (2, 5, 5, 3), dtype=np.uint8),
    }


def test_round_trip_keeps_values_and_dtypes(tmp_path):
    arrays = _arrays()
    path = tmp_path / "sub" / "a.npz"  # the folder does not exist yet
    fio.save_npz(path, **arrays)
    got = fio.load_npz(path)
    assert got.keys() == arrays.keys()
    for k, a in arrays.items():
        assert got[k].dtype == a.dtype and got[k].shape == a.shape, k
        assert got[k].tobytes() == a.tobytes(), k  # bit-exact, not merely close
    assert os.listdir(path.parent) == ["a.npz"]


def _failing_savez(monkeypatch):
    """np.savez that writes half of the real file's bytes, then fails (a crash mid-write)."""
    real = np.savez

    def broken(f, **arrays):
        import io as stdio

        buf = stdio.BytesIO()
        real(buf, **arrays)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(np, "savez", broken)


def test_failed_write_leaves_no_file_and_no_temporary(tmp_path, monkeypatch):
    _failing_savez(monkeypatch)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        fio.save_npz(tmp_path / "a.npz", **_arrays())
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_older_file(tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    old = {"x": np.arange(5, dtype=np.int64)}
    fio.save_npz(path, **old)
    before = path.read_bytes()
    _failing_savez(monkeypatch)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        fio.save_npz(path, **_arrays())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.npz"]
    monkeypatch.undo()
    np.testing.assert_array_equal(fio.load_npz(path)["x"], old["x"])


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "labels.npz"
    with pytest.raises(FileNotFoundError, match=str(path)):
        fio.load_npz(path)
    assert fio.load_npz_if_valid(path) is None


def test_unreadable_file_is_named_and_redone_by_the_lenient_loader(tmp_path):
    path = tmp_path / "cut.npz"
    fio.save_npz(path, **_arrays())
    path.write_bytes(path.read_bytes()[:100])  # cut short, as a copy interrupted outside our writer
    with pytest.raises(ValueError, match=str(path)):
        fio.load_npz(path)
    assert fio.load_npz_if_valid(path) is None
