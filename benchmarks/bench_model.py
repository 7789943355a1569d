"""Regressor forward+backward throughput: Flax NNX (jitted) vs the same architecture in PyTorch.

    python benchmarks/bench_model.py                       # the default config's model, and ViT-B/16
    python benchmarks/bench_model.py --models default --reps 5
    python benchmarks/bench_model.py --models default --batch 2 --reps 1 --image-size 32   # smoke size

Models: ``default`` — the model of ``configs/default.py`` as it stands (whatever its encoder:
EfficientNet-Lite0 at the config's ``image_size``, 64², today), built with random parameters;
``vit_tiny``, ``vit_s16``, ``vit_b16`` — patch-embedding ViTs (CLIP layout) at 224² with the same
decoder family. ``--image-size`` overrides every model's input size (a multiple of 32 for
EfficientNet, of the patch for ViTs); the images fed always have the model's own size.

For each model: images/s of one forward + backward pass (gradient of a FaceLift-style loss
w.r.t. every parameter) at batch 8 on the CPU, JAX vs PyTorch measured in the same run, their
ratio (> 1: JAX faster), and JAX's jit compile time. The PyTorch model is written here with the
same shapes: the encoder — EfficientNet-Lite0 (the ``efficientnet_pytorch`` layout
``bridges/efficientnet.py`` converts: frozen-BN affine after every conv, TF SAME padding, stride-16
and stride-32 maps projected to tokens) or CLIP's image tower (the layout ``bridges/farl.py``
converts) — plus the same landmark/pose decoder, heads and 2.5D projection; float32, all the cores
the process may use. A model with no PyTorch counterpart here (a conv-stem ViT, a ResNet default)
is timed in JAX alone and says so. Timings on a shared machine are noisy; only the ratio of the
same run is meaningful.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

try:  # the PyTorch side is optional: without torch, JAX alone is timed
    import torch
    from torch import nn
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

    class nn:  # noqa: N801 - placeholders so the reference classes below still define
        Module = object

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from configs.default import get_config  # noqa: E402
from configs.efficientnet import get_config as efficientnet_config  # noqa: E402
from facelift_jax import camera, losses  # noqa: E402
from facelift_jax.model import build_model, parameter_counts  # noqa: E402
from facelift_jax.model.efficientnet import (BLOCKS, HEAD_WIDTH, STEM_WIDTH, STRIDE16_BLOCK,  # noqa: E402
                                             same_padding)
from facelift_jax.model.face_mesh import MAP_BLOCKS as FM_MAP_BLOCKS  # noqa: E402
from facelift_jax.model.face_mesh import STEM_WIDTH as FM_STEM  # noqa: E402
from facelift_jax.model.face_mesh import TRUNK as FM_TRUNK  # noqa: E402

VIT_MODELS = {  # patch-embedding ViTs at 224² (the CLIP layout the PyTorch reference mirrors)
    "vit_tiny": dict(vit=dict(width=96, depth=4, heads=4), decoder=dict(width=96, depth=3, heads=4)),
    "vit_s16": dict(vit=dict(width=384, depth=12, heads=6), decoder=dict(width=384, depth=3, heads=6)),
    "vit_b16": dict(vit=dict(width=768, depth=12, heads=12), decoder=dict(width=768, depth=3, heads=12)),
}
MODELS = ("default", "efficientnet") + tuple(VIT_MODELS)


def model_config(name: str, image_size: int = 0):
    """(model config, input size): the default config's model, configs/efficientnet.py's, or a patch ViT
    of VIT_MODELS."""
    config = efficientnet_config() if name == "efficientnet" else get_config()
    cfg = config.model
    if name in ("default", "efficientnet"):
        size = int(image_size or config.image_size)
    else:
        size = int(image_size or 224)
        cfg.encoder = "vit"
        cfg.vit.update(VIT_MODELS[name]["vit"], stem="patch", patch=16)
        cfg.decoder.update(VIT_MODELS[name]["decoder"])
    config.image_size = size  # model.image_size refers to it: every encoder takes this side
    return cfg, size

# --------------------------------------------------------------------------- PyTorch reference


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    """Pre-LN block; ``cross`` adds an image cross-attention in front (decoder)."""

    def __init__(self, width, heads, act, cross=False):
        super().__init__()
        self.cross = nn.MultiheadAttention(width, heads, batch_first=True) if cross else None
        self.ln_c = nn.LayerNorm(width) if cross else None
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), act, nn.Linear(4 * width, width))

    def forward(self, x, memory=None):
        if self.cross is not None:
            y = self.ln_c(x)
            x = x + self.cross(y, memory, memory, need_weights=False)[0]
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class TorchViT(nn.Module):
    """CLIP's image tower (patch embedding, class token, pre-LN blocks, ln_post): tokens (B, 1+P, width)."""

    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)

    def __init__(self, width, depth, heads, patch=16, image=224):
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(width**-0.5 * torch.randn(width))
        self.positional_embedding = nn.Parameter(width**-0.5 * torch.randn((image // patch) ** 2 + 1, width))
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.blocks = nn.ModuleList([Block(width, heads, QuickGELU()) for _ in range(depth)])

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], 1) + self.positional_embedding
        x = self.ln_pre(x)
        for b in self.blocks:
            x = b(x)
        return self.ln_post(x)


class FrozenBNConv(nn.Module):
    """conv (TF SAME padding, no bias) → per-channel affine (a BatchNorm folded, as the bridge does)."""

    def __init__(self, cin, cout, k, stride, size, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, groups=groups, bias=False)
        self.scale, self.bias = nn.Parameter(torch.ones(cout, 1, 1)), nn.Parameter(torch.zeros(cout, 1, 1))
        lo, hi = same_padding(size, k, stride)
        self.pad = (lo, hi, lo, hi)

    def forward(self, x):
        return self.conv(nn.functional.pad(x, self.pad)) * self.scale + self.bias


class MBConv(nn.Module):
    def __init__(self, cin, expand, k, stride, cout, size):
        super().__init__()
        mid = cin * expand
        self.expand = FrozenBNConv(cin, mid, 1, 1, size) if expand != 1 else None
        self.depthwise = FrozenBNConv(mid, mid, k, stride, size, groups=mid)
        self.project = FrozenBNConv(mid, cout, 1, 1, -(-size // stride))
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = nn.functional.relu6(self.expand(x)) if self.expand is not None else x
        y = self.project(nn.functional.relu6(self.depthwise(y)))
        return x + y if self.skip else y


class TorchEfficientNetLite(nn.Module):
    """EfficientNet-Lite0 trunk + stride-16 / stride-32 token projections (model/efficientnet.py)."""

    mean, std = (127.0 / 255.0,) * 3, (128.0 / 255.0,) * 3  # (255x − 127)/128

    def __init__(self, width, image=64):
        super().__init__()
        self.width = width
        self.stem = FrozenBNConv(3, STEM_WIDTH, 3, 2, image)
        size, cin, blocks = -(-image // 2), STEM_WIDTH, []
        for expand, k, stride, cout, repeats in BLOCKS:
            for r in range(repeats):
                s = stride if r == 0 else 1
                blocks.append(MBConv(cin, expand, k, s, cout, size))
                size, cin = -(-size // s), cout
        self.blocks = nn.ModuleList(blocks)
        self.head = FrozenBNConv(cin, HEAD_WIDTH, 1, 1, size)
        n16, n32 = (image // 16) ** 2, (image // 32) ** 2
        self.proj16, self.proj32 = nn.Linear(BLOCKS[4][3], width), nn.Linear(HEAD_WIDTH, width)
        self.pos16 = nn.Parameter(0.02 * torch.randn(n16, width))
        self.pos32 = nn.Parameter(0.02 * torch.randn(n32, width))

    def forward(self, x):
        x = nn.functional.relu6(self.stem(x))
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == STRIDE16_BLOCK:
                f16 = x
        f32 = nn.functional.relu6(self.head(x))
        tokens = lambda f, proj, pos: proj(f.flatten(2).transpose(1, 2)) + pos  # noqa: E731
        return torch.cat([tokens(f16, self.proj16, self.pos16), tokens(f32, self.proj32, self.pos32)], 1)


def _same_pad(x, stride):
    """TF 'SAME' for a 3×3 kernel (model/efficientnet.same_padding): (1, 1) at stride 1, (0, 1) at 2 on even sides."""
    return nn.functional.pad(x, (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1))


class FaceMeshBlock(nn.Module):
    """model/face_mesh.ResidualBlock: PReLU(skip + 1×1(depthwise 3×3(x))), max-pool skip, channel zero-pad."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)
        self.act = nn.PReLU(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x):
        y = self.pw(self.dw(_same_pad(x, self.stride)))
        skip = x if self.stride == 1 else nn.functional.max_pool2d(x, 2)
        if self.extra:
            skip = nn.functional.pad(skip, (0, 0, 0, 0, 0, self.extra))
        return self.act(skip + y)


class TorchFaceMesh(nn.Module):
    """model/face_mesh.FaceMeshEncoder (stride-16 / stride-32 tokens, ``frozen_blocks``): the stem and the
    first frozen_blocks − 1 blocks run without autograd, as JAX's stop_gradient skips their backward."""

    mean, std = (0.0,) * 3, (1.0,) * 3  # the network takes [0, 1] RGB

    def __init__(self, width, image=192, frozen_blocks=0):
        super().__init__()
        self.width, self.frozen = width, frozen_blocks
        self.stem, self.stem_act = nn.Conv2d(3, FM_STEM, 3, 2), nn.PReLU(FM_STEM)
        cin, blocks = FM_STEM, []
        for cout, stride in FM_TRUNK:
            blocks.append(FaceMeshBlock(cin, cout, stride))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.proj16, self.proj32 = nn.Linear(128, width), nn.Linear(128, width)
        self.pos16 = nn.Parameter(0.02 * torch.randn((image // 16) ** 2, width))
        self.pos32 = nn.Parameter(0.02 * torch.randn((image // 32) ** 2, width))

    def forward(self, x):
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.frozen == 0):
            x = self.stem_act(self.stem(_same_pad(x, 2)))
        for i, block in enumerate(self.blocks):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= self.frozen - 1):
                x = block(x)
            if i == FM_MAP_BLOCKS[16]:
                f16 = x
        tokens = lambda f, proj, pos: proj(f.flatten(2).transpose(1, 2)) + pos  # noqa: E731
        return torch.cat([tokens(f16, self.proj16, self.pos16), tokens(x, self.proj32, self.pos32)], 1)


def torch_encoder(cfg, size):
    """The PyTorch counterpart of ``cfg``'s encoder, or None when this file has none."""
    f = cfg.face_mesh
    if cfg.encoder == "face_mesh" and tuple(f.token_strides) == (16, 32) and not f.mesh_tokens:
        return TorchFaceMesh(int(f.width), size, int(f.frozen_blocks))
    if cfg.encoder == "efficientnet_lite0" and tuple(cfg.efficientnet.token_strides) == (16, 32):
        return TorchEfficientNetLite(int(cfg.efficientnet.width), size)
    if cfg.encoder == "vit" and cfg.vit.get("stem", "patch") == "patch":
        v = cfg.vit
        return TorchViT(int(v.width), int(v.depth), int(v.heads), int(v.patch), size)
    return None


class TorchRegressor(nn.Module):
    def __init__(self, encoder, dwidth, ddepth, dheads, template):
        super().__init__()
        self.encoder = encoder
        self.image_proj, self.ln_image = nn.Linear(encoder.width, dwidth), nn.LayerNorm(dwidth)
        self.queries = nn.Parameter(0.02 * torch.randn(101, dwidth))
        self.dblocks = nn.ModuleList([Block(dwidth, dheads, nn.GELU(), cross=True) for _ in range(ddepth)])
        self.ln_out = nn.LayerNorm(dwidth)
        head = lambda n: nn.Sequential(nn.Linear(dwidth, dwidth), nn.GELU(), nn.Linear(dwidth, n))  # noqa: E731
        self.landmark_head, self.rotation_head, self.txy_head, self.tz_head = head(6), head(6), head(2), head(1)
        self.register_buffer("template", torch.as_tensor(template))
        self.register_buffer("mean", torch.tensor(encoder.mean))
        self.register_buffer("std", torch.tensor(encoder.std))

    def forward(self, images):
        x = ((images.float() / 255.0 - self.mean) / self.std).permute(0, 3, 1, 2)
        x = self.encoder(x)
        memory = self.ln_image(self.image_proj(x))
        q = self.queries.expand(x.shape[0], -1, -1)
        for b in self.dblocks:
            q = b(q, memory)
        q = self.ln_out(q)
        raw = self.landmark_head(q[:, :98])
        l3d = self.template + 0.1 * raw[..., :3]
        l00 = 1e-4 + nn.functional.softplus(raw[..., 3] - 3.9)
        l11 = 1e-4 + nn.functional.softplus(raw[..., 5] - 3.9)
        l10 = 0.02 * raw[..., 4]
        u = self.rotation_head(q[:, 98]) + torch.tensor([1.0, 0, 0, 0, -1, 0])
        c1 = nn.functional.normalize(u[:, :3], dim=-1)
        c3 = nn.functional.normalize(torch.cross(c1, u[:, 3:], dim=-1), dim=-1)
        R = torch.stack([c1, torch.cross(c3, c1, dim=-1), c3], -1)
        look = torch.tensor([0.0, 0.0, 0.2])
        fp = R[:, 2] @ look
        d = fp + torch.sqrt(torch.clamp(fp**2 - look @ look + 2.7**2, min=0.0))
        t = torch.stack([torch.zeros_like(d), torch.zeros_like(d), d], -1) - R @ look
        t = t + 0.1 * torch.cat([self.txy_head(q[:, 99]), self.tz_head(q[:, 100])], -1)
        p = torch.einsum("bij,bnj->bni", R, l3d) + t[:, None]
        l2d = camera.FOCAL * p[..., :2] / p[..., 2:3] + 0.5
        return l3d, l2d, (l00, l10, l11), R, t


def torch_loss(model, images, target2d, target3d):
    l3d, l2d, (l00, l10, l11), R, t = model(images)
    dd = target2d - l2d
    z0 = dd[..., 0] / l00
    z1 = (dd[..., 1] - l10 * z0) / l11
    lll = (torch.log(l00) + torch.log(l11) + torch.sqrt(3 * (z0**2 + z1**2) + 1e-12)).mean()
    return lll + ((l3d - target3d) ** 2).sum(-1).mean() + (t**2).sum(-1).mean()


# --------------------------------------------------------------------------- timing


def bench(name, batch, reps, rng, image_size=0):
    cfg, size = model_config(name, image_size)
    template = (rng.normal(0, 0.08, (98, 3)) + [0, 0, 0.2]).astype(np.float32)
    images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    target2d = rng.uniform(0.3, 0.7, (batch, 98, 2)).astype(np.float32)
    target3d = (template + rng.normal(0, 0.01, (batch, 98, 3))).astype(np.float32)

    model = build_model(cfg, template, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_fn(p, images, target2d, target3d):
        pred = nnx.merge(graphdef, p, rest)(images)
        return (losses.laplacian_nll(target2d, pred.landmarks2d, pred.scale_tril)
                + losses.mse(pred.landmarks3d, target3d) + jnp.mean(jnp.sum(pred.translation**2, -1)))

    step = jax.jit(jax.value_and_grad(loss_fn))
    args = (params, jnp.asarray(images), jnp.asarray(target2d), jnp.asarray(target3d))
    t0 = time.perf_counter()
    compiled = step.lower(*args).compile()
    compile_s = time.perf_counter() - t0

    encoder = torch_encoder(cfg, size) if torch is not None else None
    if encoder is not None:
        d = cfg.decoder
        tm = TorchRegressor(encoder, int(d.width), int(d.depth), int(d.heads), template)
        n_torch = sum(p.numel() for p in tm.parameters())
        ti, t2, t3 = torch.from_numpy(images), torch.from_numpy(target2d), torch.from_numpy(target3d)

        def torch_step():
            tm.zero_grad(set_to_none=True)
            torch_loss(tm, ti, t2, t3).backward()

    def jax_step():
        jax.block_until_ready(compiled(*args))

    def timed(fn, n):
        time.sleep(1.0)  # let the other runtime's worker threads go idle (XLA and OpenMP spin-wait)
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return time.perf_counter() - t0

    label = f"{name} ({cfg.encoder}, {size}²)"
    counts = parameter_counts(model)
    half = max(reps // 2, 1)
    jax_step()  # warm-up
    if encoder is None:  # no PyTorch counterpart here: JAX alone
        jax_ips = batch * 2 * half / timed(jax_step, 2 * half)
        why = "torch not installed" if torch is None else "no PyTorch counterpart in this file"
        print(f"{label} params jax {counts['total']:,} (encoder {counts['encoder']:,}) | fwd+bwd batch {batch}: "
              f"jax {jax_ips:8.2f} img/s, no ratio ({why}) | jit compile {compile_s:6.1f} s", flush=True)
        return dict(model=name, jax_ips=jax_ips, torch_ips=None, ratio=None, compile_s=compile_s)
    torch_step()
    # A-B-B-A blocks: a load drift on the shared machine hits both frameworks alike, while
    # consecutive steps of one framework do not compete with the other's idle threads.
    jax_s = timed(jax_step, half)
    torch_s = timed(torch_step, half) + timed(torch_step, half)
    jax_s += timed(jax_step, half)
    jax_ips = torch_ips = batch * 2 * half
    jax_ips, torch_ips = jax_ips / jax_s, torch_ips / torch_s
    print(f"{label} params jax {counts['total']:,} (encoder {counts['encoder']:,}) torch {n_torch:,} | "
          f"fwd+bwd batch {batch}: jax {jax_ips:8.2f} img/s, torch {torch_ips:8.2f} img/s, "
          f"ratio jax/torch {jax_ips / torch_ips:5.2f} | jit compile {compile_s:6.1f} s", flush=True)
    return dict(model=name, jax_ips=jax_ips, torch_ips=torch_ips, ratio=jax_ips / torch_ips, compile_s=compile_s)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="default,vit_b16", help=f"comma-separated subset of {list(MODELS)}")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=6, help="timed repetitions per framework (ViT-B/16: 2)")
    ap.add_argument("--image-size", type=int, default=0,
                    help="0: each model's own (the default config's image_size; 224 for the ViTs)")
    ap.add_argument("--torch-threads", type=int, default=0,
                    help="torch.set_num_threads (0: torch's default, all cores; on a busy machine OpenMP's "
                         "threads wait on each other and 1 can be many times faster)")
    a = ap.parse_args(argv)
    if torch is not None and a.torch_threads:
        torch.set_num_threads(a.torch_threads)
    names = a.models.split(",")
    if unknown := [n for n in names if n not in MODELS]:
        ap.error(f"unknown models {unknown}; choose from {list(MODELS)}")
    torch_info = f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else "no torch"
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {torch_info}, cpus {os.cpu_count()}")
    rng = np.random.default_rng(0)
    return [bench(name, a.batch, min(a.reps, 2) if name == "vit_b16" else a.reps, rng, a.image_size)
            for name in names]


if __name__ == "__main__":
    main()
