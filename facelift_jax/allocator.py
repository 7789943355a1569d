"""glibc malloc settings for the training process (``tune_malloc``), set once at start-up.

Why: XLA:CPU allocates one temporary buffer per executable run, 654 MB for the default train step
(EfficientNet-Lite0 64², batch 32; seen with ``strace -e mmap,munmap``), from an XLA worker thread.
glibc serves any allocation above its mmap threshold (at most 32 MiB, and everything above a
thread arena's 64 MiB heap) with a fresh ``mmap`` and returns it with ``munmap`` at ``free``: the
kernel then zero-fills and faults in all 654 MB again on the next step, ~160,000 minor page faults
per step and a third of the process's CPU time in the kernel (benchmarks/bench_train.py --malloc
compare measures it).

What ``tune_malloc`` sets (``mallopt``; the ``MALLOC_*_`` environment tunables do the same but
only when set before the process starts):
  * ``M_ARENA_MAX`` 1 — every thread allocates from the main (sbrk) arena: a thread arena's heaps
    are at most 64 MiB, and larger requests there are always mmap'ed, whatever the settings below;
  * ``M_MMAP_MAX`` 0 — no allocation is served by its own mmap;
  * ``M_TRIM_THRESHOLD`` 2 GiB — freed memory at the top of the heap stays mapped (up to 2 GiB),
    so the next step reuses the pages it faulted in.
Measured (2-core "Intel(R) Xeon(R) Processor" of lscpu, family 6 model 207, shared with other jobs; bench_train --malloc compare,
default config with a 256-render pool, 10 steps, default vs tuned in one run): the loop's sys share
35.6 % → 0.9 %, minor faults 162,742 → 0 per step, 78.5 → 90.9 images/s (×1.16); a short
``python -m facelift_jax.train`` (80 steps): 80.3 → 91.2 images/s, the whole process's sys share
20.5 % → 4.9 %, 13.6 M → 0.82 M minor faults. The step's compile took ~4 s longer tuned (21 → 25 s,
one pair).
The cost: the process keeps its peak heap (the memory a step needs anyway) instead of giving it
back between steps, and all threads share one arena lock (measured harmless on 2 cores).

Call it before ``import jax`` (which starts a thread): glibc fixes its arena limit when a second
thread first allocates, and threads keep the arena they got, so a later ``M_ARENA_MAX`` changes
nothing and the big buffer is still mmap'ed (measured: tuned after the imports, 162,000 faults per
step as before). The training command line does it at the top of facelift_jax/train.py (only when
run as ``python -m facelift_jax.train``); benchmarks/bench_train.py before its imports. ``FACELIFT_MALLOC=default`` in the environment, or a C library other than glibc,
leaves malloc as it is (logged at debug level).
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger("facelift_jax.allocator")

# <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

TUNED = ((M_ARENA_MAX, "M_ARENA_MAX", 1), (M_MMAP_MAX, "M_MMAP_MAX", 0),
         (M_TRIM_THRESHOLD, "M_TRIM_THRESHOLD", 2**31 - 1))  # mallopt takes a C int

_applied: dict | None = None


def tune_malloc() -> dict:
    """Apply TUNED through glibc's ``mallopt`` once per process; returns {name: value} of what was
    set ({} when left alone: ``FACELIFT_MALLOC=default``, not glibc, or no ``mallopt``)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = {}
    if os.environ.get("FACELIFT_MALLOC", "tuned") == "default":
        log.debug("malloc left at glibc's defaults (FACELIFT_MALLOC=default)")
        return _applied
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        log.debug("malloc not tuned: not glibc (%s %s)", platform.system(), platform.libc_ver())
        return _applied
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError) as e:
        log.debug("malloc not tuned: no mallopt (%s)", e)
        return _applied
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    threads = _thread_count()
    if threads > 1:
        log.warning("malloc tuned with %d threads running: threads that have allocated keep their arenas "
                    "(call allocator.tune_malloc() before importing jax)", threads)
    for param, name, value in TUNED:
        if mallopt(param, value) == 1:
            _applied[name] = value
        else:
            log.debug("mallopt(%s, %d) refused", name, value)
    log.debug("malloc tuned: %s", _applied)
    return _applied


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1
