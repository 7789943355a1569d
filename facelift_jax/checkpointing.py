"""Orbax checkpoints: training state (resumable) and params-only exports.

This is the only module of the package that imports orbax; everything else hands it pytrees of
arrays and JSON-able dicts.

Training checkpoints (``Checkpointer``) live in ``<workdir>/checkpoints/<step>/`` and hold four
composite items:

* ``params``    — the model's trained parameters (``nnx.state(model, nnx.Param)`` as a pure dict);
* ``opt_state`` — the optax state pytree;
* ``data``      — the data iterator state (JSON; grain's ``DatasetIterator.get_state()``);
* ``meta``      — JSON: step, config, anything small.

Saves are asynchronous (the step loop goes on while arrays are written) and atomic: orbax writes
into a temporary directory and renames it to ``<step>`` only when every item is complete, so a
process killed mid-save leaves no directory that ``latest_step``/``restore_latest`` would pick
up. ``keep`` bounds the number of checkpoints on disk (oldest deleted first).

Restores first compare the stored tree structure and array shapes (orbax's item metadata) with the
targets and raise a ``ValueError`` naming the item, the checkpoint and what differs: a run resumed
with another optimizer (e.g. ``optim.clip_norm`` switched on or off) or another model size fails
with that instead of an orbax tree/tensorstore error (``CheckpointMismatchError``).

A damaged checkpoint (a truncated or missing file, a missing item: a disk that filled up, a copy
cut short) raises ``DamagedCheckpointError`` naming its folder and what failed. ``restore_latest``
(training's resume) skips it instead: it moves the damaged folder to ``<directory>/damaged/`` (kept
for inspection; orbax and the step numbering no longer see it), logs a warning naming the step and
the reason, and resumes from the newest checkpoint that reads, or — when none does — says so and
returns None. Only what shows the files themselves are bad counts as damage (truncated or corrupt
data, undecodable metadata, a missing file or item); a read that fails for another reason (a
permission, a stale NFS handle, an I/O error or timeout) raises ``CheckpointReadError`` naming the
folder and moves nothing, so a passing fault never sends a run back to an older step. A save that
fails (disk full, I/O error) raises ``CheckpointSaveError`` naming the step, the cause (for a full
disk, the space the checkpoint needs and what is free) and the checkpoints still intact on disk;
the partial write never becomes a step folder.

Exports (``save_export``/``load_export``) are what inference needs: the parameters only, as host
numpy arrays (so they restore on any device topology), plus a JSON metadata file (model config,
template, landmark definition, ...).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import pathlib
import re
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from facelift_jax import io as fio

# The four items of a training checkpoint and how each is stored (arrays vs JSON).
_ITEM_HANDLERS = {"params": ocp.StandardCheckpointHandler, "opt_state": ocp.StandardCheckpointHandler,
                  "data": ocp.JsonCheckpointHandler, "meta": ocp.JsonCheckpointHandler}
EXPORT_PARAMS = "params"
EXPORT_METADATA = "metadata.json"
DAMAGED_DIR = "damaged"  # <directory>/damaged/<step>: checkpoints that could not be read, moved aside

log = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
    """The checkpoint is readable but holds another tree than the one asked for (a config change)."""


class CheckpointError(OSError):
    """A checkpoint or export on disk that cannot be read, or a save that failed."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint (or export) on disk is unreadable or incomplete."""


class CheckpointSaveError(CheckpointError):
    """Writing a checkpoint failed (the checkpoints already on disk are untouched)."""


class CheckpointReadError(CheckpointError):
    """Reading a checkpoint (or export) failed for a reason outside its files (a permission, a stale
    NFS handle, an I/O error): nothing was moved, the run stops; running again once it is fixed resumes."""


@dataclasses.dataclass
class Restored:
    """A restored training checkpoint."""

    step: int
    params: Any
    opt_state: Any
    data_state: dict | None
    meta: dict
    # Newer checkpoints that could not be read: (step, reason, where the folder was moved).
    skipped: tuple[tuple[int, str, str], ...] = ()


_HINTS = {
    "opt_state": "the optimizer built from the config differs from the checkpointed one — did optim.clip_norm "
                 "or the model config change? Use a new workdir or the old config.",
    "params": "the model built from the config differs from the checkpointed one — did the model config "
              "(or image_size) change? Use a new workdir or the old config.",
}
_MAX_LISTED = 5


def _handler_registry():
    """Handlers for the four items, so item metadata can be read before anything is restored."""
    return ocp.handlers.create_default_handler_registry(**{name: handler() for name, handler in _ITEM_HANDLERS.items()})


def _key_name(entry) -> str:
    for attr in ("key", "idx", "name"):  # DictKey / FlattenedIndexKey, SequenceKey, GetAttrKey
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _flat_shapes(tree) -> dict[str, tuple | None]:
    """{"a/0/kernel": shape} over the leaves of ``tree``; keys as orbax names them (dict keys and
    sequence indices as strings, namedtuple fields by name). Shape None when the leaf has none."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, leaf in leaves:
        shape = getattr(leaf, "shape", None)
        out["/".join(_key_name(e) for e in path) or "<root>"] = None if shape is None else tuple(shape)
    return out


def _listed(entries, sep: str = ", ") -> str:
    """The first ``_MAX_LISTED`` of the sorted ``entries``, and how many more there are."""
    entries = sorted(entries)
    more = f" … (+{len(entries) - _MAX_LISTED} more)" if len(entries) > _MAX_LISTED else ""
    return sep.join(entries[:_MAX_LISTED]) + more


def _check_item(manager, directory, step: int, item: str, abstract_target) -> None:
    """Raise a ValueError when the saved ``item`` of ``step`` differs in key paths or array shapes
    from ``abstract_target``. Without readable metadata (old or foreign checkpoints) it checks
    nothing and leaves the errors to orbax."""
    try:
        metadata = manager.item_metadata(int(step))[item]
    except Exception:  # noqa: BLE001 — best effort: the restore itself reports real I/O errors
        return
    if metadata is None:
        return
    _compare_trees(getattr(metadata, "tree", metadata), abstract_target,
                   f"cannot restore {item!r} from the checkpoint of step {step} in {directory}",
                   _HINTS.get(item, "use a new workdir or the old config."))


def _compare_trees(saved_tree, abstract_target, what: str, hint: str) -> None:
    """CheckpointMismatchError ``what: <differences>. Hint: <hint>`` when the key paths or array
    shapes of the saved tree (orbax metadata) and of ``abstract_target`` differ."""
    saved = _flat_shapes(saved_tree)
    expected = _flat_shapes(abstract_target)
    only_saved = saved.keys() - expected.keys()
    only_expected = expected.keys() - saved.keys()
    shapes = [f"{k}: saved {saved[k]} vs expected {expected[k]}" for k in sorted(saved.keys() & expected.keys())
              if saved[k] is not None and expected[k] is not None and saved[k] != expected[k]]
    if not (only_saved or only_expected or shapes):
        return
    problems = []
    if only_saved or only_expected:
        problems.append(f"tree structures differ ({len(saved)} saved leaves, {len(expected)} expected)")
        if only_saved:
            problems.append(f"only in the checkpoint: {_listed(only_saved)}")
        if only_expected:
            problems.append(f"only in the expected tree: {_listed(only_expected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape(s) differ: " + _listed(shapes, "; "))
    raise CheckpointMismatchError(f"{what}: " + "; ".join(problems) + f". Hint: {hint}")


def _abstract(tree):
    """ShapeDtypeStruct tree (keeping shardings) from a tree of arrays or of ShapeDtypeStructs."""

    def one(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        sharding = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype if sharding is None else x.dtype,
                                    sharding=sharding)

    return jax.tree.map(one, tree)


# Reading a checkpoint can fail two ways, and only one of them is the files' fault.
#
# Damage — the files themselves are bad, an older checkpoint is the way on: a truncated or corrupt
# array (tensorstore OUT_OF_RANGE, DATA_LOSS, FAILED_PRECONDITION "ZSTD_decompressStream() failed",
# NOT_FOUND of a chunk or .zarray; a plain Exception wrapping one of these), undecodable metadata
# (JSONDecodeError, UnicodeDecodeError; another ValueError of orbax about what it read), a missing
# file or item (FileNotFoundError / ENOENT, KeyError "Item ... was not found"), EOFError.
#
# Anything else on the way to the bytes — a PermissionError, a stale NFS handle (ESTALE), EIO, a
# timeout, a busy or unreachable server, as an OSError or inside a tensorstore message ("[OS error
# 116: ...]", PERMISSION_DENIED, UNAVAILABLE, ...) — says nothing about the files: moving a healthy
# checkpoint aside for it would silently restart from an older step. That is ``CheckpointReadError``:
# the run stops, naming the folder, and nothing is moved.
#
# Other types (TypeError, AttributeError, ...) are bugs and propagate.
DAMAGE, TRANSIENT = "damage", "transient"
_DAMAGE_CODES = ("OUT_OF_RANGE", "DATA_LOSS", "NOT_FOUND", "FAILED_PRECONDITION", "INVALID_ARGUMENT")
_TRANSIENT_CODES = ("PERMISSION_DENIED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "RESOURCE_EXHAUSTED",
                    "CANCELLED", "UNKNOWN", "INTERNAL", "UNAUTHENTICATED", "UNIMPLEMENTED", "ALREADY_EXISTS")
_STATUS = re.compile(r"^\s*(" + "|".join(_DAMAGE_CODES + _TRANSIENT_CODES) + r"):")
_OS_ERROR = re.compile(r"\[OS error (\d+)")  # tensorstore: "... [OS error 116: ESTALE Stale file handle]"
_MISSING = {errno.ENOENT, errno.ENOTDIR}
_MAX_REASON = 400


def _classify(exc: BaseException) -> tuple[str, BaseException] | None:
    """(DAMAGE or TRANSIENT, the read error) behind ``exc`` (itself, or what a plain ``Exception``
    wraps); None for a tree mismatch (a config change, which an older checkpoint would not fix),
    for our own errors and for bugs."""
    if isinstance(exc, (CheckpointMismatchError, CheckpointError)):
        return None
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            if isinstance(exc, FileNotFoundError) or exc.errno in _MISSING:
                return DAMAGE, exc  # a missing file of the checkpoint
            return TRANSIENT, exc  # permission, ESTALE, EIO, timeouts, ...: the files may be fine
        if isinstance(exc, (KeyError, EOFError, UnicodeDecodeError, json.JSONDecodeError)):
            return DAMAGE, exc
        if isinstance(exc, ValueError):
            text = str(exc)
            os_error = _OS_ERROR.search(text)
            if os_error:
                return (DAMAGE if int(os_error.group(1)) in _MISSING else TRANSIENT), exc
            status = _STATUS.match(text)
            if status and status.group(1) in _TRANSIENT_CODES:
                return TRANSIENT, exc
            return DAMAGE, exc  # tensorstore's damage codes, or orbax refusing what it read
        if type(exc) is not Exception:
            return None
        exc = exc.__cause__ or exc.__context__
    return None


def _read_error(exc: BaseException) -> BaseException | None:
    """The read error behind ``exc`` (damage or transient), or None (see ``_classify``)."""
    found = _classify(exc)
    return None if found is None else found[1]


def _reason(exc: BaseException) -> str:
    """One line on why a read or write failed: the exception type and its message's first line."""
    exc = _read_error(exc) or exc
    message = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip()
    first = message.splitlines()[0] if message else ""
    if len(first) > _MAX_REASON:  # tensorstore puts the cause (e.g. "No space left on device") last
        first = first[:_MAX_REASON // 3] + " … " + first[-2 * _MAX_REASON // 3:]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _committed_steps(directory: pathlib.Path) -> list[int]:
    """Step folders on disk (committed saves; orbax's temporary folders have other names)."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


def _read_failed(step_dir: pathlib.Path, exc: BaseException, others: list[int]) -> CheckpointError:
    """DamagedCheckpointError when ``exc`` shows the files of ``step_dir`` are bad, else
    CheckpointReadError (the files may well be fine: nothing is moved)."""
    kind, _ = _classify(exc)
    if kind == DAMAGE:
        return _damaged(step_dir, exc, others)
    return CheckpointReadError(
        f"could not read the checkpoint {step_dir}: {_reason(exc)}. This does not show that its files are bad "
        "(a permission, a stale network-filesystem handle, an I/O error), so nothing was moved and no older "
        "checkpoint was used; fix the cause (check the path's permissions and mount) and run again to resume "
        "from it.")


def _damaged(step_dir: pathlib.Path, exc: BaseException, others: list[int]) -> DamagedCheckpointError:
    hint = (f"other checkpoints there: steps {others}; use one of them (e.g. {step_dir.parent / str(others[-1])})"
            if others else "there is no other checkpoint in that folder")
    return DamagedCheckpointError(
        f"the checkpoint {step_dir} is damaged (a truncated or missing file, or an item missing): {_reason(exc)}. "
        f"{hint}; training skips a damaged newest checkpoint on its own and resumes from an older one.")


class Checkpointer:
    """Periodic, asynchronous, atomic, keep-N training checkpoints in ``directory``.

    Args:
      directory: where the ``<step>/`` folders go (created if missing).
      keep: how many most recent checkpoints stay on disk.
      every: ``should_save(step)`` is true every ``every`` steps.
      async_save: write in a background thread (``wait()`` / ``close()`` block until done).
    """

    def __init__(self, directory, keep: int = 3, every: int = 1, async_save: bool = True):
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.directory = pathlib.Path(directory).absolute()
        self.every = int(every)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(keep),
            create=True,
            enable_async_checkpointing=async_save,
            # Leftovers of a killed save are removed when the next manager opens the directory.
            cleanup_tmp_directories=True,
        )
        try:
            self._manager = ocp.CheckpointManager(self.directory, options=options,
                                                  handler_registry=_handler_registry())
        except Exception as e:  # orbax reads every step's metadata here
            found = _classify(e)
            if found is None or fio.is_disk_full(e):
                raise
            raise CheckpointReadError(
                f"could not open the checkpoints in {self.directory}: {_reason(e)}. Nothing was moved; fix the "
                "cause (permissions, the mount, the disk) and run again to resume from the newest one.") from e
        self._in_flight: int | None = None  # step of the save that wait() has not yet seen finish
        self._in_flight_bytes = 0  # about what that save writes (for a full disk's message)
        self._failed = False  # a save failure was raised already (close() does not raise it again)

    def should_save(self, step: int) -> bool:
        return step > 0 and step % self.every == 0

    def save(self, step: int, params, opt_state, data_state: dict | None, meta: dict, *, wait: bool = False) -> None:
        """Start saving ``step`` (returns before the write finishes unless ``wait``).

        Raises CheckpointSaveError when this save, or the previous one still in flight, fails."""
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            data=ocp.args.JsonSave(data_state if data_state is not None else {}),
            meta=ocp.args.JsonSave(dict(meta, step=int(step))),
        )
        self.wait()  # a failure of the previous (asynchronous) save is reported as that step's
        self._in_flight = int(step)
        self._in_flight_bytes = _tree_bytes((params, opt_state)) + len(json.dumps(data_state)) + len(
            json.dumps(meta, default=str))
        try:
            self._manager.save(int(step), args=args, force=True)
        except Exception as e:
            raise self._save_failed(e) from e
        if wait:
            self.wait()

    def _save_failed(self, exc: BaseException) -> CheckpointSaveError:
        step, self._in_flight, self._failed = self._in_flight, None, True
        on_disk = _committed_steps(self.directory)
        intact = (f"the checkpoints already on disk are intact (steps {on_disk}), and running again resumes from "
                  f"step {on_disk[-1]}" if on_disk else "there is no earlier checkpoint, so running again starts "
                  "from scratch")
        space = ""
        if fio.is_disk_full(exc):
            space = (f" The disk is full: the checkpoint needs about {fio.format_bytes(self._in_flight_bytes)}, "
                     f"{fio.format_bytes(fio.free_bytes(self.directory))} free on that filesystem.")
        return CheckpointSaveError(
            f"saving the checkpoint of step {step} to {self.directory} failed: {_reason(exc)}.{space} The partial write "
            f"never becomes a step folder and is removed when the directory is next opened; {intact}. "
            "Free disk space (or fix the cause above) and run again.")

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, step: int, abstract_params, abstract_opt) -> Restored:
        """Restore ``step``; ``abstract_*`` are trees of arrays or ShapeDtypeStructs (with shardings)
        giving the structure, dtypes and placement of the result.

        Raises CheckpointMismatchError (a ValueError naming the item, step and directory) when the
        saved params or optimizer state differ from the targets in tree structure or array shapes;
        DamagedCheckpointError (naming the step folder and the failure) when its files are bad;
        CheckpointReadError when reading fails for another reason (nothing is moved)."""
        if step not in self._manager.all_steps():
            raise FileNotFoundError(f"no checkpoint for step {step} in {self.directory}; have {self.all_steps()}")
        abstract_params, abstract_opt = _abstract(abstract_params), _abstract(abstract_opt)
        _check_item(self._manager, self.directory, step, "params", abstract_params)
        _check_item(self._manager, self.directory, step, "opt_state", abstract_opt)
        try:
            out = self._manager.restore(int(step), args=ocp.args.Composite(
                params=ocp.args.StandardRestore(abstract_params),
                opt_state=ocp.args.StandardRestore(abstract_opt),
                data=ocp.args.JsonRestore(),
                meta=ocp.args.JsonRestore(),
            ))
            meta = dict(out["meta"])
        except Exception as e:
            if _read_error(e) is None:
                raise
            raise _read_failed(self.directory / str(step), e, [s for s in self.all_steps() if s != step]) from e
        data = out["data"] or None
        return Restored(step=int(step), params=out["params"], opt_state=out["opt_state"], data_state=data,
                        meta=meta)

    def restore_latest(self, abstract_params, abstract_opt) -> Restored | None:
        """The newest checkpoint that reads, or None if there is none (CheckpointMismatchError as in
        ``restore``: a config change is the user's to fix, not something to skip).

        Damaged checkpoints met on the way (newest first) are moved to ``<directory>/damaged/`` and
        listed in the result's ``skipped`` and in a warning; without a readable one the warning says
        that training starts from scratch. A read that fails without showing damage
        (``CheckpointReadError``: permission, stale handle, I/O error) is raised: nothing is moved."""
        skipped = []
        for step in sorted(self.all_steps(), reverse=True):
            try:
                restored = self.restore(step, abstract_params, abstract_opt)
            except DamagedCheckpointError as e:
                reason = _reason(e.__cause__ if e.__cause__ is not None else e)
                skipped.append((step, reason, str(self._quarantine(step))))
                continue
            if skipped:
                log.warning("resuming from the checkpoint of step %d in %s: skipped the newer, unreadable %s",
                            step, self.directory, _skipped_text(skipped))
            return dataclasses.replace(restored, skipped=tuple(skipped))
        if skipped:
            log.warning("no readable checkpoint in %s, so training starts from scratch (step 0): %s",
                        self.directory, _skipped_text(skipped))
        return None

    def _quarantine(self, step: int) -> pathlib.Path:
        """Move the step folder to ``damaged/<step>`` (``<step>.1``, … if taken) so that orbax no
        longer lists it and the new run can save that step again. Returns the new place."""
        source = self.directory / str(step)
        target = self.directory / DAMAGED_DIR / str(step)
        n = 0
        while target.exists():
            n += 1
            target = self.directory / DAMAGED_DIR / f"{step}.{n}"
        failure = None
        if ocp.multihost.is_primary_host(0):
            try:
                target.parent.mkdir(exist_ok=True)
                os.replace(source, target)
            except OSError as e:
                failure = e
        # One barrier name on every host (each probes the shared disk at its own time, so n may
        # differ), reached before any error is raised: no host is left waiting at it.
        ocp.multihost.sync_global_processes(f"facelift_quarantine_{step}")
        if failure is not None:
            raise DamagedCheckpointError(
                f"the checkpoint {source} is damaged and could not be moved aside to {target} ({_reason(failure)}); "
                "move or delete it yourself, then run again to resume from the newest readable one") from failure
        self._manager.reload()
        return target

    def wait(self) -> None:
        """Block until any save in flight is committed (CheckpointSaveError if it failed)."""
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            raise self._save_failed(e) from e
        self._in_flight = None

    def close(self) -> None:
        """Wait for the save in flight, then release orbax's threads. A failed save raises
        CheckpointSaveError here unless it was raised already (by ``save``/``wait``)."""
        try:
            if not self._failed:
                self.wait()
        finally:  # orbax's threads are released even when the save in flight failed
            try:
                self._manager.close()
            except Exception:  # noqa: BLE001
                if not self._failed:
                    raise
                # orbax re-raises a failed save on every wait; it is reported once (above, or by save/wait)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _skipped_text(skipped) -> str:
    return "; ".join(f"step {step} ({reason}; moved to {moved})" for step, reason, moved in skipped)


def _read_only_options():
    return ocp.CheckpointManagerOptions(read_only=True, create=False, save_interval_steps=0)


def latest_step(checkpoint_dir) -> int | None:
    """Newest complete step in ``checkpoint_dir`` (None when empty or missing), without writing."""
    checkpoint_dir = pathlib.Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return None
    with ocp.CheckpointManager(checkpoint_dir.absolute(), options=_read_only_options(),
                               handler_registry=_handler_registry()) as manager:
        return manager.latest_step()


def restore_params(checkpoint_dir, abstract_params, step: int | None = None):
    """Only the ``params`` item of a training checkpoint (the newest one unless ``step``);
    CheckpointMismatchError (a ValueError) when its structure or shapes differ from
    ``abstract_params``, DamagedCheckpointError (naming the step folder, the failure and the other
    steps there) when it cannot be read. No fallback: evaluation and export use what was asked for."""
    checkpoint_dir = pathlib.Path(checkpoint_dir).absolute()
    if not checkpoint_dir.is_dir():
        raise FileNotFoundError(f"checkpoint directory {checkpoint_dir} does not exist")
    with ocp.CheckpointManager(checkpoint_dir, options=_read_only_options(),
                               handler_registry=_handler_registry()) as manager:
        step = manager.latest_step() if step is None else step
        if step is None or step not in manager.all_steps():
            raise FileNotFoundError(
                f"no complete checkpoint{'' if step is None else f' for step {step}'} in {checkpoint_dir}")
        abstract_params = _abstract(abstract_params)
        _check_item(manager, checkpoint_dir, step, "params", abstract_params)
        try:
            out = manager.restore(int(step), args=ocp.args.Composite(
                params=ocp.args.StandardRestore(abstract_params)))
        except Exception as e:
            if _read_error(e) is None:
                raise
            raise _read_failed(checkpoint_dir / str(step), e, [s for s in manager.all_steps() if s != step]) from e
        return out["params"]


def _tree_bytes(tree) -> int:
    """Bytes of the arrays of ``tree`` (what a save writes, before compression)."""
    return int(sum(int(getattr(x, "nbytes", 0) or np.asarray(x).nbytes) for x in jax.tree.leaves(tree)))


def _to_host(tree):
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)


def _restore_int_keys(tree):
    """Orbax stores dict keys as strings; nnx pure dicts index layers by int. Undo that."""
    if isinstance(tree, dict):
        return {(int(k) if isinstance(k, str) and k.isdigit() else k): _restore_int_keys(v) for k, v in tree.items()}
    return tree


def save_export(directory, params, metadata: dict) -> pathlib.Path:
    """Write ``directory/params`` (host numpy pytree) and ``directory/metadata.json``.

    Overwrites an existing export: its metadata.json (the mark of a complete export) goes first and
    comes back last, so an export cut short (a full disk: ``io.DiskFullError`` naming the file, the
    space needed and free) reads as incomplete, never as the old one with new parts. Returns the
    directory.
    """
    directory = pathlib.Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        text = json.dumps(metadata, indent=2, sort_keys=True)
    except TypeError as e:
        raise TypeError(f"save_export: metadata must be JSON-serializable: {e}") from e
    unmark_export(directory)
    host = _to_host(params)
    try:
        with ocp.StandardCheckpointer() as ckpt:
            ckpt.save(directory / EXPORT_PARAMS, host, force=True)
            ckpt.wait_until_finished()
    except Exception as e:
        if fio.is_disk_full(e):
            raise fio.disk_full_error(directory / EXPORT_PARAMS, e, _tree_bytes(host)) from e
        raise
    # Metadata last: its presence marks a complete export.
    fio.atomic_write(directory / EXPORT_METADATA, text)
    return directory


def unmark_export(directory) -> None:
    """Remove ``directory``'s metadata.json (if any) before its other files are rewritten."""
    path = pathlib.Path(directory) / EXPORT_METADATA
    path.unlink(missing_ok=True)


def _check_export(ckpt, directory: pathlib.Path, abstract_params) -> None:
    """As ``_check_item`` for an export's parameters (so that a tree mismatch is not taken for damage)."""
    try:
        tree = ckpt.metadata(directory / EXPORT_PARAMS).item_metadata.tree
    except Exception:  # noqa: BLE001 — unreadable metadata: the restore reports it
        return
    _compare_trees(tree, abstract_params, f"cannot restore the parameters of the export {directory}",
                   "the model described by its metadata.json differs from the saved parameters; export it again.")


def load_export(directory, abstract_params=None):
    """``(params, metadata)`` from ``save_export``'s directory.

    Without ``abstract_params`` the parameters come back as numpy arrays in nested dicts (digit
    keys turned back into ints, as in nnx pure dicts); with it, in its structure and shardings
    (CheckpointMismatchError when the saved tree differs). DamagedCheckpointError, naming the
    export, when a file of it is truncated or missing.
    """
    directory = pathlib.Path(directory).absolute()
    meta_path = directory / EXPORT_METADATA
    if not meta_path.is_file() or not (directory / EXPORT_PARAMS).is_dir():
        raise FileNotFoundError(f"{directory} is not a complete export (needs {EXPORT_PARAMS}/ and {EXPORT_METADATA})")
    try:
        metadata = json.loads(meta_path.read_text())
        with ocp.StandardCheckpointer() as ckpt:
            if abstract_params is None:
                raw = ckpt.restore(directory / EXPORT_PARAMS)
                params = _restore_int_keys(jax.tree.map(np.asarray, raw))
            else:
                abstract_params = _abstract(abstract_params)
                _check_export(ckpt, directory, abstract_params)
                params = ckpt.restore(directory / EXPORT_PARAMS, abstract_params)
    except Exception as e:
        found = _classify(e)
        if found is None:
            raise
        if found[0] == TRANSIENT:
            raise CheckpointReadError(
                f"could not read the export {directory}: {_reason(e)}. This does not show that its files are bad "
                "(a permission, a stale network-filesystem handle, an I/O error); fix the cause and run again") from e
        raise DamagedCheckpointError(
            f"the export {directory} is damaged (a truncated or missing file): {_reason(e)}. Export it again: "
            f"python -m facelift_jax.export --checkpoint WORKDIR --out {directory}") from e
    return params, metadata
