"""Lifting accuracy against independent ground truth: exact synthetic projections, a per-landmark
scipy least-squares maximum-likelihood optimum, autodiff / numpy re-derivations of the solver's
closed forms, and invariances (vmap, chunking, NaN isolation, sharding)."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import least_squares

from conftest import pinhole
from facelift_jax import camera, lifting, views

FACE_SIZE = float(np.linalg.norm(np.ptp(views.canonical_template()[:96], 0)))  # bbox diagonal, ~0.5


def _cams_np(cams):
    return np.asarray(cams.K, np.float64), np.asarray(cams.R, np.float64), np.asarray(cams.t, np.float64)


def _project_np(points, K, R, t):
    """points (..., N, 3) seen by V views (K, R, t (V, ...)) → (..., V, N, 2)."""
    return pinhole(points[..., None, :, :], R, t, K=K)


def _faces(rng, B):
    return (views.canonical_template()[None] + rng.normal(0, 0.02, (B, 98, 3))).astype(np.float64)


def _config(**kw):
    c = lifting.default_config()
    c.update(kw)
    return c


def _frontal_error(a, b):
    """Mean 2D distance (normalized image units) of 3D points a, b (..., N, 3) seen by the frontal view."""
    front = camera.camera_from_angles(0.0, 0.0)
    K, R, t = (np.asarray(x, np.float64)[None] for x in (front.K, front.R, front.t))
    pa = _project_np(a.reshape(-1, 3), K, R, t)[0]
    pb = _project_np(b.reshape(-1, 3), K, R, t)[0]
    return float(np.linalg.norm(pa - pb, axis=-1).mean())


@pytest.fixture(scope="module")
def setup():
    cams = views.lifting_cameras()
    K, R, t = _cams_np(cams)
    rng = np.random.default_rng(0)
    pts = _faces(rng, 6)
    obs = _project_np(pts, K, R, t)  # (B, V, N, 2)
    mask = np.broadcast_to(views.view_masks(), obs.shape[:3]).copy()
    return cams, (K, R, t), pts, obs, mask


def test_noiseless_recovery(setup):
    cams, _, pts, obs, mask = setup
    for loss in ("l2", "cauchy"):  # huber and laplacian: see the outlier test
        res = lifting.lift(obs, cams, mask, _config(loss=loss))
        err = np.linalg.norm(np.asarray(res.points3d)[:, :96] - pts[:, :96], axis=-1)
        assert err.max() < 1e-4 * FACE_SIZE, (loss, err.max())
        assert np.asarray(res.valid)[:, :96].all()
        assert not np.asarray(res.valid)[:, 96:].any()  # pupils: always masked
        assert (np.asarray(res.status) == lifting.STATUS_OK).all()
        assert np.asarray(res.residual)[:, :96].max() < 1e-5


def _ml_optimum(obs, used, K, R, t, x0):
    """Per-landmark least squares in float64 (scipy 'lm'), an independent ML solver."""
    out = x0.copy()
    for n in range(x0.shape[0]):
        vs = np.flatnonzero(used[:, n])
        if vs.size < 2:
            continue

        def fun(x):
            p = np.einsum("vij,j->vi", R[vs], x) + t[vs]
            q = np.einsum("vij,vj->vi", K[vs], p)
            return (q[:, :2] / q[:, 2:3] - obs[vs, n]).ravel()

        out[n] = least_squares(fun, x0[n], method="lm", xtol=1e-14, ftol=1e-14, gtol=1e-14).x
    return out


@pytest.mark.parametrize("loss", ["l2", "huber", "cauchy"])
def test_gaussian_noise_near_ml_optimum(setup, loss):
    cams, (K, R, t), pts, obs, mask = setup
    sigma = 0.004
    rng = np.random.default_rng(1)
    B = 3
    noisy = obs[:B] + rng.normal(0, sigma, obs[:B].shape)
    res = lifting.lift(noisy, cams, mask[:B], _config(loss=loss))
    ours = np.asarray(res.points3d, np.float64)[:, :96]
    ml = np.stack([_ml_optimum(noisy[b], mask[b], K, R, t, pts[b])[:96] for b in range(B)])
    truth = pts[:B, :96]
    e_ours, e_ml = _frontal_error(ours, truth), _frontal_error(ml, truth)
    assert e_ours < sigma
    assert abs(e_ours - e_ml) <= 0.02 * e_ml, (e_ours, e_ml)
    if loss == "l2":  # same objective: the same optimum, up to float32
        assert np.abs(ours - ml).max() < 2e-3 * np.linalg.norm(ours - truth, axis=-1).mean() + 1e-5


def test_outliers_robust_vs_least_squares(setup):
    cams, (K, R, t), pts, obs, _ = setup
    rng = np.random.default_rng(2)
    B, V = 4, obs.shape[1]
    sigma = 0.003
    clean = obs[:B] + rng.normal(0, sigma, obs[:B].shape)
    corrupted = clean.copy()
    n_out = round(0.2 * V)
    for b in range(B):
        for n in range(98):
            vs = rng.choice(V, n_out, replace=False)
            ang = rng.uniform(0, 2 * np.pi, n_out)
            mag = rng.uniform(0.07, 0.15, n_out)
            corrupted[b, vs, n] += mag[:, None] * np.stack([np.cos(ang), np.sin(ang)], -1)
    mask = np.ones(obs[:B].shape[:3], bool)
    mask[..., 96:] = False
    err = lambda r: np.linalg.norm(np.asarray(r.points3d)[:, :96] - pts[:B, :96], axis=-1).mean()  # noqa: E731
    e_clean = err(lifting.lift(clean, cams, mask, _config(loss="l2")))
    e_l2 = err(lifting.lift(corrupted, cams, mask, _config(loss="l2")))
    # with the outlier views dropped by an oracle the error would be √(13/10) ≈ 1.14× e_clean
    for loss, delta, bound in (("cauchy", 0.015, 1.35), ("huber", 0.01, 2.2), ("laplacian", 0.01, 2.2)):
        res = lifting.lift(corrupted, cams, mask, _config(loss=loss, huber_delta=delta, steps=10))
        e_rob = err(res)
        assert e_rob < bound * e_clean, (loss, e_rob, e_clean)
        # the inlier RMS ignores the outlier views: points stay valid
        assert np.asarray(res.valid)[:, :96].mean() > 0.95
        assert np.all(np.asarray(res.num_inliers)[:, :96] <= V - n_out)
    assert e_l2 > 3 * e_clean, (e_l2, e_clean)


def test_vmapped_equals_per_latent_and_chunked_equals_unchunked(setup):
    cams, _, _, obs, mask = setup
    rng = np.random.default_rng(3)
    noisy = obs + rng.normal(0, 0.004, obs.shape)
    whole = lifting.lift(noisy, cams, mask, _config(chunk_size=1000))
    chunked = lifting.lift(noisy, cams, mask, _config(chunk_size=4))  # 4 + 2 padded
    for b in range(noisy.shape[0]):
        single = lifting.lift(noisy[b:b + 1], cams, mask[b:b + 1], _config())
        np.testing.assert_allclose(np.asarray(single.points3d)[0], np.asarray(whole.points3d)[b], atol=1e-6)
        np.testing.assert_allclose(np.asarray(single.residual)[0], np.asarray(whole.residual)[b], atol=1e-7)
    for field in ("points3d", "residual", "num_views", "valid", "status"):
        np.testing.assert_allclose(np.asarray(getattr(chunked, field)), np.asarray(getattr(whole, field)), atol=1e-6)


def test_per_latent_cameras_equal_shared(setup):
    cams, _, _, obs, mask = setup
    B = 3
    batched = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (B,) + x.shape), cams)
    a = lifting.lift(obs[:B], cams, mask[:B], _config())
    b = lifting.lift(obs[:B], batched, mask[:B], _config())
    np.testing.assert_allclose(np.asarray(a.points3d), np.asarray(b.points3d), atol=1e-6)


def test_nonfinite_detections_are_masked_and_isolated(setup):
    cams, _, pts, obs, mask = setup
    rng = np.random.default_rng(4)
    clean = obs + rng.normal(0, 0.002, obs.shape)
    ref = lifting.lift(clean, cams, mask, _config())
    bad = clean.copy()
    used_views = np.flatnonzero(mask[0, :, 10])
    bad[0, used_views[1:], 10, 0] = np.nan  # landmark 10 of latent 0 keeps one view
    bad[0, used_views[0], 20] = np.inf  # landmark 20 loses one view only
    bad[2] = np.nan  # latent 2 is garbage
    bad[4, :, :, 1] = 1e30  # latent 4: absurd but finite detections
    template = views.canonical_template()
    res = lifting.lift(bad, cams, mask, _config())
    P = np.asarray(res.points3d)
    assert np.isfinite(P).all() and np.isfinite(np.asarray(res.residual)).all()
    # landmark 10 of latent 0: one view → invalid, template fallback, flagged
    assert int(res.num_views[0, 10]) == 1 and not bool(res.valid[0, 10])
    np.testing.assert_allclose(P[0, 10], template[10], atol=1e-7)
    st0 = int(res.status[0])
    assert st0 & lifting.STATUS_NONFINITE_INPUT and st0 & lifting.STATUS_TOO_FEW_VIEWS
    assert int(res.num_views[0, 20]) == mask[0, :, 20].sum() - 1 and bool(res.valid[0, 20])
    assert np.linalg.norm(P[0, 20] - pts[0, 20]) < 0.01
    # latent 2: nothing usable
    assert int(res.status[2]) & lifting.STATUS_NO_VALID and not np.asarray(res.valid[2]).any()
    np.testing.assert_allclose(P[2], template, atol=1e-7)
    # latent 4: no valid point, still finite
    assert not np.asarray(res.valid[4]).any()
    # the other latents are untouched
    for b in (1, 3, 5):
        np.testing.assert_array_equal(P[b], np.asarray(ref.points3d)[b])
        assert int(res.status[b]) == int(ref.status[b]) == 0


def test_inconsistent_detections_rejected(setup):
    cams, _, _, obs, mask = setup
    rng = np.random.default_rng(5)
    bad = obs[:1].copy()
    bad[0, :, 30] = rng.uniform(0.2, 0.8, (bad.shape[1], 2))  # random per view: no 3D point explains them
    res = lifting.lift(bad, cams, mask[:1], _config())
    assert not bool(res.valid[0, 30]) and bool(res.valid[0, 29])
    assert int(res.status[0]) & lifting.STATUS_REJECTED


def test_gradient_and_curvature_match_autodiff(setup):
    cams, _, pts, obs, mask = setup
    A, b = lifting.projection_matrices(cams)
    rng = np.random.default_rng(6)
    o = np.swapaxes(obs[0] + rng.normal(0, 0.02, obs[0].shape), -1, -2).astype(np.float32)  # (V, 2, N)
    vw = lifting._Views(A=A, b=b, obs=jnp.asarray(o), used=jnp.asarray(mask[0]))
    x = jnp.asarray(pts[0].T + rng.normal(0, 0.01, (3, 98)), jnp.float32)
    for loss in ("l2", "huber"):
        s = lifting.LiftSettings(loss=loss)
        g, H = jax.jit(lifting.gradient_and_curvature, static_argnums=2)(x, vw, s)
        g_ad = jax.jit(jax.grad(lifting.objective), static_argnums=2)(x, vw, s)
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_ad), rtol=2e-3, atol=1e-4)
    # Gauss–Newton matrix of the l2 loss = Σ_v Jᵀ J with J from forward-mode autodiff of π
    s = lifting.LiftSettings(loss="l2")
    _, H = jax.jit(lifting.gradient_and_curvature, static_argnums=2)(x, vw, s)
    n = 17

    def proj(p):
        return camera.project(p[None], cams)[:, 0]  # (V, 2)

    J = jax.jacfwd(proj)(x[:, n])  # (V, 2, 3)
    used = mask[0, :, n]
    H_ref = np.einsum("vki,vkj->ij", np.asarray(J)[used], np.asarray(J)[used])
    np.testing.assert_allclose(np.asarray(H)[:, :, n], H_ref, rtol=1e-4)


def test_gauss_newton_transform_solves_blocks():
    rng = np.random.default_rng(7)
    N = 50
    M = rng.normal(size=(N, 3, 3))
    H = np.einsum("nij,nkj->nik", M, M) + 0.1 * np.eye(3)
    g = rng.normal(size=(N, 3))
    damping = 1e-3
    tx = lifting.scale_by_landmark_gauss_newton(damping)
    upd, _ = tx.update(jnp.asarray(g.T, jnp.float32), tx.init(None), None,
                       curvature=jnp.asarray(np.moveaxis(H, 0, -1), jnp.float32))
    ref = np.linalg.solve(H + damping * np.trace(H, axis1=1, axis2=2)[:, None, None] / 3 * np.eye(3), g[..., None])[..., 0]
    np.testing.assert_allclose(np.asarray(upd).T, ref, rtol=1e-3, atol=1e-5)


def test_dlt_is_exact_and_adam_is_selectable(setup):
    cams, _, pts, obs, mask = setup
    dlt_only = lifting.lift(obs[:2], cams, mask[:2], _config(steps=0))
    assert np.abs(np.asarray(dlt_only.points3d)[:, :96] - pts[:2, :96]).max() < 1e-4 * FACE_SIZE
    rng = np.random.default_rng(8)
    noisy = obs[:2] + rng.normal(0, 0.004, obs[:2].shape)
    adam = lifting.lift(noisy, cams, mask[:2], _config(optimizer="adam", steps=50, learning_rate=1e-4))
    gn = lifting.lift(noisy, cams, mask[:2], _config())
    e = lambda r: np.linalg.norm(np.asarray(r.points3d)[:, :96] - pts[:2, :96], axis=-1).mean()  # noqa: E731
    assert e(adam) < 1.1 * e(gn)


def test_bad_inputs_raise(setup):
    cams, _, _, obs, mask = setup
    with pytest.raises(ValueError, match="landmarks2d"):
        lifting.lift(obs[0], cams, None, None)
    with pytest.raises(ValueError, match="cameras"):
        lifting.lift(obs[:, :3], cams, None, None)
    with pytest.raises(ValueError, match="mask"):
        lifting.lift(obs, cams, mask[:, :, :10], None)
    with pytest.raises(ValueError, match="loss"):
        lifting.lift(obs, cams, mask, _config(loss="cosh"))
    with pytest.raises(ValueError, match="config.lifting"):
        lifting.lift(obs, cams, mask, {"lifting": _config()})
    with pytest.raises(ValueError, match="optimizer"):
        lifting.lift(obs, cams, mask, _config(optimizer="sgd"))


def test_sharded_over_two_devices_equals_single(setup, tmp_path):
    cams, _, _, obs, mask = setup
    rng = np.random.default_rng(9)
    noisy = (obs + rng.normal(0, 0.004, obs.shape)).astype(np.float32)
    ref = lifting.lift(noisy, cams, mask, _config(chunk_size=3))
    np.savez(tmp_path / "in.npz", obs=noisy, mask=mask)
    script = textwrap.dedent(f"""
        import os, json, numpy as np
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        import jax
        from facelift_jax import lifting, views
        d = np.load({str(tmp_path / 'in.npz')!r})
        c = lifting.default_config(); c.chunk_size = 3
        r = lifting.lift(d["obs"], views.lifting_cameras(), d["mask"], c)
        np.save({str(tmp_path / 'out.npy')!r}, np.asarray(r.points3d))
        print(json.dumps(dict(devices=jax.device_count(), used=len(r.points3d.sharding.device_set))))
    """)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["devices"] == 2 and info["used"] == 2  # the latent axis really was split
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), np.asarray(ref.points3d), atol=1e-6)
