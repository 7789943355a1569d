"""FaRL / OpenAI CLIP ViT image-tower weights ↔ ``facelift_jax.model.VisionTransformer``.

Sources
-------
* FaRL (FacePerceiver/FaRL), e.g. ``FaRL-Base-Patch16-LAIONFace20M-ep64.pth``:
  ``torch.load(path)["state_dict"]``; the image tower is under ``visual.``; the text tower and the
  masked-image-modelling branch (``mask_token``, ``lm_transformer.*``, ``lm_head.*``, ``ln_lm.*``)
  are ignored.
* OpenAI CLIP ViT-B/16: a full CLIP state dict (``visual.`` prefix), the ``visual`` module's own
  state dict (no prefix), or OpenAI's TorchScript archive (``ViT-B-16.pt``, read with
  ``torch.jit.load``). fp16 weights become float32.

Mapping (CLIP name → NNX path under the encoder, W = width):
  conv1.weight (W, 3, p, p)                → conv1.kernel (p, p, 3, W)
  class_embedding, positional_embedding     → same names
  ln_pre / ln_post / ln_1 / ln_2 .weight    → .scale (.bias unchanged)
  transformer.resblocks.i.attn.in_proj_weight (3W, W), in_proj_bias (3W)
                                            → resblocks.i.attn.{q,k,v}_proj.kernel (W, W)ᵀ, .bias
  …attn.out_proj / mlp.c_fc / mlp.c_proj .weight (out, in) → .kernel (in, out)
CLIP's ``proj`` (W → 512 contrastive embedding) has no counterpart and is reported as ignored.

Entry points call ``load_pretrained(model, config.model.pretrained)`` only when that option is
set; ``facelift_jax`` itself never imports this module (it needs torch).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from typing import Mapping

import numpy as np
import torch
from flax import nnx, traverse_util

_BLOCK = re.compile(r"^transformer\.resblocks\.(\d+)\.(.+)$")
_LINEAR = {"attn.out_proj": ("attn", "out_proj"), "mlp.c_fc": ("mlp", "c_fc"), "mlp.c_proj": ("mlp", "c_proj")}
_NORMS = ("ln_1", "ln_2")


def load_torch_state_dict(path: str | os.PathLike, *, trusted: bool = False) -> dict[str, torch.Tensor]:
    """Read a FaRL/CLIP checkpoint (``{"state_dict": …}``, a plain state dict, or a TorchScript
    archive) into a flat ``{name: tensor}`` dict on the CPU.

    Only tensors and plain containers are unpickled (``weights_only=True``) unless ``trusted``:
    a checkpoint that pickles other objects (e.g. training arguments) needs ``trusted=True``,
    which runs arbitrary code from the file; use it only for files from a source you trust.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"FaRL/CLIP checkpoint not found: {path!r} (config.model.pretrained)")
    try:
        with warnings.catch_warnings():  # a TorchScript archive is handled below, no need to warn
            warnings.filterwarnings("ignore", message=".*TorchScript archive.*")
            obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path!r} pickles objects other than tensors; if you trust the file, load it with "
                         f"trusted=True (bridges.farl.load_pretrained(model, path, trusted=True))") from err
    except RuntimeError as err:
        if "TorchScript" not in str(err):
            raise
        obj = torch.jit.load(path, map_location="cpu").state_dict()  # OpenAI's ViT-B-16.pt
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path!r} holds a {type(obj).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def find_prefix(state_dict: Mapping[str, object]) -> str:
    """The prefix of the image tower's keys: "visual." for FaRL and full CLIP, "" for a bare tower."""
    for key in state_dict:
        if key.endswith("conv1.weight"):
            prefix = key[: -len("conv1.weight")]
            if prefix + "class_embedding" in state_dict:
                return prefix
    raise KeyError("no CLIP-layout image tower in the state dict (looked for '<prefix>conv1.weight' "
                   "next to '<prefix>class_embedding')")


def infer_vit_config(state_dict: Mapping[str, object], prefix: str | None = None) -> dict:
    """width, depth, heads, patch, image_size of the tower; heads = width // 64 (CLIP's rule: the
    head count is not stored in the weights)."""
    prefix = find_prefix(state_dict) if prefix is None else prefix
    conv = tuple(state_dict[prefix + "conv1.weight"].shape)
    tokens = tuple(state_dict[prefix + "positional_embedding"].shape)[0]
    grid = int(round((tokens - 1) ** 0.5))
    if grid * grid + 1 != tokens:
        raise ValueError(f"positional_embedding has {tokens} rows, not 1 + a square number of patches")
    blocks = {int(m.group(1)) for k in state_dict if k.startswith(prefix)
              for m in [_BLOCK.match(k[len(prefix):])] if m}
    width = conv[0]
    return dict(width=width, depth=len(blocks), heads=max(width // 64, 1), patch=conv[-1], image_size=grid * conv[-1])


def _np(t) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float32)


def convert_state_dict(state_dict: Mapping[str, object], prefix: str | None = None) -> tuple[dict, list[str]]:
    """CLIP-layout tower → (nested dict = ``nnx.state(encoder, nnx.Param).to_pure_dict()`` layout,
    sorted list of ignored keys under the prefix). Keys outside the prefix are not looked at."""
    prefix = find_prefix(state_dict) if prefix is None else prefix
    tower = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    out: dict = {"resblocks": {}}
    used: set[str] = set()

    def take(name):
        used.add(name)
        return _np(tower[name])

    out["conv1"] = {"kernel": take("conv1.weight").transpose(2, 3, 1, 0)}
    out["class_embedding"] = take("class_embedding")
    out["positional_embedding"] = take("positional_embedding")
    for ln in ("ln_pre", "ln_post"):
        out[ln] = {"scale": take(f"{ln}.weight"), "bias": take(f"{ln}.bias")}
    depth = infer_vit_config(state_dict, prefix)["depth"]
    for i in range(depth):
        p = f"transformer.resblocks.{i}."
        block: dict = {"attn": {}, "mlp": {}}
        w, b = take(p + "attn.in_proj_weight"), take(p + "attn.in_proj_bias")
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            rows = slice(j * w.shape[1], (j + 1) * w.shape[1])  # packed as [q; k; v] along the output axis
            block["attn"][name] = {"kernel": w[rows].T.copy(), "bias": b[rows].copy()}
        for torch_name, (group, name) in _LINEAR.items():
            block[group][name] = {"kernel": take(p + torch_name + ".weight").T.copy(), "bias": take(p + torch_name + ".bias")}
        for ln in _NORMS:
            block[ln] = {"scale": take(p + ln + ".weight"), "bias": take(p + ln + ".bias")}
        out["resblocks"][i] = block
    return out, sorted(set(tower) - used)



def load_into_encoder(encoder: nnx.Module, state_dict: Mapping[str, object], prefix: str | None = None) -> list[str]:
    """Copy a CLIP-layout tower into an NNX ``VisionTransformer`` in place; returns ignored keys.

    Raises ValueError naming every parameter whose shape differs or that is missing on either
    side (e.g. a config with another width/depth/patch than the checkpoint).
    """
    params, ignored = convert_state_dict(state_dict, prefix)
    state = nnx.state(encoder, nnx.Param)
    ours = {p: tuple(v.shape) for p, v in traverse_util.flatten_dict(state.to_pure_dict()).items()}
    theirs = {p: v.shape for p, v in traverse_util.flatten_dict(params).items()}
    problems = [f"{'.'.join(map(str, p))}: model {ours.get(p)} vs checkpoint {theirs.get(p)}"
                for p in sorted(set(ours) | set(theirs), key=str) if ours.get(p) != theirs.get(p)]
    if problems:
        cfg = infer_vit_config(state_dict, prefix)
        raise ValueError(f"checkpoint does not fit the encoder (checkpoint looks like {cfg}; set model.vit and "
                         f"image_size to match): " + "; ".join(problems[:8]) + (" …" if len(problems) > 8 else ""))
    state.replace_by_pure_dict(params)
    nnx.update(encoder, state)
    return ignored


def load_pretrained(model: nnx.Module, path: str | os.PathLike, *, trusted: bool = False) -> list[str]:
    """Load FaRL/CLIP weights from ``path`` into ``model.encoder`` (a ``FaceLiftRegressor`` with a
    ViT encoder, or a bare ``VisionTransformer``); returns the ignored tower keys."""
    from facelift_jax.model import VisionTransformer

    encoder = getattr(model, "encoder", model)
    if not isinstance(encoder, VisionTransformer):
        raise ValueError(f"model.pretrained needs model.encoder = 'vit', the encoder is {type(encoder).__name__}")
    if encoder.stem != "patch":
        raise ValueError(f"model.pretrained: FaRL/CLIP weights fit the patch embedding (model.vit.stem='patch'), "
                         f"this ViT has stem={encoder.stem!r}")
    return load_into_encoder(encoder, load_torch_state_dict(path, trusted=trusted))


def export_torch_state_dict(encoder: nnx.Module, prefix: str = "visual.") -> dict[str, torch.Tensor]:
    """The inverse of ``convert_state_dict``: NNX ViT → CLIP-layout ``{prefix + name: tensor}``
    (float32, packed ``in_proj``), loadable into CLIP's ``VisualTransformer`` with ``strict=False``
    (only ``proj`` is missing)."""
    encoder = getattr(encoder, "encoder", encoder)
    s = nnx.state(encoder, nnx.Param).to_pure_dict()
    t = lambda a: torch.from_numpy(np.array(a, np.float32))  # noqa: E731  (a copy: JAX buffers are read-only)
    out = {"conv1.weight": t(np.asarray(s["conv1"]["kernel"]).transpose(3, 2, 0, 1)),
           "class_embedding": t(s["class_embedding"]), "positional_embedding": t(s["positional_embedding"])}
    for ln in ("ln_pre", "ln_post"):
        out[f"{ln}.weight"], out[f"{ln}.bias"] = t(s[ln]["scale"]), t(s[ln]["bias"])
    for i in sorted(s["resblocks"]):
        blk, p = s["resblocks"][i], f"transformer.resblocks.{i}."
        attn = blk["attn"]
        out[p + "attn.in_proj_weight"] = t(np.concatenate([np.asarray(attn[n]["kernel"]).T for n in ("q_proj", "k_proj", "v_proj")]))
        out[p + "attn.in_proj_bias"] = t(np.concatenate([np.asarray(attn[n]["bias"]) for n in ("q_proj", "k_proj", "v_proj")]))
        for torch_name, (group, name) in _LINEAR.items():
            out[p + torch_name + ".weight"] = t(np.asarray(blk[group][name]["kernel"]).T)
            out[p + torch_name + ".bias"] = t(blk[group][name]["bias"])
        for ln in _NORMS:
            out[p + ln + ".weight"], out[p + ln + ".bias"] = t(blk[ln]["scale"]), t(blk[ln]["bias"])
    return {prefix + k: v for k, v in out.items()}
