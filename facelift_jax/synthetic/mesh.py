"""The canonical synthetic head: MediaPipe's face mesh closed into a head, with its WFLW landmarks.

Frames
------
* Mesh frame (the asset's): centimetres, +y up, the face looks toward +z, +x is the subject's LEFT
  (MediaPipe vertex 33, the right eye's outer corner, has x < 0). The same axes as the EG3D world.
* World (EG3D canonical) = ``SCALE * (mesh − ORIGIN)``: the frontal camera of camera.py (radius 2.7,
  look-at (0, 0, 0.2)) sees the 98-landmark box at about 63 % of the image width, centred.

Everything here is NumPy, built once (``canonical_head()`` is cached) and shared by the generator.
A point on the surface is a *surface point*: (triangle index, barycentric weights) so that it moves
with every deformation of the vertices.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import cv2
import numpy as np

ASSET = "mediapipe_canonical_face.npz"
SCALE = 0.0258                      # world units per cm
ORIGIN = np.array([0.0, -2.2, -3.0])  # mesh point (cm) that becomes the world origin

# Parts of the head, one id per triangle (the renderer shades and labels by part).
PART_FACE, PART_SCALP, PART_EAR, PART_NECK, PART_EYE, PART_MOUTH = range(6)

# MediaPipe vertex loops (subject's right side first where it matters).
FACE_OVAL_RIGHT = [127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152]  # ear → chin
EYE_LOOP_R = [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7]
EYE_LOOP_L = [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249]
LIPS_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
LIPS_INNER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95]
LIPS_INNER_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
BROW_R = [70, 63, 105, 66, 107, 55, 65, 52, 53, 46]  # upper outer→inner, lower inner→outer
BROW_L = [300, 293, 334, 296, 336, 285, 295, 282, 283, 276]

# Head closure (cm, mesh frame): the skull ellipsoid the face oval is lofted onto.
SKULL_CENTER = np.array([0.0, 1.6, -4.2])
SKULL_RADII = np.array([7.9, 10.6, 10.4])
BACK_POLE = np.array([0.0, -0.25, -1.0])
LOFT_RINGS = 16
NECK_CENTER = np.array([0.0, -5.0, -5.0])
NECK_RADII = np.array([5.6, 5.4])   # x, z
NECK_Y = (-1.0, -30.0)
EAR_CENTER = np.array([7.75, 0.6, -5.6])
EAR_RADII = np.array([1.0, 3.1, 1.9])


@dataclasses.dataclass(frozen=True)
class HeadModel:
    """The canonical head in WORLD units (NumPy).

    vertices (V,3) world; triangles (F,3) int32, outward counter-clockwise seen from outside;
    part (F,) int8 (PART_*); tex (V,2) canonical mesh-frame (x, y) in cm, the texture coordinates
    of the face part; hairline (V,) cm above which a scalp/face point may be hair (mesh y);
    landmark_tri (98,) int32 + landmark_bary (98,3): the WFLW landmarks as surface points;
    march_tri (33,M) + march_bary (33,M,3): for each contour landmark a polyline of surface points
    from the landmark inward across the cheek (candidates for landmark marching);
    eye_centers (2,3) world eyeball centres (subject right, left); eye_forward (3,) gaze at rest;
    mirror (V,) the vertex index of each vertex's mirror image (x → −x);
    semantic_texture (T,T) uint8 class ids over tex ∈ TEX_RANGE²;
    bases_identity (Ki,V,3), bases_expression (Ke,V,3) world-unit displacement fields.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    part: np.ndarray
    tex: np.ndarray
    mirror: np.ndarray
    landmark_tri: np.ndarray
    landmark_bary: np.ndarray
    march_tri: np.ndarray
    march_bary: np.ndarray
    eye_centers: np.ndarray
    eye_radius: float
    semantic_texture: np.ndarray
    bases_identity: np.ndarray
    bases_expression: np.ndarray
    hair_volume: np.ndarray  # (V,) in [0,1]: how much a vertex belongs to the hair volume


TEX_RANGE = (-10.0, 10.0)
TEX_SIZE = 400
# eye_opening has no field of its own: it acts through the blink fields (generator.deform)
IDENTITY_NAMES = ("head_width", "head_height", "head_depth", "jaw_width", "chin_length", "nose_length",
                  "nose_width", "eye_spacing", "brow_height", "lip_thickness", "cheek_fullness", "hair_volume",
                  "eye_opening")
EXPRESSION_NAMES = ("jaw_open", "smile_right", "smile_left", "pucker", "blink_right", "blink_left", "brow_raise")


def load_mediapipe_mesh() -> dict[str, np.ndarray]:
    """The asset as shipped: vertices (468,3) cm, uv (468,2), triangles (898,3)."""
    path = pathlib.Path(__file__).resolve().parents[1] / "assets" / ASSET
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with scripts/extract_mediapipe_mesh.py")
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def to_world(points_cm):
    return (np.asarray(points_cm, np.float64) - ORIGIN) * SCALE


# --------------------------------------------------------------------------------------------
# geometry helpers


def _boundary_loop(triangles: np.ndarray) -> np.ndarray:
    """The single boundary loop of an open mesh, in the order that keeps the face on its left."""
    directed = {(a, b) for t in triangles for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}
    nxt = {a: b for a, b in directed if (b, a) not in directed}
    start = min(nxt)
    loop = [start]
    while nxt[loop[-1]] != start:
        loop.append(nxt[loop[-1]])
    return np.asarray(loop)


def _slerp(a, b, s):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b)
    omega = np.arccos(np.clip(a @ b, -1.0, 1.0))[..., None]
    return (np.sin((1 - s) * omega) * a + np.sin(s * omega) * b) / np.sin(omega)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _ellipsoid_grid(center, radii, n_lat, n_lon):
    """Closed UV sphere scaled to an ellipsoid: vertices (n,3), triangles outward."""
    lat = np.linspace(0, np.pi, n_lat + 1)[1:-1]
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    th, ph = np.meshgrid(lat, lon, indexing="ij")
    dirs = np.stack([np.sin(th) * np.cos(ph), np.cos(th), np.sin(th) * np.sin(ph)], -1).reshape(-1, 3)
    verts = np.concatenate([[[0, 1, 0]], dirs, [[0, -1, 0]]]) * radii + center
    tris = []
    ring = lambda i, j: 1 + i * n_lon + (j % n_lon)  # noqa: E731
    for j in range(n_lon):
        tris.append((0, ring(0, j + 1), ring(0, j)))
        tris.append((len(verts) - 1, ring(n_lat - 2, j), ring(n_lat - 2, j + 1)))
        for i in range(n_lat - 2):
            tris += [(ring(i, j), ring(i, j + 1), ring(i + 1, j)), (ring(i, j + 1), ring(i + 1, j + 1), ring(i + 1, j))]
    return verts, _orient_outward(verts, np.asarray(tris), center)


def _orient_outward(verts, tris, center):
    n = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    out = np.einsum("fi,fi->f", n, verts[tris].mean(1) - center) < 0
    tris = tris.copy()
    tris[out] = tris[out][:, ::-1]
    return tris


def _loft(face_v, loop):
    """Rings from the face oval to a pole at the back of the skull ellipsoid (cm)."""
    b = face_v[loop]
    d = (b - SKULL_CENTER) / SKULL_RADII
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    offset = b - (SKULL_CENTER + SKULL_RADII * d)
    rings = []
    for k in range(1, LOFT_RINGS):
        s = k / LOFT_RINGS
        p = SKULL_CENTER + SKULL_RADII * _slerp(d, BACK_POLE, s)
        rings.append(p + offset * (1.0 - _smoothstep(s / 0.35))[..., None])
    pole = SKULL_CENTER + SKULL_RADII * BACK_POLE / np.linalg.norm(BACK_POLE)
    verts = np.concatenate([np.concatenate(rings), pole[None]])
    n = len(loop)
    base = len(face_v)
    idx = lambda k, i: loop[i % n] if k == 0 else base + (k - 1) * n + (i % n)  # noqa: E731
    tris = []
    for k in range(LOFT_RINGS - 1):
        for i in range(n):
            tris += [(idx(k, i), idx(k + 1, i), idx(k, i + 1)), (idx(k, i + 1), idx(k + 1, i), idx(k + 1, i + 1))]
    pole_i = base + len(verts) - 1
    for i in range(n):
        tris.append((idx(LOFT_RINGS - 1, i), pole_i, idx(LOFT_RINGS - 1, i + 1)))
    return verts, np.asarray(tris)


def _neck():
    """A closed tube from inside the head down to flared shoulders (cm); capped at both ends."""
    n_lon = 24
    # dense rings near the head, where the neck meets the jaw and painter's order needs small triangles
    ys = NECK_Y[0] + (NECK_Y[1] - NECK_Y[0]) * np.linspace(0.0, 1.0, 12) ** 1.6
    ph = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    ring = np.stack([NECK_RADII[0] * np.cos(ph), np.zeros_like(ph), NECK_RADII[1] * np.sin(ph)], -1)
    flare = 1.0 + 0.55 * _smoothstep((NECK_Y[0] - 14.0 - ys) / 14.0) ** 1.5  # shoulders widen the base
    verts = np.concatenate([ring * [f, 1, 1] + [NECK_CENTER[0], y, NECK_CENTER[2]] for y, f in zip(ys, flare)])
    caps = np.array([[NECK_CENTER[0], NECK_Y[0], NECK_CENTER[2]], [NECK_CENTER[0], NECK_Y[1], NECK_CENTER[2]]])
    verts = np.concatenate([verts, caps])
    top_c, bottom_c = len(verts) - 2, len(verts) - 1
    tris = []
    for k in range(len(ys) - 1):
        for j in range(n_lon):
            a, b = k * n_lon + j, k * n_lon + (j + 1) % n_lon
            tris += [(a, b, a + n_lon), (b, b + n_lon, a + n_lon)]
    last = (len(ys) - 1) * n_lon
    tris += [(last + j, last + (j + 1) % n_lon, bottom_c) for j in range(n_lon)]
    tris += [(j, (j + 1) % n_lon, top_c) for j in range(n_lon)]
    tris = np.asarray(tris)
    # orient each triangle away from the neck's axis (caps: away from the tube's middle)
    cen = verts[tris].mean(1)
    n = np.cross(verts[tris[:, 1]] - verts[tris[:, 0]], verts[tris[:, 2]] - verts[tris[:, 0]])
    radial = cen - np.stack([np.full(len(cen), NECK_CENTER[0]), cen[:, 1], np.full(len(cen), NECK_CENTER[2])], -1)
    radial[-2 * n_lon:-n_lon] = [0, -1, 0]
    radial[-n_lon:] = [0, 1, 0]
    flip = np.einsum("fi,fi->f", n, radial) < 0
    tris[flip] = tris[flip][:, ::-1]
    return verts, tris


def _ear(side: float):
    verts, tris = _ellipsoid_grid(np.zeros(3), EAR_RADII, 8, 12)
    # flatten the inner face against the head and tilt the top backward like a real ear
    tilt = np.deg2rad(-15.0)
    rot = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    verts = verts @ rot.T
    center = EAR_CENTER * [side, 1, 1]
    tris = _orient_outward(verts, tris, np.zeros(3))
    return verts + center, tris


def closest_surface_points(points, verts, tris, allowed=None, chunk: int = 128):
    """Closest point on the mesh to each of ``points`` (N,3): (triangle (N,), barycentric (N,3)).

    Brute force over triangles (closest point on each triangle: the plane projection if it falls
    inside, else the nearest point on an edge), vectorized, in chunks of points."""
    points = np.asarray(points, np.float64)
    if len(points) > chunk:
        parts = [closest_surface_points(points[i:i + chunk], verts, tris, allowed, chunk)
                 for i in range(0, len(points), chunk)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    tri_ids = np.arange(len(tris)) if allowed is None else np.flatnonzero(allowed)
    a, b, c = (verts[tris[tri_ids, k]][None] for k in range(3))
    p = points[:, None]
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    nn = np.einsum("...i,...i->...", n, n)
    # barycentrics of the projection onto the plane, then clamp to the triangle by edge projection
    w = p - a
    v_ = np.einsum("...i,...i->...", np.cross(w, ac), n) / nn
    w_ = np.einsum("...i,...i->...", np.cross(ab, w), n) / nn
    bary = np.stack([1 - v_ - w_, v_, w_], -1)
    inside = (bary >= 0).all(-1)
    cand = np.where(inside[..., None], a + v_[..., None] * ab + w_[..., None] * ac, np.inf)
    best_pts = [cand]
    best_bary = [bary]
    for (e0, e1, i0, i1) in ((a, b, 0, 1), (b, c, 1, 2), (c, a, 2, 0)):
        e = e1 - e0
        t = np.clip(np.einsum("...i,...i->...", p - e0, e) / np.einsum("...i,...i->...", e, e), 0, 1)
        q = e0 + t[..., None] * e
        bb = np.zeros(bary.shape)
        bb[..., i0] = 1 - t
        bb[..., i1] = t
        best_pts.append(q)
        best_bary.append(bb)
    pts = np.stack(best_pts)           # (4, N, F, 3)
    dist = np.linalg.norm(pts - p[None], axis=-1)
    dist = np.where(np.isfinite(dist), dist, np.inf)
    k = dist.argmin(0)                  # (N, F)
    dmin = np.take_along_axis(dist, k[None], 0)[0]
    f = dmin.argmin(1)
    rows = np.arange(len(points))
    kk = k[rows, f]
    bary_all = np.stack(best_bary)
    return tri_ids[f].astype(np.int32), bary_all[kk, rows, f].astype(np.float64)


def surface_points(verts, tri, bary, triangles):
    """Surface points (…,3) from vertices (…,V,3) and (tri (N,), bary (N,3)) — NumPy or JAX."""
    return (verts[..., triangles[tri], :] * bary[..., None]).sum(-2)


def _resample_polyline(points, n, t0=0.0, t1=1.0):
    seg = np.linalg.norm(np.diff(points, axis=0), axis=-1)
    s = np.concatenate([[0], np.cumsum(seg)]) / seg.sum()
    ts = np.linspace(t0, t1, n)
    return np.stack([np.interp(ts, s, points[:, k]) for k in range(3)], -1)


# --------------------------------------------------------------------------------------------
# landmarks


def _landmark_targets(v):
    """98 WFLW landmark target points (cm) from MediaPipe vertices ``v`` (468,3), before snapping."""
    mirror = lambda p: p * [-1, 1, 1]  # noqa: E731
    L = np.zeros((98, 3))
    contour_r = _resample_polyline(v[FACE_OVAL_RIGHT], 17)     # 0 (subject right ear) … 16 (chin)
    L[0:17] = contour_r
    L[17:33] = mirror(contour_r[15::-1])
    upper = _resample_polyline(v[[70, 63, 105, 66, 107]], 5)  # outer → inner
    lower = _resample_polyline(v[[55, 65, 52, 53, 46, 70]], 4, 0.0, 0.82)  # inner → outer
    L[33:38], L[38:42] = upper, lower
    L[42:47] = mirror(upper[::-1])                              # inner → outer on the subject's left
    L[47:51] = mirror(lower[::-1])                              # outer → inner
    L[51:55] = _resample_polyline(v[[168, 6, 197, 195, 5, 4]], 4)
    L[55:60] = v[[98, 97, 2, 326, 327]]
    L[60:68] = v[[33, 160, 159, 158, 133, 153, 145, 144]]
    L[68:76] = v[[362, 385, 386, 387, 263, 373, 374, 380]]
    L[76:88] = v[[61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181]]
    L[88:96] = v[[78, 81, 13, 311, 308, 402, 14, 178]]
    L[96] = v[EYE_LOOP_R].mean(0)
    L[97] = v[EYE_LOOP_L].mean(0)
    return L


def _march_targets(v, L, m):
    """For each contour landmark, m points from it inward across the face at constant height (cm)."""
    out = np.zeros((33, m, 3))
    for i in range(33):
        p = L[i]
        # toward a point on the midline at the same height in front of the face; the chin points
        # (near 16) head up toward the mouth instead, since their "horizontal" leaves the face
        anchor = np.array([0.0, p[1], 4.0]) if abs(i - 16) > 3 else np.array([0.0, -4.5, 5.0])
        anchor[0] = p[0] * 0.15
        out[i] = p + np.linspace(0, 1, m)[:, None] * (anchor - p) * 0.8
    return out


# --------------------------------------------------------------------------------------------
# deformation bases (cm fields evaluated on canonical vertices, returned in world units)


def _gauss(x, center, radii):
    return np.exp(-0.5 * (((x - center) / radii) ** 2).sum(-1))


def _fold_x(x):
    """(|x|, y, z): a Gaussian centred at |x| = c acts on both sides of the face at once."""
    return np.abs(x) * [1, 0, 0] + x * [0, 1, 1]


def _identity_bases(x, normals, is_scalp, hair):
    """Identity displacement fields (Ki,V,3) in cm per unit coefficient, in IDENTITY_NAMES order."""
    X, Y, Z = x[:, 0], x[:, 1], x[:, 2]
    zero = np.zeros_like(X)
    along = lambda dx=zero, dy=zero, dz=zero: np.stack([dx, dy, dz], -1)  # noqa: E731
    fields = dict(
        head_width=along(dx=0.045 * X),
        head_height=along(dy=0.05 * (Y - SKULL_CENTER[1])),
        head_depth=along(dz=0.05 * (Z - SKULL_CENTER[2]) * (Z < 0)),         # the back of the head only
        jaw_width=along(dx=0.10 * X * _smoothstep((-1.0 - Y) / 6.0) * (Y > -12)),
        chin_length=along(dy=-0.7 * _smoothstep((-5.0 - Y) / 4.0) * _gauss(x[:, :1], [0.0], [4.5])),
        nose_length=np.array([0.0, -0.35, 0.45]) * _gauss(x, [0, -1.2, 7.0], [1.3, 1.5, 1.6])[:, None],
        nose_width=along(dx=0.22 * X * _gauss(x, [0, -1.5, 5.8], [2.0, 1.3, 2.0])),
        eye_spacing=along(dx=0.35 * np.tanh(X / 0.4) * _gauss(_fold_x(x), [3.2, 2.6, 3.5], [1.8, 1.6, 3.0])
                          * (1.0 - is_scalp)),
        brow_height=along(dy=0.35 * _gauss(_fold_x(x), [3.4, 4.6, 4.3], [2.2, 0.9, 2.0])),
        lip_thickness=(np.array([0.0, 0.22, 0.1]) * _gauss(x, [0, -3.6, 5.8], [2.0, 0.45, 1.0])[:, None]
                       + np.array([0.0, -0.28, 0.12]) * _gauss(x, [0, -5.0, 5.6], [1.8, 0.5, 1.0])[:, None]),
        cheek_fullness=0.5 * normals * _gauss(_fold_x(x), [4.3, -2.0, 3.0], [1.8, 2.0, 2.5])[:, None],
        hair_volume=1.6 * normals * hair[:, None],
        eye_opening=np.zeros_like(x),  # acts through the blink fields (generator.deform)
    )
    assert tuple(fields) == IDENTITY_NAMES
    return np.stack(list(fields.values()))


def _rotation_x(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _lid_profile(v, upper_ids, lower_ids):
    """Lid heights as functions of x: (x grid, upper y, lower y)."""
    up, lo = v[upper_ids], v[lower_ids]
    xs = np.linspace(min(up[:, 0].min(), lo[:, 0].min()), max(up[:, 0].max(), lo[:, 0].max()), 64)
    su, sl = np.argsort(up[:, 0]), np.argsort(lo[:, 0])
    return xs, np.interp(xs, up[su, 0], up[su, 1]), np.interp(xs, lo[sl, 0], lo[sl, 1])


def _expression_bases(x, mp_v, part_vertex):
    """Expression displacement fields (Ke,V,3) in cm at coefficient 1, in EXPRESSION_NAMES order."""
    X, Y = x[:, 0], x[:, 1]
    n = len(x)
    # jaw open: rotate everything under the lip gap about a hinge in front of the ears
    lower_lip = set(LIPS_INNER) - set(LIPS_INNER_UPPER)
    width = 0.5 + 0.9 * np.maximum(np.abs(X) - 2.2, 0.0)
    w_jaw = _smoothstep((-4.05 - Y) / width)
    w_jaw[list(lower_lip)] = 1.0
    w_jaw[LIPS_INNER_UPPER[1:-1]] = 0.0
    w_jaw *= part_vertex != PART_NECK
    w_jaw *= ~((part_vertex == PART_SCALP) & (x[:, 2] < -7.0))
    pivot = np.array([0.0, 0.5, -5.5])
    R = _rotation_x(np.deg2rad(16.0))
    jaw = ((x - pivot) @ R.T + pivot - x) * w_jaw[:, None]
    corners = [np.array([-2.46, -4.34, 4.28]), np.array([2.46, -4.34, 4.28])]
    smile = [np.array([s * 0.45, 0.5, -0.3]) * _gauss(x, c, [1.3, 1.1, 2.0])[:, None]
             + np.array([s * 0.1, 0.25, 0.05]) * _gauss(x, c + [s * 1.5, 1.8, -0.8], [1.5, 1.3, 2.0])[:, None]
             for s, c in zip((-1, 1), corners)]
    lips_w = _gauss(x, [0, -4.3, 5.3], [2.4, 1.1, 1.5])
    pucker = np.stack([-0.3 * X, 0 * X, 0.7 + 0 * X], -1) * lips_w[:, None]
    blinks = []
    for loop in (EYE_LOOP_R, EYE_LOOP_L):
        upper_ids, lower_ids = loop[:9], [loop[0]] + loop[8:]
        xs, yu, yl = _lid_profile(mp_v, upper_ids, lower_ids)
        yu_x, yl_x = np.interp(X, xs, yu), np.interp(X, xs, yl)
        inside_x = _smoothstep((np.minimum(X - xs[0], xs[-1] - X) + 0.6) / 0.8)
        gap = np.maximum(yu_x - yl_x, 0.0)
        above = np.where(Y >= yu_x - 1e-6, np.exp(-(((Y - yu_x) / 0.9) ** 2)), 0.0)
        between = np.where((Y < yu_x - 1e-6) & (Y > yl_x + 1e-6), (Y - yl_x) / np.maximum(gap, 1e-6), 0.0)
        near = (np.abs(x[:, 2] - mp_v[loop, 2].mean()) < 2.5) & (part_vertex == PART_FACE)
        dy = -0.97 * gap * np.maximum(above, between) * inside_x * near
        blinks.append(np.stack([0 * X, dy, 0 * X], -1))
    brow_raise = np.array([0.0, 0.55, 0.0]) * _gauss(_fold_x(x), [3.2, 5.2, 4.3], [2.6, 1.5, 3.0])[:, None]
    out = np.stack([jaw, smile[0], smile[1], pucker, blinks[0], blinks[1], brow_raise])
    assert out.shape[1] == n
    return out


# --------------------------------------------------------------------------------------------
# semantic texture (over canonical mesh-frame x, y of the face part)


def _tex_px(xy):
    lo, hi = TEX_RANGE
    return np.round((np.asarray(xy) - lo) / (hi - lo) * TEX_SIZE * 16).astype(np.int32)  # shift=4 → 1/16 px


def _semantic_texture(v):
    from facelift_jax.synthetic.classes import SEMANTIC_INDEX as S

    tex = np.full((TEX_SIZE, TEX_SIZE), S["skin"], np.uint8)
    # texture rows run along +y (row 0 = y_min): lookups use the same convention
    nose = np.array([[0, 3.4], [0.75, 3.0], [1.05, 1.5], [1.35, 0.0], [1.95, -1.0], [1.75, -1.8],
                     [0.7, -2.15], [0, -2.2]])
    nose = np.concatenate([nose, nose[::-1] * [-1, 1]])
    polys = [("nose", nose)]
    for loop in (BROW_R, BROW_L):
        polys.append(("brows", v[loop, :2]))
    for loop in (EYE_LOOP_R, EYE_LOOP_L):
        polys.append(("eyes", v[loop, :2]))
    polys.append(("lips", v[LIPS_OUTER, :2]))
    for name, poly in polys:
        cv2.fillPoly(tex, [_tex_px(poly)[:, None, :]], int(S[name]), lineType=cv2.LINE_8, shift=4)
    return tex


def texture_lookup(texture, x, y):
    """Nearest texel of ``texture`` (T,T) at canonical mesh-frame cm coordinates x, y (same shape); NumPy."""
    lo, hi = TEX_RANGE
    i, j = (np.clip(((c - lo) / (hi - lo) * TEX_SIZE).astype(np.int32), 0, TEX_SIZE - 1) for c in (y, x))
    return texture[i, j]


# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def canonical_head(march_points: int = 32) -> HeadModel:
    """Build (once) the closed canonical head, its landmarks and its deformation bases."""
    mp = load_mediapipe_mesh()
    v = mp["vertices"].astype(np.float64)
    # the asset is mirror symmetric to float precision; make it exactly so, so that mirrored
    # landmarks and left/right deformations agree to rounding error
    mirror_mp = np.linalg.norm(v[:, None] - (v * [-1, 1, 1])[None], axis=-1).argmin(1)
    v = 0.5 * (v + v[mirror_mp] * [-1, 1, 1])
    face_t = mp["triangles"].astype(np.int64)
    # MediaPipe's triangles wind clockwise seen from the front; flip to outward counter-clockwise
    n = np.cross(v[face_t[:, 1]] - v[face_t[:, 0]], v[face_t[:, 2]] - v[face_t[:, 0]])
    if (n[:, 2] < 0).mean() > 0.5:
        face_t = face_t[:, ::-1]
    loop = _boundary_loop(face_t)
    loft_v, loft_t = _loft(v, loop)
    neck_v, neck_t = _neck()
    ear_r_v, ear_r_t = _ear(-1.0)
    ear_l_v, ear_l_t = _ear(1.0)

    verts, tris, parts = [v], [face_t], [np.full(len(face_t), PART_FACE)]
    eye_set = [set(EYE_LOOP_R), set(EYE_LOOP_L)]
    lip_set = set(LIPS_INNER)
    for k, t in enumerate(face_t):
        s = set(t.tolist())
        if s <= eye_set[0] or s <= eye_set[1]:
            parts[0][k] = PART_EYE
        elif s <= lip_set:
            parts[0][k] = PART_MOUTH
    offset = len(v)
    tris.append(loft_t)  # indices already global (face vertices + loft vertices appended)
    parts.append(np.full(len(loft_t), PART_SCALP))
    verts.append(loft_v)
    offset += len(loft_v)
    for pv, pt, part in ((neck_v, neck_t, PART_NECK), (ear_r_v, ear_r_t, PART_EAR), (ear_l_v, ear_l_t, PART_EAR)):
        verts.append(pv)
        tris.append(pt + offset)
        parts.append(np.full(len(pt), part))
        offset += len(pv)
    x = np.concatenate(verts)
    triangles = np.concatenate(tris).astype(np.int32)
    part = np.concatenate(parts).astype(np.int8)

    # per-vertex part (a vertex shared by parts takes the face's)
    part_vertex = np.full(len(x), PART_FACE, np.int8)
    for p in (PART_SCALP, PART_NECK, PART_EAR):
        part_vertex[np.unique(triangles[part == p])] = p
    part_vertex[: len(v)] = PART_FACE
    mirror = np.linalg.norm(x[:, None] - (x * [-1, 1, 1])[None], axis=-1).argmin(1)
    assert np.allclose(x[mirror] * [-1, 1, 1], x, atol=1e-6), "the closed head must be mirror symmetric"

    # smooth vertex normals (area weighted) for the normal-direction deformations
    fn = np.cross(x[triangles[:, 1]] - x[triangles[:, 0]], x[triangles[:, 2]] - x[triangles[:, 0]])
    normals = np.zeros_like(x)
    for k in range(3):
        np.add.at(normals, triangles[:, k], fn)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-9)

    is_scalp = (part_vertex == PART_SCALP).astype(np.float64)
    hair = is_scalp * _smoothstep((x[:, 1] - 5.0) / 3.0 + np.maximum(-x[:, 2] - 4.0, 0) / 3.0)
    # the loft's quad diagonals break mirror symmetry of the normals by a hair: symmetrize the fields
    # (symmetric ones onto themselves, the right-side ones define their left-side twins)
    sym = lambda b: (b * [-1, 1, 1])[:, mirror]  # noqa: E731
    bases_id = _identity_bases(x, normals, is_scalp, hair)
    bases_id = 0.5 * (bases_id + sym(bases_id))
    bases_ex = _expression_bases(x, v, part_vertex)
    names = EXPRESSION_NAMES
    for right, left in (("smile_right", "smile_left"), ("blink_right", "blink_left")):
        bases_ex[names.index(left)] = sym(bases_ex[names.index(right)][None])[0]
    for k in (names.index("jaw_open"), names.index("pucker"), names.index("brow_raise")):
        bases_ex[k] = 0.5 * (bases_ex[k] + sym(bases_ex[k][None])[0])
    hair = 0.5 * (hair + hair[mirror])

    # landmarks as surface points of the face part (never of the eye/mouth membranes, except pupils)
    targets = _landmark_targets(v)
    face_only = part == PART_FACE
    lt, lb = closest_surface_points(targets[:96], x, triangles, face_only)
    pt, pb = closest_surface_points(targets[96:], x, triangles, part == PART_EYE)
    mt, mb = closest_surface_points(_march_targets(v, targets, march_points).reshape(-1, 3), x, triangles, face_only)

    eye_centers = np.stack([v[EYE_LOOP_R].mean(0), v[EYE_LOOP_L].mean(0)]) - [0.0, 0.0, 1.25]
    return HeadModel(
        vertices=to_world(x).astype(np.float32),
        triangles=triangles,
        part=part,
        tex=x[:, :2].astype(np.float32),
        mirror=mirror.astype(np.int32),
        landmark_tri=np.concatenate([lt, pt]).astype(np.int32),
        landmark_bary=np.concatenate([lb, pb]).astype(np.float32),
        march_tri=mt.reshape(33, march_points).astype(np.int32),
        march_bary=mb.reshape(33, march_points, 3).astype(np.float32),
        eye_centers=to_world(eye_centers).astype(np.float32),
        eye_radius=float(1.25 * SCALE),
        semantic_texture=_semantic_texture(v),
        bases_identity=(bases_id * SCALE).astype(np.float32),
        bases_expression=(bases_ex * SCALE).astype(np.float32),
        hair_volume=hair.astype(np.float32),
    )
