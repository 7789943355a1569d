"""Renders at extreme poses: profile and beyond (±90° azimuth, steep elevations) and cameras placed
in the plane of a face triangle (it is seen exactly edge-on) give no RuntimeWarning (a NaN cast to
an int, an invalid add) and a finite depth wherever a triangle is drawn (+inf on the background)."""

import warnings

import jax
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


def test_exactly_singular_triangle_has_a_non_finite_row_and_a_regular_one_inverts():
    from facelift_jax.synthetic import shading

    # columns a, b, a + b: the plane of the triangle holds the camera centre exactly (det T = 0)
    pc = jnp.asarray([[1.0, 0.0, 2.0], [0.0, 1.0, 2.5], [1.0, 1.0, 4.5], [0.3, -0.2, 3.0]], jnp.float32)
    tris = jnp.asarray([[0, 1, 2], [0, 1, 3]], jnp.int32)
    attr = jnp.zeros((4, 3), jnp.float32)
    table = np.asarray(shading.triangle_table(pc, attr, attr, tris))
    assert not np.isfinite(table[0]).all()  # the signal the generator's mask keys on
    T = np.asarray(pc, np.float64)[[0, 1, 3]].T
    np.testing.assert_allclose(table[1, :9], np.linalg.inv(T).reshape(-1), rtol=1e-5, atol=1e-6)


def test_triangles_with_a_singular_table_are_never_drawn(monkeypatch):
    """Inject what an exactly edge-on triangle gives (a NaN row of T⁻¹) for the triangles that cover
    most of a frontal face: they must drop out of the id buffer (no NaN depth or colour, no
    RuntimeWarning), and every pixel that showed another triangle is unchanged."""
    from facelift_jax.synthetic import generator as G
    from facelift_jax.synthetic import shading

    gen = SyntheticGenerator()
    az = np.array([0, 20, -35, 0], np.float32)
    el = np.array([0, 10, -5, 25], np.float32)
    cameras = cam.camera_from_angles(az, el, np.zeros_like(az))
    latents = np.arange(4, dtype=np.int64)
    clean = gen.render(latents, cameras, 48)
    ids, counts = np.unique(clean.triangle_id[0][clean.triangle_id[0] >= 0], return_counts=True)
    poisoned = ids[np.argsort(-counts)[:25]]
    real_table = shading.triangle_table

    def table_with_singular_rows(pc, normals_cam, canon, triangles):
        rows = real_table(pc, normals_cam, canon, triangles)
        bad = jnp.zeros(rows.shape[0], bool).at[jnp.asarray(poisoned)].set(True)
        return jnp.where(bad[:, None], jnp.nan, rows)

    monkeypatch.setattr(shading, "triangle_table", table_with_singular_rows)
    # jax caches the trace of _geometry's Python function: jit a new function around it, so that it is
    # traced again with the patched table
    original = G._geometry.__wrapped__

    def geometry(head, params, K, R, t, image_size, max_gaze_deg):
        return original(head, params, K, R, t, image_size, max_gaze_deg)

    monkeypatch.setattr(G, "_geometry", jax.jit(geometry, static_argnames=("image_size",)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = gen.render(latents, cameras, 48)
    assert not np.isin(r.triangle_id, poisoned).any()
    drawn = r.triangle_id >= 0
    assert np.isfinite(r.depth[drawn]).all() and np.isposinf(r.depth[~drawn]).all()
    others = (clean.triangle_id >= 0) & ~np.isin(clean.triangle_id, poisoned)
    assert np.isin(clean.triangle_id[0], poisoned).sum() > 100  # the injection hits a good part of the face
    np.testing.assert_array_equal(r.triangle_id[others], clean.triangle_id[others])
    np.testing.assert_array_equal(r.depth[others], clean.depth[others])
    np.testing.assert_array_equal(r.image[others], clean.image[others])
