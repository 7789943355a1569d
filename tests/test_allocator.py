"""facelift_jax/allocator.py: glibc mallopt settings applied once, left alone when asked or not glibc.

Each case runs in a fresh interpreter (the settings are process-wide and must come before any thread
allocates); nothing is timed (benchmarks/bench_train.py --malloc compare measures the effect).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

CODE = ("import json; from facelift_jax import allocator; a = allocator.tune_malloc(); "
        "print(json.dumps([a, allocator.tune_malloc() is a]))")


def _run(env_extra: dict) -> tuple[dict, bool, str]:
    env = {k: v for k, v in os.environ.items() if k != "FACELIFT_MALLOC"}
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env={**env, **env_extra},
                          timeout=60, check=True)
    applied, same = json.loads(proc.stdout.strip().splitlines()[-1])
    return applied, same, proc.stderr


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tune_malloc_applies_once_on_glibc():
    applied, same, err = _run({})
    assert applied == {"M_ARENA_MAX": 1, "M_MMAP_MAX": 0, "M_TRIM_THRESHOLD": 2**31 - 1}
    assert same  # a second call returns the first call's result, sets nothing again
    assert "threads running" not in err  # called before any other thread: no warning


def test_tune_malloc_left_alone_when_asked():
    applied, same, _ = _run({"FACELIFT_MALLOC": "default"})
    assert applied == {} and same


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tune_malloc_after_threads_warns():
    code = ("import threading, time; t = threading.Thread(target=time.sleep, args=(2,)); t.start(); "
            "from facelift_jax import allocator; print(allocator.tune_malloc())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "threads running" in proc.stderr, proc.stderr
