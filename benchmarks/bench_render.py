"""Synthetic renderer throughput: images/s for a batch at the default config's ``image_size`` (the size
the training pool and on-the-fly renders use; ``--size 224`` for the paper's), with ratios against
baselines measured in the same run (the CPU may be shared, so only the ratios are comparable across runs).

Baselines:
  bare   — the floor: an OpenCV index-buffer raster of the same meshes (fill each front-facing
           triangle's id, flat, one cv2.fillConvexPoly each; no sorting, depth, semantics or
           shading), on one thread and on every CPU; the renderer's target is ≥ 0.5 of it (issue 15);
  naive  — a per-pixel barycentric z-buffer rasterizer in JAX (every pixel against every triangle,
           chunked over triangles), producing only a depth map: the cost our deferred
           triangle-id renderer avoids;
  loop   — our renderer called once per image in a Python loop (batch 1): what batching buys.

    python benchmarks/bench_render.py [--batch 64] [--small-batch 4] [--size 224] [--repeats 3]
    python benchmarks/bench_render.py --batch 4 --small-batch 2 --size 32 --repeats 1 --naive-images 1 --loop-images 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import concurrent.futures

import cv2
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # configs, facelift_jax from the checkout

from facelift_jax import camera as cam  # noqa: E402
from facelift_jax.synthetic import SyntheticGenerator  # noqa: E402


def naive_depth(vertices, triangles, camera, size: int, chunk: int = 256):
    """Depth map (H,W) of one mesh by brute force: edge functions of every triangle at every pixel."""
    pc = cam.to_camera_space(vertices, camera)
    uv = cam.project(vertices, camera) * size
    px = (jnp.stack(jnp.meshgrid(jnp.arange(size), jnp.arange(size), indexing="xy"), -1) + 0.5).reshape(-1, 2)
    F = triangles.shape[0]
    pad = (-F) % chunk
    tris = jnp.concatenate([triangles, jnp.repeat(triangles[:1], pad, 0)]).reshape(-1, chunk, 3)

    def step(zbuf, t):
        a, b, c = uv[t[:, 0]], uv[t[:, 1]], uv[t[:, 2]]
        za, zb, zc = pc[t[:, 0], 2], pc[t[:, 1], 2], pc[t[:, 2], 2]
        def edge(p, q):
            return (q[:, 0] - p[:, 0]) * (px[:, None, 1] - p[:, 1]) - (q[:, 1] - p[:, 1]) * (px[:, None, 0] - p[:, 0])
        # signed area: dividing by it makes the weights positive inside for either winding
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        w0, w1, w2 = edge(b, c) / area, edge(c, a) / area, edge(a, b) / area
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        z = 1.0 / (w0 / za + w1 / zb + w2 / zc)  # perspective-correct depth
        z = jnp.where(inside & (z > 0), z, jnp.inf)
        return jnp.minimum(zbuf, z.min(1)), None

    zbuf, _ = jax.lax.scan(step, jnp.full(px.shape[0], jnp.inf), tris)
    return zbuf.reshape(size, size)


def bare_raster_inputs(gen, latents, cameras, size: int):
    """Per image: (F',3,2) int32 cv2 fixed-point screen triangles of the front-facing faces, ids (F',)."""
    verts = gen.vertices3d(latents)
    tris = gen.triangles
    out = []
    for i in range(len(latents)):
        c = jax.tree_util.tree_map(lambda x: x[i], cameras)
        pc = np.asarray(cam.to_camera_space(verts[i], c), np.float64)[tris]           # (F,3,3)
        front = np.einsum("fi,fi->f", np.cross(pc[:, 1] - pc[:, 0], pc[:, 2] - pc[:, 0]), pc.sum(1)) < 0
        uv = np.asarray(cam.project(verts[i], c), np.float64)[tris] * size             # (F,3,2) pixels
        pts = np.clip(np.round((uv - 0.5) * 16), -(1 << 20), 1 << 20).astype(np.int32)  # 4 fractional bits
        keep = np.flatnonzero(front)
        out.append((pts[keep], keep))
    return out


def bare_raster(inputs, size: int) -> np.ndarray:
    """One (size,size) int32 id buffer per image: each triangle's id filled flat, in index order."""
    fill = cv2.fillConvexPoly
    for pts, ids in inputs:
        buf = np.full((size, size), -1, np.int32)
        for f, p in zip(ids.tolist(), pts):
            fill(buf, p, f, cv2.LINE_8, 4)
    return buf


def _threaded(fn, items, threads: int):
    """fn over ``threads`` interleaved shares of ``items`` at once (OpenCV releases the GIL)."""
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, [items[k::threads] for k in range(threads)]))


def _time(fn, repeats, clock=time.perf_counter):
    fn()  # warm-up (compilation)
    best = np.inf
    for _ in range(repeats):
        t = clock()
        fn()
        best = min(best, clock() - t)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--small-batch", type=int, default=4, help="the training loop's on-the-fly batch")
    p.add_argument("--size", type=int, default=0, help="0: configs/default.py's image_size")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--naive-images", type=int, default=2)
    p.add_argument("--loop-images", type=int, default=16)
    args = p.parse_args(argv)

    if not args.size:
        from configs.default import get_config

        args.size = int(get_config().image_size)
    gen = SyntheticGenerator()
    B, size = args.batch, args.size
    rng = np.random.default_rng(0)
    cams = cam.camera_from_angles(rng.uniform(-110, 110, B), rng.uniform(-60, 60, B), rng.uniform(-45, 45, B))
    lat = np.arange(B)

    t_batch = _time(lambda: gen.render(lat, cams, size), args.repeats)
    ours = B / t_batch
    n_cpu = len(os.sched_getaffinity(0))
    gen1 = SyntheticGenerator(dict(threads=1))
    ours1 = B / _time(lambda: gen1.render(lat, cams, size), args.repeats)
    bare_in = bare_raster_inputs(gen, lat, cams, size)
    bare1 = B / _time(lambda: bare_raster(bare_in, size), args.repeats)
    bare_n = B / _time(lambda: _threaded(lambda part: bare_raster(part, size), bare_in, n_cpu), args.repeats)
    # CPU seconds (all threads of this process) per image: on a shared machine wall time depends on
    # the other tenants, CPU time much less so; n_cpu / cpu_per_image bounds an idle machine's rate
    cpu_per_image = _time(lambda: gen.render(lat, cams, size), args.repeats, time.process_time) / B
    b = args.small_batch
    t_small = _time(lambda: [gen.render(lat[i:i + b], cams[i:i + b], size) for i in range(0, B - b + 1, b)],
                    args.repeats)
    small = (B // b) * b / t_small

    n = args.loop_images
    t_loop = _time(lambda: [gen.render(lat[i:i + 1], cams[i:i + 1], size) for i in range(n)], 1)
    loop = n / t_loop

    verts = jnp.asarray(gen.vertices3d(lat[: args.naive_images]))
    tris = jnp.asarray(gen.triangles)
    naive_fn = jax.jit(naive_depth, static_argnames=("size",))
    t_naive = _time(lambda: [naive_fn(verts[i], tris, cams[i], size=size).block_until_ready()
                             for i in range(args.naive_images)], 1)
    naive = args.naive_images / t_naive

    print(f"device: {jax.devices()[0].device_kind}, CPU threads visible: {len(os.sched_getaffinity(0))}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"synthetic renderer, batch {B} at {size}²: {ours:8.1f} images/s "
          f"(image + depth + semantic + landmarks + visibility; {n_cpu} threads)")
    print(f"  on 1 thread:                          {ours1:8.1f} images/s")
    print(f"baseline bare raster (OpenCV ids, flat), 1 thread:   {bare1:8.1f} images/s   "
          f"ratio renderer/bare {ours / bare1:5.2f} (renderer on 1 thread: {ours1 / bare1:5.2f})")
    print(f"baseline bare raster, {n_cpu} threads:                   {bare_n:8.1f} images/s   "
          f"ratio renderer/bare {ours / bare_n:5.2f}")
    print(f"  CPU time per image {cpu_per_image * 1e3:.1f} ms → at most {n_cpu / cpu_per_image:.0f} images/s "
          f"on {n_cpu} idle cores")
    print(f"synthetic renderer, batch {b} per call:     {small:8.1f} images/s")
    print(f"baseline loop  (batch 1 per call):        {loop:8.1f} images/s   ratio {ours / loop:6.1f}×")
    print(f"baseline naive (per-pixel JAX z-buffer):  {naive:8.2f} images/s   ratio {ours / naive:6.1f}×  (depth only)")
    return dict(ours=ours, ours1=ours1, bare1=bare1, bare_n=bare_n, small=small, loop=loop, naive=naive)


if __name__ == "__main__":
    main()
