"""Import upstream network code from its registry packages without the packages' own ``__init__``.

Why: the network code the bridges and their tests need is pure torch, but the packages' top-level
``__init__`` files import much more.

* pyfacer (``pip install --no-deps pyfacer==0.0.5``, MIT): ``facer/__init__.py`` imports the whole
  toolkit (RetinaFace → torchvision, drawing → scikit-image and OpenCV, plots → matplotlib,
  downloads → validators and requests). The FaRL backbone (``facer.farl``), the WFLW network
  (``facer.face_alignment.network``) and ``FaRLFaceAlignment`` (``facer.face_alignment.farl``)
  need torch, two ``timm`` helpers, and (the last one) validators and requests.
* clip-anytorch (``pip install --no-deps clip-anytorch==2.6.0``, MIT, OpenAI's CLIP code):
  ``clip/__init__.py`` imports the preprocessing (torchvision); ``clip/model.py`` is pure torch.

torchvision's PyPI wheels for Linux are CUDA builds; next to a CPU-only torch (this project pins
torch==2.13.0+cpu) ``import torchvision`` fails, and timm imports torchvision. So the packages are
installed ``--no-deps`` and imported here submodule by submodule: while importing, each package
whose ``__init__`` must not run is stood in for by an empty package module with the real
``__path__`` (so its submodules load from the installed files); the stand-ins are removed again
afterwards, so a later ``import facer`` runs the real ``__init__`` and reuses the loaded submodules.
When timm cannot be imported, pyfacer's ``from timm.models.layers import trunc_normal_, DropPath``
gets torch's ``trunc_normal_`` (same signature) and a ``DropPath`` that refuses to be built:
pyfacer builds one only for stochastic depth (drop_path > 0), i.e. for training.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import types
from typing import Iterator, Sequence

PYFACER_INSTALL = "pip install --no-deps pyfacer==0.0.5"
CLIP_INSTALL = "pip install --no-deps clip-anytorch==2.6.0"


def _package_spec(name: str, install: str):
    """The import spec of package ``name`` without importing it; a clear error when it is absent."""
    if name in sys.modules and sys.modules[name] is None:  # an import blocked on purpose
        raise ModuleNotFoundError(f"package {name!r} is not importable (sys.modules[{name!r}] is None); {install}",
                                  name=name)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(f"package {name!r} is not installed; {install}", name=name)
    return spec


@contextlib.contextmanager
def _skipped_inits(packages: Sequence[str], install: str) -> Iterator[None]:
    """Empty stand-ins (real ``__path__``) for ``packages`` not yet imported, removed on exit."""
    added: list[tuple[str, types.ModuleType]] = []
    try:
        for name in packages:
            if sys.modules.get(name) is not None:
                continue  # already imported for real (or by an earlier call): use it
            spec = _package_spec(name, install)
            shell = types.ModuleType(name, f"stand-in for {name} while bridges.upstream imports a submodule")
            shell.__path__ = list(spec.submodule_search_locations)
            shell.__package__ = name
            shell.__spec__ = spec
            sys.modules[name] = shell
            added.append((name, shell))
        yield
    finally:
        for name, shell in reversed(added):
            if sys.modules.get(name) is shell:
                del sys.modules[name]


class _DropPathNeedsTimm:
    """Stands in for timm's DropPath (stochastic depth, a training-time layer) when timm is absent."""

    def __init__(self, *args, **kwargs):
        raise ImportError("pyfacer asked for timm's DropPath (stochastic depth, used in training only); "
                          "install timm (it needs a torchvision that matches your torch)")


def _timm_importable() -> bool:
    try:
        importlib.import_module("timm.models.layers")
        return True
    except Exception:  # noqa: BLE001  ImportError, or RuntimeError from a CUDA torchvision next to a CPU torch
        return False


@contextlib.contextmanager
def _timm_layers_for_pyfacer() -> Iterator[None]:
    """While importing pyfacer: real timm if it imports, else the two names pyfacer takes from it."""
    if _timm_importable():
        yield
        return
    import torch

    saved = {name: sys.modules.get(name) for name in ("timm", "timm.models", "timm.models.layers")}
    layers = types.ModuleType("timm.models.layers", "trunc_normal_ and DropPath for pyfacer (bridges.upstream)")
    layers.trunc_normal_ = torch.nn.init.trunc_normal_  # timm's signature: (tensor, mean, std, a, b)
    layers.DropPath = _DropPathNeedsTimm
    models = types.ModuleType("timm.models")
    models.layers = layers
    timm = types.ModuleType("timm")
    timm.models = models
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _import(module: str, skip: Sequence[str], install: str, context=contextlib.nullcontext):
    if sys.modules.get(module) is not None:
        return sys.modules[module]
    with _skipped_inits(skip, install), context():
        try:
            return importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in {s.split(".")[0] for s in skip}:
                raise
            raise ModuleNotFoundError(f"{module} needs the package {e.name!r}, which is not installed: "
                                      f"pip install {e.name.split('.')[0]}", name=e.name) from e


def pyfacer(submodule: str) -> types.ModuleType:
    """pyfacer's ``facer.<submodule>`` (e.g. "face_alignment.network", "face_alignment.farl",
    "farl"), without running ``facer/__init__.py`` or ``facer/face_alignment/__init__.py``."""
    return _import(f"facer.{submodule}", ("facer", "facer.face_alignment"), PYFACER_INSTALL,
                   _timm_layers_for_pyfacer)


def clip_model() -> types.ModuleType:
    """OpenAI CLIP's ``clip/model.py`` (clip-anytorch or openai-clip) without ``clip/__init__.py``."""
    return _import("clip.model", ("clip",), CLIP_INSTALL)
