"""Temporal filtering of per-frame face predictions: covariance Kalman, One Euro, none (pure JAX).

A video's per-frame predictions jitter; this module smooths them over time, offline on a whole
clip (``filter_clip``: one ``jax.lax.scan``) or step by step on a live stream (``init`` then
``step`` per frame, or ``run`` per chunk of frames, each continuing from the state it is given;
``run`` over a clip equals the ``step`` loop, see tests/test_temporal.py).

Filters (``FilterConfig.kind``):

* ``"kalman"`` — per landmark a constant-velocity Kalman filter (state: position and velocity,
  dimension 2 or 3). The measurement noise of a 2D landmark is the MODEL'S OWN predicted covariance
  for that landmark and frame (pixels²), so occluded or uncertain points are smoothed more and
  sharp ones follow quickly. Process noise: white acceleration of std ``accel`` face sizes/s²
  (scaled by the current face size, so one setting fits every resolution).
  3D landmarks (world, the model's canonical space): a 3D constant-velocity Kalman filter per
  landmark whose measurement noise is LIFTED from the 2D covariance — isotropic, variance
  = (mean of the 2D covariance's eigenvalues) × (world units per pixel)², the back-projection scale
  at the landmark's depth (``lift_variance_3d``). The model gives no depth uncertainty; isotropy
  assumes the depth error is as large as the image-plane error (the 2D→3D lifting is trained with
  the same loss on every axis of the 3D points). Same process noise, relative to the 3D face size.
  Head rotation: an error-state Kalman filter on SO(3): state (R, ω), R_{k+1} = exp(ω dt) R_k;
  errors live in the tangent space at the current estimate (R_true = exp(δθ) R), innovations are
  log(Z Rᵀ), corrections are applied with exp: the estimate never leaves SO(3) and matrices or Euler
  angles are never averaged. The model predicts no pose covariance: the measurement noise is
  ``rotation_sigma_deg`` (isotropic). Translation: a 3D constant-velocity Kalman filter, isotropic
  noise ``translation_sigma`` 3D face sizes.
* ``"one_euro"`` — the One Euro filter (Casiez, Roussel & Vogel, CHI 2012; what MediaPipe smooths
  landmarks with) on every coordinate: α(f_c) = 1 / (1 + τ/T_e), τ = 1/(2π f_c), T_e = 1/fps;
  derivative low-passed with cutoff ``d_cutoff``; f_c = ``min_cutoff`` + ``beta``·|ẋ| with ẋ in face
  sizes/s (as MediaPipe's value scale does: the same parameters at every resolution). Rotation: the
  same on the manifold, R ← exp(α log(Z Rᵀ)) R (a geodesic step), speed |ω| in rad/s.
* ``"none"`` — the measurements themselves.

Frames marked invalid (no face) skip the update: the Kalman filter predicts, One Euro holds; the
first valid frame initializes the filter. Shapes: P landmarks (98 in this project), one face.
Units: landmarks2d and covariances in pixels (pixels²) of the image, landmarks3d and translation in
world units, rotation world→camera (3, 3); fps in frames per second.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from facelift_jax import camera as camera_lib

KINDS = ("kalman", "one_euro", "none")


@functools.partial(jax.tree_util.register_dataclass, meta_fields=("kind", "fps"),
                   data_fields=("accel", "init_speed", "rotation_sigma_deg", "rotation_accel_deg",
                                "translation_sigma", "min_cutoff", "beta", "d_cutoff"))
@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """Filter choice and parameters: a pytree whose ``kind`` and ``fps`` are static (a new one
    compiles anew) and whose numbers are traced (tuning them reuses the compiled filter).

    kind: kalman | one_euro | none. fps: frame rate (s⁻¹).
    Kalman: accel — std of a landmark's acceleration (face sizes/s², white noise); init_speed —
    prior std of the first frame's velocity (face sizes/s); rotation_sigma_deg — rotation
    measurement noise (degrees, the model predicts none); rotation_accel_deg — std of the angular
    acceleration (degrees/s²); translation_sigma — translation measurement noise (3D face sizes).
    One Euro: min_cutoff (Hz), beta (Hz per face size/s; per rad/s for the rotation), d_cutoff (Hz).
    """

    kind: str = "kalman"
    fps: float = 25.0
    accel: float = 1.0
    init_speed: float = 1.0
    rotation_sigma_deg: float = 3.0
    rotation_accel_deg: float = 150.0
    translation_sigma: float = 0.02
    min_cutoff: float = 1.0
    beta: float = 1.0
    d_cutoff: float = 1.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"filter kind must be one of {KINDS}, got {self.kind!r}")
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps} (pass the video's frame rate)")

    @property
    def dt(self) -> float:
        return 1.0 / float(self.fps)

    def describe(self) -> dict:
        """The parameters that matter for ``kind`` (for output files)."""
        keys = {"kalman": ("fps", "accel", "init_speed", "rotation_sigma_deg", "rotation_accel_deg",
                           "translation_sigma"),
                "one_euro": ("fps", "min_cutoff", "beta", "d_cutoff"), "none": ()}[self.kind]
        return {"kind": self.kind, **{k: getattr(self, k) for k in keys}}


# ----------------------------------------------------------------------------------------------
# Observations
# ----------------------------------------------------------------------------------------------

@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Observation:
    """One frame's prediction (or a stack (T, ...) of them).

    landmarks2d (P, 2) pixels; covariances (P, 2, 2) pixels²; landmarks3d (P, 3) world;
    variance3d (P,) isotropic measurement variance of the 3D points (world units²);
    rotation (3, 3) world→camera; translation (3,); scale2d (), scale3d () face sizes (pixels,
    world units) that set the process noise and One Euro's speed unit; valid () bool.
    """

    landmarks2d: jax.Array
    covariances: jax.Array
    landmarks3d: jax.Array
    variance3d: jax.Array
    rotation: jax.Array
    translation: jax.Array
    scale2d: jax.Array
    scale3d: jax.Array
    valid: jax.Array

    def __getitem__(self, index) -> "Observation":
        return jax.tree_util.tree_map(lambda x: x[index], self)


def lift_variance_3d(covariances, landmarks3d, rotation, translation, crop_side, focal: float = camera_lib.FOCAL):
    """Isotropic world-space variance (..., P) of 3D landmarks from their 2D covariance (..., P, 2, 2).

    A pixel at depth z (camera space) spans z / (focal · crop_side) world units (the model's camera
    has normalized focal ``focal`` over a crop of ``crop_side`` pixels); the 2D variance (mean of
    the two eigenvalues = trace / 2) is scaled by that squared. Shapes: landmarks3d (..., P, 3)
    world, rotation (..., 3, 3), translation (..., 3), crop_side (...) pixels.
    """
    cam = jnp.einsum("...ij,...pj->...pi", rotation, landmarks3d) + translation[..., None, :]
    per_pixel = jnp.maximum(cam[..., 2], 1e-6) / (focal * jnp.asarray(crop_side)[..., None])
    return 0.5 * jnp.trace(covariances, axis1=-2, axis2=-1) * per_pixel ** 2


def observation(landmarks2d, covariances=None, landmarks3d=None, rotation=None, translation=None, *,
                variance3d=None, valid=None, scale2d=None, scale3d=None, sigma2d: float = 0.01) -> Observation:
    """An ``Observation`` (one frame, or a stack (T, ...)) with defaults for what a source lacks.

    Missing covariances → isotropic (``sigma2d`` × face size)² (e.g. MediaPipe, which predicts none);
    missing 3D → zeros, rotation → identity, translation → zeros (filtered but meaningless);
    variance3d → (sigma2d × 3D face size)²; valid → True; scales → ``camera.face_size`` of the points
    (the first 96 of 98: the pupils lie inside the box anyway).
    """
    p2 = jnp.asarray(landmarks2d, jnp.float32)
    lead, n = p2.shape[:-2], p2.shape[-2]
    if p2.shape[-1] != 2:
        raise ValueError(f"landmarks2d must be (..., P, 2), got {p2.shape}")
    s2 = camera_lib.face_size(p2) if scale2d is None else jnp.broadcast_to(jnp.asarray(scale2d, jnp.float32), lead)
    if covariances is None:
        covariances = (sigma2d * s2)[..., None, None, None] ** 2 * jnp.eye(2)
        covariances = jnp.broadcast_to(covariances, (*lead, n, 2, 2))
    p3 = jnp.zeros((*lead, n, 3)) if landmarks3d is None else jnp.asarray(landmarks3d, jnp.float32)
    s3 = (camera_lib.face_size(p3) if landmarks3d is not None else jnp.ones(lead)) if scale3d is None else \
        jnp.broadcast_to(jnp.asarray(scale3d, jnp.float32), lead)
    if variance3d is None:
        variance3d = jnp.broadcast_to((sigma2d * s3)[..., None] ** 2, (*lead, n))
    rot = jnp.broadcast_to(jnp.eye(3), (*lead, 3, 3)) if rotation is None else jnp.asarray(rotation, jnp.float32)
    tr = jnp.zeros((*lead, 3)) if translation is None else jnp.asarray(translation, jnp.float32)
    val = jnp.ones(lead, bool) if valid is None else jnp.broadcast_to(jnp.asarray(valid, bool), lead)
    cov = jnp.asarray(covariances, jnp.float32)
    if cov.shape != (*lead, n, 2, 2):
        raise ValueError(f"covariances must be {(*lead, n, 2, 2)} to match landmarks2d {p2.shape}, got {cov.shape}")
    return Observation(landmarks2d=p2, covariances=cov, landmarks3d=p3,
                       variance3d=jnp.asarray(variance3d, jnp.float32), rotation=rot, translation=tr,
                       scale2d=s2, scale3d=s3, valid=val)


# ----------------------------------------------------------------------------------------------
# SO(3) exp / log
# ----------------------------------------------------------------------------------------------

def hat(w):
    """(..., 3) → (..., 3, 3) skew matrix [w]× (so that hat(w) v = w × v)."""
    z = jnp.zeros_like(w[..., 0])
    return jnp.stack([jnp.stack([z, -w[..., 2], w[..., 1]], -1), jnp.stack([w[..., 2], z, -w[..., 0]], -1),
                      jnp.stack([-w[..., 1], w[..., 0], z], -1)], -2)


def so3_exp(w):
    """Rotation vector (..., 3) (radians) → rotation (..., 3, 3), Rodrigues; Taylor series near 0."""
    t2 = jnp.sum(w * w, -1)[..., None, None]
    small = t2 < 1e-8
    t2s = jnp.where(small, 1.0, t2)
    t = jnp.sqrt(t2s)
    a = jnp.where(small, 1.0 - t2 / 6.0, jnp.sin(t) / t)
    b = jnp.where(small, 0.5 - t2 / 24.0, (1.0 - jnp.cos(t)) / t2s)
    W = hat(w)
    return jnp.eye(3) + a * W + b * (W @ W)


def so3_log(R):
    """Rotation (..., 3, 3) → rotation vector (..., 3), angle in [0, π); exact inverse of ``so3_exp``
    away from π (innovations between consecutive frames are far from it)."""
    vee = 0.5 * jnp.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    s = jnp.linalg.norm(vee, axis=-1)
    c = 0.5 * (jnp.trace(R, axis1=-2, axis2=-1) - 1.0)
    theta = jnp.arctan2(s, c)
    small = s < 1e-6
    factor = jnp.where(small, 1.0 + theta ** 2 / 6.0, theta / jnp.where(small, 1.0, s))
    return factor[..., None] * vee


def _orthonormalize(R):
    # removes float32 round-off drift (~1e-7 per step) so that R stays in SO(3) over long streams
    u, _, vt = jnp.linalg.svd(R)
    d = jnp.sign(jnp.linalg.det(u @ vt))
    return u @ (vt * jnp.stack([jnp.ones_like(d), jnp.ones_like(d), d], -1)[..., :, None])


# ----------------------------------------------------------------------------------------------
# Constant-velocity Kalman filter of one point (any dimension d), vmapped over landmarks
# ----------------------------------------------------------------------------------------------

def cv_matrices(d: int, dt: float, accel_std):
    """Transition F (2d, 2d) and process noise Q (2d, 2d) of the constant-velocity model, state
    [position (d), velocity (d)], piecewise-constant white acceleration of std ``accel_std``:
    Q = σ² [[dt⁴/4, dt³/2], [dt³/2, dt²]] ⊗ I_d."""
    eye = jnp.eye(d)
    F = jnp.block([[eye, dt * eye], [jnp.zeros((d, d)), eye]])
    g = jnp.array([[dt ** 4 / 4, dt ** 3 / 2], [dt ** 3 / 2, dt ** 2]])
    return F, jnp.kron(g, eye) * accel_std ** 2


def kalman_point_step(mean, cov, z, R, accel_std, init_speed, dt: float, initialized, valid):
    """One frame of one point: predict (if initialized), then update with z (d,), noise R (d, d) if
    valid; the first valid frame initializes (position z, covariance R; velocity 0 ± init_speed).

    mean (2d,), cov (2d, 2d) → (mean, cov) posterior. Joseph form keeps cov symmetric positive.
    """
    d = z.shape[-1]
    F, Q = cv_matrices(d, dt, accel_std)
    m_pred, P_pred = F @ mean, F @ cov @ F.T + Q
    H = jnp.eye(d, 2 * d)
    S = H @ P_pred @ H.T + R
    K = jnp.linalg.solve(S, H @ P_pred).T             # P Hᵀ S⁻¹ (S, P symmetric)
    m_upd = m_pred + K @ (z - H @ m_pred)
    A = jnp.eye(2 * d) - K @ H
    P_upd = A @ P_pred @ A.T + K @ R @ K.T
    P_upd = 0.5 * (P_upd + P_upd.T)
    m_init = jnp.concatenate([z, jnp.zeros(d)])
    P_init = jax.scipy.linalg.block_diag(R, init_speed ** 2 * jnp.eye(d))
    new_mean = jnp.where(initialized, jnp.where(valid, m_upd, m_pred), jnp.where(valid, m_init, mean))
    new_cov = jnp.where(initialized, jnp.where(valid, P_upd, P_pred), jnp.where(valid, P_init, cov))
    return new_mean, new_cov


_points_step = jax.vmap(kalman_point_step, in_axes=(0, 0, 0, 0, None, None, None, None, None))


# ----------------------------------------------------------------------------------------------
# Rotation: error-state Kalman filter on SO(3)
# ----------------------------------------------------------------------------------------------

def rotation_kalman_step(R, omega, cov, Z, sigma, accel_std, init_speed, dt: float, initialized, valid):
    """One frame: R (3, 3) world→camera estimate, omega (3,) angular velocity (rad/s, left/spatial:
    R_{k+1} = exp(ω dt) R_k), cov (6, 6) over the tangent error [δθ, δω] with R_true = exp(δθ) R;
    measurement Z (3, 3) with isotropic noise sigma (rad). Returns (R, omega, cov)."""
    step = so3_exp(omega * dt)
    R_pred = step @ R
    eye, zero = jnp.eye(3), jnp.zeros((3, 3))
    # exp(ω dt) exp(δθ) R = exp(exp(ω dt) δθ) exp(ω dt) R: the error is rotated by the step
    F = jnp.block([[step, dt * eye], [zero, eye]])
    _, Q = cv_matrices(3, dt, accel_std)
    P_pred = F @ cov @ F.T + Q
    H = jnp.eye(3, 6)
    Rm = sigma ** 2 * eye
    S = H @ P_pred @ H.T + Rm
    K = jnp.linalg.solve(S, H @ P_pred).T
    delta = K @ so3_log(Z @ R_pred.T)                  # innovation in the tangent space at R_pred
    R_upd = _orthonormalize(so3_exp(delta[:3]) @ R_pred)
    omega_upd = omega + delta[3:]
    A = jnp.eye(6) - K @ H
    P_upd = A @ P_pred @ A.T + K @ Rm @ K.T
    P_upd = 0.5 * (P_upd + P_upd.T)
    P_init = jax.scipy.linalg.block_diag(Rm, init_speed ** 2 * eye)

    def pick(upd, pred, init, old):
        return jnp.where(initialized, jnp.where(valid, upd, pred), jnp.where(valid, init, old))

    return (pick(R_upd, R_pred, Z, R), pick(omega_upd, omega, jnp.zeros(3), omega),
            pick(P_upd, P_pred, P_init, cov))


# ----------------------------------------------------------------------------------------------
# One Euro
# ----------------------------------------------------------------------------------------------

def one_euro_alpha(cutoff, dt: float):
    """Smoothing factor α = 1 / (1 + τ/T_e), τ = 1/(2π f_c) (Casiez et al. 2012, eq. 3–4)."""
    tau = 1.0 / (2.0 * jnp.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro_step(x_hat, dx_hat, x, scale, min_cutoff, beta, d_cutoff, dt: float, initialized, valid):
    """One frame of the One Euro filter on every element of x (any shape); |ẋ| / scale sets the
    cutoff (speed in face sizes/s). Returns (x_hat, dx_hat). First valid frame: x_hat = x, ẋ = 0."""
    dx = (x - x_hat) / dt
    a_d = one_euro_alpha(d_cutoff, dt)
    dx_new = a_d * dx + (1.0 - a_d) * dx_hat
    a = one_euro_alpha(min_cutoff + beta * jnp.abs(dx_new) / scale, dt)
    x_new = a * x + (1.0 - a) * x_hat
    keep = initialized & ~valid
    x_out = jnp.where(initialized, jnp.where(valid, x_new, x_hat), jnp.where(valid, x, x_hat))
    dx_out = jnp.where(initialized, jnp.where(keep, dx_hat, dx_new), jnp.zeros_like(dx_hat))
    return x_out, dx_out


def one_euro_rotation_step(R_hat, w_hat, Z, min_cutoff, beta, d_cutoff, dt: float, initialized, valid):
    """One Euro on SO(3): r = log(Z R̂ᵀ), ω = r/dt low-passed, R̂ ← exp(α r) R̂ (geodesic step)."""
    r = so3_log(Z @ R_hat.T)
    a_d = one_euro_alpha(d_cutoff, dt)
    w_new = a_d * r / dt + (1.0 - a_d) * w_hat
    a = one_euro_alpha(min_cutoff + beta * jnp.linalg.norm(w_new), dt)
    R_new = _orthonormalize(so3_exp(a * r) @ R_hat)
    R_out = jnp.where(initialized, jnp.where(valid, R_new, R_hat), jnp.where(valid, Z, R_hat))
    w_out = jnp.where(initialized & valid, w_new, jnp.where(initialized, w_hat, jnp.zeros(3)))
    return R_out, w_out


# ----------------------------------------------------------------------------------------------
# The filter: init / step / run
# ----------------------------------------------------------------------------------------------

@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FilterState:
    """Everything a filter carries between frames (unused parts stay zero for other kinds).

    p2 (P, 4) / c2 (P, 4, 4): 2D [position, velocity] mean and covariance (pixels);
    p3 (P, 6) / c3 (P, 6, 6): the same in 3D (world); rotation (3, 3), omega (3,), c_rot (6, 6);
    t (6,) / c_t (6, 6): translation [position, velocity]; for One Euro p2/p3/t hold [x̂, ẋ̂] and
    omega ω̂; initialized () bool: a valid frame has been seen; scale2d, scale3d (): the face sizes of
    the last valid frame (an invalid frame's own sizes mean nothing: across a gap the Kalman's process
    noise keeps the face's last size).
    """

    p2: jax.Array
    c2: jax.Array
    p3: jax.Array
    c3: jax.Array
    rotation: jax.Array
    omega: jax.Array
    c_rot: jax.Array
    t: jax.Array
    c_t: jax.Array
    initialized: jax.Array
    scale2d: jax.Array
    scale3d: jax.Array


def init(num_points: int = 98) -> FilterState:
    """The empty state of any filter kind: the first valid observation initializes it."""
    n = num_points
    return FilterState(p2=jnp.zeros((n, 4)), c2=jnp.zeros((n, 4, 4)), p3=jnp.zeros((n, 6)),
                       c3=jnp.zeros((n, 6, 6)), rotation=jnp.eye(3), omega=jnp.zeros(3), c_rot=jnp.zeros((6, 6)),
                       t=jnp.zeros(6), c_t=jnp.zeros((6, 6)), initialized=jnp.bool_(False),
                       scale2d=jnp.float32(1.0), scale3d=jnp.float32(1.0))


def _outputs(state: FilterState, obs: Observation, kind: str) -> dict:
    """The filtered frame: landmarks2d (P, 2), covariances (P, 2, 2) (Kalman: posterior; else the
    measurement's), landmarks3d (P, 3), rotation (3, 3), translation (3,)."""
    if kind == "none":
        return dict(landmarks2d=obs.landmarks2d, covariances=obs.covariances, landmarks3d=obs.landmarks3d,
                    rotation=obs.rotation, translation=obs.translation)
    cov = state.c2[:, :2, :2] if kind == "kalman" else obs.covariances
    return dict(landmarks2d=state.p2[:, :2], covariances=cov, landmarks3d=state.p3[:, :3],
                rotation=state.rotation, translation=state.t[:3])


def step(config: FilterConfig, state: FilterState, obs: Observation) -> tuple[FilterState, dict]:
    """Filter one frame: (state, observation of one frame) → (new state, filtered frame dict)."""
    kind, dt, ini, val = config.kind, config.dt, state.initialized, obs.valid
    if kind == "none":
        new = dataclasses.replace(state, initialized=ini | val)
    elif kind == "kalman":
        s2, s3 = jnp.where(val, obs.scale2d, state.scale2d), jnp.where(val, obs.scale3d, state.scale3d)
        p2, c2 = _points_step(state.p2, state.c2, obs.landmarks2d, obs.covariances, config.accel * s2,
                              config.init_speed * s2, dt, ini, val)
        R3 = obs.variance3d[:, None, None] * jnp.eye(3)
        p3, c3 = _points_step(state.p3, state.c3, obs.landmarks3d, R3, config.accel * s3,
                              config.init_speed * s3, dt, ini, val)
        rot, omega, c_rot = rotation_kalman_step(
            state.rotation, state.omega, state.c_rot, obs.rotation, jnp.deg2rad(config.rotation_sigma_deg),
            jnp.deg2rad(config.rotation_accel_deg), 1.0, dt, ini, val)
        t, c_t = kalman_point_step(state.t, state.c_t, obs.translation,
                                   (config.translation_sigma * s3) ** 2 * jnp.eye(3), config.accel * s3,
                                   config.init_speed * s3, dt, ini, val)
        new = FilterState(p2=p2, c2=c2, p3=p3, c3=c3, rotation=rot, omega=omega, c_rot=c_rot, t=t, c_t=c_t,
                          initialized=ini | val, scale2d=s2, scale3d=s3)
    else:  # one_euro
        args = (config.min_cutoff, config.beta, config.d_cutoff, dt, ini, val)
        x2, d2 = one_euro_step(state.p2[:, :2], state.p2[:, 2:], obs.landmarks2d, obs.scale2d, *args)
        x3, d3 = one_euro_step(state.p3[:, :3], state.p3[:, 3:], obs.landmarks3d, obs.scale3d, *args)
        xt, dtr = one_euro_step(state.t[:3], state.t[3:], obs.translation, obs.scale3d, *args)
        rot, omega = one_euro_rotation_step(state.rotation, state.omega, obs.rotation, *args)
        new = dataclasses.replace(state, p2=jnp.concatenate([x2, d2], -1), p3=jnp.concatenate([x3, d3], -1),
                                  t=jnp.concatenate([xt, dtr]), rotation=rot, omega=omega, initialized=ini | val)
    return new, _outputs(new, obs, kind)


@jax.jit
def step_jit(config: FilterConfig, state: FilterState, obs: Observation) -> tuple[FilterState, dict]:
    """``step`` compiled (once per kind, fps and number of points): the live-stream call."""
    return step(config, state, obs)


@jax.jit
def run(config: FilterConfig, state: FilterState, observations: Observation) -> tuple[FilterState, dict]:
    """Filter consecutive frames (an Observation stacked (T, ...)) continuing from ``state``:
    ``jax.lax.scan`` of ``step``; returns (final state, filtered frames stacked (T, ...))."""
    return jax.lax.scan(functools.partial(step, config), state, observations)


def filter_clip(config: FilterConfig, observations: Observation) -> dict:
    """A whole clip at once (offline): filtered frames (T, ...) of stacked observations (T, ...)."""
    return run(config, init(observations.landmarks2d.shape[-2]), observations)[1]
