"""Regressor forward+backward throughput: Flax NNX (jitted) vs the same architecture in PyTorch.

    python benchmarks/bench_model.py                       # tiny default config and ViT-B/16
    python benchmarks/bench_model.py --models tiny --reps 5

For each model: images/s of one forward + backward pass (gradient of a FaceLift-style loss
w.r.t. every parameter) at batch 8 on the CPU, JAX vs PyTorch measured in the same run, their
ratio (> 1: JAX faster), and JAX's jit compile time. The PyTorch model is written here: CLIP's
image tower (the layout ``bridges/farl.py`` converts) + the same landmark/pose decoder, heads and
2.5D projection; both use the same shapes, float32, and all the cores the process may use.
Timings on a shared machine are noisy; only the ratio of the same run is meaningful.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
from flax import nnx
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from configs.default import get_config  # noqa: E402
from facelift_jax import camera, losses  # noqa: E402
from facelift_jax.model import build_model, parameter_counts  # noqa: E402

MODELS = {
    "tiny": dict(vit=dict(width=96, depth=4, heads=4), decoder=dict(width=96, depth=3, heads=4)),
    "vit_s16": dict(vit=dict(width=384, depth=12, heads=6), decoder=dict(width=384, depth=3, heads=6)),
    "vit_b16": dict(vit=dict(width=768, depth=12, heads=12), decoder=dict(width=768, depth=3, heads=12)),
}

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


class TorchRegressor(nn.Module):
    def __init__(self, width, depth, heads, dwidth, ddepth, dheads, template, patch=16, image=224):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(width**-0.5 * torch.randn(width))
        self.positional_embedding = nn.Parameter(width**-0.5 * torch.randn((image // patch) ** 2 + 1, width))
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.blocks = nn.ModuleList([Block(width, heads, QuickGELU()) for _ in range(depth)])
        self.image_proj, self.ln_image = nn.Linear(width, dwidth), nn.LayerNorm(dwidth)
        self.queries = nn.Parameter(0.02 * torch.randn(101, dwidth))
        self.dblocks = nn.ModuleList([Block(dwidth, dheads, nn.GELU(), cross=True) for _ in range(ddepth)])
        self.ln_out = nn.LayerNorm(dwidth)
        head = lambda n: nn.Sequential(nn.Linear(dwidth, dwidth), nn.GELU(), nn.Linear(dwidth, n))  # noqa: E731
        self.landmark_head, self.rotation_head, self.txy_head, self.tz_head = head(6), head(6), head(2), head(1)
        self.register_buffer("template", torch.as_tensor(template))
        self.register_buffer("mean", torch.tensor([0.48145466, 0.4578275, 0.40821073]))
        self.register_buffer("std", torch.tensor([0.26862954, 0.26130258, 0.27577711]))

    def forward(self, images):
        x = ((images.float() / 255.0 - self.mean) / self.std).permute(0, 3, 1, 2)
        x = self.conv1(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(x.shape[0], 1, -1), x], 1) + self.positional_embedding
        x = self.ln_pre(x)
        for b in self.blocks:
            x = b(x)
        memory = self.ln_image(self.image_proj(self.ln_post(x)))
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


def bench(name, batch, reps, rng):
    spec = MODELS[name]
    cfg = get_config().model
    cfg.vit.update(spec["vit"])
    cfg.decoder.update(spec["decoder"])
    template = (rng.normal(0, 0.08, (98, 3)) + [0, 0, 0.2]).astype(np.float32)
    images = rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
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

    v, d = spec["vit"], spec["decoder"]
    tm = TorchRegressor(v["width"], v["depth"], v["heads"], d["width"], d["depth"], d["heads"], template)
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

    jax_step()  # warm-up
    torch_step()
    # A-B-B-A blocks: a load drift on the shared machine hits both frameworks alike, while
    # consecutive steps of one framework do not compete with the other's idle threads.
    half = max(reps // 2, 1)
    jax_s = timed(jax_step, half)
    torch_s = timed(torch_step, half) + timed(torch_step, half)
    jax_s += timed(jax_step, half)
    jax_ips = torch_ips = batch * 2 * half
    jax_ips, torch_ips = jax_ips / jax_s, torch_ips / torch_s
    counts = parameter_counts(model)
    print(f"{name:8s} params jax {counts['total']:>11,} (encoder {counts['encoder']:,}) torch {n_torch:>11,} | "
          f"fwd+bwd batch {batch}: jax {jax_ips:8.2f} img/s, torch {torch_ips:8.2f} img/s, "
          f"ratio jax/torch {jax_ips / torch_ips:5.2f} | jit compile {compile_s:6.1f} s", flush=True)
    return dict(model=name, jax_ips=jax_ips, torch_ips=torch_ips, ratio=jax_ips / torch_ips, compile_s=compile_s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny,vit_b16", help=f"comma-separated subset of {sorted(MODELS)}")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--reps", type=int, default=6, help="timed repetitions per framework (ViT-B/16: 2)")
    a = ap.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), cpus {os.cpu_count()}")
    rng = np.random.default_rng(0)
    for name in a.models.split(","):
        bench(name, a.batch, min(a.reps, 2) if name == "vit_b16" else a.reps, rng)


if __name__ == "__main__":
    main()
