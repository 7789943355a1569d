"""Lifting speed and accuracy: this implementation vs the baselines, measured in the same run.

    .venv/bin/python benchmarks/bench_lifting.py [--sizes 1,100,1000,10000] [--torch-steps 300]
    .venv/bin/python benchmarks/bench_lifting.py --sizes 2 --torch-steps 2 --scipy-latents 1 --peak-size 256  # smoke

Without torch, (b) is left out (and said so); the other ratios are printed as usual.

Problem: B latents × 9 views (the elevation-0 ring of views.py: azimuth 0, ±20, ±40, ±60, ±75)
× 98 landmarks; each latent's points are the canonical face plus N(0, 0.02) per coordinate; the
detections are exact projections plus Gaussian noise σ = 0.004 (normalized image units); no mask.
The Gaussian maximum-likelihood (ML) estimate is the l2 reprojection optimum.

  (a) lifting.lift, default config (closed-form DLT + 5 Gauss–Newton/IRLS steps, Cauchy loss),
      and the same with the l2 loss (the ML objective)
  (b) Adam on the same objective batched in PyTorch on the CPU, 300 steps from the canonical
      template (what a PyTorch user would write); at the largest size timed over fewer steps
      and extrapolated
  (c) per-latent scipy least_squares loop, aniposelib style (per landmark: SVD DLT, then
      least_squares 'trf', x_scale='jac'); a subset of latents timed, extrapolated
  (d) a plain jitted + vmapped Optax Adam loop of 300 steps from the canonical template

Printed: latents/s, mean 3D error vs the truth (world units), the error relative to the ML error
(scipy's optimum on the subset it solved; (a)-l2 with 20 steps elsewhere), the achieved FLOP/s of
(a) against a matmul-measured peak, and the speed ratios. The CPU may be shared: trust the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # configs, facelift_jax from the checkout

from facelift_jax import camera, lifting, views  # noqa: E402

SIGMA = 0.004
NUM_VIEWS = 9


def make_problem(B: int, seed: int = 0):
    cams = views.lifting_cameras(views.LIFTING_VIEWS[:NUM_VIEWS])
    rng = np.random.default_rng(seed)
    truth = (views.canonical_template()[None] + rng.normal(0, 0.02, (B, 98, 3))).astype(np.float32)
    obs = np.asarray(camera.project(jnp.asarray(truth)[:, None], cams))
    obs = (obs + rng.normal(0, SIGMA, obs.shape)).astype(np.float32)
    mask = np.ones(obs.shape[:3], bool)
    return cams, truth, obs, mask


def err3d(points, truth):
    return float(np.linalg.norm(np.asarray(points, np.float64)[:, :96] - truth[:, :96], axis=-1).mean())


def best_time(fn, repeats=3):
    out = fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


# ---------------------------------------------------------------------------------------- (a)


def run_ours(cams, obs, mask, **overrides):
    cfg = lifting.default_config()
    cfg.update(overrides)

    def go():
        r = lifting.lift(obs, cams, mask, cfg)
        return jax.block_until_ready(r.points3d)

    return best_time(go, repeats=3 if obs.shape[0] <= 1000 else 2)


def flops_ours(cams, B: int, steps: int) -> float:
    """≈ FLOPs of one lift call, from XLA's cost analysis of the one-view terms (a while loop's
    body is counted once by XLA, so each term is analysed for a single view and scaled by V)."""
    A, b = lifting.projection_matrices(cams[:1])
    s = lifting.LiftSettings(steps=steps)
    mk = lambda o, u: lifting._Views(A=A, b=b, obs=o, used=u)  # noqa: E731
    o = jnp.zeros((B, 1, 2, 98), jnp.float32)
    u = jnp.ones((B, 1, 98), bool)
    x = jnp.zeros((B, 3, 98), jnp.float32)

    def cost(f, *args):
        c = jax.jit(jax.vmap(f)).lower(*args).compile().cost_analysis()
        c = c[0] if isinstance(c, list) else c
        return float(c.get("flops", 0.0))

    dlt = cost(lambda o, u: lifting.dlt_triangulate(mk(o, u)), o, u)
    gn = cost(lambda x, o, u: lifting.gradient_and_curvature(x, mk(o, u), s), x, o, u)
    obj = cost(lambda x, o, u: lifting.per_landmark_objective(x, mk(o, u), s), x, o, u)
    stats = cost(lambda x, o, u: lifting._residual_stats(x, mk(o, u), s), x, o, u)
    return NUM_VIEWS * (dlt + steps * gn + 2 * obj + stats)


def matmul_peak(n: int = 2048) -> float:
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    t, _ = best_time(lambda: f(a).block_until_ready(), repeats=5)
    return 2 * n**3 / t


# ---------------------------------------------------------------------------------------- (b)


def run_torch_adam(cams, obs, truth, steps: int, lr: float = 2e-3):
    import torch

    torch.set_num_threads(2)
    K = torch.tensor(np.asarray(cams.K))
    R = torch.tensor(np.asarray(cams.R))
    t = torch.tensor(np.asarray(cams.t))
    target = torch.tensor(obs)
    B = obs.shape[0]
    x = torch.tensor(np.broadcast_to(views.canonical_template(), (B, 98, 3)).copy(), requires_grad=True)
    opt = torch.optim.Adam([x], lr=lr)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        p = torch.einsum("vij,bnj->bvni", R, x) + t[None, :, None, :]
        q = torch.einsum("vij,bvnj->bvni", K, p)
        uv = q[..., :2] / q[..., 2:3]
        loss = 0.5 * ((uv - target) ** 2).sum()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0, x.detach().numpy()


# ---------------------------------------------------------------------------------------- (c)


def run_scipy(cams, obs):
    from scipy.optimize import least_squares

    K, R, t = (np.asarray(a, np.float64) for a in (cams.K, cams.R, cams.t))
    P = np.einsum("vij,vjk->vik", K, np.concatenate([R, t[..., None]], -1))  # (V, 3, 4)
    out = np.zeros(obs.shape[:1] + (98, 3))
    t0 = time.perf_counter()
    for b in range(obs.shape[0]):
        for n in range(98):
            l = obs[b, :, n].astype(np.float64)
            A = np.concatenate([l[:, :1] * P[:, 2] - P[:, 0], l[:, 1:] * P[:, 2] - P[:, 1]])
            X = np.linalg.svd(A)[2][-1]
            x0 = X[:3] / X[3]

            def fun(x):
                q = P[:, :, :3] @ x + P[:, :, 3]
                return (q[:, :2] / q[:, 2:3] - l).ravel()

            out[b, n] = least_squares(fun, x0, method="trf", x_scale="jac").x
    return time.perf_counter() - t0, out


# ---------------------------------------------------------------------------------------- (d)


def run_optax_adam(cams, obs, mask, steps: int = 300, lr: float = 2e-3):
    A, b = lifting.projection_matrices(cams)
    s = lifting.LiftSettings(loss="l2")
    opt = optax.adam(lr)
    x0 = jnp.asarray(views.canonical_template().T)

    def one(o, u):
        vw = lifting._Views(A=A, b=b, obs=o, used=u)

        def step(carry, _):
            x, st = carry
            g = jax.grad(lifting.objective)(x, vw, s)
            upd, st = opt.update(g, st, x)
            return (optax.apply_updates(x, upd), st), None

        (x, _), _ = jax.lax.scan(step, (x0, opt.init(x0)), None, length=steps)
        return x.T

    f = jax.jit(jax.vmap(one, in_axes=(1, 1)))
    o = jnp.asarray(np.transpose(obs, (1, 0, 3, 2)))
    u = jnp.asarray(np.swapaxes(mask, 0, 1))
    return best_time(lambda: f(o, u).block_until_ready(), repeats=1)


# ---------------------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,100,1000,10000")
    ap.add_argument("--torch-steps", type=int, default=300)
    ap.add_argument("--torch-steps-large", type=int, default=30, help="steps timed (then extrapolated) at B ≥ 10000")
    ap.add_argument("--scipy-latents", type=int, default=3, help="latents solved by scipy per size (extrapolated)")
    ap.add_argument("--adam-max", type=int, default=10000, help="largest B for (d)")
    ap.add_argument("--peak-size", type=int, default=2048, help="n of the n² @ n² matmul measuring the peak")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    peak = matmul_peak(args.peak_size)
    try:
        import torch  # noqa: F401
        has_torch = True
    except ImportError:
        has_torch = False
        print("torch not installed: (b) left out")
    if has_torch:
        cams1, truth1, obs1, _ = make_problem(1)
        run_torch_adam(cams1, obs1, truth1, 2)  # import and warm up torch outside the timings
    n = args.peak_size
    print(f"devices: {jax.devices()} | matmul-measured peak: {peak / 1e9:.1f} GFLOP/s (float32, {n}² @ {n}²)")
    print(f"problem: B latents × {NUM_VIEWS} views × 98 landmarks, Gaussian noise σ = {SIGMA}\n")
    head = f"{'B':>6} | {'method':<34} | {'time s':>9} | {'latents/s':>10} | {'3D err':>9} | {'vs ML':>7}"
    print(head)
    print("-" * len(head))
    rows = []
    for B in sizes:
        cams, truth, obs, mask = make_problem(B)
        res = {}
        t_a, p_a = run_ours(cams, obs, mask)
        t_l2, p_l2 = run_ours(cams, obs, mask, loss="l2")
        _, p_ml = run_ours(cams, obs, mask, loss="l2", steps=20)
        e_ml = err3d(p_ml, truth)
        res["a"] = (t_a, err3d(p_a, truth))
        res["a_l2"] = (t_l2, err3d(p_l2, truth))

        n_sp = min(args.scipy_latents, B)
        t_sp, p_sp = run_scipy(cams, obs[:n_sp])
        e_sp = err3d(p_sp, truth[:n_sp])
        res["c"] = (t_sp * B / n_sp, e_sp)
        e_ml_sub = err3d(np.asarray(p_ml)[:n_sp], truth[:n_sp])
        # on the scipy subset, the ML reference is scipy's own optimum
        e_a_sub = err3d(np.asarray(p_a)[:n_sp], truth[:n_sp])

        note_b = ""
        if not has_torch:
            pass
        elif B >= 10000:
            t_tb, _ = run_torch_adam(cams, obs, truth, args.torch_steps_large)
            res["b"] = (t_tb * args.torch_steps / args.torch_steps_large, float("nan"))
            note_b = f" (timed {args.torch_steps_large} steps, ×{args.torch_steps // args.torch_steps_large})"
        else:
            t_tb, p_tb = run_torch_adam(cams, obs, truth, args.torch_steps)
            res["b"] = (t_tb, err3d(p_tb, truth))
        if B <= args.adam_max:
            t_d, p_d = run_optax_adam(cams, obs, mask)
            res["d"] = (t_d, err3d(p_d, truth))

        labels = {"a": "(a) lift: DLT + 5 GN/IRLS, cauchy", "a_l2": "(a) lift: DLT + 5 GN, l2 (ML obj.)",
                  "b": f"(b) torch Adam {args.torch_steps}" + ("*" if note_b else ""),
                  "c": f"(c) scipy loop ({n_sp} timed)*",
                  "d": "(d) optax Adam 300 (jit+vmap)"}
        for k in ("a", "a_l2", "b", "c", "d"):
            if k not in res:
                continue
            t, e = res[k]
            ref = e_ml_sub if k == "c" else e_ml  # (c) solved only its subset
            rel = e / ref - 1 if np.isfinite(e) else float("nan")
            print(f"{B:>6} | {labels[k]:<34} | {t:>9.3f} | {B / t:>10.1f} | {e:>9.6f} | {rel:>+7.2%}")
        fl = flops_ours(cams, B, lifting.default_config().steps)
        print(f"{B:>6} | ML reference (l2, 20 GN steps) 3D error {e_ml:.6f}; on scipy's {n_sp} latents: "
              f"scipy {e_sp:.6f}, (a) {e_a_sub:.6f} ({e_a_sub / e_sp - 1:+.2%})")
        print(f"{B:>6} | (a) ≈ {fl / 1e9:.3f} GFLOP → {fl / res['a'][0] / 1e9:.2f} GFLOP/s = "
              f"{fl / res['a'][0] / peak:.1%} of the matmul peak{note_b and ' | * ' + note_b.strip()}")
        ratios = {k: res[k][0] / res["a"][0] for k in ("b", "c", "d") if k in res}
        print(f"{B:>6} | speed-up of (a): " + ", ".join(f"vs {k} ×{v:.1f}" for k, v in ratios.items()))
        print("-" * len(head))
        rows.append((B, res, e_ml))
    return rows


if __name__ == "__main__":
    main()
