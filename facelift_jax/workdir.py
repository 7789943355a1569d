"""Configs and training workdirs: reading a config, and finding a run's checkpoints and template.

A training workdir (``python -m facelift_jax.train --workdir WORKDIR``) holds::

    config.json             the run's full config (``CONFIG_FILE``)
    data/                   preprocessing output (``data/multiview/template.npy``, ...) and the
                            cached held-out set (``data/test``)
    checkpoints/<step>/     Orbax checkpoints (``facelift_jax.checkpointing``)
    metrics.jsonl, tb/, plots/, eval/, export/

A config is a Python file with ``get_config()`` (the repository's ``configs/*.py`` experiments,
built on ``facelift_jax.config.get_config()``, or a user's own file) or a workdir's ``config.json``. Every command line names one with ``--config``
(``configs/x.py``, ``configs/x.py:arg`` or a ``config.json``) and overrides fields with
``--config.section.field=value``: train through ml_collections' config flags, evaluate and export
through ``split_overrides`` + ``override`` here.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import pathlib
from collections.abc import Sequence

import ml_collections

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"
DATA = "data"


def default_config() -> ml_collections.ConfigDict:
    """The library's default config (``facelift_jax.config.get_config()``)."""
    from facelift_jax.config import get_config

    return get_config()


def load_config(path) -> ml_collections.ConfigDict:
    """A full config from a ``config.json`` (train's workdir copy) or a ``configs/*.py`` file;
    ``configs/x.py:arg`` passes ``arg`` to ``get_config`` (as ``--config`` does for train)."""
    path, _, arg = str(path).partition(".py:")
    path = pathlib.Path(path + ".py" if arg else path)
    if not path.is_file():
        raise FileNotFoundError(f"config {path} does not exist")
    if path.suffix == ".py":
        spec = importlib.util.spec_from_file_location(f"_facelift_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_config(arg) if arg else module.get_config()
    try:
        return ml_collections.ConfigDict(json.loads(path.read_text()))
    except json.JSONDecodeError as e:
        raise ValueError(f"config {path} is not valid JSON: {e}") from e


def locate_checkpoint(path) -> tuple[pathlib.Path, pathlib.Path]:
    """(workdir, checkpoints dir) for a workdir, its checkpoints/ folder, or one <step>/ folder."""
    path = pathlib.Path(path).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint path {path} does not exist")
    if (path / CHECKPOINTS).is_dir():
        return path, path / CHECKPOINTS
    if path.name.isdigit() and path.parent.name == CHECKPOINTS:
        return path.parent.parent, path.parent
    if path.name == CHECKPOINTS or any(p.name.isdigit() for p in path.iterdir() if p.is_dir()):
        return path.parent, path
    raise FileNotFoundError(f"{path} holds no {CHECKPOINTS}/ folder nor <step>/ checkpoint folders")


def template_path(workdir) -> pathlib.Path:
    """The pseudo-label template (98, 3) of a workdir (written by preprocessing)."""
    from facelift_jax.input_pipeline.labels import TEMPLATE

    return pathlib.Path(workdir) / DATA / TEMPLATE


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the other arguments, ["section.field=value", ...]) of a command line's ``--config.x=v``."""
    rest, assignments = [], []
    for arg in argv:
        if arg.startswith("--config."):
            if "=" not in arg:
                raise ValueError(f"{arg}: write config overrides as --config.section.field=value")
            assignments.append(arg.removeprefix("--config."))
        else:
            rest.append(arg)
    return rest, assignments


def override(config: ml_collections.ConfigDict, assignments: Sequence[str]) -> ml_collections.ConfigDict:
    """Set ``section.field=value`` assignments in ``config`` (in place; returned). The value is
    read as the field's current type: bool (true/false/1/0), int, float, str, tuple/list (a Python
    literal such as ``(16,32)``); a None field takes a Python literal, else the text."""
    for item in assignments:
        path, _, text = item.partition("=")
        *parents, leaf = path.split(".")
        node = config
        for key in parents:
            if key not in node:
                raise KeyError(f"--config.{path}: the config has no section {key!r}")
            node = node[key]
        if leaf not in node:
            raise KeyError(f"--config.{path}: the config has no field {leaf!r}")
        node[leaf] = _parse_value(text, node[leaf], path)
    return config


def _parse_value(text: str, old, path: str):
    if isinstance(old, bool):
        if text.lower() in ("true", "1"):
            return True
        if text.lower() in ("false", "0"):
            return False
        raise ValueError(f"--config.{path}={text}: expected true or false")
    if isinstance(old, (int, float, str)):
        try:
            return type(old)(text)
        except ValueError as e:
            raise ValueError(f"--config.{path}={text}: expected {type(old).__name__}") from e
    if isinstance(old, (tuple, list)):
        value = ast.literal_eval(text)
        return type(old)(value if isinstance(value, (tuple, list)) else (value,))
    if old is None:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    raise TypeError(f"--config.{path}: a {type(old).__name__} field cannot be set from the command line")
