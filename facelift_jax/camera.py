"""The augmented camera space C of FaceLift §3 and the perspective projection π (eq. 1-2).

Conventions
-----------
* World = the canonical space of EG3D/IDE-3D: +y up, the face looks toward +z, +x is the
  subject's left. The head sits about the origin; the default look-at point is (0, 0, 0.2)
  (EG3D's ``avg_camera_pivot``).
* Cameras are OpenCV style: camera x right, y down, z forward (into the scene). ``R`` maps world to
  camera coordinates and ``t`` is the world origin in camera coordinates: p_cam = R·p_world + t.
* Intrinsics are normalized to the image (EG3D): fx = fy = 4.2647 (= 2985.29/700), cx = cy = 0.5.
  A projected point in [0, 1]² lies inside the image; pixels = normalized × image size, origin at
  the top-left corner of the image. The focal is ``config.camera.focal`` (default ``FOCAL``), the
  one value every camera of a run is built with (``sample_cameras``, ``views.lifting_cameras``, the
  model's ``config.model.focal`` refers to it); a generator with intrinsics of its own (IDE-3D's
  field-of-view rays, ``focal_from_fov``) must agree with it (``sources.generator_focal``).
* ``camera_from_angles(α, β, γ, Δt)``: the camera centre is radius·(cos β sin α, sin β, cos β cos α)
  on a sphere about the world ORIGIN (EG3D's LookAtPoseSampler with h = π/2 + α,
  v = π/2·(1 − sin β)); it looks at ``look_at`` with world +y as up; it is then rolled by γ about
  its optical axis (γ > 0 turns the image content clockwise); then Δt (camera coordinates) is
  added to t. α = β = γ = 0 is the frontal view; α > 0 moves the camera toward the subject's left,
  β > 0 moves it up. Angles are degrees at this API's edge, radians inside.
* Labels: ``eg3d_label`` is EG3D's 25 numbers (row-major OpenCV cam2world 4×4, then K 3×3);
  ``ide3d_label`` is the same camera in IDE-3D's OpenGL convention, which negates entries
  1, 2, 5, 6, 9, 10 of the EG3D label (IDE-3D's inversion code: ``label[:, [1,2,5,6,9,10]] *= -1``),
  i.e. the camera's y and z axes flip sign.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

FOCAL = 2985.29 / 700.0  # 4.2647, EG3D FFHQ intrinsics
PRINCIPAL = 0.5
DEFAULT_RADIUS = 2.7
DEFAULT_LOOK_AT = (0.0, 0.0, 0.2)


def focal_from_fov(fov_deg: float, ray_grid: int | None = None) -> float:
    """Normalized focal (fx = fy, image width = 1) of pi-GAN-style rays built from a field of view.

    Ray j of an R-wide grid has the camera-space direction (x_j, ·, −1/tan(fov/2)) with
    x_j = −1 + 2j/(R − 1) (IDE-3D's ``get_initial_rays_trig``): the outer rays go through the centres
    of the outer pixels, so f = (R − 1) / (2R·tan(fov/2)), principal point ½. Without R (±1 at the
    image edges): f = 1 / (2·tan(fov/2)). fov 18°, R = 64: 3.1076 (EG3D's label K: 4.2647).
    """
    if not 0 < fov_deg < 180:
        raise ValueError(f"field of view must lie in (0°, 180°), got {fov_deg}")
    scale = 1.0 if ray_grid is None else (ray_grid - 1) / ray_grid
    return scale / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def config_focal(config) -> float:
    """The normalized focal of a camera config section (``config.camera``): its ``focal`` field,
    ``FOCAL`` when the section predates the field."""
    return float(config.get("focal", FOCAL)) if hasattr(config, "get") else FOCAL


def intrinsics(focal: float = FOCAL, principal: float = PRINCIPAL) -> jnp.ndarray:
    """Normalized 3×3 intrinsics K."""
    return jnp.array([[focal, 0.0, principal], [0.0, focal, principal], [0.0, 0.0, 1.0]], jnp.float32)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Camera:
    """A pinhole camera, batched by leading axes.

    K: (..., 3, 3) normalized intrinsics. R: (..., 3, 3) world→camera rotation.
    t: (..., 3) translation, p_cam = R p_world + t.
    """

    K: jax.Array
    R: jax.Array
    t: jax.Array

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.t.shape[:-1])

    def __getitem__(self, index) -> "Camera":
        return jax.tree_util.tree_map(lambda x: x[index], self)

    @property
    def center(self) -> jax.Array:
        """(..., 3) camera centre in world coordinates, −Rᵀt."""
        return -jnp.einsum("...ji,...j->...i", self.R, self.t)


def stack(cameras) -> Camera:
    """Stack a sequence of cameras along a new leading axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *cameras)


def _normalize(v):
    return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


def _roll_matrix(gamma):
    c, s = jnp.cos(gamma), jnp.sin(gamma)
    z, o = jnp.zeros_like(gamma), jnp.ones_like(gamma)
    return jnp.stack([jnp.stack([c, -s, z], -1), jnp.stack([s, c, z], -1), jnp.stack([z, z, o], -1)], -2)


def look_at_rotation(center, look_at):
    """World→camera rotation (..., 3, 3) of an OpenCV camera at ``center`` looking at ``look_at``.

    Follows EG3D's ``create_cam2world_matrix``: forward = normalize(look_at − center),
    right = −normalize(up × forward) with up = +y, down = forward × right.
    """
    forward = _normalize(jnp.asarray(look_at, jnp.float32) - center)
    up = jnp.broadcast_to(jnp.array([0.0, 1.0, 0.0], jnp.float32), forward.shape)
    right = -_normalize(jnp.cross(up, forward))
    down = _normalize(jnp.cross(forward, right))
    return jnp.stack([right, down, forward], axis=-2)  # rows = camera axes in world coordinates


def camera_from_angles(
    azimuth, elevation, roll=0.0, translation=(0.0, 0.0, 0.0), radius=DEFAULT_RADIUS, look_at=DEFAULT_LOOK_AT,
    focal: float = FOCAL,
) -> Camera:
    """Camera of the augmented space C from angles in degrees; arrays broadcast to a batch.

    azimuth α, elevation β, roll γ: (...) degrees. translation: (..., 3) camera-space offset Δt.
    """
    a, b, g = (jnp.deg2rad(jnp.asarray(x, jnp.float32)) for x in (azimuth, elevation, roll))
    a, b, g = jnp.broadcast_arrays(a, b, g)
    center = radius * jnp.stack([jnp.cos(b) * jnp.sin(a), jnp.sin(b), jnp.cos(b) * jnp.cos(a)], -1)
    R = _roll_matrix(g) @ look_at_rotation(center, look_at)
    t = -jnp.einsum("...ij,...j->...i", R, center) + jnp.asarray(translation, jnp.float32)
    K = jnp.broadcast_to(intrinsics(focal), R.shape)
    t = jnp.broadcast_to(t, R.shape[:-1])
    return Camera(K=K, R=R, t=t)


def to_camera_space(points, camera: Camera):
    """World points (..., N, 3) → camera-space points (..., N, 3) (OpenCV axes; z = depth)."""
    return jnp.einsum("...ij,...nj->...ni", camera.R, points) + camera.t[..., None, :]


def project_with_depth(points, camera: Camera):
    """π of eq. (1)-(2): world points (..., N, 3) → ((..., N, 2) normalized image xy, (..., N) depth).

    Depth is the camera-space z (positive in front of the camera). Points at or behind the camera
    give non-finite or meaningless xy; callers mask them by depth.
    """
    p = to_camera_space(points, camera)
    uvw = jnp.einsum("...ij,...nj->...ni", camera.K, p)
    return uvw[..., :2] / uvw[..., 2:3], p[..., 2]


def project(points, camera: Camera):
    """π of eq. (1)-(2): world points (..., N, 3) → (..., N, 2) normalized image coordinates."""
    return project_with_depth(points, camera)[0]


def cam2world(camera: Camera):
    """(..., 4, 4) OpenCV cam2world matrices."""
    Rt = jnp.swapaxes(camera.R, -1, -2)
    c = -jnp.einsum("...ij,...j->...i", Rt, camera.t)
    top = jnp.concatenate([Rt, c[..., None]], -1)
    bottom = jnp.broadcast_to(jnp.array([0.0, 0.0, 0.0, 1.0], top.dtype), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], -2)


def eg3d_label(camera: Camera):
    """(..., 25) EG3D conditioning label: row-major OpenCV cam2world 4×4, then normalized K 3×3."""
    m = cam2world(camera)
    return jnp.concatenate([m.reshape(m.shape[:-2] + (16,)), camera.K.reshape(camera.K.shape[:-2] + (9,))], -1)


_OPENGL_FLIP = np.ones(25, np.float32)
_OPENGL_FLIP[[1, 2, 5, 6, 9, 10]] = -1.0


def ide3d_label(camera: Camera):
    """(..., 25) IDE-3D label: the EG3D label with camera y, z axes negated (OpenGL convention)."""
    return eg3d_label(camera) * _OPENGL_FLIP


def translation_to_sphere(R, radius=DEFAULT_RADIUS, look_at=DEFAULT_LOOK_AT):
    """t̄(R) of §3: the translation (..., 3) that puts a camera with rotation R (..., 3, 3) on the
    camera sphere looking at ``look_at``.

    A camera on the sphere at distance d from ``look_at`` along its optical axis sees ``look_at``
    at camera (0, 0, d), so t̄ = (0, 0, d) − R·look_at. The centre is on the sphere |c| = radius:
    c = look_at − d·f with f the optical axis (third row of R); d solves |look_at − d f|² = r².
    """
    p = jnp.asarray(look_at, jnp.float32)
    f = R[..., 2, :]
    fp = jnp.einsum("...i,i->...", f, p)
    d = fp + jnp.sqrt(jnp.maximum(fp**2 - jnp.dot(p, p) + radius**2, 0.0))
    zero = jnp.zeros_like(d)
    return jnp.stack([zero, zero, d], -1) - jnp.einsum("...ij,j->...i", R, p)


def landmark_box(points2d):
    """Axis-aligned box (..., 4) = (x0, y0, x1, y1) of points (..., N, 2)."""
    return jnp.concatenate([points2d.min(-2), points2d.max(-2)], -1)


def face_size(points):
    """sqrt of the x-y landmark box area (...,) of points (..., N, >=2): the project's face size,
    the normalizer of detection noise and filter errors."""
    box = landmark_box(points[..., :2])
    return jnp.sqrt(jnp.maximum((box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1]), 1e-12))


def sample_cameras(key, n: int, config, landmarks3d=None, return_num_candidates: bool = False):
    """Exactly ``n`` cameras from C with the paper's acceptance rule (§4), vectorized.

    Candidates are uniform in α ∈ [−A, A], β ∈ [−B, B], γ ∈ [−Γ, Γ] (degrees) and per-axis
    translation Δt ∈ [−T, T], accepted with probability exp(−((α/A)² + (β/B)² + (γ/Γ)²)).
    If ``landmarks3d`` ((N, 3) shared, or (n, N, 3) one set per camera) is given, a candidate is
    also rejected unless the projected landmarks' box lies inside the image with its smaller side
    > ``config.min_box_fraction`` of the image. Rounds of ``config.candidates`` vectorized draws
    per pending camera repeat until all ``n`` are accepted; each camera takes the first accepted
    candidate of its row, so ``n`` / (candidates consumed) estimates the acceptance rate.

    Returns a Camera with batch (n,), and with ``return_num_candidates`` also the number of
    candidates consumed.

    config fields: azimuth_range A, elevation_range B, roll_range Γ (degrees),
    translation_range (3,), radius, look_at, focal (normalized; every camera's K), min_box_fraction,
    candidates, max_rounds.
    """
    focal = config_focal(config)
    A, B, G = float(config.azimuth_range), float(config.elevation_range), float(config.roll_range)
    T = jnp.asarray(config.translation_range, jnp.float32)
    k = int(config.candidates)
    max_rounds = int(config.max_rounds)
    if min(A, B, G) <= 0:
        raise ValueError(f"camera ranges must be positive, got A={A}, B={B}, Γ={G}")
    if landmarks3d is not None:
        landmarks3d = jnp.asarray(landmarks3d, jnp.float32)
        if landmarks3d.ndim == 2:
            landmarks3d = jnp.broadcast_to(landmarks3d, (n,) + landmarks3d.shape)
        if landmarks3d.shape[0] != n or landmarks3d.shape[-1] != 3:
            raise ValueError(f"landmarks3d must be (N, 3) or ({n}, N, 3), got {landmarks3d.shape}")

    chosen = np.zeros((n, 6), np.float32)  # α, β, γ, Δt
    pending = np.arange(n)
    consumed = 0
    for round_ in range(max_rounds):
        if pending.size == 0:
            break
        kr = jax.random.fold_in(key, round_)
        ka, kacc, kt = jax.random.split(kr, 3)
        m = pending.size
        u = jax.random.uniform(ka, (m, k, 3), minval=-1.0, maxval=1.0)
        angles = u * jnp.array([A, B, G])
        dt = jax.random.uniform(kt, (m, k, 3), minval=-1.0, maxval=1.0) * T
        accept = jax.random.uniform(kacc, (m, k)) < jnp.exp(-jnp.sum(u**2, -1))
        if landmarks3d is not None:
            cams = camera_from_angles(angles[..., 0], angles[..., 1], angles[..., 2], dt,
                                      radius=config.radius,
                                      look_at=tuple(config.look_at), focal=focal)
            uv, depth = project_with_depth(landmarks3d[pending][:, None], cams)
            box = landmark_box(uv)
            inside = jnp.all((box[..., :2] >= 0) & (box[..., 2:] <= 1), -1) & jnp.all(depth > 0, -1)
            size = jnp.minimum(box[..., 2] - box[..., 0], box[..., 3] - box[..., 1])
            accept &= inside & (size > config.min_box_fraction)
        accept = np.asarray(accept)
        got = accept.any(1)
        first = accept.argmax(1)
        consumed += int(np.where(got, first + 1, k).sum())
        rows = np.arange(m)
        values = np.concatenate([np.asarray(angles)[rows, first], np.asarray(dt)[rows, first]], -1)
        chosen[pending[got]] = values[got]
        pending = pending[~got]
    if pending.size:
        raise RuntimeError(
            f"sample_cameras: {pending.size} of {n} cameras found no accepted candidate in {max_rounds} rounds; "
            "the camera config (ranges, translation_range, min_box_fraction) or the landmarks rule out most of C")
    cams = camera_from_angles(chosen[:, 0], chosen[:, 1], chosen[:, 2], chosen[:, 3:],
                              radius=config.radius,
                              look_at=tuple(config.look_at), focal=focal)
    return (cams, consumed) if return_num_candidates else cams


def default_camera_config():
    """The paper's augmented camera space: A = 110°, B = 60°, Γ = 90° (§4).

    focal: the normalized focal of every camera (EG3D's ``FOCAL`` by default); a generator with its
    own intrinsics needs its value (``sources.generator_focal`` refuses a mismatch, naming it).
    """
    import ml_collections

    return ml_collections.ConfigDict(dict(
        azimuth_range=110.0, elevation_range=60.0, roll_range=90.0,
        translation_range=(0.05, 0.05, 0.2), radius=DEFAULT_RADIUS, look_at=DEFAULT_LOOK_AT, focal=FOCAL,
        min_box_fraction=0.5, candidates=16, max_rounds=64,
    ))
