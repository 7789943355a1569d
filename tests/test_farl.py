"""FaRL / CLIP weight import, proven on the real upstream towers with random weights.

The torch towers are the upstream code installed from PyPI, not copies: OpenAI CLIP's ``clip/model.py``
(``pip install --no-deps clip-anytorch==2.6.0``) and FaRL's ``facer/farl/model.py`` from pyfacer
(``pip install --no-deps pyfacer==0.0.5``), imported through ``bridges.upstream`` (no torchvision).
Each test converts an upstream state dict (or file) with ``bridges.farl`` and compares the Flax
encoder with the upstream forward: every token (the upstream ``ln_post`` applied to the upstream
transformer's output, read by a forward hook) and the class token × ``proj`` against
``encode_image``. The normal suite uses small towers; the real ViT-B/16 runs in a slow test.
"""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flax import nnx  # noqa: E402

from bridges import farl, upstream  # noqa: E402
from configs.default import get_config  # noqa: E402
from facelift_jax.model import VisionTransformer, build_model  # noqa: E402

pytestmark = pytest.mark.torch

# CLIP's published preprocessing (clip/clip.py _transform; FaRL and pyfacer use the same numbers).
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])
# A small CLIP: image tower width 128 (CLIP's rule heads = width // 64 → 2), text tower width 64.
W, LAYERS, PATCH, RES, EMBED = 128, 2, 16, 64, 32
HEADS = W // 64
ATOL = 2e-5  # float32 through a few blocks; the dry run measured ~4e-6


def _upstream(loader, install):
    try:
        return loader()
    except ModuleNotFoundError as e:
        pytest.skip(f"needs the upstream package ({install}): {e}")


@pytest.fixture(scope="module")
def clip_model_module():
    return _upstream(upstream.clip_model, upstream.CLIP_INSTALL)


@pytest.fixture(scope="module")
def farl_model_module():
    return _upstream(lambda: upstream.pyfacer("farl.model"), upstream.PYFACER_INSTALL)


def perturb_affine(module, seed):
    """Upstream init leaves biases at 0 and LayerNorm scales at 1; random values there make a
    dropped or swapped bias / norm mapping visible."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            parts = name.split(".")
            if parts[-1] == "bias" or parts[-1].endswith("_bias") or (len(parts) > 1 and parts[-2].startswith("ln_")):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
    return module.eval()


@pytest.fixture(scope="module")
def clip(clip_model_module):
    """A full OpenAI CLIP (image + text towers) with random weights."""
    torch.manual_seed(0)
    model = clip_model_module.CLIP(embed_dim=EMBED, image_resolution=RES, vision_layers=LAYERS, vision_width=W,
                                   vision_patch_size=PATCH, context_length=8, vocab_size=64,
                                   transformer_width=64, transformer_heads=1, transformer_layers=1)
    return perturb_affine(model, 0)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (2, RES, RES, 3), dtype=np.uint8)


def normalized(images_uint8):
    """(B, H, W, 3) uint8 → (B, 3, H, W) float, CLIP-normalized: what encode_image expects."""
    x = torch.from_numpy(np.asarray(images_uint8)).float() / 255.0
    return ((x - MEAN) / STD).permute(0, 3, 1, 2)


def upstream_outputs(visual, run):
    """(all tokens after the upstream ln_post (B, L, W), what ``run()`` returns).

    ``run`` calls the upstream forward (encode_image); a hook on ``visual.transformer`` keeps
    its output (L, B, W), to which the upstream ``ln_post`` is applied (the forward applies it to
    the class token only)."""
    kept = {}
    hook = visual.transformer.register_forward_hook(lambda m, i, o: kept.setdefault("x", o))
    try:
        with torch.no_grad():
            out = run()
            tokens = visual.ln_post(kept["x"].permute(1, 0, 2))
    finally:
        hook.remove()
    return tokens.float().numpy(), out.float().numpy()


def assert_matches(encoder, visual, run, images, atol=ATOL):
    tokens, embedding = upstream_outputs(visual, run)
    ours = np.asarray(nnx.jit(lambda m, x: m(x))(encoder, images))
    assert ours.shape == tokens.shape == (len(images), (images.shape[1] // encoder.patch) ** 2 + 1, encoder.width)
    np.testing.assert_allclose(ours, tokens, atol=atol, rtol=1e-5)
    proj = visual.proj.detach().float().numpy()
    np.testing.assert_allclose(ours[:, 0] @ proj, embedding, atol=atol, rtol=1e-5)
    return float(np.abs(ours - tokens).max())


def nnx_vit(width=W, depth=LAYERS, heads=HEADS, patch=PATCH, res=RES, seed=1):
    return VisionTransformer(width, depth, heads, patch, res, rngs=nnx.Rngs(seed))


# --------------------------------------------------------------------------- OpenAI CLIP


def test_config_inference_agrees_with_clip_build_model(clip, clip_model_module):
    sd = clip.state_dict()
    assert farl.find_prefix(sd) == "visual."  # the text tower's transformer.resblocks.* is not the image tower
    rebuilt = clip_model_module.build_model({k: v.clone() for k, v in sd.items()})  # CLIP's own inference
    v = rebuilt.visual
    assert farl.infer_vit_config(sd) == dict(
        width=v.conv1.out_channels, depth=v.transformer.layers, heads=v.transformer.resblocks[0].attn.num_heads,
        patch=v.conv1.kernel_size[0], image_size=v.input_resolution)
    with torch.device("meta"):  # ViT-B/16 without allocating its weights
        big = clip_model_module.VisionTransformer(224, 16, 768, 12, 12, 512).state_dict()
    assert farl.infer_vit_config(big) == dict(width=768, depth=12, heads=12, patch=16, image_size=224)


def test_full_clip_state_dict_matches_encode_image(clip, images, tmp_path):
    torch.save(clip.state_dict(), tmp_path / "clip.pt")
    enc = nnx_vit()
    ignored = farl.load_into_encoder(enc, farl.load_torch_state_dict(tmp_path / "clip.pt"))
    assert ignored == ["proj"]
    x = normalized(images)
    assert_matches(enc, clip.visual, lambda: clip.encode_image(x), images)


def test_fp16_clip_weights(clip, images, tmp_path):
    half = copy.deepcopy(clip)
    clip_model_module = upstream.clip_model()
    clip_model_module.convert_weights(half)  # what OpenAI ships: conv / linear / attention / proj in fp16
    sd = half.state_dict()
    assert sd["visual.conv1.weight"].dtype == torch.float16 and sd["visual.proj"].dtype == torch.float16
    torch.save(sd, tmp_path / "clip_fp16.pt")
    enc = nnx_vit()
    farl.load_into_encoder(enc, farl.load_torch_state_dict(tmp_path / "clip_fp16.pt"))
    reference = half.float()  # the fp16-rounded weights, computed in float32 (CPU half matmuls are not the point)
    x = normalized(images)
    assert_matches(enc, reference.visual, lambda: reference.encode_image(x), images)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_clip_archive(clip, images, tmp_path):
    x = normalized(images)
    text = torch.tensor([[1, 5, 9, 63, 0, 0, 0, 0], [2, 63, 0, 0, 0, 0, 0, 0]])  # 63 = end of text (argmax)
    traced = torch.jit.trace(clip, (x, text))  # OpenAI's ViT-B-16.pt is a TorchScript archive of the whole CLIP
    traced.save(str(tmp_path / "ViT-tiny.pt"))
    sd = farl.load_torch_state_dict(tmp_path / "ViT-tiny.pt")
    assert farl.find_prefix(sd) == "visual."
    enc = nnx_vit()
    farl.load_into_encoder(enc, sd)
    assert_matches(enc, clip.visual, lambda: clip.encode_image(x), images)


def test_export_round_trip_into_clip_tower(clip, clip_model_module, images):
    enc = nnx_vit()
    farl.load_into_encoder(enc, clip.state_dict())
    exported = farl.export_torch_state_dict(enc)
    original = clip.visual.state_dict()
    assert set(exported) == {"visual." + k for k in original if k != "proj"}
    for k, v in exported.items():
        torch.testing.assert_close(v, original[k.removeprefix("visual.")], rtol=0, atol=0)
    # A fresh upstream tower loaded from the export computes the encoder's tokens.
    fresh = clip_model_module.VisionTransformer(RES, PATCH, W, LAYERS, HEADS, EMBED).eval()
    result = fresh.load_state_dict({k.removeprefix("visual."): v for k, v in exported.items()}, strict=False)
    assert result.missing_keys == ["proj"] and not result.unexpected_keys
    with torch.no_grad():
        fresh.proj.copy_(clip.visual.proj)
    x = normalized(images)
    assert_matches(enc, fresh, lambda: fresh(x), images)


# --------------------------------------------------------------------------- FaRL (pyfacer's tower)


class _MIM:  # FaRL's training config shape: config.MIM.{ENABLE, LAYERS, VOCAB_SIZE}
    ENABLE, LAYERS, VOCAB_SIZE = True, 1, 16


@pytest.fixture(scope="module")
def farl_tower(farl_model_module):
    """FaRL's VisualTransformer with its masked-image-modelling branch, as the released checkpoints have."""
    torch.manual_seed(1)
    cfg = type("Config", (), {"MIM": _MIM})()
    return perturb_affine(farl_model_module.VisualTransformer(RES, PATCH, W, LAYERS, HEADS, EMBED, config=cfg), 1)


def farl_checkpoint(tower, tmp_path):
    """A file laid out like FaRL-Base-Patch16-LAIONFace20M-ep64.pth: {"state_dict": {visual.*, text tower}}."""
    sd = {"visual." + k: v.clone() for k, v in tower.state_dict().items()}
    sd["transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(3 * 64, 64)  # text tower: not visual.
    sd["logit_scale"] = torch.tensor(4.6)
    path = tmp_path / "farl.pth"
    torch.save({"state_dict": sd, "epoch": 64}, path)
    return path


def test_farl_checkpoint_matches_pyfacer_tower(farl_tower, images, tmp_path):
    enc = nnx_vit()
    ignored = farl.load_into_encoder(enc, farl.load_torch_state_dict(farl_checkpoint(farl_tower, tmp_path)))
    mim = {k for k in farl_tower.state_dict() if k.startswith(("mask_token", "lm_transformer.", "ln_lm.", "lm_head."))}
    assert mim and set(ignored) == mim | {"proj"}
    x = normalized(images)
    assert_matches(enc, farl_tower, lambda: farl_tower(x), images)  # FaRL's forward is CLS → ln_post → proj


def test_load_pretrained_into_regressor_and_mismatch_errors(farl_tower, images, tmp_path):
    path = farl_checkpoint(farl_tower, tmp_path)
    c = get_config().model
    c.encoder, c.pretrained = "vit", ""  # FaRL's encoder, whatever the default one is
    c.image_size = RES
    c.vit.update(width=W, depth=LAYERS, heads=HEADS, patch=PATCH, stem="conv")
    c.decoder.update(width=16, depth=1, heads=2)
    template = np.random.default_rng(0).normal(0, 0.1, (98, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="stem='patch'"):  # FaRL weights do not fit a conv stem
        farl.load_pretrained(build_model(c, template, rngs=nnx.Rngs(0)), path)
    c.vit.stem = "patch"
    model = build_model(c, template, rngs=nnx.Rngs(0))
    farl.load_pretrained(model, path)
    x = normalized(images)
    assert_matches(model.encoder, farl_tower, lambda: farl_tower(x), images)

    wrong = nnx_vit(depth=LAYERS + 1)
    with pytest.raises(ValueError, match="resblocks.2"):
        farl.load_into_encoder(wrong, farl_tower.state_dict())
    with pytest.raises(FileNotFoundError, match="pretrained"):
        farl.load_pretrained(model, tmp_path / "missing.pth")
    with pytest.raises(KeyError, match="image tower"):
        farl.convert_state_dict({"weight": torch.zeros(3)})


def test_untrusted_pickles_need_trusted(farl_tower, tmp_path):
    import argparse

    torch.save({"state_dict": {"visual." + k: v for k, v in farl_tower.state_dict().items()},
                "args": argparse.Namespace(lr=1e-3)}, tmp_path / "with_args.pth")
    with pytest.raises(ValueError, match="trusted=True"):
        farl.load_torch_state_dict(tmp_path / "with_args.pth")
    assert farl.find_prefix(farl.load_torch_state_dict(tmp_path / "with_args.pth", trusted=True)) == "visual."


@pytest.mark.slow
def test_real_vit_b16_farl_backbone_from_pyfacer():
    """FaRL's ViT-B/16 (224, 16, 768, 12, 12) as pyfacer builds it, fed through pyfacer's own input
    normalization (FaRLVisualFeatures takes [0, 1] images): the encoder on the same uint8 image."""
    network = _upstream(lambda: upstream.pyfacer("face_alignment.network"), upstream.PYFACER_INSTALL)
    torch.manual_seed(2)
    features = network.FaRLVisualFeatures("base", None, output_indices=[11], apply_fpn=False).eval()
    visual = perturb_affine(features.visual, 2)
    image = np.random.default_rng(2).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    enc = nnx_vit(768, 12, 12, 16, 224)
    farl.load_into_encoder(enc, visual.state_dict())
    unit = torch.from_numpy(image).float().permute(0, 3, 1, 2) / 255.0

    def run():  # pyfacer's forward: its own mean/std, blocks; returns the last block's patch grid and CLS
        grids, cls = features(unit)
        return torch.cat([cls[0][:, None], grids[0].flatten(2).transpose(1, 2)], 1)

    with torch.no_grad():
        last_block = run()  # (1, 197, 768) before ln_post
        tokens = visual.ln_post(last_block).numpy()
        embedding = visual(((unit - features.image_mean) / features.image_std)).numpy()  # FaRL's encode_image
    ours = np.asarray(nnx.jit(lambda m, x: m(x))(enc, image))
    assert ours.shape == (1, 197, 768)
    np.testing.assert_allclose(ours, tokens, atol=5e-5, rtol=1e-5)
    np.testing.assert_allclose(ours[:, 0] @ visual.proj.detach().numpy(), embedding, atol=5e-5, rtol=1e-5)
