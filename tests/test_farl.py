"""FaRL / CLIP weight import: a small CLIP-layout torch ViT (written here) vs the NNX encoder."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from flax import nnx  # noqa: E402

from bridges import farl  # noqa: E402
from configs.default import get_config  # noqa: E402
from facelift_jax.model import VisionTransformer, build_model  # noqa: E402

pytestmark = pytest.mark.torch

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):  # as in openai/CLIP model.py
    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, 4 * width))
        self.mlp.add_module("gelu", QuickGELU())
        self.mlp.add_module("c_proj", nn.Linear(4 * width, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x):  # (L, B, W)
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class VisualTransformer(nn.Module):
    """CLIP's image tower; ``tokens`` returns ln_post of every token (what the regressor reads)."""

    def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
        super().__init__()
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, patch_size, patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def tokens(self, images_uint8):  # (B, H, W, 3) uint8 → (B, 1 + g², W)
        x = (images_uint8.float() / 255.0 - MEAN) / STD
        x = self.conv1(x.permute(0, 3, 1, 2))
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
        x = torch.cat([cls, x], 1) + self.positional_embedding
        x = self.ln_pre(x)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x)


def randomize(module, seed):
    """Random weights everywhere (LayerNorms and biases too, so a swapped mapping cannot pass)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))


W, LAYERS, HEADS, PATCH, RES = 48, 2, 3, 16, 64


@pytest.fixture(scope="module")
def torch_vit():
    torch.manual_seed(0)
    m = VisualTransformer(RES, PATCH, W, LAYERS, HEADS, 32).eval()
    randomize(m, 0)
    with torch.no_grad():  # LayerNorm scales away from 0, like trained ones
        for name, p in m.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight")):
                p.add_(1.0)
    return m


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (2, RES, RES, 3), dtype=np.uint8)


def nnx_vit(seed=1):
    return VisionTransformer(W, LAYERS, HEADS, PATCH, RES, rngs=nnx.Rngs(seed))


def farl_checkpoint(torch_vit, tmp_path):
    """A FaRL-like file: image tower under visual., text tower and MIM branch beside it."""
    sd = {"visual." + k: v.clone() for k, v in torch_vit.state_dict().items()}
    sd["visual.mask_token"] = torch.randn(1, 1, W)
    sd["visual.lm_transformer.resblocks.0.ln_1.weight"] = torch.ones(W)
    sd["visual.ln_lm.weight"] = torch.ones(W)
    sd["visual.lm_head.weight"] = torch.randn(8, W)
    sd["transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(3 * 8, 8)  # text tower: not visual.
    sd["logit_scale"] = torch.tensor(4.6)
    path = tmp_path / "farl.pth"
    torch.save({"state_dict": sd, "epoch": 64}, path)
    return path


def test_infer_config_and_prefix(torch_vit):
    sd = torch_vit.state_dict()
    assert farl.find_prefix(sd) == ""
    assert farl.find_prefix({"visual." + k: v for k, v in sd.items()}) == "visual."
    assert farl.infer_vit_config(sd) == dict(width=W, depth=LAYERS, heads=W // 64 or 1, patch=PATCH, image_size=RES)
    with torch.device("meta"):  # ViT-B/16 without allocating its 86M weights
        big = VisualTransformer(224, 16, 768, 12, 12, 512).state_dict()
    assert farl.infer_vit_config(big) == dict(width=768, depth=12, heads=12, patch=16, image_size=224)


def test_farl_checkpoint_matches_torch_forward(torch_vit, images, tmp_path):
    path = farl_checkpoint(torch_vit, tmp_path)
    enc = nnx_vit()
    ignored = farl.load_into_encoder(enc, farl.load_torch_state_dict(path))
    assert set(ignored) == {"proj", "mask_token", "lm_transformer.resblocks.0.ln_1.weight", "ln_lm.weight",
                            "lm_head.weight"}
    with torch.no_grad():
        expected = torch_vit.tokens(torch.from_numpy(images)).numpy()
    ours = np.asarray(nnx.jit(lambda m, x: m(x))(enc, images))
    assert ours.shape == expected.shape == (2, (RES // PATCH) ** 2 + 1, W)
    np.testing.assert_allclose(ours, expected, atol=1e-5, rtol=1e-5)


def test_export_round_trip(torch_vit, images):
    enc = nnx_vit()
    farl.load_into_encoder(enc, torch_vit.state_dict())
    exported = farl.export_torch_state_dict(enc)
    original = torch_vit.state_dict()
    assert set(exported) == {"visual." + k for k in original if k != "proj"}
    for k, v in exported.items():
        torch.testing.assert_close(v, original[k.removeprefix("visual.")], rtol=0, atol=0)
    # A fresh torch tower loaded from the export computes the same tokens.
    fresh = VisualTransformer(RES, PATCH, W, LAYERS, HEADS, 32).eval()
    result = fresh.load_state_dict({k.removeprefix("visual."): v for k, v in exported.items()}, strict=False)
    assert result.missing_keys == ["proj"] and not result.unexpected_keys
    with torch.no_grad():
        x = torch.from_numpy(images)
        torch.testing.assert_close(fresh.tokens(x), torch_vit.tokens(x), rtol=0, atol=0)


def test_load_pretrained_into_regressor_and_mismatch_errors(torch_vit, images, tmp_path):
    path = farl_checkpoint(torch_vit, tmp_path)
    c = get_config().model
    c.encoder, c.pretrained = "vit", ""  # FaRL's encoder, whatever the default one is
    c.vit.update(width=W, depth=LAYERS, heads=HEADS, patch=PATCH, image_size=RES, stem="conv")
    c.decoder.update(width=16, depth=1, heads=2)
    template = np.random.default_rng(0).normal(0, 0.1, (98, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="stem='patch'"):  # FaRL weights do not fit a conv stem
        farl.load_pretrained(build_model(c, template, rngs=nnx.Rngs(0)), path)
    c.vit.stem = "patch"
    model = build_model(c, template, rngs=nnx.Rngs(0))
    farl.load_pretrained(model, path)
    with torch.no_grad():
        expected = torch_vit.tokens(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(np.asarray(model.encoder(images)), expected, atol=1e-5, rtol=1e-5)

    wrong = VisionTransformer(W, LAYERS + 1, HEADS, PATCH, RES, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="resblocks.2"):
        farl.load_into_encoder(wrong, torch_vit.state_dict())
    with pytest.raises(FileNotFoundError, match="pretrained"):
        farl.load_pretrained(model, tmp_path / "missing.pth")
    with pytest.raises(KeyError, match="image tower"):
        farl.convert_state_dict({"weight": torch.zeros(3)})


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_archive_and_untrusted_pickles(torch_vit, images, tmp_path):
    class Holder(nn.Module):  # OpenAI ships CLIP as a TorchScript archive with the tower under visual.
        def __init__(self, visual):
            super().__init__()
            self.visual = visual

        def forward(self, x):
            return self.visual.tokens(x)

    traced = torch.jit.trace(Holder(torch_vit), torch.from_numpy(images))
    traced.save(str(tmp_path / "clip.pt"))
    sd = farl.load_torch_state_dict(tmp_path / "clip.pt")
    assert farl.find_prefix(sd) == "visual."
    enc = nnx_vit()
    farl.load_into_encoder(enc, sd)
    with torch.no_grad():
        expected = torch_vit.tokens(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(np.asarray(enc(images)), expected, atol=1e-5, rtol=1e-5)

    import argparse

    torch.save({"state_dict": {"visual." + k: v for k, v in torch_vit.state_dict().items()},
                "args": argparse.Namespace(lr=1e-3)}, tmp_path / "with_args.pth")
    with pytest.raises(ValueError, match="trusted=True"):
        farl.load_torch_state_dict(tmp_path / "with_args.pth")
    assert farl.find_prefix(farl.load_torch_state_dict(tmp_path / "with_args.pth", trusted=True)) == "visual."
