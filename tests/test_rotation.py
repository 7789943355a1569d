import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from facelift_jax import camera, rotation


def _axis_angle(axis, theta):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(theta) * k + (1 - math.cos(theta)) * k @ k  # Rodrigues


def test_6d_gives_proper_rotations():
    x = jax.random.normal(jax.random.key(0), (64, 6))
    R = np.asarray(rotation.rotation_from_6d(x))
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-5)
    # First column is the normalized first vector (6DRepNet's Gram–Schmidt order).
    a1 = np.asarray(x[:, :3])
    np.testing.assert_allclose(R[:, :, 0], a1 / np.linalg.norm(a1, axis=1, keepdims=True), atol=1e-5)


def test_6d_round_trip_of_a_known_rotation():
    R = _axis_angle([1, 2, 3], 0.7)
    np.testing.assert_allclose(rotation.rotation_from_6d(rotation.rotation_to_6d(jnp.asarray(R))), R, atol=1e-5)


@pytest.mark.parametrize("theta", [0.0, 1e-4, 0.3, 1.5, 3.0, math.pi - 1e-4, math.pi])
def test_geodesic_distance_of_known_rotation(theta):
    R = jnp.asarray(_axis_angle([0.3, -1, 0.5], theta), jnp.float32)
    d = rotation.geodesic_distance(R, jnp.eye(3))
    assert abs(float(d) - theta) < 2e-3 if theta > 3.1 else abs(float(d) - theta) < 1e-5


def test_geodesic_gradient_matches_finite_differences_and_is_finite_at_ends():
    R0 = jnp.asarray(_axis_angle([1, 1, 0], 0.4), jnp.float32)

    def f(w):  # distance between exp(w) R0 and R0 rotated by a fixed extra rotation
        return rotation.geodesic_distance(rotation.rotation_from_6d(w), R0)

    w = jnp.array([0.9, 0.2, -0.1, 0.1, 1.1, 0.3], jnp.float32)
    g = jax.grad(f)(w)
    w64 = np.asarray(w, np.float64)
    eps = 1e-3
    fd = []
    for i in range(6):
        e = np.zeros(6)
        e[i] = eps
        fd.append((float(f(jnp.asarray(w64 + e, jnp.float32))) - float(f(jnp.asarray(w64 - e, jnp.float32)))) / (2 * eps))
    np.testing.assert_allclose(g, fd, atol=2e-3)
    for theta in (0.0, math.pi):
        R = jnp.asarray(_axis_angle([0, 0, 1], theta), jnp.float32)
        gr = jax.grad(lambda r: rotation.geodesic_distance(r, jnp.eye(3)))(R)
        assert np.all(np.isfinite(gr))


def test_euler_angles_of_cameras_looking_at_the_origin():
    for a, b, g in [(30.0, 20.0, 10.0), (-70.0, -35.0, 60.0), (0.0, 0.0, 0.0)]:
        cam = camera.camera_from_angles(a, b, g, look_at=(0.0, 0.0, 0.0))
        np.testing.assert_allclose(rotation.euler_degrees(cam.R), [a, b, g], atol=1e-4)


def test_euler_round_trip():
    rng = np.random.default_rng(0)
    ang = rng.uniform([-3, -1.5, -3], [3, 1.5, 3], size=(50, 3)).astype(np.float32)
    R = rotation.rotation_from_euler(*ang.T)
    back = np.stack(rotation.euler_from_rotation(R), -1)
    np.testing.assert_allclose(back, ang, atol=1e-4)
