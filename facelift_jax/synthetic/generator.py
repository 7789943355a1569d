"""SyntheticGenerator: the embedded 3D-aware face source (same interface as the IDE-3D bridge).

A latent (int seed) → FaceParams → deformed head vertices (world = EG3D canonical space) → for any
camera of camera.py: RGB image, depth, semantic map, exact 2D/3D landmarks and their visibility.

Pipeline (per batch): JAX computes the geometry (deformed vertices, camera-space triangles,
landmarks, per-triangle shading tables; jitted, batch padded to a power of two); OpenCV fills
triangle-id buffers in painter's order (raster.py) — head and face in one layer, neck and ears in
another, merged by an exact per-pixel z-test —; NumPy intersects each pixel's ray with its triangle
(exact depth and barycentrics), interpolates vertex attributes and shades (shading.py), one image
at a time (its per-pixel arrays fit the CPU cache), the images spread over threads. Landmark
visibility compares each landmark's depth with the depth of the visible surface along the
landmark's own ray (not the nearest pixel centre), within ``visibility_tolerance``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from functools import partial

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from facelift_jax import camera as cam
from facelift_jax.synthetic import mesh, raster, shading
from facelift_jax.synthetic.classes import SEMANTIC_CLASSES
from facelift_jax.batching import pad_batch
from facelift_jax.synthetic.params import FaceParams, bucket, params_from_latents



def default_config() -> ml_collections.ConfigDict:
    """The ``config.synthetic`` section (generator + detector)."""
    return ml_collections.ConfigDict(dict(
        base_seed=0,               # folded into every latent's key: a different population of faces
        identity_scale=1.0,        # std of the identity deformations (1 = the designed range)
        expression_scale=1.0,
        visibility_tolerance=0.01,  # world units (≈ 4 mm): landmark depth vs visible surface depth
        max_gaze_deg=28.0,          # the eyes turn toward the camera by at most this (GAN gaze bias)
        threads=0,                  # rasterization/shading threads over the batch (0 = all CPUs)
        geometry_block=128,         # images per jitted geometry call (bounds the per-triangle tables)
        detector=ml_collections.ConfigDict(dict(
            # per-region std of visible points, in units of sqrt(landmark box area) (human label noise);
            # the first number is along the region's main direction, the second across it
            sigma=dict(contours=(0.018, 0.008), brows=(0.012, 0.006), nose=(0.006, 0.006),
                       eyes=(0.004, 0.003), mouth=(0.006, 0.005), pupils=(0.004, 0.004)),
            occluded_sigma=0.02,       # extra noise of guessed (self-occluded, non-contour) points
            brow_offset=0.006,         # world units: 2D labels sit on the apparent brow boundary
            march=True,                # self-occluded contour points → the visible silhouette
            failure_rate=0.35,         # fraction of detections that fail at the most extreme yaw
            failure_yaw=75.0,          # yaw (deg) where failures start to appear
            failure_sigma=0.12,        # size of a failure's error (normalized image units)
        )),
    ))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RenderOutput:
    """What ``SyntheticGenerator.render`` returns (NumPy arrays, batch B, image H×W).

    image (B,H,W,3) uint8 RGB; depth (B,H,W) float32 camera z (+inf on background);
    semantic (B,H,W) uint8 indices into SEMANTIC_CLASSES; landmarks3d (B,98,3) world;
    landmarks2d (B,98,2) exact projection, normalized image coordinates; visible (B,98) bool;
    cameras: camera.Camera with batch (B,).
    Extras for the simulated detector (world): contour_candidates3d (B,33,M,3) surface polylines
    from each contour landmark inward (landmark marching) and contour_candidates_visible (B,33,M)
    their visibility; gaze_pupils3d (B,2,3) where the rendered
    pupils are (the eyes follow the camera); triangle_id (B,H,W) int32 (−1 = background).
    """

    image: np.ndarray
    depth: np.ndarray
    semantic: np.ndarray
    landmarks3d: np.ndarray
    landmarks2d: np.ndarray
    visible: np.ndarray
    cameras: cam.Camera
    contour_candidates3d: np.ndarray | None = None
    contour_candidates_visible: np.ndarray | None = None
    gaze_pupils3d: np.ndarray | None = None
    triangle_id: np.ndarray | None = None

    def __getitem__(self, index) -> "RenderOutput":
        return jax.tree_util.tree_map(lambda x: x[index], self)


def _vertex_normals(v, triangles):
    """(V,3) area-weighted unit vertex normals of a mesh with outward counter-clockwise triangles."""
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    fn = jnp.cross(b - a, c - a)
    n = jnp.zeros_like(v)
    for k in range(3):
        n = n.at[triangles[:, k]].add(fn)
    return n / jnp.maximum(jnp.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=None)
def head_arrays() -> dict:
    """The canonical head's arrays as JAX arrays, passed to jitted functions as ARGUMENTS (as
    closure constants XLA would spend seconds folding them at every compilation)."""
    h = mesh.canonical_head()
    return dict(
        vertices=jnp.asarray(h.vertices), bases_identity=jnp.asarray(h.bases_identity),
        bases_expression=jnp.asarray(h.bases_expression), triangles=jnp.asarray(h.triangles),
        landmark_tri=jnp.asarray(h.landmark_tri), landmark_bary=jnp.asarray(h.landmark_bary),
        march_tri=jnp.asarray(h.march_tri), march_bary=jnp.asarray(h.march_bary),
        canon=jnp.asarray(h.vertices / mesh.SCALE + mesh.ORIGIN, jnp.float32))


def deform(identity, expression, head: dict | None = None):
    """One face's world vertices (V,3) from identity (Ki,) and expression (Ke,) coefficients:
    the canonical head plus linear displacement fields (mesh.IDENTITY_NAMES, EXPRESSION_NAMES)."""
    head = head_arrays() if head is None else head
    # the eyes rest open wider than the canonical mesh (a negative blink of eye_opening); a blink
    # of 1 still closes them: blink' = blink·(1 + opening) − opening
    opening = identity[_EYE_OPENING]
    expression = expression.at[_BLINKS].set(expression[_BLINKS] * (1.0 + opening) - opening)
    v = head["vertices"] + jnp.einsum("k,kvi->vi", identity, head["bases_identity"])
    return v + jnp.einsum("k,kvi->vi", expression, head["bases_expression"])


_EYE_OPENING = mesh.IDENTITY_NAMES.index("eye_opening")
_BLINKS = np.array([mesh.EXPRESSION_NAMES.index("blink_right"), mesh.EXPRESSION_NAMES.index("blink_left")])


def gaze_pupils(landmarks3d, eye_normals, camera_center, eye_radius, max_gaze_deg):
    """Where the rendered pupils are (2,3) world, with the eyeball centres (2,3) and gaze (2,3).

    Each eyeball sits ``eye_radius`` behind its rest pupil (landmarks 96/97, looking along +z) and
    turns toward the camera centre (3,) by at most ``max_gaze_deg``; the rendered pupil is where
    that gaze ray meets the plane of the eye opening (through the rest pupil, normal eye_normals).
    """
    rest = landmarks3d[jnp.array([96, 97])]
    forward = jnp.array([0.0, 0.0, 1.0])
    centers = rest - eye_radius * forward
    u = camera_center - centers
    u = u / jnp.linalg.norm(u, axis=-1, keepdims=True)
    cos_t = jnp.clip(u @ forward, -1.0, 1.0)
    side = u - cos_t[:, None] * forward
    side = side / jnp.maximum(jnp.linalg.norm(side, axis=-1, keepdims=True), 1e-9)
    ang = jnp.minimum(jnp.arccos(cos_t), jnp.deg2rad(max_gaze_deg))[:, None]
    d = jnp.cos(ang) * forward + jnp.sin(ang) * side
    s = eye_radius * (eye_normals @ forward) / jnp.sum(d * eye_normals, -1)
    return centers + s[:, None] * d, centers, d


@partial(jax.jit, static_argnames=("image_size",))
def _geometry(head, params: FaceParams, K, R, t, image_size: int, max_gaze_deg: float):
    """Batched geometry before rasterization: vertices, screen triangles, landmarks, shading tables."""
    tris = head["triangles"]
    verts = jax.vmap(deform, in_axes=(0, 0, None))(params.identity, params.expression, head)  # (B,V,3) world
    camera = cam.Camera(K=K, R=R, t=t)
    pc = cam.to_camera_space(verts, camera)                                            # (B,V,3)
    uv = jnp.einsum("bij,bvj->bvi", K, pc)
    screen = uv[..., :2] / uv[..., 2:3] * image_size
    a, b, c = (pc[:, tris[:, k]] for k in range(3))
    n = jnp.cross(b - a, c - a)
    front = (jnp.einsum("bfi,bfi->bf", n, a + b + c) < 0) & (jnp.min(jnp.stack([a, b, c])[..., 2], 0) > 1e-3)
    lm = mesh.surface_points(verts, head["landmark_tri"], head["landmark_bary"], tris)
    cand = mesh.surface_points(verts, head["march_tri"], head["march_bary"], tris)
    eye_radius = mesh.canonical_head().eye_radius
    pa, pb, pcn = (verts[:, tris[head["landmark_tri"][96:], k]] for k in range(3))
    eye_n = jnp.cross(pb - pa, pcn - pa)
    eye_n = eye_n / jnp.linalg.norm(eye_n, axis=-1, keepdims=True)                     # (B,2,3)
    gaze, eye_c, eye_d = jax.vmap(gaze_pupils, in_axes=(0, 0, 0, None, None))(lm, eye_n, camera.center, eye_radius,
                                                                            max_gaze_deg)
    normals = jnp.einsum("bij,bvj->bvi", R, jax.vmap(_vertex_normals, in_axes=(0, None))(verts, tris))
    table = jax.vmap(shading.triangle_table, in_axes=(0, 0, None, None))(pc, normals, head["canon"], tris)
    # a triangle seen (almost exactly) edge-on has a singular T⁻¹ in float32 (inf/NaN entries) and may
    # still pass the front-facing test by rounding; OpenCV fills a line of pixels for it, which would
    # get NaN depth and colour. It covers no area: leave it out of the id buffer, so those pixels show
    # the surface behind it (or the background)
    front = front & jnp.all(jnp.isfinite(table), -1)
    return dict(verts=verts, screen=screen[:, tris], key=(a + b + c)[..., 2], front=front, landmarks=lm,
                landmarks_cam=cam.to_camera_space(lm, camera), landmarks2d=cam.project(lm, camera),
                candidates=cand, gaze=gaze, table=table,
                eyes_cam=cam.to_camera_space(eye_c, camera), gaze_cam=jnp.einsum("bij,bej->bei", R, eye_d),
                light_cam=jnp.einsum("bij,bj->bi", R, params.light_dir))


def _batched_cameras(cameras: cam.Camera, batch: int) -> cam.Camera:
    if not isinstance(cameras, cam.Camera):
        raise TypeError(f"cameras must be a camera.Camera, got {type(cameras).__name__}")
    shape = cameras.batch_shape
    if shape == ():
        cameras = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (batch,) + x.shape), cameras)
    elif shape != (batch,):
        raise ValueError(f"cameras must have batch shape () or ({batch},) to match the latents, got {shape}")
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), cameras)


class SyntheticGenerator:
    """The embedded face source. ``config``: the ``config.synthetic`` section (optional)."""

    semantic_classes = SEMANTIC_CLASSES

    def __init__(self, config: ml_collections.ConfigDict | None = None):
        base = default_config()
        if config is not None:
            base.update(config.to_dict() if hasattr(config, "to_dict") else dict(config))
        self.config = base
        self.head = mesh.canonical_head()
        self._second = np.isin(self.head.part, (mesh.PART_NECK, mesh.PART_EAR))  # the z-tested layer

    # -- parameters and geometry (no rendering) -----------------------------------------------
    def params(self, latents) -> FaceParams:
        """(B,) int latents → batched FaceParams."""
        c = self.config
        return params_from_latents(latents, c.base_seed, c.identity_scale, c.expression_scale)

    def vertices3d(self, latents) -> np.ndarray:
        """(B,) int latents → (B,V,3) float32 deformed head vertices, world."""
        return self.vertices_from_params(self.params(latents))

    def landmarks3d(self, latents) -> np.ndarray:
        """(B,) int latents → (B,98,3) float32 ground-truth WFLW landmarks, world."""
        return self.landmarks_from_params(self.params(latents))

    def vertices_from_params(self, params: FaceParams) -> np.ndarray:
        """Batched FaceParams → (B,V,3) float32 world vertices."""
        n = params.identity.shape[0]
        return np.asarray(_deform_batch(head_arrays(), *pad_batch((params.identity, params.expression), bucket(n))))[:n]

    def landmarks_from_params(self, params: FaceParams) -> np.ndarray:
        """Batched FaceParams → (B,98,3) float32 world landmarks."""
        n = params.identity.shape[0]
        return np.asarray(_landmarks_batch(head_arrays(), *pad_batch((params.identity, params.expression), bucket(n))))[:n]

    @property
    def triangles(self) -> np.ndarray:
        """(F,3) int32 triangles of ``vertices3d`` (outward counter-clockwise)."""
        return self.head.triangles

    # -- rendering ------------------------------------------------------------------------------
    def render(self, latents, cameras: cam.Camera, image_size: int = 224) -> RenderOutput:
        """Render (B,) latents, one camera each (batch (B,) or a single camera), at image_size²."""
        return self.render_params(self.params(latents), cameras, image_size)

    def render_params(self, params: FaceParams, cameras: cam.Camera, image_size: int = 224) -> RenderOutput:
        """Render explicit FaceParams (batch B) — used by videos, where expressions change per frame."""
        if int(image_size) < 8:
            raise ValueError(f"image_size must be ≥ 8, got {image_size}")
        size = int(image_size)
        batch = params.identity.shape[0]
        cameras = _batched_cameras(cameras, batch)
        # geometry in jitted blocks (bounded memory); then each image is rasterized and shaded on
        # its own (its per-pixel arrays stay in the CPU cache), the images spread over threads
        # and written straight into the batch outputs. NumPy and OpenCV release the GIL only inside
        # each call, and the per-triangle fill loop holds it: on the 2-core CPU, 2 threads render no
        # faster than 1 (bench_render.py prints both)
        step = int(self.config.geometry_block)
        g = [self._geometry_block(params[i:i + step], cameras[i:i + step], size) for i in range(0, batch, step)]
        g = {k: np.concatenate([x[k] for x in g]) for k in g[0]}
        # (B,27,F): each table column contiguous per image, for one gather per pixel
        g["table_t"] = np.ascontiguousarray(np.swapaxes(g.pop("table"), 1, 2))
        g["candidates_cam"] = (np.einsum("bij,bcmj->bcmi", g["R"], g["candidates"]) + g["t"][:, None, None])
        p = jax.device_get(params)
        n_cand = g["candidates"].shape[1:3]
        out = dict(image=np.empty((batch, size, size, 3), np.uint8), depth=np.empty((batch, size, size), np.float32),
                   semantic=np.empty((batch, size, size), np.uint8), ids=np.empty((batch, size, size), np.int32),
                   visible=np.empty((batch, 98), bool), candidates_visible=np.empty((batch,) + n_cand, bool))
        threads = min(int(self.config.threads) or len(os.sched_getaffinity(0)), batch)
        if threads == 1:
            for i in range(batch):
                self._raster_and_shade(g, p, i, size, out)
        else:
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda i: self._raster_and_shade(g, p, i, size, out), range(batch)))
        return RenderOutput(
            image=out["image"], depth=out["depth"], semantic=out["semantic"],
            landmarks3d=g["landmarks"].astype(np.float32), landmarks2d=g["landmarks2d"].astype(np.float32),
            visible=out["visible"], cameras=cameras, contour_candidates3d=g["candidates"],
            contour_candidates_visible=out["candidates_visible"], gaze_pupils3d=g["gaze"], triangle_id=out["ids"])

    def _geometry_block(self, params: FaceParams, cameras: cam.Camera, size: int) -> dict:
        """Geometry of up to ``geometry_block`` images (NumPy dict), batch padded to a power of two."""
        b = params.identity.shape[0]
        n = bucket(b)
        g = _geometry(head_arrays(), pad_batch(params, n), *pad_batch((cameras.K, cameras.R, cameras.t), n),
                      size, float(self.config.max_gaze_deg))
        g = {k: v[:b] for k, v in jax.device_get(g).items()}
        g["K"], g["R"], g["t"] = (np.asarray(x) for x in (cameras.K, cameras.R, cameras.t))
        return g

    def _raster_and_shade(self, g: dict, params: FaceParams, i: int, size: int, out: dict) -> None:
        """Rasterize and shade image ``i`` of a batch whose geometry ``g`` is computed, into ``out``."""
        K, table_t = g["K"][i], g["table_t"][i]
        pts = raster.fixed_point(g["screen"][i])
        # the neck and the ears interpenetrate the head: rasterize them in a second layer, z-test per pixel
        layers = []
        for second in (False, True):
            ids = np.full((size, size), -1, np.int32)
            order = raster.draw_order(g["key"][i], g["front"][i] & (self._second == second))
            layers.append(raster.fill_ids(ids, pts, order))
        ids = out["ids"][i]
        ids[:] = shading.merge_nearest(layers, table_t, K)
        face = jax.tree_util.tree_map(lambda x: x[i], params)
        shading.shade(ids, table_t, K, face, g["eyes_cam"][i], g["gaze_cam"][i], g["light_cam"][i], self.head.part,
                      out["image"][i], out["depth"][i], out["semantic"][i])
        out["visible"][i] = self._visible(ids, table_t, K, g["landmarks_cam"][i])
        cand = g["candidates_cam"][i]
        out["candidates_visible"][i] = self._visible(ids, table_t, K, cand.reshape(-1, 3)).reshape(cand.shape[:-1])

    def _visible(self, ids, table_t, K, points_cam):
        """(N,) bool: points (N,3) camera space are in the image and not behind the visible surface."""
        surface, inside = shading.surface_depth_along(ids, table_t, K, points_cam)
        # a point whose ray meets no triangle sits on the silhouette edge: it is seen
        return inside & (~np.isfinite(surface) | (points_cam[..., 2] <= surface + self.config.visibility_tolerance))


@jax.jit
def _deform_batch(head, identity, expression):
    return jax.vmap(deform, in_axes=(0, 0, None))(identity, expression, head)


@jax.jit
def _landmarks_batch(head, identity, expression):
    v = jax.vmap(deform, in_axes=(0, 0, None))(identity, expression, head)
    return mesh.surface_points(v, head["landmark_tri"], head["landmark_bary"], head["triangles"])
