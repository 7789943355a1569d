"""Rotations: 6D representation, geodesic distance, Euler angles (head pose).

Head-pose Euler angles are taken in camera coordinates (OpenCV: x right, y down, z forward)
relative to the frontal camera of ``camera.py``: a world→camera rotation R is written
R = R_rel · F with F = diag(1, −1, −1) (the frontal camera's rotation) and
R_rel = Rz(roll) · Rx(pitch) · Ry(yaw). For a camera on the sphere looking at the world origin at
azimuth α, elevation β and roll γ this gives yaw = α, pitch = β, roll = γ (with the default
look-at (0, 0, 0.2) the numbers differ slightly). Angles in radians unless a name says degrees.
"""

from __future__ import annotations

import jax.numpy as jnp

FRONTAL = jnp.diag(jnp.array([1.0, -1.0, -1.0]))


def _safe_norm(v, axis=-1, keepdims=False):
    # Double-where keeps the gradient finite (zero) at v = 0 instead of NaN.
    sq = jnp.sum(v * v, axis=axis, keepdims=keepdims)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def rotation_from_6d(x):
    """(..., 6) → (..., 3, 3) rotation by Gram–Schmidt, columns as in 6DRepNet.

    a1 = x[..., :3], a2 = x[..., 3:]; c1 = a1/|a1|; c3 = normalize(c1 × a2); c2 = c3 × c1;
    R = [c1 c2 c3] (columns).
    """
    a1, a2 = x[..., :3], x[..., 3:6]
    eps = 1e-8
    c1 = a1 / (_safe_norm(a1, keepdims=True) + eps)
    c3 = jnp.cross(c1, a2)
    c3 = c3 / (_safe_norm(c3, keepdims=True) + eps)
    c2 = jnp.cross(c3, c1)
    return jnp.stack([c1, c2, c3], axis=-1)


def rotation_to_6d(R):
    """(..., 3, 3) → (..., 6): the first two columns, the inverse of ``rotation_from_6d``."""
    return jnp.concatenate([R[..., :, 0], R[..., :, 1]], -1)


def geodesic_distance(R1, R2):
    """Angle (radians, (...)) of R1·R2ᵀ, in [0, π].

    θ = atan2(|vee(M − Mᵀ)|/2, (tr M − 1)/2) with M = R1 R2ᵀ: unlike the clamped arccos it has
    finite gradients everywhere, also at θ = 0 and θ = π.
    """
    M = jnp.einsum("...ij,...kj->...ik", R1, R2)
    cos = (jnp.trace(M, axis1=-2, axis2=-1) - 1.0) / 2.0
    vee = jnp.stack([M[..., 2, 1] - M[..., 1, 2], M[..., 0, 2] - M[..., 2, 0], M[..., 1, 0] - M[..., 0, 1]], -1)
    sin = _safe_norm(vee) / 2.0
    return jnp.arctan2(sin, cos)


def _rx(a):
    c, s, o, z = jnp.cos(a), jnp.sin(a), jnp.ones_like(a), jnp.zeros_like(a)
    return jnp.stack([jnp.stack([o, z, z], -1), jnp.stack([z, c, -s], -1), jnp.stack([z, s, c], -1)], -2)


def _ry(a):
    c, s, o, z = jnp.cos(a), jnp.sin(a), jnp.ones_like(a), jnp.zeros_like(a)
    return jnp.stack([jnp.stack([c, z, s], -1), jnp.stack([z, o, z], -1), jnp.stack([-s, z, c], -1)], -2)


def _rz(a):
    c, s, o, z = jnp.cos(a), jnp.sin(a), jnp.ones_like(a), jnp.zeros_like(a)
    return jnp.stack([jnp.stack([c, -s, z], -1), jnp.stack([s, c, z], -1), jnp.stack([z, z, o], -1)], -2)


def rotation_from_euler(yaw, pitch, roll):
    """World→camera rotation (..., 3, 3) from head-pose angles (radians), R = Rz·Rx·Ry·F."""
    return _rz(roll) @ _rx(pitch) @ _ry(yaw) @ FRONTAL


def euler_from_rotation(R):
    """World→camera rotation (..., 3, 3) → (yaw, pitch, roll) radians, each (...).

    Inverse of ``rotation_from_euler`` for |pitch| < 90°: with M = R·F (= Rz Rx Ry),
    pitch = asin(M21), yaw = atan2(−M20, M22), roll = atan2(−M01, M11).
    """
    M = R @ FRONTAL
    pitch = jnp.arcsin(jnp.clip(M[..., 2, 1], -1.0, 1.0))
    yaw = jnp.arctan2(-M[..., 2, 0], M[..., 2, 2])
    roll = jnp.arctan2(-M[..., 0, 1], M[..., 1, 1])
    return yaw, pitch, roll


def euler_degrees(R):
    """(..., 3, 3) → (..., 3) degrees (yaw, pitch, roll)."""
    return jnp.rad2deg(jnp.stack(euler_from_rotation(R), -1))
