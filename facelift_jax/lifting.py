"""Masked multi-view lifting of 2D landmark detections to 3D pseudo-labels (FaceLift §3, Fig. 3).

For one latent, V views with cameras c_v and detections l[v, n] (normalized image coordinates,
see ``camera.py``), find the world points L_n (GAN canonical space) minimizing

    E(L) = Σ_v Σ_n m[v, n] · ρ(‖π(L_n; c_v) − l[v, n]‖)

with ρ robust: ``cauchy`` (default; ρ(s) = δ²/2·log(1 + (s/δ)²), redescending, so gross detector
failures lose their pull), ``huber`` (quadratic up to δ, then linear), ``laplacian`` (ρ(s) = s) or
``l2`` (the Gaussian maximum likelihood). δ = ``huber_delta`` for every loss that has a scale.
Landmarks do not interact, so E splits into N independent 3-parameter problems; the solver uses
that structure (3×3 blocks) but is written for one latent and ``jax.vmap``-ed over latents.

Solver
------
1. Closed-form DLT initialisation. With A = K R, b = K t and q = A L + b, each observation gives
   two linear equations (A_k − l_k A_2)·L + (b_k − l_k b_2) = 0 (k = x, y). Their 4×4 normal
   matrix [[M, m], [mᵀ, ·]] with the homogeneous coordinate fixed to 1 yields L = −M⁻¹ m: one 3×3
   solve per landmark (closed-form cofactors), no SVD.
2. Gauss–Newton / IRLS as an Optax chain: the gradient g_n = Σ_v w J_vnᵀ r_vn of E is
   preconditioned by its landmark's 3×3 Gauss–Newton matrix H_n = Σ_v w J_vnᵀ J_vn
   (``scale_by_landmark_gauss_newton``; with the IRLS weights w = ρ'(s)/s it is the Gauss–Newton
   step of the reweighted least-squares problem, whose fixed point is the robust optimum), then
   scaled by −learning_rate. From the DLT start a handful of steps
   reach the optimum. ``optimizer="adam"`` swaps in ``optax.adam`` on ``jax.grad(E)`` instead.
3. A fixed-length ``lax.scan`` runs the steps; the result of the last step is kept only where it
   lowers E relative to the DLT start (a divergence guard that costs two loss evaluations).

Robustness: NaN or infinite detections count as masked; a landmark with fewer than
``min_views`` usable views keeps the fallback template point and is invalid; any non-finite or
behind-the-camera solution falls back as well. Nothing crosses latents, so one bad latent never
changes another latent's numbers.

Batching: ``lift`` runs any number of latents in equal chunks of at most ``chunk_size`` through one
jitted, vmapped function (the last chunk is padded with fully-masked latents, so one shape compiles
once).
With several devices the latent axis of each chunk is sharded over a one-axis ``"data"`` mesh.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec

from facelift_jax import batching
from facelift_jax import camera as camera_lib

# Per-latent status bits (``LiftResult.status``); 0 means every requested landmark is valid.
STATUS_OK = 0
STATUS_NONFINITE_INPUT = 1  # some masked-in detection was NaN/inf and was dropped
STATUS_TOO_FEW_VIEWS = 2  # some landmark the mask asked for ended with < min_views usable views
STATUS_REJECTED = 4  # some landmark with enough views failed the residual / inlier / depth checks
STATUS_NO_VALID = 8  # no landmark of this latent is valid
STATUS_NAMES = {
    STATUS_NONFINITE_INPUT: "nonfinite_input",
    STATUS_TOO_FEW_VIEWS: "too_few_views",
    STATUS_REJECTED: "rejected",
    STATUS_NO_VALID: "no_valid",
}

LOSSES = ("huber", "cauchy", "laplacian", "l2")
OPTIMIZERS = ("gauss_newton", "adam")
_EPS_DEPTH = 1e-6


def default_config() -> ml_collections.ConfigDict:
    """The ``lifting`` config section: the one source of its defaults (``configs/default.py`` and
    ``LiftSettings`` take them from here)."""
    return ml_collections.ConfigDict(dict(
        optimizer="gauss_newton",  # "gauss_newton" (Optax chain: per-landmark 3×3 GN/IRLS preconditioner) or "adam"
        steps=5,                # fixed-length lax.scan after the closed-form DLT start (adam needs ~300)
        learning_rate=1.0,      # GN step scale (1 = full step); adam: e.g. 1e-3
        loss="cauchy",          # "cauchy" (redescending: rejects gross outliers), "huber", "laplacian", "l2"
        huber_delta=0.015,      # scale δ of the robust loss, normalized image units (cauchy: weight ½ at δ)
        residual_threshold=0.02,  # RMS reprojection residual above which a point is invalid
        outlier_threshold=0.05,   # a view's error above this does not count as an inlier view
        min_views=2,            # inlier views needed for a valid point ...
        min_inlier_fraction=0.5,  # ... and at least this fraction of its usable views
        damping=1e-6,           # Levenberg damping of each 3×3 block, relative to its trace
        chunk_size=4096,        # latents per jitted call
    ))


_DEFAULT = default_config()


@dataclasses.dataclass(frozen=True)
class LiftSettings:
    """Hashable solver settings (static under jit); meaning and defaults: ``default_config``."""

    optimizer: str = _DEFAULT.optimizer
    steps: int = _DEFAULT.steps
    learning_rate: float = _DEFAULT.learning_rate
    loss: str = _DEFAULT.loss
    huber_delta: float = _DEFAULT.huber_delta
    residual_threshold: float = _DEFAULT.residual_threshold
    outlier_threshold: float = _DEFAULT.outlier_threshold
    min_views: int = _DEFAULT.min_views
    min_inlier_fraction: float = _DEFAULT.min_inlier_fraction
    damping: float = _DEFAULT.damping

    @classmethod
    def from_config(cls, config) -> "LiftSettings":
        base = default_config()
        if config is not None:
            if "lifting" in config:
                raise ValueError("lifting config: pass the `lifting` section (config.lifting), not the whole config")
            base.update(dict(config))
        s = cls(**{f.name: type(getattr(cls, f.name))(base[f.name]) for f in dataclasses.fields(cls)})
        if s.optimizer not in OPTIMIZERS:
            raise ValueError(f"lifting.optimizer must be one of {OPTIMIZERS}, got {s.optimizer!r}")
        if s.loss not in LOSSES:
            raise ValueError(f"lifting.loss must be one of {LOSSES}, got {s.loss!r}")
        if s.steps < 0 or s.min_views < 2 or s.huber_delta <= 0 or s.learning_rate <= 0:
            raise ValueError(f"lifting config out of range (steps ≥ 0, min_views ≥ 2, huber_delta > 0, "
                             f"learning_rate > 0): {s}")
        return s


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LiftResult:
    """Lifting output for B latents and N landmarks.

    points3d: (B, N, 3) world (GAN canonical) points; the fallback template point where invalid.
    residual: (B, N) RMS reprojection error (normalized image units) over the landmark's inlier
        views (used views with error ≤ outlier_threshold); over all used views when it has no
        inlier; 0 where no view was usable.
    num_views: (B, N) int32 usable views (masked in and finite).
    num_inliers: (B, N) int32 usable views with error ≤ outlier_threshold.
    valid: (B, N) bool: at least max(min_views, min_inlier_fraction · num_views) inlier views (two
        views are almost always consistent with some point, so a majority is asked for too),
        residual ≤ residual_threshold, finite, in front of every camera that sees it.
    status: (B,) int32 bit set of ``STATUS_*`` (0 = ok).
    """

    points3d: jax.Array
    residual: jax.Array
    num_views: jax.Array
    num_inliers: jax.Array
    valid: jax.Array
    status: jax.Array


# ---------------------------------------------------------------------------------------------
# Small closed forms. Inside the solver every 3-vector and 3×3 block is stored components-first,
# (3, N) and (3, 3, N), so that all arithmetic is elementwise on (V, N) / (N,) arrays whose
# minor axis is the landmark axis: XLA then fuses and vectorizes it instead of looping over
# millions of tiny matrix products.


def solve_spd3(H, g):
    """Solve H x = g for symmetric 3×3 blocks stored components-first: H (3, 3, ...), g (3, ...).

    Cofactor formula (elementwise). Callers damp H so it is never singular.
    """
    a, b, c = H[0, 0], H[0, 1], H[0, 2]
    d, e, f = H[1, 1], H[1, 2], H[2, 2]
    c00 = d * f - e * e
    c01 = c * e - b * f
    c02 = b * e - c * d
    c11 = a * f - c * c
    c12 = b * c - a * e
    c22 = a * d - b * b
    inv_det = 1.0 / (a * c00 + b * c01 + c * c02)
    x0 = c00 * g[0] + c01 * g[1] + c02 * g[2]
    x1 = c01 * g[0] + c11 * g[1] + c12 * g[2]
    x2 = c02 * g[0] + c12 * g[1] + c22 * g[2]
    return jnp.stack([x0, x1, x2]) * inv_det


def _damped(H, damping):
    """H + λ·(tr H / 3 + tiny)·I for components-first blocks (3, 3, ...): Levenberg damping
    relative to each block's own scale."""
    scale = damping * ((H[0, 0] + H[1, 1] + H[2, 2]) / 3.0 + 1e-12)
    return H + scale * jnp.eye(3, dtype=H.dtype).reshape((3, 3) + (1,) * (H.ndim - 2))


def scale_by_landmark_gauss_newton(damping: float = 1e-6) -> optax.GradientTransformationExtraArgs:
    """Optax transform: precondition per-landmark gradients with their 3×3 curvature blocks.

    ``update(updates, state, params, *, curvature)``: ``updates`` (3, N) components-first
    gradients, ``curvature`` (3, 3, N) the Gauss–Newton matrix of each landmark; returns
    (H + λ·tr(H)/3·I)⁻¹ g. Chained with ``optax.scale(-1)`` this is a Gauss–Newton / IRLS step.
    """

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None, *, curvature, **extra_args):
        del params, extra_args
        return solve_spd3(_damped(curvature, damping), updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def make_optimizer(settings: LiftSettings) -> optax.GradientTransformationExtraArgs:
    """The Optax chain of ``settings.optimizer``."""
    if settings.optimizer == "gauss_newton":
        return optax.chain(scale_by_landmark_gauss_newton(settings.damping), optax.scale(-settings.learning_rate))
    return optax.chain(optax.adam(settings.learning_rate))


# ---------------------------------------------------------------------------------------------
# The one-latent problem


def projection_matrices(cameras: camera_lib.Camera):
    """(A = K R (..., 3, 3), b = K t (..., 3)): q = A·L + b, π(L) = q_xy / q_z."""
    A = jnp.einsum("...ij,...jk->...ik", cameras.K, cameras.R)
    b = jnp.einsum("...ij,...j->...i", cameras.K, cameras.t)
    return A.astype(jnp.float32), b.astype(jnp.float32)


def robust_rho(s, settings: LiftSettings):
    """ρ(s) for residual norms s ≥ 0."""
    if settings.loss == "l2":
        return 0.5 * s * s
    if settings.loss == "laplacian":
        return s
    d = settings.huber_delta
    if settings.loss == "cauchy":
        return 0.5 * d * d * jnp.log1p((s / d) ** 2)
    return jnp.where(s <= d, 0.5 * s * s, d * (s - 0.5 * d))


def irls_weight(s, settings: LiftSettings):
    """ρ'(s)/s: the weight that turns the robust gradient into a weighted least-squares one."""
    if settings.loss == "l2":
        return jnp.ones_like(s)
    if settings.loss == "laplacian":
        return 1.0 / jnp.maximum(s, 1e-3 * settings.huber_delta)
    d = settings.huber_delta
    if settings.loss == "cauchy":
        return 1.0 / (1.0 + (s / d) ** 2)
    return jnp.where(s <= d, 1.0, d / jnp.maximum(s, d))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Views:
    """Observations of one latent, or of one view when sliced by ``_sum_over_views``.

    A (V, 3, 3), b (V, 3): per-view projection q = A L + b; obs (V, 2, N) finite detections,
    components-first; used (V, N) bool.
    """

    A: jax.Array
    b: jax.Array
    obs: jax.Array
    used: jax.Array


def _sum_over_views(term, views: _Views, x):
    """Σ_v term(x, view_v) for a pytree of (N,) arrays, accumulated view by view in a ``lax.scan``.

    Every intermediate is then an (N,) array (per latent), so XLA runs a few fused loops over
    latents × landmarks per view instead of materializing latents × views × landmarks
    temporaries, which made the solver memory-bound.
    """
    first = jax.tree_util.tree_map(lambda a: a[0], views)
    init = jax.tree_util.tree_map(jnp.zeros_like, term(x, first))

    def body(acc, view):
        return jax.tree_util.tree_map(jnp.add, acc, term(x, view)), None

    return jax.lax.scan(body, init, views)[0]


def _residual_view(x, view: _Views):
    """One view: x (3, N) → (r = π(x) − l as two (N,) arrays, s = ‖r‖, ok = used and in front,
    uv, q_z). Values where q_z ≤ 0 are finite placeholders (ok is False there)."""
    A, b = view.A, view.b
    q = [A[i, 0] * x[0] + A[i, 1] * x[1] + A[i, 2] * x[2] + b[i] for i in range(3)]
    w = q[2]
    inv_w = 1.0 / jnp.where(w > _EPS_DEPTH, w, 1.0)
    uv = (q[0] * inv_w, q[1] * inv_w)
    # clipped so absurd detections (|l| ~ 1e30) give huge but finite squares, never inf
    r = (jnp.clip(uv[0] - view.obs[0], -1e6, 1e6), jnp.clip(uv[1] - view.obs[1], -1e6, 1e6))
    s = jnp.sqrt(r[0] * r[0] + r[1] * r[1] + 1e-30)
    return r, s, view.used & (w > _EPS_DEPTH), uv, w


def per_landmark_objective(x, views: _Views, settings: LiftSettings):
    """E of one latent split by landmark: x (3, N) → (N,)."""

    def term(x, view):
        _, s, ok, _, _ = _residual_view(x, view)
        return jnp.where(ok, robust_rho(s, settings), 0.0)

    return _sum_over_views(term, views, x)


def objective(x, views: _Views, settings: LiftSettings):
    """E(L) of one latent, x (3, N) → scalar."""
    return jnp.sum(per_landmark_objective(x, views, settings))


_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _stack_sym(h):
    """6 upper entries (each (N,)) in ``_UPPER`` order → (3, 3, N) symmetric blocks."""
    idx = {ij: k for k, ij in enumerate(_UPPER)}
    return jnp.stack([jnp.stack([h[idx[min(i, j), max(i, j)]] for j in range(3)]) for i in range(3)])


def gradient_and_curvature(x, views: _Views, settings: LiftSettings):
    """Analytic ∇E (3, N) and per-landmark Gauss–Newton matrices H (3, 3, N).

    With q = A L + b and uv = q_xy / q_z, the Jacobian of uv is J = (A_xy − uv ⊗ A_z) / q_z (2×3);
    g = Σ_v w Jᵀ r and H = Σ_v w Jᵀ J with IRLS weights w = ρ'(s)/s.
    """

    def term(x, view):
        r, s, ok, uv, w = _residual_view(x, view)
        A = view.A
        inv_w = 1.0 / jnp.where(ok, w, 1.0)
        weight = jnp.where(ok, irls_weight(s, settings), 0.0)
        J = [[(A[k, j] - uv[k] * A[2, j]) * inv_w for j in range(3)] for k in range(2)]
        wr = (weight * r[0], weight * r[1])
        g = tuple(J[0][i] * wr[0] + J[1][i] * wr[1] for i in range(3))
        h = tuple(weight * (J[0][i] * J[0][j] + J[1][i] * J[1][j]) for i, j in _UPPER)
        return g, h

    g, h = _sum_over_views(term, views, x)
    return jnp.stack(g), _stack_sym(h)


def dlt_triangulate(views: _Views):
    """Closed-form multi-view DLT of one latent → (3, N).

    Rows C = A_xy − l ⊗ A_z, d = b_xy − l·b_z of every used view; L = −(Σ CᵀC)⁻¹ Σ Cᵀd, the
    normal equations of the 4×4 DLT system with the homogeneous coordinate fixed to 1.
    Landmarks with < 2 views give an arbitrary finite value (the caller replaces it).
    """

    def term(_, view):
        A, b, l = view.A, view.b, view.obs
        u = view.used.astype(l.dtype)
        C = [[A[k, j] - l[k] * A[2, j] for j in range(3)] for k in range(2)]
        d = [u * (b[k] - l[k] * b[2]) for k in range(2)]
        m = tuple(u * (C[0][i] * C[0][j] + C[1][i] * C[1][j]) for i, j in _UPPER)
        rhs = tuple(C[0][i] * d[0] + C[1][i] * d[1] for i in range(3))
        return m, rhs

    m, rhs = _sum_over_views(term, views, None)
    return -solve_spd3(_damped(_stack_sym(m), 1e-7), jnp.stack(rhs))


def _residual_stats(x, views: _Views, settings: LiftSettings):
    """Per landmark: (in front of every using camera, #inliers, RMS over inliers, RMS over used)."""

    def term(x, view):
        _, s, ok, _, w = _residual_view(x, view)
        inlier = ok & (s <= settings.outlier_threshold)
        sq = s * s
        behind = (view.used & (w <= _EPS_DEPTH)).astype(jnp.int32)
        return (behind, inlier.astype(jnp.int32), ok.astype(jnp.int32),
                jnp.where(inlier, sq, 0.0), jnp.where(ok, sq, 0.0))

    behind, n_in, n_ok, sq_in, sq_ok = _sum_over_views(term, views, x)
    rms_in = jnp.sqrt(sq_in / jnp.maximum(n_in, 1))
    rms_ok = jnp.sqrt(sq_ok / jnp.maximum(n_ok, 1))
    return behind == 0, n_in, rms_in, rms_ok


def lift_one(obs, mask, A, b, template, settings: LiftSettings):
    """Lift one latent.

    obs: (V, 2, N) detections (components-first), normalized image coordinates; may hold NaN/inf
        (treated as masked).
    mask: (V, N) bool, which detections to trust. A, b: (V, 3, 3), (V, 3) from
    ``projection_matrices``. template: (N, 3) world fallback points.
    Returns a dict of the ``LiftResult`` fields without the batch axis.
    """
    finite = jnp.all(jnp.isfinite(obs), 1)
    used = mask & finite
    views = _Views(A=A, b=b, used=used, obs=jnp.where(used[:, None], obs, 0.0))  # no NaN enters the arithmetic
    template_c = template.T
    num_views = jnp.sum(used, 0).astype(jnp.int32)
    solvable = num_views >= settings.min_views

    x0 = dlt_triangulate(views)
    x0 = jnp.where(solvable & jnp.all(jnp.isfinite(x0), 0), x0, template_c)

    opt = make_optimizer(settings)

    def step(carry, _):
        x, state = carry
        if settings.optimizer == "gauss_newton":
            g, H = gradient_and_curvature(x, views, settings)
            updates, state = opt.update(g, state, x, curvature=H)
        else:
            g = jax.grad(objective)(x, views, settings)
            updates, state = opt.update(g, state, x)
        updates = jnp.where(solvable, updates, 0.0)  # fallback points stay put
        return (optax.apply_updates(x, updates), state), None

    (x, _), _ = jax.lax.scan(step, (x0, opt.init(x0)), None, length=settings.steps)

    # Divergence guard: keep the DLT start where the iterations made things worse or non-finite.
    if settings.steps:
        better = per_landmark_objective(x, views, settings) <= per_landmark_objective(x0, views, settings)
        x = jnp.where(better & jnp.all(jnp.isfinite(x), 0), x, x0)

    in_front, num_inliers, rms_in, rms_all = _residual_stats(x, views, settings)
    residual = jnp.where(num_inliers > 0, rms_in, rms_all)
    enough = (num_inliers >= settings.min_views) & (num_inliers >= settings.min_inlier_fraction * num_views)
    valid = (solvable & in_front & enough
             & (residual <= settings.residual_threshold) & jnp.all(jnp.isfinite(x), 0))
    x = jnp.where(in_front, x, template_c)

    requested = jnp.sum(mask, 0) >= settings.min_views
    status = (jnp.where(jnp.any(mask & ~finite), STATUS_NONFINITE_INPUT, 0)
              | jnp.where(jnp.any(requested & ~solvable), STATUS_TOO_FEW_VIEWS, 0)
              | jnp.where(jnp.any(solvable & ~valid), STATUS_REJECTED, 0)
              | jnp.where(~jnp.any(valid), STATUS_NO_VALID, 0)).astype(jnp.int32)
    return dict(points3d=x.T, residual=residual, num_views=num_views, num_inliers=num_inliers,
                valid=valid, status=status)


@functools.lru_cache(maxsize=None)
def _batched_fn(settings: LiftSettings, cameras_batched: bool):
    """jit(vmap(lift_one)) over latents: (obs (B, V, N, 2), mask (B, V, N), A (V|B,V, 3, 3),
    b (V|B,V, 3), template (N, 3)) → dict of (B, ...) arrays.

    The inputs are made views-major first, so that the vmapped ``lax.scan`` over views slices one
    contiguous (latents × landmarks) block per view; latents-major input made every solver step
    about 3× slower on a CPU.
    """
    cam_axis = 1 if cameras_batched else None
    one = jax.vmap(functools.partial(lift_one, settings=settings), in_axes=(1, 1, cam_axis, cam_axis, None))

    def batched(obs, mask, A, b, template):
        if cameras_batched:
            A, b = jnp.swapaxes(A, 0, 1), jnp.swapaxes(b, 0, 1)
        return one(jnp.transpose(obs, (1, 0, 3, 2)), jnp.swapaxes(mask, 0, 1), A, b, template)

    return jax.jit(batched)


# ---------------------------------------------------------------------------------------------
# Public entry


def _validate(landmarks2d, cameras, mask):
    if landmarks2d.ndim != 4 or landmarks2d.shape[-1] != 2:
        raise ValueError(f"landmarks2d must be (B, V, N, 2), got shape {landmarks2d.shape}")
    B, V, N, _ = landmarks2d.shape
    if not isinstance(cameras, camera_lib.Camera):
        raise TypeError(f"cameras must be a camera.Camera, got {type(cameras).__name__}")
    cb = cameras.batch_shape
    if cb not in ((V,), (B, V)):
        raise ValueError(f"cameras must have batch shape ({V},) or ({B}, {V}) to match landmarks2d "
                         f"{landmarks2d.shape}, got {cb}")
    if mask is not None and mask.shape != (B, V, N):
        raise ValueError(f"mask must be (B, V, N) = {(B, V, N)} bool, got shape {mask.shape}")


def _mesh():
    return batching.data_mesh() if jax.device_count() > 1 else None


def lift(landmarks2d, cameras: camera_lib.Camera, mask=None, config=None, *, template=None) -> LiftResult:
    """Lift B latents' multi-view detections to 3D.

    landmarks2d: (B, V, N, 2) detections in normalized image coordinates (NaN/inf = missing).
    cameras: ``camera.Camera`` with batch (V,) shared by all latents, or (B, V).
    mask: (B, V, N) bool view-dependent mask (``views.view_masks`` broadcast), or None = all.
    config: the ``lifting`` config section (or None for ``default_config()``).
    template: (N, 3) world fallback points for landmarks that cannot be lifted; defaults to
        ``views.canonical_template()`` for N = 98, else zeros.
    """
    landmarks2d = np.asarray(landmarks2d, np.float32)
    mask = None if mask is None else np.asarray(mask, bool)
    _validate(landmarks2d, cameras, mask)
    B, V, N, _ = landmarks2d.shape
    settings = LiftSettings.from_config(config)
    chunk = int((config or {}).get("chunk_size", default_config().chunk_size))
    if chunk < 1:
        raise ValueError(f"lifting.chunk_size must be ≥ 1, got {chunk}")
    if template is None:
        if N == 98:
            from facelift_jax import views

            template = views.canonical_template()
        else:
            template = np.zeros((N, 3), np.float32)
    template = jnp.asarray(template, jnp.float32)
    if template.shape != (N, 3):
        raise ValueError(f"template must be ({N}, 3), got {template.shape}")
    if mask is None:
        mask = np.ones((B, V, N), bool)

    A, b = projection_matrices(cameras)
    cameras_batched = len(cameras.batch_shape) == 2
    fn = _batched_fn(settings, cameras_batched)

    mesh = _mesh()
    ndev = 1 if mesh is None else mesh.size
    chunk = -(-B // -(-B // chunk))  # equal chunks: 10000 at ≤ 4096 → 3 × 3334, not 4096 + 4096 + 1808 padded
    chunk = -(-chunk // ndev) * ndev  # a multiple of the device count
    if mesh is not None:
        shard = NamedSharding(mesh, PartitionSpec("data"))
        replicate = NamedSharding(mesh, PartitionSpec())
        place = lambda x: jax.device_put(x, shard)  # noqa: E731
        template = jax.device_put(template, replicate)
        if not cameras_batched:
            A, b = jax.device_put(A, replicate), jax.device_put(b, replicate)
    else:
        place = jnp.asarray

    outs = []
    for start in range(0, B, chunk):
        stop = min(start + chunk, B)
        pad = chunk - (stop - start)
        obs_c, mask_c = landmarks2d[start:stop], mask[start:stop]
        if pad:  # fully masked padding latents: same compiled shape, results dropped
            obs_c = np.concatenate([obs_c, np.zeros((pad, V, N, 2), np.float32)])
            mask_c = np.concatenate([mask_c, np.zeros((pad, V, N), bool)])
        if cameras_batched:
            A_c, b_c = A[start:stop], b[start:stop]
            if pad:
                A_c = jnp.concatenate([A_c, jnp.broadcast_to(A_c[:1], (pad,) + A_c.shape[1:])])
                b_c = jnp.concatenate([b_c, jnp.broadcast_to(b_c[:1], (pad,) + b_c.shape[1:])])
            A_c, b_c = place(A_c), place(b_c)
        else:
            A_c, b_c = A, b
        out = fn(place(obs_c), place(mask_c), A_c, b_c, template)
        outs.append({k: v[: stop - start] for k, v in out.items()} if pad else out)
    merged = outs[0] if len(outs) == 1 else {k: jnp.concatenate([o[k] for o in outs]) for k in outs[0]}
    return LiftResult(**merged)
