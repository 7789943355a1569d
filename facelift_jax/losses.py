"""FaceLift's training losses (§3, eq. 3-4) as pure functions of arrays.

Frames: 2D landmarks in normalized image coordinates ([0, 1]² inside the image); 3D landmarks
and translations in world units (GAN canonical space); rotations world→camera. N = 98 landmarks.

Reductions: every masked term is a mean over the (batch, landmark) pairs that the mask keeps,
sum(m·ℓ) / max(sum(m), 1), so a batch with nothing valid contributes 0 (not NaN) and the scale of
a term does not depend on how many landmarks happen to be masked.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from facelift_jax import rotation as rotation_lib
from facelift_jax.landmarks import NON_PUPIL_MASK


def _safe_sqrt(x):
    # Double-where: the gradient of sqrt at 0 is infinite; this one is 0 there.
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def masked_mean(values, mask=None):
    """Mean of ``values`` (...) over the entries where ``mask`` (broadcastable, bool/float) holds.

    sum(m·v) / max(sum(m), 1); without a mask, the plain mean.
    """
    if mask is None:
        return jnp.mean(values)
    m = jnp.broadcast_to(jnp.asarray(mask, values.dtype), values.shape)
    return jnp.sum(jnp.where(m > 0, values * m, 0.0)) / jnp.maximum(jnp.sum(m), 1.0)


def laplacian_nll_per_point(target, mean, scale_tril):
    """Per-point 2D Laplacian negative log-likelihood without its constant (LUVLi).

    target, mean: (..., 2); scale_tril: (..., 2, 2) lower-triangular L with positive diagonal,
    Σ = L Lᵀ. With d = target − mean:

        ℓ = log L₀₀ + log L₁₁ + sqrt(3 · dᵀ Σ⁻¹ d)

    which is −log p(target) − log(2π/3) for the 2D multivariate Laplace density
    p(x) = (3 / (2π |Σ|^½)) · exp(−sqrt(3 (x−μ)ᵀ Σ⁻¹ (x−μ))) (½ log|Σ| = log L₀₀ + log L₁₁).
    dᵀ Σ⁻¹ d = |L⁻¹ d|², solved by forward substitution. Returns (...).
    """
    d = target - mean
    l00, l10, l11 = scale_tril[..., 0, 0], scale_tril[..., 1, 0], scale_tril[..., 1, 1]
    z0 = d[..., 0] / l00
    z1 = (d[..., 1] - l10 * z0) / l11
    return jnp.log(l00) + jnp.log(l11) + _safe_sqrt(3.0 * (z0 * z0 + z1 * z1))


def _fill_masked(target, pred, mask):
    # Masked-out targets may be NaN (invalid pseudo-labels); a NaN there would still reach the
    # gradient as 0·NaN, so they are replaced by the (constant) prediction before any arithmetic.
    if mask is None:
        return target
    keep = jnp.broadcast_to(jnp.asarray(mask, bool)[..., None], target.shape)
    return jnp.where(keep, target, jax.lax.stop_gradient(pred))


def laplacian_nll(target, mean, scale_tril, mask=None):
    """Masked mean of ``laplacian_nll_per_point`` (scalar).

    target, mean: (B, N, 2); scale_tril: (B, N, 2, 2); mask: (B, N) bool or None. Targets under
    a False mask may be NaN.
    """
    target = _fill_masked(target, mean, mask)
    return masked_mean(laplacian_nll_per_point(target, mean, scale_tril), mask)


def mse(pred, target, mask=None):
    """Mean squared Euclidean error: masked mean over points of |pred − target|² (sum over the
    last axis). pred, target: (..., D); mask: (...) or None (masked targets may be NaN). Scalar.
    """
    target = _fill_masked(target, pred, mask)
    return masked_mean(jnp.sum(jnp.square(pred - target), -1), mask)


def geodesic_loss(R_pred, R_true, mask=None):
    """Mean geodesic angle (radians) between rotations (..., 3, 3): θ = angle of R̂ R*ᵀ ∈ [0, π].

    Uses ``rotation.geodesic_distance`` (atan2 form: equal to the clamped arccos of
    (tr(R̂R*ᵀ) − 1)/2, with finite gradients at θ = 0 and π).
    """
    return masked_mean(rotation_lib.geodesic_distance(R_pred, R_true), mask)


def _not_pupil(mask):
    return jnp.asarray(mask, bool) & NON_PUPIL_MASK


def _check(batch: Mapping, keys, name: str):
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{name} batch lacks {missing}; it has {sorted(batch)}")


def multiview_loss(pred, batch: Mapping, weights) -> tuple[jax.Array, dict]:
    """Eq. (3): L_mv = w₁·MSE(L̂3D, L3D*) + w₂·MSE(t̂, t*) + w₃·LLL(L̂2.5D, L2D*; Σ̂) + w₄·Geo(R̂, R*).

    pred: ``model.Prediction``. batch: ``landmarks3d (B,98,3)`` world pseudo-labels,
    ``landmarks2d (B,98,2)`` the pseudo-labels projected with the true camera, ``rotation
    (B,3,3)``, ``translation (B,3)``, ``mask (B,98)`` valid pseudo-labels. Pupils (96, 97) are
    always excluded here too: GAN-rendered pupils follow the camera (§4).
    weights: ``config.loss`` (w_landmarks3d, w_translation, w_lll_multiview, w_geodesic).
    Returns (total, {"landmarks3d", "translation", "lll", "geodesic", "total"}), unweighted terms.
    """
    _check(batch, ("landmarks3d", "landmarks2d", "rotation", "translation", "mask"), "multiview")
    mask = _not_pupil(batch["mask"])
    terms = {
        "landmarks3d": mse(pred.landmarks3d, batch["landmarks3d"], mask),
        "translation": mse(pred.translation, batch["translation"]),
        "lll": laplacian_nll(batch["landmarks2d"], pred.landmarks2d, pred.scale_tril, mask),
        "geodesic": geodesic_loss(pred.rotation, batch["rotation"]),
    }
    total = (weights.w_landmarks3d * terms["landmarks3d"] + weights.w_translation * terms["translation"]
             + weights.w_lll_multiview * terms["lll"] + weights.w_geodesic * terms["geodesic"])
    terms["total"] = total
    return total, terms


def multiframe_loss(pred, batch: Mapping, weights) -> tuple[jax.Array, dict]:
    """Eq. (4): L_mf = w_multiframe · masked LLL(L2D*, L̂2.5D; Σ̂) over the mask m.

    batch: ``landmarks2d (B,98,2)`` 2D pseudo-labels (normalized image coords), ``mask (B,98)``
    = detector confidence AND the normal-template visibility of the stop-gradient predicted
    rotation (computed by the caller with ``views.normal_visibility_mask``).
    Returns (total, {"lll", "total"}).
    """
    _check(batch, ("landmarks2d", "mask"), "multiframe")
    lll = laplacian_nll(batch["landmarks2d"], pred.landmarks2d, pred.scale_tril, batch["mask"])
    total = weights.w_multiframe * lll
    return total, {"lll": lll, "total": total}
