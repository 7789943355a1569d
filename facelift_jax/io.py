"""Writing files so that nothing half-written is ever taken for a finished file, and one lock per workdir.

``atomic_path`` / ``atomic_write`` are the one atomic write of the package (preprocessing chunks and
labels, cache stamps and seals, the training pool, exports, predict's outputs, checkpoint side
files): the bytes go to a temporary file in the destination's own folder (same filesystem, so the
rename is atomic), are flushed and ``fsync``-ed, and only then ``os.replace``-d onto the final
name (the folder is ``fsync``-ed too, so the rename survives a crash). Whatever fails on the way —
a full disk, an I/O error, an exception of the writer, Ctrl-C — removes the temporary file, and the
destination keeps its old contents (or stays absent): a reader sees the old file or the new one,
never part of one. ``save_npz`` is ``np.savez`` through it; ``load_npz`` reads one back (a
missing or unreadable file named in the error), ``load_npz_if_valid`` gives None instead, for
restartable outputs that are then redone.

A full disk (``ENOSPC``, or a quota: ``EDQUOT``) becomes ``DiskFullError``: one message naming the
file, about how much space it needed and how much is free on that filesystem, and that the file
was not written (running again after freeing space redoes it).

``WorkdirLock`` (``lock_workdir``): a second process writing into the same folder (two ``train``
runs started by mistake) is refused with ``WorkdirLockedError`` naming the folder and the pid of
the process holding it. The lock is an ``flock`` on ``<dir>/.lock``, which the kernel releases when
the holder exits or is killed, so a lock file left by a killed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pathlib
import shutil
import socket
import tempfile
import zipfile
from collections.abc import Callable, Iterator

import numpy as np

# errno values that mean "no room": a full filesystem or a full quota
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
LOCK_FILE = ".lock"


class DiskFullError(OSError):
    """A write failed for lack of space: names the file, the space it needed and what is free."""

    def __init__(self, path, needed: int | None, free: int | None, cause: BaseException | None = None):
        self.path, self.needed, self.free = pathlib.Path(path), needed, free
        need = f"about {format_bytes(needed)}" if needed else "more space than is left"
        room = f"{format_bytes(free)} free" if free is not None else "free space unknown"
        why = f" ({cause})" if cause is not None else ""
        super().__init__(errno.ENOSPC, f"no space left on the device to write {self.path}: it needs {need}, "
                         f"{room} on that filesystem{why}. Nothing was written in its place (no partial file is "
                         "left to be taken for a finished one); free some space and run the same command again: "
                         "finished work is kept and this file is redone")

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 28]" prefix
        return self.strerror


class WorkdirLockedError(OSError):
    """Another live process holds the folder's lock."""


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def free_bytes(path) -> int | None:
    """Bytes free to this user on the filesystem that holds ``path`` (or its nearest existing parent)."""
    p = pathlib.Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from (``__cause__`` / ``__context__``) is a
    full disk: an OSError with ENOSPC/EDQUOT, or a tensorstore/orbax message carrying one."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in _NO_SPACE):
            return True
        text = str(exc)
        if "[OS error 28" in text or "No space left on device" in text or "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(path, exc: BaseException | None, needed: int | None = None) -> DiskFullError:
    """The ``DiskFullError`` for writing ``path`` (the cause ``exc``; ``needed`` bytes if known)."""
    if isinstance(exc, DiskFullError):
        return exc
    cause = exc
    while isinstance(cause, BaseException) and not (isinstance(cause, OSError) and cause.errno in _NO_SPACE):
        cause = cause.__cause__ or cause.__context__
    return DiskFullError(path, needed, free_bytes(path), cause if cause is not None else exc)


def _fsync_dir(directory: pathlib.Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems do not sync directories; the rename itself is atomic
        pass
    finally:
        os.close(fd)


def _remove(path: pathlib.Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextlib.contextmanager
def atomic_path(path, *, needed: int | None = None) -> Iterator[pathlib.Path]:
    """``with atomic_path(p) as tmp: write(tmp)``: whatever the block writes to ``tmp`` (a fresh
    name beside ``p``, ending in ``p``'s suffix, for writers that pick a format by it) becomes ``p``
    when the block ends without an error: fsync, then ``os.replace``. On any error the temporary
    file is removed and ``p`` is untouched; a full disk raises ``DiskFullError`` (``needed``: the
    bytes the file takes, for its message; by default what had been written when the disk filled)."""
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
        os.close(fd)
    except OSError as e:
        if is_disk_full(e):
            raise disk_full_error(path, e, needed) from e
        raise
    tmp = pathlib.Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # delayed allocation: a full disk can first show here
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        size = tmp.stat().st_size if tmp.exists() else 0
        _remove(tmp)
        if is_disk_full(e):
            raise disk_full_error(path, e, needed if needed is not None else (size or None)) from e
        raise
    _fsync_dir(path.parent)


def atomic_write(path, data: bytes | str | Callable[[object], None], *, needed: int | None = None) -> pathlib.Path:
    """Write ``data`` (bytes, text as UTF-8, or ``writer(binary_file)``) to ``path`` atomically
    (``atomic_path``). Returns ``path``."""
    path = pathlib.Path(path)
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)) and needed is None:
        needed = len(data)
    with atomic_path(path, needed=needed) as tmp:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
    return path


def check_written(path, exc: BaseException, *, needed: int | None = None) -> BaseException:
    """What to raise when writing ``path`` failed with ``exc``: ``DiskFullError`` for a full disk,
    ``exc`` itself otherwise (for writers that do not go through ``atomic_path``, e.g. orbax)."""
    return disk_full_error(path, exc, needed) if is_disk_full(exc) else exc


# ------------------------------------------------------------------------------------------ npz

# What np.load raises on a file cut short or overwritten with other bytes (BadZipFile: a bad CRC).
_UNREADABLE_NPZ = (OSError, ValueError, EOFError, zipfile.BadZipFile)


def save_npz(path, **arrays) -> None:
    """``np.savez(path, **arrays)`` through ``atomic_write``: a reader, or a rerun deciding what is
    finished, sees the old file or the complete new one; a full disk is a ``DiskFullError``
    naming ``path``."""
    needed = sum(np.asarray(a).nbytes for a in arrays.values())
    atomic_write(path, lambda f: np.savez(f, **arrays), needed=needed)


def load_npz(path) -> dict:
    """{name: array} of the npz file ``path``, dtypes as saved (no pickled objects).

    A missing file is a ``FileNotFoundError`` and an unreadable one a ``ValueError``, both naming
    ``path``."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, f"no npz file at {path}", str(path))
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except _UNREADABLE_NPZ as e:
        raise ValueError(f"{path} is not a readable npz file ({type(e).__name__}: {e})") from e


def load_npz_if_valid(path) -> dict | None:
    """``load_npz(path)``, or None when the file is missing or unreadable: for restartable outputs
    (preprocessing chunks, caches), where such a file is simply redone."""
    try:
        return load_npz(path)
    except (FileNotFoundError, ValueError):
        return None


# ------------------------------------------------------------------------------------------ lock


class WorkdirLock:
    """An exclusive, non-blocking ``flock`` on ``<directory>/.lock`` for as long as it is held.

    ``acquire`` raises ``WorkdirLockedError`` (naming the folder and the holder's pid and host, as
    the holder wrote them into the file) when another process holds it. The kernel drops the lock
    when the holding process ends in any way, so a stale file never blocks. The file is left in
    place on release (removing it would let a third process lock a different inode)."""

    def __init__(self, directory, what: str = "workdir", name: str = LOCK_FILE):
        self.directory = pathlib.Path(directory).absolute()
        self.path = self.directory / name
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "WorkdirLock":
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise WorkdirLockedError(
                errno.EBUSY, f"the {self.what} {self.directory} is in use by another process ({holder}, which holds "
                f"{self.path}): two runs writing into one {self.what} would interleave their checkpoints and "
                f"files. Wait for it to finish or stop it, or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 256, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"


def lock_workdir(directory, what: str = "workdir", name: str = LOCK_FILE) -> WorkdirLock:
    """``with lock_workdir(workdir): ...`` — ``WorkdirLock(directory, what, name)``. ``name``: the lock
    file's name in ``directory``, for folders that several cooperating processes share, each
    with a lock of its own (preprocessing's ``--process_index``)."""
    return WorkdirLock(directory, what, name)
