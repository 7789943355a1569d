"""Losses of eq. (3)-(4) against independent math (densities, Rodrigues, finite differences)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from facelift_jax import losses


def laplace_density(x, mu, sigma):
    """2D multivariate Laplace (LUVLi): 3/(2π|Σ|^½) exp(−sqrt(3 (x−μ)ᵀΣ⁻¹(x−μ))), float64 numpy."""
    d = x - mu
    q = np.einsum("...i,ij,...j->...", d, np.linalg.inv(sigma), d)
    return 3.0 / (2 * np.pi * np.sqrt(np.linalg.det(sigma))) * np.exp(-np.sqrt(3.0 * q))


def random_tril(rng, scale=0.05):
    L = np.zeros((2, 2))
    L[0, 0], L[1, 1] = scale * rng.uniform(0.3, 1.5, 2)
    L[1, 0] = scale * rng.uniform(-1, 1)
    return L


def test_laplace_density_integrates_to_one_and_matches_lll():
    rng = np.random.default_rng(0)
    L = random_tril(rng)
    sigma = L @ L.T
    mu = np.array([0.4, 0.6])
    # Integrate the reference density on a fine grid covering ±25 standard deviations.
    r = 25 * np.sqrt(np.linalg.eigvalsh(sigma).max())
    g = np.linspace(-r, r, 1601)
    xx, yy = np.meshgrid(mu[0] + g, mu[1] + g, indexing="ij")
    p = laplace_density(np.stack([xx, yy], -1), mu, sigma)
    integral = np.trapezoid(np.trapezoid(p, g, axis=1), g)
    assert abs(integral - 1.0) < 2e-3

    x = mu + rng.normal(0, 0.05, (64, 2))
    ours = losses.laplacian_nll_per_point(jnp.asarray(x, jnp.float32), jnp.asarray(mu, jnp.float32),
                                          jnp.asarray(np.broadcast_to(L, (64, 2, 2)), jnp.float32))
    expected = -np.log(laplace_density(x, mu, sigma)) - np.log(2 * np.pi / 3)
    np.testing.assert_allclose(np.asarray(ours), expected, rtol=1e-5, atol=1e-5)


def test_lll_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    n = 5
    target = rng.uniform(0.2, 0.8, (1, n, 2))
    mean = target + rng.normal(0, 0.03, (1, n, 2))
    tril = np.stack([random_tril(rng) for _ in range(n)])[None]
    mask = np.array([[True, True, False, True, True]])

    def reference(mean, tril):  # float64, the density formula, masked mean
        vals = [-np.log(laplace_density(target[0, i], mean[0, i], tril[0, i] @ tril[0, i].T)) for i in range(n)]
        return np.sum(np.array(vals) * mask[0]) / mask.sum() - np.log(2 * np.pi / 3)

    f = lambda m, t: losses.laplacian_nll(jnp.asarray(target, jnp.float32), m, t, jnp.asarray(mask))  # noqa: E731
    gm, gt = jax.grad(f, argnums=(0, 1))(jnp.asarray(mean, jnp.float32), jnp.asarray(tril, jnp.float32))
    eps = 1e-6
    for arr, grad in ((mean, gm), (tril, gt)):
        fd = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            if arr is tril and idx[-1] > idx[-2]:
                continue  # upper triangle is not part of L
            hi, lo = arr.copy(), arr.copy()
            hi[idx] += eps
            lo[idx] -= eps
            args_hi = (hi, tril) if arr is mean else (mean, hi)
            args_lo = (lo, tril) if arr is mean else (mean, lo)
            fd[idx] = (reference(*args_hi) - reference(*args_lo)) / (2 * eps)
        if arr is tril:
            fd = np.tril(fd)
            grad = np.tril(np.asarray(grad))
        np.testing.assert_allclose(np.asarray(grad), fd, rtol=2e-3, atol=2e-2)
    assert np.all(np.asarray(gm)[0, 2] == 0)  # masked landmark gets no gradient


def test_lll_masked_nan_targets_and_empty_mask_are_finite():
    target = jnp.full((2, 3, 2), jnp.nan).at[0, 0].set(jnp.array([0.5, 0.5]))
    mean = jnp.full((2, 3, 2), 0.45)
    tril = jnp.broadcast_to(0.02 * jnp.eye(2), (2, 3, 2, 2))
    mask = jnp.zeros((2, 3), bool).at[0, 0].set(True)
    val, grad = jax.value_and_grad(losses.laplacian_nll, argnums=(1, 2))(target, mean, tril, mask)
    expected = 2 * np.log(0.02) + np.sqrt(3 * 2 * (0.05 / 0.02) ** 2)
    np.testing.assert_allclose(val, expected, rtol=1e-5)
    assert all(np.all(np.isfinite(g)) for g in grad)
    empty = losses.laplacian_nll(target, mean, tril, jnp.zeros((2, 3), bool))
    assert float(empty) == 0.0
    g = jax.grad(losses.mse)(mean, jnp.full((2, 3, 2), jnp.nan), jnp.zeros((2, 3), bool))
    assert np.all(np.isfinite(g))


def test_lll_gradient_is_finite_at_zero_residual():
    x = jnp.array([[0.5, 0.5]])
    tril = 0.02 * jnp.eye(2)[None]
    g = jax.grad(lambda m: losses.laplacian_nll(x, m, tril))(x)
    assert np.all(np.isfinite(g))


def rodrigues(axis, theta):
    axis = axis / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


@pytest.mark.parametrize("theta", [0.0, 1e-3, 0.3, 1.5, 3.0, np.pi - 1e-3])
def test_geodesic_loss_is_rotation_angle(theta):
    rng = np.random.default_rng(2)
    base = rodrigues(rng.normal(size=3), 1.1)
    R = rodrigues(rng.normal(size=3), theta) @ base
    val = losses.geodesic_loss(jnp.asarray(R[None], jnp.float32), jnp.asarray(base[None], jnp.float32))
    assert abs(float(val) - theta) < 2e-3 if theta < 1e-2 else abs(float(val) - theta) < 1e-4
    g = jax.grad(lambda r: losses.geodesic_loss(r, jnp.asarray(base[None], jnp.float32)))(
        jnp.asarray(R[None], jnp.float32))
    assert np.all(np.isfinite(g))


def test_mse_zero_at_perfect_prediction_and_value():
    rng = np.random.default_rng(3)
    a = jnp.asarray(rng.normal(size=(4, 98, 3)), jnp.float32)
    assert float(losses.mse(a, a)) == 0.0
    b = a + 0.1
    np.testing.assert_allclose(losses.mse(a, b), 3 * 0.01, rtol=1e-5)  # mean over points of |d|² = 3·0.1²
    mask = np.zeros((4, 98), bool)
    mask[:, :10] = True
    c = b.at[:, 10:].add(100.0)
    np.testing.assert_allclose(losses.mse(a, c, mask), 3 * 0.01, rtol=1e-5)


class _Pred:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def _weights(**kw):
    w = dict(w_landmarks3d=1.0, w_translation=1.0, w_lll_multiview=1.0, w_geodesic=1.0, w_multiframe=1.0)
    w.update(kw)
    return ml_collections.ConfigDict(w)


def _perfect_batch(rng, B=2):
    R = np.stack([rodrigues(rng.normal(size=3), rng.uniform(0, 1)) for _ in range(B)]).astype(np.float32)
    batch = dict(
        landmarks3d=rng.normal(size=(B, 98, 3)).astype(np.float32),
        landmarks2d=rng.uniform(size=(B, 98, 2)).astype(np.float32),
        rotation=R, translation=rng.normal(size=(B, 3)).astype(np.float32),
        mask=np.ones((B, 98), bool))
    tril = np.broadcast_to(0.03 * np.eye(2, dtype=np.float32), (B, 98, 2, 2))
    pred = _Pred(landmarks3d=batch["landmarks3d"], landmarks2d=batch["landmarks2d"], scale_tril=tril,
                 rotation=R, translation=batch["translation"])
    return pred, batch


def test_multiview_loss_terms_at_perfect_prediction_and_weights():
    pred, batch = _perfect_batch(np.random.default_rng(4))
    total, terms = losses.multiview_loss(pred, batch, _weights())
    assert float(terms["landmarks3d"]) == 0.0 and float(terms["translation"]) == 0.0
    assert float(terms["geodesic"]) < 1e-3
    np.testing.assert_allclose(terms["lll"], 2 * np.log(0.03), rtol=1e-6)  # only the log|L| part remains
    # Off by 0.1 in translation: MSE = 3·0.01, weighted by w_translation = 5.
    pred.translation = batch["translation"] + 0.1
    total5, terms5 = losses.multiview_loss(pred, batch, _weights(w_translation=5.0))
    np.testing.assert_allclose(terms5["translation"], 0.03, rtol=1e-5)
    np.testing.assert_allclose(total5 - total, 5 * 0.03, rtol=1e-4, atol=1e-4)


def test_multiview_loss_ignores_pupils_and_masked_points():
    pred, batch = _perfect_batch(np.random.default_rng(5))
    base, _ = losses.multiview_loss(pred, batch, _weights())
    moved = dict(batch)
    moved["landmarks2d"] = batch["landmarks2d"].copy()
    moved["landmarks3d"] = batch["landmarks3d"].copy()
    moved["landmarks2d"][:, [96, 97]] += 0.3  # pupils: always ignored for GAN samples
    moved["landmarks3d"][:, [96, 97]] += 0.3
    moved["landmarks2d"][:, 5] = np.nan  # invalid pseudo-label, masked out
    moved["landmarks3d"][:, 5] = np.nan
    moved["mask"] = batch["mask"].copy()
    moved["mask"][:, 5] = False
    other, _ = losses.multiview_loss(pred, moved, _weights())
    np.testing.assert_allclose(other, base, rtol=1e-6)
    moved["landmarks2d"][:, 7] += 0.3  # a kept landmark does count
    # 2 of 190 kept points off by (10σ, 10σ): +2·sqrt(3·200)/190 ≈ 0.258
    np.testing.assert_allclose(losses.multiview_loss(pred, moved, _weights())[0] - base, 2 * np.sqrt(600) / 190, rtol=1e-3)


def test_multiframe_loss_is_weighted_masked_lll():
    rng = np.random.default_rng(6)
    pred, batch = _perfect_batch(rng)
    target = batch["landmarks2d"] + rng.normal(0, 0.02, batch["landmarks2d"].shape).astype(np.float32)
    mask = rng.uniform(size=(2, 98)) > 0.3
    mf = dict(landmarks2d=target, mask=mask)
    total, terms = losses.multiframe_loss(pred, mf, _weights(w_multiframe=2.0))
    d = (target - pred.landmarks2d) / 0.03
    per = 2 * np.log(0.03) + np.sqrt(3 * np.sum(d**2, -1))
    np.testing.assert_allclose(terms["lll"], per[mask].mean(), rtol=1e-5)
    np.testing.assert_allclose(total, 2 * per[mask].mean(), rtol=1e-5)
    with pytest.raises(KeyError, match="mask"):
        losses.multiframe_loss(pred, dict(landmarks2d=target), _weights())
