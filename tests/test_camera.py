import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facelift_jax import camera


def _eg3d_look_at_cam2world(h, v, lookat, radius):
    """EG3D's LookAtPoseSampler.sample + create_cam2world_matrix, re-written from its formulas."""
    theta, phi = h, math.acos(1 - 2 * v / math.pi)
    origin = np.array([radius * math.sin(phi) * math.cos(math.pi - theta),
                       radius * math.cos(phi),
                       radius * math.sin(phi) * math.sin(math.pi - theta)])
    fwd = np.asarray(lookat) - origin
    fwd /= np.linalg.norm(fwd)
    up = np.array([0.0, 1.0, 0.0])
    right = -np.cross(up, fwd)
    right /= np.linalg.norm(right)
    up2 = np.cross(fwd, right)
    up2 /= np.linalg.norm(up2)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, up2, fwd, origin
    return m


def test_frontal_projection_known_values():
    cam = camera.camera_from_angles(0.0, 0.0)
    uv = camera.project(jnp.array([[0.0, 0.0, 0.2], [0.1, 0.1, 0.2]]), cam)
    np.testing.assert_allclose(uv, [[0.5, 0.5], [0.6706, 0.3294]], atol=1e-4)
    _, depth = camera.project_with_depth(jnp.array([[0.0, 0.0, 0.2]]), cam)
    np.testing.assert_allclose(depth, [2.5], atol=1e-6)
    np.testing.assert_allclose(camera.cam2world(cam)[:3, :3], np.diag([1, -1, -1]), atol=1e-6)


@pytest.mark.parametrize("alpha", [-100.0, -45.0, 0.0, 20.0, 75.0])
@pytest.mark.parametrize("beta", [-50.0, 0.0, 30.0])
def test_cam2world_matches_eg3d_look_at_sampler(alpha, beta):
    a, b = math.radians(alpha), math.radians(beta)
    ref = _eg3d_look_at_cam2world(math.pi / 2 + a, math.pi / 2 * (1 - math.sin(b)), (0, 0, 0.2), 2.7)
    got = camera.cam2world(camera.camera_from_angles(alpha, beta))
    np.testing.assert_allclose(got, ref, atol=1e-5)
    label = camera.eg3d_label(camera.camera_from_angles(alpha, beta))
    np.testing.assert_allclose(label[:16], ref.reshape(-1), atol=1e-5)
    np.testing.assert_allclose(label[16:], [4.2647, 0, 0.5, 0, 4.2647, 0.5, 0, 0, 1], atol=1e-4)


def test_azimuth_moves_camera_toward_subjects_left_and_elevation_up():
    c = camera.camera_from_angles(30.0, 20.0).center
    assert c[0] > 0 and c[1] > 0 and c[2] > 0


def test_ide3d_label_is_opengl():
    # IDE-3D's frontal conditioning label: identity rotation, camera at z = +2.7.
    lab = np.asarray(camera.ide3d_label(camera.camera_from_angles(0.0, 0.0)))
    m = lab[:16].reshape(4, 4)
    np.testing.assert_allclose(m[:3, :3], np.eye(3), atol=1e-6)
    np.testing.assert_allclose(m[:3, 3], [0, 0, 2.7], atol=1e-6)
    # Off-frontal: the OpenGL columns are (right, up, backward) of the OpenCV camera.
    cam = camera.camera_from_angles(40.0, -10.0, 15.0)
    cv = np.asarray(camera.cam2world(cam))
    gl = np.asarray(camera.ide3d_label(cam))[:16].reshape(4, 4)
    np.testing.assert_allclose(gl[:3, 0], cv[:3, 0], atol=1e-6)
    np.testing.assert_allclose(gl[:3, 1], -cv[:3, 1], atol=1e-6)
    np.testing.assert_allclose(gl[:3, 2], -cv[:3, 2], atol=1e-6)
    np.testing.assert_allclose(gl[:3, 3], cv[:3, 3], atol=1e-6)


@pytest.mark.parametrize("roll", [-80.0, 25.0, 90.0])
def test_roll_keeps_the_principal_point_and_rotates_the_image(roll):
    base = camera.camera_from_angles(35.0, 10.0)
    rolled = camera.camera_from_angles(35.0, 10.0, roll)
    np.testing.assert_allclose(camera.project(jnp.array([[0.0, 0.0, 0.2]]), rolled), [[0.5, 0.5]], atol=1e-5)
    pts = jnp.array([[0.05, 0.1, 0.1], [-0.08, -0.03, 0.25]])
    p0 = np.asarray(camera.project(pts, base)) - 0.5
    p1 = np.asarray(camera.project(pts, rolled)) - 0.5
    g = math.radians(roll)
    rot = np.array([[math.cos(g), -math.sin(g)], [math.sin(g), math.cos(g)]])
    np.testing.assert_allclose(p1, p0 @ rot.T, atol=1e-5)


def test_translation_is_added_in_camera_space():
    dt = np.array([0.03, -0.02, 0.1])
    a = camera.camera_from_angles(20.0, 5.0, 10.0)
    b = camera.camera_from_angles(20.0, 5.0, 10.0, dt)
    np.testing.assert_allclose(b.t - a.t, dt, atol=1e-6)
    np.testing.assert_allclose(b.R, a.R, atol=1e-7)


def test_translation_to_sphere_recovers_the_camera_translation():
    for az, el, ro in [(0, 0, 0), (60, -20, 30), (-100, 45, -80)]:
        cam = camera.camera_from_angles(float(az), float(el), float(ro))
        np.testing.assert_allclose(camera.translation_to_sphere(cam.R), cam.t, atol=1e-5)


def test_batched_cameras_broadcast():
    cams = camera.camera_from_angles(jnp.array([0.0, 30.0, -30.0]), 0.0)
    assert cams.R.shape == (3, 3, 3) and cams.K.shape == (3, 3, 3) and cams.t.shape == (3, 3)
    pts = jnp.zeros((3, 5, 3))
    assert camera.project(pts, cams).shape == (3, 5, 2)
    np.testing.assert_allclose(cams[1].R, camera.camera_from_angles(30.0, 0.0).R, atol=1e-7)


def _angles_of(cams, radius=2.7, look_at=(0, 0, 0.2)):
    c = np.asarray(cams.center)
    alpha = np.degrees(np.arctan2(c[:, 0], c[:, 2]))
    beta = np.degrees(np.arcsin(c[:, 1] / radius))
    r0 = np.asarray(camera.look_at_rotation(jnp.asarray(c), look_at))
    rr = np.einsum("nij,nkj->nik", np.asarray(cams.R), r0)
    gamma = np.degrees(np.arctan2(rr[:, 1, 0], rr[:, 0, 0]))
    return alpha, beta, gamma


def test_sampler_acceptance_rate_and_marginals_match_the_density():
    cfg = camera.default_camera_config()
    cfg.translation_range = (0.0, 0.0, 0.0)
    n = 20000
    cams, consumed = camera.sample_cameras(jax.random.key(0), n, cfg, return_num_candidates=True)
    assert cams.t.shape == (n, 3)
    rate = n / consumed
    expected = (math.sqrt(math.pi) * math.erf(1.0) / 2.0) ** 3  # ∫ exp(-u²) over the cube, /8
    assert abs(rate - expected) < 0.015, (rate, expected)
    for x, rng in zip(_angles_of(cams), (110.0, 60.0, 90.0)):
        assert np.all(np.abs(x) <= rng + 1e-3)
        edges = np.linspace(-rng, rng, 11)
        hist = np.histogram(x, edges)[0] / n
        # Analytic bin mass of the marginal density ∝ exp(-(x/rng)²) on [-rng, rng].
        cdf = [math.erf(e / rng) for e in edges]
        p = np.diff(cdf) / (cdf[-1] - cdf[0])
        np.testing.assert_allclose(hist, p, atol=0.012)


def test_sampler_box_constraint_and_exact_count():
    cfg = camera.default_camera_config()
    rng = np.random.default_rng(1)
    # A face-sized point cloud about the look-at point.
    pts = rng.uniform([-0.18, -0.2, 0.05], [0.18, 0.15, 0.3], size=(98, 3)).astype(np.float32)
    cams = camera.sample_cameras(jax.random.key(3), 257, cfg, landmarks3d=pts)
    assert cams.t.shape == (257, 3)
    # Independent check with NumPy: K (R p + t), divide by w.
    K, R, t = map(np.asarray, (cams.K, cams.R, cams.t))
    pc = np.einsum("nij,pj->npi", R, pts) + t[:, None]
    uvw = np.einsum("nij,npj->npi", K, pc)
    uv = uvw[..., :2] / uvw[..., 2:]
    assert np.all(uv >= 0) and np.all(uv <= 1)
    size = np.minimum(np.ptp(uv[..., 0], 1), np.ptp(uv[..., 1], 1))
    assert np.all(size > 0.5)
    # Same key, same cameras.
    again = camera.sample_cameras(jax.random.key(3), 257, cfg, landmarks3d=pts)
    np.testing.assert_array_equal(again.R, cams.R)


def test_sampler_rejects_impossible_configs_clearly():
    cfg = camera.default_camera_config()
    cfg.max_rounds = 2
    far = np.full((98, 3), 10.0, np.float32)  # never inside the image
    with pytest.raises(RuntimeError, match="no accepted candidate"):
        camera.sample_cameras(jax.random.key(0), 4, cfg, landmarks3d=far)
    with pytest.raises(ValueError, match="landmarks3d"):
        camera.sample_cameras(jax.random.key(0), 4, cfg, landmarks3d=np.zeros((5, 98, 3)))


# --------------------------------------------------------------------------- one focal per run (issue 17)


class _OwnFocalGenerator:
    """A stand-in for a generator whose images obey a K of its own (IDE-3D: 18° rays on a 64-grid)."""

    def __init__(self, focal):
        self.intrinsics = type("Intrinsics", (), {"focal": focal, "source": "stand-in fov"})()


IDE3D_FOCAL = 63 / 64 / (2 * math.tan(math.radians(9.0)))  # 3.1076, written out without camera.py


def _pinhole(point, R, t, f):
    """Independent NumPy pinhole: world point (3,) → normalized image xy, principal point ½."""
    p = np.asarray(R, np.float64) @ np.asarray(point, np.float64) + np.asarray(t, np.float64)
    return f * p[:2] / p[2] + 0.5


def test_generator_focal_reaches_every_camera_and_projection():
    from configs import default
    from facelift_jax import sources, views
    from facelift_jax.input_pipeline import pool

    assert camera.focal_from_fov(18.0, 64) == pytest.approx(IDE3D_FOCAL, rel=1e-12)
    config = default.get_config()
    assert config.camera.focal == camera.FOCAL and config.model.focal == camera.FOCAL
    gen = _OwnFocalGenerator(IDE3D_FOCAL)
    # Default config vs a generator with its own focal: refused, naming the flag and the value.
    with pytest.raises(ValueError, match=r"--config\.camera\.focal=3\.1075"):
        sources.generator_focal(gen, config)
    config.camera.focal = IDE3D_FOCAL
    assert config.model.focal == IDE3D_FOCAL  # the model's camera follows (a reference)
    f = sources.generator_focal(gen, config)
    assert f == IDE3D_FOCAL
    point = np.array([0.14, -0.1, 0.1])
    lifting = views.lifting_cameras(radius=config.camera.radius, look_at=tuple(config.camera.look_at), focal=f)
    sampled = camera.sample_cameras(jax.random.key(0), 6, config.camera)
    for cams in (lifting, sampled):
        K = np.asarray(cams.K)
        assert np.allclose(K[:, 0, 0], IDE3D_FOCAL) and np.allclose(K[:, 1, 1], IDE3D_FOCAL)
        assert np.allclose(K[:, :2, 2], 0.5)
        uv = np.asarray(camera.project(jnp.asarray(point[None], jnp.float32), cams))[:, 0]
        R, t = np.asarray(cams.R), np.asarray(cams.t)
        want = np.stack([_pinhole(point, R[i], t[i], IDE3D_FOCAL) for i in range(len(R))])
        assert np.abs(uv - want).max() < 1e-5
        assert np.abs(pool.project(point[None], R, t, focal=f)[:, 0] - want).max() < 1e-6
    # A generator that follows the cameras' K (the synthetic one) takes any focal; so does fov="label".
    assert sources.generator_focal(object(), config) == IDE3D_FOCAL
    assert sources.generator_focal(_OwnFocalGenerator(None), config) == IDE3D_FOCAL


def test_default_focal_keeps_the_synthetic_numbers():
    from configs import default
    from facelift_jax import sources, views

    config = default.get_config()
    assert sources.generator_focal(sources.make_generator(config), config) == camera.FOCAL
    a = camera.sample_cameras(jax.random.key(3), 4, config.camera)
    legacy = config.camera.to_dict()
    del legacy["focal"]  # a config written before the field: camera.FOCAL
    import ml_collections

    b = camera.sample_cameras(jax.random.key(3), 4, ml_collections.ConfigDict(legacy))
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert np.array_equal(np.asarray(views.lifting_cameras().K), np.asarray(camera.camera_from_angles(0.0, 0.0).K)[None]
                          .repeat(len(views.LIFTING_VIEWS), 0))
