"""facelift_jax.temporal against independent math: the Riccati steady state of the Kalman filter
(scipy's DARE solver), a known constant-velocity rotation (scipy's Rotation), the One Euro formula
of Casiez et al. (2012) computed by hand, and the scan == step-loop identity of the streaming API."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from facelift_jax import camera as camera_lib
from facelift_jax import temporal

scipy_linalg = pytest.importorskip("scipy.linalg")
Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

FPS = 25.0
DT = 1.0 / FPS


def _random_spd(rng, n, lo, hi):
    """(n, 2, 2) covariances with eigenvalues in [lo, hi] and random orientations."""
    angle = rng.uniform(0, np.pi, n)
    U = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    ev = rng.uniform(lo, hi, (n, 2))
    return np.einsum("nij,nj,nkj->nik", U, ev, U)


def _riccati_gain(d, R, accel):
    """Steady-state prior covariance X, gain K and posterior covariance of the constant-velocity
    model (state [p, v] ⊗ I_d) from scipy's discrete algebraic Riccati solver (the filtering DARE
    is the control one with A = Fᵀ, B = Hᵀ)."""
    F = np.kron(np.array([[1.0, DT], [0.0, 1.0]]), np.eye(d))
    Q = np.kron(np.array([[DT ** 4 / 4, DT ** 3 / 2], [DT ** 3 / 2, DT ** 2]]), np.eye(d)) * accel ** 2
    H = np.eye(d, 2 * d)
    X = scipy_linalg.solve_discrete_are(F.T, H.T, Q, R)
    K = X @ H.T @ np.linalg.inv(H @ X @ H.T + R)
    return X, K, (np.eye(2 * d) - K @ H) @ X


def test_kalman_reaches_riccati_steady_state_gain():
    """A constant signal measured with known heteroscedastic noise: after convergence every
    landmark's posterior covariance and gain equal the DARE solution for ITS covariance (the
    uncertain points get the small gains), and the estimate's actual error matches the covariance."""
    rng = np.random.default_rng(0)
    n, frames, accel = 98, 300, 4.0
    cov = _random_spd(rng, n, 0.2, 9.0)
    truth = rng.uniform(0, 200, (n, 2))
    chol = np.linalg.cholesky(cov)
    z = truth + np.einsum("nij,tnj->tni", chol, rng.normal(size=(frames, n, 2)))
    config = temporal.FilterConfig(kind="kalman", fps=FPS, accel=accel)
    obs = temporal.observation(z, np.broadcast_to(cov, (frames, n, 2, 2)), scale2d=1.0, scale3d=1.0)
    state, out = temporal.run(config, temporal.init(n), obs)

    # the impulse response of a linear filter is its gain: a unit bump in frame k moves frame k's
    # estimate by K[:2] e (same noise otherwise)
    k, e = frames - 1, np.array([1.0, 0.0])
    z_bumped = z.copy()
    z_bumped[k] += e
    bumped = temporal.observation(z_bumped, np.broadcast_to(cov, (frames, n, 2, 2)), scale2d=1.0, scale3d=1.0)
    _, out_b = temporal.run(config, temporal.init(n), bumped)
    moved = np.asarray(out_b["landmarks2d"][k] - out["landmarks2d"][k])
    for i in range(0, n, 7):
        _, K, post = _riccati_gain(2, cov[i], accel)
        np.testing.assert_allclose(np.asarray(state.c2[i]), post, rtol=2e-3, atol=1e-6)
        np.testing.assert_allclose(moved[i], K[:2] @ e, rtol=2e-3, atol=1e-5)
    # gain ordering: a noisier landmark follows its measurement less
    gains = np.array([_riccati_gain(2, cov[i], accel)[1][0, 0] for i in range(n)])
    assert np.corrcoef(gains, cov[:, 0, 0])[0, 1] < -0.5
    # the filter is calibrated: on a trajectory drawn from its own model (white acceleration of std
    # `accel`), the converged estimate's actual error has the posterior covariance (Monte Carlo)
    acc = accel * rng.normal(size=(frames, n, 2))
    vel = np.cumsum(acc * DT, 0)
    moving = truth + np.cumsum(vel * DT, 0) - 0.5 * np.cumsum(acc, 0) * DT ** 2
    z_mov = moving + np.einsum("nij,tnj->tni", chol, rng.normal(size=(frames, n, 2)))
    _, out_m = temporal.run(config, temporal.init(n), temporal.observation(
        z_mov, np.broadcast_to(cov, (frames, n, 2, 2)), scale2d=1.0, scale3d=1.0))
    err = np.asarray(out_m["landmarks2d"][100:]) - moving[100:]                # (T', n, 2)
    whitened = np.einsum("nij,tnj->tni", np.linalg.inv(np.linalg.cholesky(np.asarray(state.c2[:, :2, :2]))), err)
    assert abs(np.mean(whitened ** 2) - 1.0) < 0.1, np.mean(whitened ** 2)
    # on the constant signal it is conservative (no actual acceleration): error variance below P
    err_c = np.asarray(out["landmarks2d"][100:]) - truth
    assert np.mean(np.einsum("nij,tnj->tni", np.linalg.inv(np.linalg.cholesky(np.asarray(state.c2[:, :2, :2]))),
                             err_c) ** 2) < 0.9


def test_kalman_3d_steady_state_scalar_case_by_hand():
    """3D points with isotropic noise: the steady state is the DARE's in d = 3, and each axis is the
    scalar α-β filter whose steady position variance is α·σ² with Kalata's closed form of α."""
    n, frames, accel, var = 4, 400, 2.0, 0.25
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(n, 3))
    z = truth + np.sqrt(var) * rng.normal(size=(frames, n, 3))
    obs = temporal.observation(np.zeros((frames, n, 2)), np.broadcast_to(np.eye(2), (frames, n, 2, 2)),
                               landmarks3d=z, variance3d=np.full((frames, n), var), scale2d=1.0, scale3d=1.0)
    state, _ = temporal.run(temporal.FilterConfig(fps=FPS, accel=accel), temporal.init(n), obs)
    _, _, post = _riccati_gain(3, var * np.eye(3), accel)
    np.testing.assert_allclose(np.asarray(state.c3[0]), post, rtol=2e-3, atol=1e-7)
    # Kalata (1984), tracking index λ = σ_a dt² / σ (piecewise-constant white acceleration):
    # α = −(λ² + 8λ − (λ + 4)√(λ² + 8λ)) / 8
    lam = accel * DT ** 2 / math.sqrt(var)
    alpha = -(lam ** 2 + 8 * lam - (lam + 4) * math.sqrt(lam ** 2 + 8 * lam)) / 8
    np.testing.assert_allclose(float(state.c3[0, 0, 0]), alpha * var, rtol=2e-3)


def test_lifted_3d_variance_is_the_back_projection_scale():
    """A world displacement ε along the camera x axis moves the projection by ε·f·side/z pixels
    (finite difference through camera.project); a 2D variance v lifts to v·(ε/shift)²."""
    R = np.asarray(Rotation.from_euler("yxz", [20, -10, 5], degrees=True).as_matrix(), np.float32)
    t = np.array([0.01, -0.02, 2.7], np.float32)
    X = np.array([[0.05, 0.02, 0.1]], np.float32)
    side, eps = 300.0, 1e-3
    cam_x = R.T[:, 0]                                   # world direction of the camera's x axis
    proj = lambda p: np.asarray(camera_lib.project(jnp.asarray(p), camera_lib.Camera(  # noqa: E731
        K=camera_lib.intrinsics(), R=jnp.asarray(R), t=jnp.asarray(t))))
    shift = np.linalg.norm(proj(X + eps * cam_x) - proj(X)) * side
    cov = np.array([[[4.0, 1.0], [1.0, 2.0]]])
    var = temporal.lift_variance_3d(jnp.asarray(cov), jnp.asarray(X), jnp.asarray(R), jnp.asarray(t), side)
    np.testing.assert_allclose(float(var[0]), 3.0 * (eps / shift) ** 2, rtol=2e-3)


def test_so3_exp_log_match_scipy():
    rng = np.random.default_rng(2)
    axis = rng.normal(size=(50, 3))
    w = axis / np.linalg.norm(axis, axis=1, keepdims=True) * rng.uniform(0, 2.8, (50, 1))  # log is unique below π
    w = np.concatenate([w, [[0, 0, 0], [1e-7, 0, 0]]])
    np.testing.assert_allclose(np.asarray(temporal.so3_exp(jnp.asarray(w))), Rotation.from_rotvec(w).as_matrix(),
                               atol=2e-6)
    np.testing.assert_allclose(np.asarray(temporal.so3_log(jnp.asarray(Rotation.from_rotvec(w).as_matrix(),
                                                                      jnp.float32))), w, atol=2e-5)


@pytest.mark.parametrize("noise_deg", [0.0, 2.0])
def test_rotation_kalman_tracks_constant_velocity_rotation(noise_deg):
    """R_k = exp(k ω dt) R_0 (scipy): started at rest, the filter converges to it (vanishing error
    without noise, well below the noise with it) and its estimate stays a rotation every frame."""
    frames = 300
    omega = np.array([0.4, -0.9, 0.3])                   # rad/s, ~57°/s
    R0 = Rotation.from_euler("yxz", [30, 10, -5], degrees=True)
    truth = (Rotation.from_rotvec(np.arange(frames)[:, None] * DT * omega) * R0).as_matrix()
    rng = np.random.default_rng(3)
    noise = Rotation.from_rotvec(np.deg2rad(noise_deg) * rng.normal(size=(frames, 3))).as_matrix()
    Z = noise @ truth
    config = temporal.FilterConfig(kind="kalman", fps=FPS, rotation_sigma_deg=2.0, rotation_accel_deg=5.0)
    obs = temporal.observation(np.zeros((frames, 3, 2)), rotation=Z, scale2d=1.0, scale3d=1.0)
    state, out = temporal.run(config, temporal.init(3), obs)
    R = np.asarray(out["rotation"], np.float64)
    np.testing.assert_allclose(np.einsum("tji,tjk->tik", R, R), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-5)
    err = np.rad2deg((Rotation.from_matrix(R) * Rotation.from_matrix(truth).inv()).magnitude())
    if noise_deg == 0:
        assert err[-50:].max() < 0.02, err[-50:].max()
        np.testing.assert_allclose(np.asarray(state.omega), omega, atol=1e-3)
    else:
        raw = np.rad2deg((Rotation.from_matrix(Z) * Rotation.from_matrix(truth).inv()).magnitude())
        assert err[100:].mean() < 0.35 * raw[100:].mean(), (err[100:].mean(), raw[100:].mean())
        assert np.abs(err[100:].mean()) < 1.0


def test_one_euro_matches_the_published_formula_by_hand():
    """x = 0, 1, 3, 3 at 10 Hz, min_cutoff 1 Hz, beta 0.5, d_cutoff 1 Hz (scale 1). By hand:
    α(f_c) = 1/(1 + 1/(2π f_c · 0.1)); α_d = α(1) = 0.385870; frame 1: x̂ = 0, ẋ̂ = 0;
    frame 2: ẋ = 10, ẋ̂ = 3.858695, f_c = 2.929348, α = 0.647957, x̂ = 0.647957;
    frame 3: ẋ = 23.520428, ẋ̂ = 11.445559, f_c = 6.722780, α = 0.808578, x̂ = 2.549766;
    frame 4: ẋ = 4.502339, ẋ̂ = 8.766382, f_c = 5.383191, α = 0.771812, x̂ = 2.897262."""
    x = np.array([0.0, 1.0, 3.0, 3.0])
    config = temporal.FilterConfig(kind="one_euro", fps=10.0, min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    pts = np.zeros((4, 1, 2))
    pts[:, 0, 0] = x
    obs = temporal.observation(pts, scale2d=1.0, scale3d=1.0)
    _, out = temporal.run(config, temporal.init(1), obs)
    np.testing.assert_allclose(np.asarray(out["landmarks2d"][:, 0, 0]), [0.0, 0.647957, 2.549766, 2.897262],
                               atol=2e-5)
    np.testing.assert_allclose(np.asarray(out["landmarks2d"][:, 0, 1]), 0.0, atol=1e-7)


def test_one_euro_rotation_is_a_geodesic_low_pass():
    """About a fixed axis the manifold filter is the scalar One Euro filter of the angle."""
    angles = np.array([0.0, 0.1, 0.3, 0.3, 0.25])
    axis = np.array([1.0, 2.0, -2.0]) / 3.0
    Z = Rotation.from_rotvec(angles[:, None] * axis).as_matrix()
    config = temporal.FilterConfig(kind="one_euro", fps=10.0, min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    _, out = temporal.run(config, temporal.init(1), temporal.observation(np.zeros((5, 1, 2)), rotation=Z,
                                                                          scale2d=1.0, scale3d=1.0))
    pts = np.zeros((5, 1, 2))
    pts[:, 0, 0] = angles
    _, scalar = temporal.run(config, temporal.init(1), temporal.observation(pts, scale2d=1.0, scale3d=1.0))
    np.testing.assert_allclose(Rotation.from_matrix(np.asarray(out["rotation"], np.float64)).as_rotvec(),
                               np.asarray(scalar["landmarks2d"][:, 0, :1]) * axis, atol=2e-6)


def _stream(rng, frames, n):
    z = np.cumsum(rng.normal(size=(frames, n, 2)), 0) + 50
    cov = np.broadcast_to(_random_spd(rng, n, 0.5, 4.0), (frames, n, 2, 2))
    p3 = np.cumsum(rng.normal(size=(frames, n, 3)) * 0.01, 0)
    rot = Rotation.from_rotvec(np.cumsum(rng.normal(size=(frames, 3)) * 0.05, 0)).as_matrix()
    valid = np.ones(frames, bool)
    valid[[0, 1, 7, 8, 9]] = False                      # no face at the start and a gap
    return temporal.observation(z, cov, landmarks3d=p3, rotation=rot, translation=rng.normal(size=(frames, 3)),
                                valid=valid)


@pytest.mark.parametrize("kind", temporal.KINDS)
def test_scan_equals_step_loop_and_chunks(kind):
    """Offline (one scan), live (one step per frame) and chunked (scan per batch) agree."""
    obs = _stream(np.random.default_rng(4), 16, 5)
    config = temporal.FilterConfig(kind=kind, fps=FPS)
    _, whole = temporal.run(config, temporal.init(5), obs)
    state, loop = temporal.init(5), []
    for t in range(16):
        state, o = temporal.step_jit(config, state, obs[t])
        loop.append(o)
    s, a = temporal.run(config, temporal.init(5), obs[:8])
    _, b = temporal.run(config, s, obs[8:])
    for key in whole:
        stacked = np.stack([np.asarray(o[key]) for o in loop])
        np.testing.assert_allclose(np.asarray(whole[key]), stacked, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(whole[key]), np.concatenate([a[key], b[key]]), rtol=1e-5, atol=1e-5)
    # the first valid frame (2) is taken as is; invalid leading frames are not filtered into it
    np.testing.assert_allclose(np.asarray(whole["landmarks2d"][2]), np.asarray(obs.landmarks2d[2]), atol=1e-5)
    if kind == "none":
        np.testing.assert_allclose(np.asarray(whole["landmarks2d"]), np.asarray(obs.landmarks2d))


def test_invalid_frames_are_predicted_not_updated():
    """During a gap the Kalman estimate moves on at its velocity (no update from the zeros an
    absent face gives); One Euro holds its last value."""
    frames, n = 30, 2
    t = np.arange(frames, dtype=np.float64)
    z = np.stack([np.stack([10 + 2 * t, 5 - t], -1)] * n, 1)          # exact constant velocity
    valid = t < 20
    z[~valid] = 0.0
    cov = np.broadcast_to(1e-4 * np.eye(2), (frames, n, 2, 2))
    obs = temporal.observation(z, cov, valid=valid, scale2d=1.0, scale3d=1.0)
    _, kal = temporal.run(temporal.FilterConfig(kind="kalman", fps=FPS), temporal.init(n), obs)
    np.testing.assert_allclose(np.asarray(kal["landmarks2d"][25, 0]), [10 + 50, 5 - 25], atol=0.05)
    _, eur = temporal.run(temporal.FilterConfig(kind="one_euro", fps=FPS), temporal.init(n), obs)
    np.testing.assert_allclose(np.asarray(eur["landmarks2d"][25]), np.asarray(eur["landmarks2d"][19]))


def test_a_gap_keeps_the_last_valid_face_size():
    """An absent face's sizes (near 0 from the zeros it gives) must not shrink the process noise:
    across a gap the covariance grows as with the last valid frame's size."""
    frames, n = 30, 2
    t = np.arange(frames, dtype=np.float64)
    z = np.stack([np.stack([10 + 2 * t, 5 - t], -1)] * n, 1)
    valid = t < 20
    z[~valid] = 0.0
    cov = np.broadcast_to(1e-4 * np.eye(2), (frames, n, 2, 2))
    config = temporal.FilterConfig(kind="kalman", fps=FPS)
    outs = []
    for gap_scale in (1.0, 1e-6):
        scale = np.where(valid, 1.0, gap_scale)
        obs = temporal.observation(z, cov, valid=valid, scale2d=scale, scale3d=scale)
        outs.append(np.asarray(temporal.run(config, temporal.init(n), obs)[1]["covariances"]))
    np.testing.assert_array_equal(outs[1], outs[0])
    var = outs[0][:, 0, 0, 0]
    assert np.all(np.diff(var[19:]) > 0)  # predicted, never updated: the uncertainty grows every frame


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="kalman"):
        temporal.FilterConfig(kind="median")
    with pytest.raises(ValueError, match="frame rate"):
        temporal.FilterConfig(fps=0)
    with pytest.raises(ValueError, match="covariances"):
        temporal.observation(np.zeros((3, 2)), np.zeros((4, 2, 2)))
