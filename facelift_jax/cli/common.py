"""What evaluate, export and predict do alike between argv and the work: split ``--config.x=v``
overrides from the other arguments, resolve the config (``--config``, else a workdir's
``config.json``, else the library default), set config fields from dedicated flags, and check
the result, naming the flag the user typed when a field it set is wrong.

train and preprocess parse ml_collections' ``--config`` flags through absl instead
(``logs.parse_absl_flags``); their overrides are checked by the same ``config_check``."""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Mapping, Sequence

import ml_collections

from facelift_jax import config_check, logs
from facelift_jax import workdir as workdir_lib


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """(parsed arguments, ``["section.field=value", ...]``) of ``argv`` (default ``sys.argv[1:]``)."""
    with logs.user_input():
        rest, assignments = workdir_lib.split_overrides(sys.argv[1:] if argv is None else argv)
    return parser.parse_args(rest), assignments


def resolve_config(flag_value: str | None, assignments: Sequence[str], fallback: pathlib.Path | None = None,
                   *, fallback_required: bool = False) -> ml_collections.ConfigDict:
    """The config a command runs with, overrides applied.

    ``flag_value`` (``--config``: a ``.json`` or ``configs/x.py[:arg]``) wins; else ``fallback`` (a
    workdir's ``config.json``) when it is a file, else the library default — unless
    ``fallback_required``, when a missing fallback is the user's error on ``--config``."""
    source = flag_value or (fallback if fallback is not None and (fallback_required or fallback.is_file()) else None)
    with logs.user_input("--config", None if source is None else str(source)):
        config = workdir_lib.load_config(source) if source is not None else workdir_lib.default_config()
    with logs.user_input():
        workdir_lib.override(config, assignments)
    return config


def set_from_flags(config: ml_collections.ConfigDict, args: argparse.Namespace, flags: Mapping[str, str]) -> None:
    """``config[field] = args.<flag>`` for each ``{"section.field": "--flag"}`` the user gave (not None).
    A list value takes the field's own sequence type (a JSON config has lists, a .py one tuples)."""
    for field, flag in flags.items():
        value = getattr(args, _dest(flag))
        if value is None:
            continue
        *parents, leaf = field.split(".")
        node = config
        for key in parents:
            node = node[key]
        old = node.get(leaf)
        if isinstance(value, list) and isinstance(old, (list, tuple)):
            value = type(old)(value)
        node[leaf] = value


def check(config: ml_collections.ConfigDict, stage: str, args: argparse.Namespace,
          flags: Mapping[str, str] | None = None) -> None:
    """``config_check.check(config, stage)``; a wrong field that a given flag set is reported as
    that flag (``--crop-scale 0``, not ``predict.crop_scale``)."""
    try:
        config_check.check(config, stage)
    except config_check.ConfigError as e:
        flag = (flags or {}).get(e.field)
        if flag and getattr(args, _dest(flag)) is not None:
            raise config_check.input_error(flag, e.value, e.need) from e
        raise


def _dest(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")
