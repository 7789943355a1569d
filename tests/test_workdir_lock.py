"""A second process writing into the same folder: train's workdir and preprocessing's --out are
locked (io.WorkdirLock, an flock the kernel drops when the holder exits); a second run is refused
with the folder and the holder's pid, before it writes anything, and runs once the holder is gone."""

import os
import pathlib
import subprocess
import sys

import pytest

from facelift_jax import io as fio
from facelift_jax import preprocess, train

from _training_data import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Holds preprocess.lock_out(folder, index, count) (or the train workdir's lock) until stdin closes.
_HOLDER = """
import sys
from facelift_jax import io as fio, preprocess
folder, kind = sys.argv[1], sys.argv[2]
lock = fio.lock_workdir(folder) if kind == "train" else preprocess.lock_out(folder, int(sys.argv[3]), int(sys.argv[4]))
lock.acquire()
print("locked", flush=True)
sys.stdin.read()
"""


def _hold(folder, *args) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), *map(str, args)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def test_second_train_run_in_a_workdir_is_refused(tmp_path, monkeypatch):
    config, workdir = tiny_config(), tmp_path / "run"
    holder = _hold(workdir, "train")
    try:
        with pytest.raises(fio.WorkdirLockedError) as info:
            train.train_and_evaluate(config, workdir)
        msg = str(info.value)
        assert str(workdir.absolute()) in msg and f"pid {holder.pid} " in msg, msg
        assert not (workdir / "config.json").exists()  # refused before writing anything
    finally:
        _release(holder)

    class Reached(Exception):
        pass

    def prepare_data(config, workdir):
        # the run is under way and holds the lock: a second one, even from this process, is refused
        with pytest.raises(fio.WorkdirLockedError, match=f"pid {os.getpid()} "):
            train.train_and_evaluate(config, workdir)
        raise Reached

    monkeypatch.setattr(train, "prepare_data", prepare_data)
    with pytest.raises(Reached):  # the holder gone, the run goes past the lock
        train.train_and_evaluate(config, workdir)
    assert (workdir / "config.json").is_file()
    with fio.lock_workdir(workdir):  # and let go of it when it stopped (here by an error)
        pass


def test_preprocessing_folder_is_locked_per_process_index(tmp_path):
    out = tmp_path / "pre"
    holder = _hold(out, "preprocess", 1, 2)
    try:
        with pytest.raises(fio.WorkdirLockedError) as info:
            preprocess.lock_out(out, 1, 2).acquire()
        msg = str(info.value)
        assert str(out.absolute()) in msg and f"pid {holder.pid} " in msg and "process 1 of 2" in msg, msg
        with preprocess.lock_out(out, 0, 2):  # the other process of the same split shares the folder
            pass
    finally:
        _release(holder)
    with preprocess.lock_out(out, 1, 2):
        pass


_CLI = [sys.executable, "-m", "facelift_jax.preprocess", "--config", "configs/default.py",
        "--config.image_size=48", "--config.preprocess.num_latents=1", "--config.preprocess.chunk_size=1",
        "--config.preprocess.num_videos=0", "--config.preprocess.preview_latents=0"]


def test_second_preprocess_command_into_one_folder_is_refused(tmp_path):
    out = tmp_path / "pre"
    holder = _hold(out, "preprocess", 0, 1)
    try:
        proc = subprocess.run(_CLI + ["--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0
        assert str(out.absolute()) in proc.stderr and f"pid {holder.pid} " in proc.stderr, proc.stderr[-2000:]
        assert not (out / "multiview").exists()
    finally:
        _release(holder)
    proc = subprocess.run(_CLI + ["--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "multiview" / "pseudo_labels.npz").is_file()
