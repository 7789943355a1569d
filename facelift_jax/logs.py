"""What every command line prints, and where its logs go.

Console (stderr), by default: progress bars, this package's INFO lines (a few stage summaries),
every WARNING and ERROR. Libraries' INFO logs (Orbax, absl, grain, jax) are left off the console;
``--verbosity=1`` (absl's flag, ``-v`` for short) shows them too, ``--verbosity=2`` DEBUG as well.
Everything at INFO and above (DEBUG from verbosity 2) also goes to a log file in the run's folder,
``<workdir or out>/logs/<command>.log`` (appended, with times), whatever the verbosity.

Errors: a user's mistake (``config_check.ConfigError``: a bad flag, value, config field or missing
input) ends the command with one ``error: ...`` line naming the input and the fix and exit status
2, no traceback; the traceback still goes to the log file. Any other exception is a bug and keeps
its traceback. ``session`` sets this up and restores the logging state when it ends (commands are
also called in-process by tests).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import pathlib
import re
import sys
import warnings
from collections.abc import Callable, Sequence

from facelift_jax.config_check import ConfigError

# Loggers whose INFO lines are stage summaries shown on the console by default.
OWN = ("facelift_jax", "bridges", "__main__")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
USER_ERROR_EXIT = 2

log = logging.getLogger("facelift_jax.cli")


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that are a user's mistake (message names the input and the fix)."""
    from facelift_jax.checkpointing import CheckpointError, CheckpointMismatchError
    from facelift_jax.evaluation.datasets.base import DatasetFormatError
    from facelift_jax.media import MediaError
    from facelift_jax.stamps import StampMismatchError

    return ConfigError, DatasetFormatError, CheckpointError, CheckpointMismatchError, MediaError, StampMismatchError


# ----------------------------------------------------------------------------------------------
# Flags
# ----------------------------------------------------------------------------------------------

def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``-v`` (repeatable) and ``--verbosity N`` on an argparse command line (absl's convention)."""
    parser.add_argument("-v", action="count", dest="verbosity", default=0,
                        help="more output: -v shows library INFO logs, -vv DEBUG too")
    parser.add_argument("--verbosity", type=int, dest="verbosity", help="absl style: 1 = -v, 2 = -vv")


def absl_argv(argv: Sequence[str]) -> list[str]:
    """absl's ``-v`` needs a value; accept a bare ``-v`` / ``-vv`` as ``--verbosity=1`` / ``=2``."""
    out = []
    for arg in argv:
        if len(arg) >= 2 and arg.startswith("-v") and set(arg[1:]) == {"v"}:
            out.append(f"--verbosity={len(arg) - 1}")
        else:
            out.append(arg)
    return out


def absl_verbosity(flag_values=None) -> int:
    """The ``--verbosity`` given on an absl command line (0 when not given: absl itself turns
    the default into INFO for every library, which is what the console must not show).
    ``flag_values``: the command's own flags (default absl's ``FLAGS``, where absl.logging defines it)."""
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    if "verbosity" not in fv:
        return 0
    flag = fv["verbosity"]
    return max(int(flag.value), 0) if flag.present else 0


def define_verbosity(flag_values) -> None:
    """Give a fresh ``FlagValues`` (an in-process command line) the ``--verbosity`` that absl.logging
    defines only on the global ``FLAGS``; without it ``-v`` is refused as an unknown flag."""
    from absl import flags

    if "verbosity" not in flag_values:
        flags.DEFINE_integer("verbosity", 0, "1 = -v: libraries' INFO lines on the console too; 2 = -vv: DEBUG",
                             flag_values=flag_values)


def parse_absl_flags(argv: Sequence[str], flag_values=None):
    """absl ``flags_parser`` for ``app.run``: a bad flag, unknown or mistyped config field, or a
    config file that does not load → one ``error:`` line and exit status 2 (absl would print a
    traceback or the whole usage and exit 1)."""
    from absl import flags

    fv = flag_values if flag_values is not None else flags.FLAGS
    argv = absl_argv(argv)
    try:
        rest = fv(argv)
        if "config" in fv and fv["config"].value is not None:
            fv.config.keys()  # ml_collections defers a config file's load error to the first use
        return rest
    except (flags.Error, KeyError, AttributeError, OSError, ImportError, SyntaxError) as e:
        print(f"error: {_flag_error_message(e, argv)}\nrun with --helpfull for the flags", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)


def _config_arg(argv: Sequence[str]) -> str:
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return ""


def _flag_error_message(e: Exception, argv: Sequence[str]) -> str:
    if isinstance(e, OSError) and "Failed loading config file" in str(e):
        path = _config_arg(argv)
        name = path.split(".py:")[0] + ".py" if ".py:" in path else path
        if name and not pathlib.Path(name).is_file():
            return f"--config={path}: no such config file (give a configs/*.py file)"
    text = str(e.args[0] if isinstance(e, (KeyError, AttributeError)) and e.args else e)
    text = " ".join(text.replace("\\'", "'").replace("\\n", " ").split())
    if not isinstance(e, (KeyError, AttributeError)):
        if "Traceback (most recent call last)" in text:  # get_config raised: keep its last line
            last = re.findall(r"\b(?:\w+Error|\w+Exception): .*", text)
            text = f"--config={_config_arg(argv)}: {last[-1] if last else text}"
        return text
    # ml_collections: "'learnig_rate' Did you mean "learning_rate" instead of "learnig_rate"?"
    key, _, hint = text.partition(" ")
    key = key.strip("'\"")
    flag = next((a.split("=")[0] for a in argv if a.startswith("--config.") and
                 key in a.split("=")[0].split(".")), f"--config...{key}")
    hint = hint.split(" instead of")[0].replace("Did you mean", "did you mean").strip()
    return f"{flag}: the config has no field {key!r}" + (f" ({hint}?)" if hint else "")


# ----------------------------------------------------------------------------------------------
# The logging session
# ----------------------------------------------------------------------------------------------

# Library warnings that say nothing to a user (Orbax opening a checkpoint read-only for the export):
# log file only, unless --verbosity.
QUIET_WARNINGS = ("Given directory is read only",)


class _ConsoleFilter(logging.Filter):
    def __init__(self, verbosity: int):
        super().__init__()
        self.verbosity = verbosity

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbosity >= 1:
            return True
        if record.levelno == logging.WARNING and record.name.split(".")[0] not in OWN and \
                any(m in str(record.msg) for m in QUIET_WARNINGS):
            return False
        if record.levelno >= logging.WARNING:
            return True
        return record.levelno >= logging.INFO and record.name.split(".")[0] in OWN


class _ConsoleFormatter(logging.Formatter):
    """This package's INFO lines as plain text; warnings and errors with their level and source."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO and record.name.split(".")[0] in OWN:
            return record.getMessage()
        return f"{record.levelname.lower()}: {record.name}: {record.getMessage()}"


class _TqdmHandler(logging.StreamHandler):
    """Writes through ``tqdm.write`` so a log line does not break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 — logging must never raise (logging's own policy)
            self.handleError(record)


class Session:
    """The logging setup of one command (see module doc); use ``with session(...)``."""

    def __init__(self, command: str, verbosity: int = 0, log_dir=None):
        self.command, self.verbosity = command, int(verbosity or 0)
        self.log_file: pathlib.Path | None = None
        self._file_handler: logging.Handler | None = None
        self._saved: dict = {}
        self._initial_dir = log_dir

    def __enter__(self) -> "Session":
        root = logging.getLogger()
        absl_logger = logging.getLogger("absl")
        self._saved = dict(handlers=list(root.handlers), level=root.level, absl_level=absl_logger.level,
                           showwarning=warnings.showwarning)
        level = logging.DEBUG if self.verbosity >= 2 else logging.INFO
        for h in list(root.handlers):  # absl's stderr handler (installed by app.run), basicConfig's
            root.removeHandler(h)
        root.setLevel(level)
        absl_logger.setLevel(level)  # Orbax and grain log through absl
        self.console = _TqdmHandler(sys.stderr)
        self.console.addFilter(_ConsoleFilter(self.verbosity))
        self.console.setFormatter(_ConsoleFormatter())
        root.addHandler(self.console)
        logging.captureWarnings(True)
        if self._initial_dir is not None:
            self.log_to(self._initial_dir)
        return self

    def log_to(self, directory) -> pathlib.Path:
        """Also write every record to ``directory/logs/<command>.log`` (appended); returns the path."""
        path = pathlib.Path(directory) / "logs" / f"{self.command}.log"
        if self._file_handler is not None:
            if path == self.log_file:
                return path
            logging.getLogger().removeHandler(self._file_handler)
            self._file_handler.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.setLevel(logging.DEBUG if self.verbosity >= 2 else logging.INFO)
        logging.getLogger().addHandler(handler)
        self._file_handler, self.log_file = handler, path
        handler.handle(logging.makeLogRecord(dict(  # the command line heads the file only, not the console
            name=log.name, levelno=logging.INFO, levelname="INFO",
            msg=f"python -m facelift_jax.{self.command} {' '.join(sys.argv[1:])}")))
        return path

    def __exit__(self, *exc) -> None:
        root = logging.getLogger()
        if exc[0] is not None and self._file_handler is not None:
            # The full story of any failure stays in the file, also for user errors.
            self._file_handler.handle(logging.LogRecord("facelift_jax.cli", logging.ERROR, __file__, 0,
                                                        "%s failed", (self.command,), exc))
        for h in list(root.handlers):
            root.removeHandler(h)
        if self._file_handler is not None:
            self._file_handler.close()
        for h in self._saved["handlers"]:
            root.addHandler(h)
        root.setLevel(self._saved["level"])
        logging.getLogger("absl").setLevel(self._saved["absl_level"])
        logging.captureWarnings(False)
        warnings.showwarning = self._saved["showwarning"]


def session(command: str, verbosity: int = 0, log_dir=None) -> Session:
    """``with logs.session("evaluate", args.verbosity) as s: ... s.log_to(out_dir)``."""
    return Session(command, verbosity, log_dir)


def main_guard(fn: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a command's ``main``: a user error (``user_errors()``) → one ``error:`` line on stderr,
    return 2; anything else propagates with its traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except user_errors() as e:
            print(f"error: {e}", file=sys.stderr)
            return USER_ERROR_EXIT

    return wrapper


@contextlib.contextmanager
def user_input(flag: str = "", value=None):
    """Errors while resolving command-line inputs (a path that does not exist, a file that is not
    what the flag needs, a ``--config.x=v`` override of no field) become a ``ConfigError``: they
    are the user's, not bugs. Messages that already name their flag are kept as they are."""
    from facelift_jax.config_check import NO_VALUE

    try:
        yield
    except ConfigError:
        raise
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError, TypeError) as e:
        message = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        if message.startswith("--") or not flag:
            raise ConfigError("", NO_VALUE, message) from e
        raise ConfigError(flag, NO_VALUE if value is None else value, message) from e
