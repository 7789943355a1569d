"""Renders at extreme poses: profile and beyond (±90° azimuth, steep elevations) and cameras placed
in the plane of a face triangle (it is seen exactly edge-on) give no RuntimeWarning (a NaN cast to
an int, an invalid add) and a finite depth wherever a triangle is drawn (+inf on the background)."""

import warnings

import jax.numpy as jnp
import numpy as np

from facelift_jax import camera as cam
from facelift_jax.synthetic import SyntheticGenerator


def _edge_on_cameras(gen: SyntheticGenerator, count: int) -> cam.Camera:
    """Cameras 2.7 units away in the plane of the ``count`` largest forward-facing triangles of
    latent 0, looking at each triangle's centroid: every one of those triangles is seen edge-on."""
    V = np.asarray(gen.vertices3d(np.zeros(1, np.int64)))[0].astype(np.float64)
    T = np.asarray(gen.triangles)
    a, b, c = V[T[:, 0]], V[T[:, 1]], V[T[:, 2]]
    n = np.cross(b - a, c - a)
    area = np.linalg.norm(n, axis=-1)
    n = n / area[:, None]
    centroid = (a + b + c) / 3
    chosen = np.argsort(-area * (n[:, 2] > 0.3))[:count]
    towards_head = np.array(cam.DEFAULT_LOOK_AT) - centroid[chosen]
    in_plane = towards_head - n[chosen] * np.einsum("fi,fi->f", towards_head, n[chosen])[:, None]
    centers = centroid[chosen] - 2.7 * in_plane / np.linalg.norm(in_plane, axis=-1, keepdims=True)
    centers = jnp.asarray(centers, jnp.float32)
    R = cam.look_at_rotation(centers, jnp.asarray(centroid[chosen], jnp.float32))
    return cam.Camera(K=jnp.broadcast_to(cam.intrinsics(), (count, 3, 3)), R=R,
                      t=-jnp.einsum("bij,bj->bi", R, centers))


def test_extreme_poses_render_without_warnings_and_with_finite_depth():
    gen = SyntheticGenerator()
    az = np.array([-90, 90, -89.999, 89.999, -120, 120, 180, 0, 90, -90, 45, 0], np.float32)
    el = np.array([0, 0, 0, 0, 0, 0, 0, 89, 60, -60, -89, -89.999], np.float32)
    poses = cam.camera_from_angles(az, el, np.zeros_like(az))
    edge_on = _edge_on_cameras(gen, 12)
    for cameras in (poses, edge_on):
        latents = np.arange(cameras.batch_shape[0], dtype=np.int64) % 4
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any RuntimeWarning of the renderer fails the test
            r = gen.render(latents, cameras, 48)
        drawn = r.triangle_id >= 0
        assert drawn.any(axis=(1, 2)).all()  # every image shows some of the head
        assert np.isfinite(r.depth[drawn]).all() and (r.depth[drawn] > 0).all()
        assert np.isposinf(r.depth[~drawn]).all()
        assert r.image.dtype == np.uint8 and np.isfinite(r.landmarks2d).all()
