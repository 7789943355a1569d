"""The fixed lifting view set, its hand-designed view-dependent masks, and the normal-template
visibility heuristic shared by lifting (§3, Fig. 3) and multi-frame training (§3, before eq. 4).

View set (``LIFTING_VIEWS``; degrees, cameras on the default sphere of ``camera.py``, roll 0,
no translation): nine views at elevation 0 with azimuth 0, ±20, ±40, ±60, ±75 (dense where the
detector is reliable, reaching to near-profile so the far-side depth of the contour is observed
from its own side), and four at elevation ±20 with azimuth ±30 (vertical baseline for the
brows, nose and mouth, whose depth the horizontal ring alone pins down poorly).

Mask rules (``view_masks``), per region. "Far side" = the half of the face turned away from the
camera (subject's right, world −x, when α > 0); "midline" = the landmarks that lie on the
symmetry plane (no mirror partner). Near-side landmarks are kept in every view. The thresholds
are |α| (degrees) beyond which a landmark is masked:

  region    far side                               midline     why
  contours  10 (ear to jaw angle, 0-10),            80 (chin)   detectors, like humans, snap
            25 (11-13), 35 (14), 45 (15, by the chin)          the far jaw to the silhouette as
                                                               soon as the cheek hides it (20°)
  brows     45                                     –           the far brow foreshortens and
                                                               slides behind the brow ridge
  eyes      40                                     –           the nose bridge covers the far eye
  nose      45 (nose base wings)                   never       the bridge/tip is the profile itself
  mouth     45; 30 for the inner-lip corner          never       the far corner turns away first
  pupils    always masked (GAN pupils follow the camera, so they have no fixed 3D position)

Normal template (``normal_template``): per-landmark outward normals of a template face, taken as
the gradient of a head ellipsoid fitted to the template's extent (forward-facing at the nose,
sideways at the jaw, down-forward at the chin). ``normal_visibility_mask`` rotates them into a
camera and keeps a landmark when its normal points toward the camera:
dot(R·n, −ẑ_cam) > threshold.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from facelift_jax import camera as camera_lib
from facelift_jax import landmarks

# (name, azimuth α, elevation β) in degrees.
LIFTING_VIEWS: tuple[tuple[str, float, float], ...] = (
    ("frontal", 0.0, 0.0),
    ("az+20", 20.0, 0.0), ("az-20", -20.0, 0.0),
    ("az+40", 40.0, 0.0), ("az-40", -40.0, 0.0),
    ("az+60", 60.0, 0.0), ("az-60", -60.0, 0.0),
    ("az+75", 75.0, 0.0), ("az-75", -75.0, 0.0),
    ("az+30_el+20", 30.0, 20.0), ("az-30_el+20", -30.0, 20.0),
    ("az+30_el-20", 30.0, -20.0), ("az-30_el-20", -30.0, -20.0),
)
NUM_VIEWS = len(LIFTING_VIEWS)

# region → (|α| beyond which the far side is masked, |α| beyond which the midline is masked).
MASK_RULES: dict[str, tuple[float, float]] = {
    "contours": (10.0, 80.0),
    "brows": (45.0, 180.0),
    "eyes": (40.0, 180.0),
    "nose": (45.0, 180.0),
    "mouth": (45.0, 180.0),
}
# Exceptions to the region rules, for the subject's right-half index; the mirror point gets the same.
FAR_LIMIT_EXCEPTIONS: dict[int, float] = {11: 25.0, 12: 25.0, 13: 25.0, 14: 35.0, 15: 45.0,  # jaw near the chin
                                          88: 30.0}  # inner-lip corner


def view_angles(views=LIFTING_VIEWS) -> np.ndarray:
    """(V, 2) azimuth, elevation in degrees."""
    return np.array([[a, e] for _, a, e in views], np.float32)


def lifting_cameras(views=LIFTING_VIEWS, radius: float = camera_lib.DEFAULT_RADIUS,
                    look_at=camera_lib.DEFAULT_LOOK_AT, focal: float = camera_lib.FOCAL) -> camera_lib.Camera:
    """Cameras (V,) of the view set, with normalized focal ``focal`` (a run's is
    ``sources.generator_focal(generator, config)``, i.e. ``config.camera.focal``)."""
    ang = view_angles(views)
    return camera_lib.camera_from_angles(ang[:, 0], ang[:, 1], 0.0, radius=radius, look_at=look_at,
                                         focal=float(focal))


# The subject's right half (world −x, image left in a frontal view); MIRROR_98 maps it onto the
# left half; the remaining points lie on the midline. (The order inside MIRROR_PAIRS_98 does not
# say the side: the lower-lip pairs list the +x point first.)
RIGHT_HALF = np.array(list(range(0, 16)) + list(range(33, 42)) + [55, 56] + list(range(60, 68))
                      + [76, 77, 78, 86, 87, 88, 89, 95, 96])


def landmark_sides() -> np.ndarray:
    """(98,) −1 on the subject's right (world −x, image left in a frontal view), +1 on the
    subject's left, 0 on the midline."""
    side = np.zeros(landmarks.NUM_LANDMARKS, np.int32)
    side[RIGHT_HALF] = -1
    side[landmarks.MIRROR_98[RIGHT_HALF]] = 1
    return side


def view_masks(views=LIFTING_VIEWS) -> np.ndarray:
    """(V, 98) bool: True where a view's detection of a landmark is trusted (rules above)."""
    side = landmark_sides()
    limits_far = np.zeros(98, np.float32)
    limits_mid = np.zeros(98, np.float32)
    for region, (far, mid) in MASK_RULES.items():
        idx = landmarks.REGIONS_98[region]
        limits_far[idx], limits_mid[idx] = far, mid
    for i, limit in FAR_LIMIT_EXCEPTIONS.items():
        limits_far[[i, landmarks.MIRROR_98[i]]] = limit
    masks = []
    for _, az, _ in views:
        # the far side is the one opposite the camera's azimuth: α > 0 looks from +x
        far = side == -np.sign(az) if az != 0 else np.zeros(98, bool)
        mid = side == 0
        keep = landmarks.NON_PUPIL_MASK.copy()
        keep &= ~(far & (abs(az) > limits_far))
        keep &= ~(mid & (abs(az) > limits_mid))
        masks.append(keep)
    return np.stack(masks)


# The subject's right half and the midline of the average face, world units: the symmetrized mean
# of the embedded synthetic generator's exact landmarks over latents 0-63 (a face built on the
# MediaPipe canonical mesh), frozen here so this module needs no generator. Pseudo-label
# templates of a real run (multiview/template.npy) replace it in training.
_RIGHT_HALF_TEMPLATE = {
    0: (-0.1989, 0.1178, 0.0251), 1: (-0.1975, 0.0895, 0.0180), 2: (-0.1959, 0.0609, 0.0141),
    3: (-0.1938, 0.0317, 0.0142), 4: (-0.1891, 0.0030, 0.0168), 5: (-0.1831, -0.0254, 0.0206),
    6: (-0.1742, -0.0528, 0.0274), 7: (-0.1639, -0.0784, 0.0365), 8: (-0.1521, -0.1021, 0.0483),
    9: (-0.1393, -0.1221, 0.0637), 10: (-0.1259, -0.1404, 0.0806), 11: (-0.1097, -0.1555, 0.0992),
    12: (-0.0925, -0.1697, 0.1175), 13: (-0.0738, -0.1825, 0.1353), 14: (-0.0531, -0.1936, 0.1515),
    15: (-0.0280, -0.2016, 0.1616), 16: (0.0000, -0.2043, 0.1652), 33: (-0.1472, 0.1672, 0.1504),
    34: (-0.1278, 0.1819, 0.1746), 35: (-0.1007, 0.1899, 0.1936), 36: (-0.0694, 0.1896, 0.2072),
    37: (-0.0361, 0.1872, 0.2146), 38: (-0.0318, 0.1644, 0.2091), 39: (-0.0689, 0.1745, 0.2042),
    40: (-0.1045, 0.1722, 0.1901), 41: (-0.1324, 0.1596, 0.1674), 51: (0.0000, 0.1415, 0.2125),
    52: (0.0000, 0.1101, 0.2342), 53: (0.0000, 0.0788, 0.2556), 54: (0.0000, 0.0453, 0.2725),
    55: (-0.0348, 0.0129, 0.2125), 56: (-0.0146, 0.0053, 0.2287), 57: (0.0000, 0.0033, 0.2336),
    60: (-0.1153, 0.1258, 0.1592), 61: (-0.0957, 0.1300, 0.1735), 62: (-0.0831, 0.1305, 0.1774),
    63: (-0.0714, 0.1305, 0.1773), 64: (-0.0488, 0.1238, 0.1743), 65: (-0.0714, 0.1168, 0.1748),
    66: (-0.0831, 0.1162, 0.1748), 67: (-0.0957, 0.1179, 0.1711), 76: (-0.0619, -0.0593, 0.1841),
    77: (-0.0353, -0.0326, 0.2210), 78: (-0.0174, -0.0287, 0.2309), 79: (0.0000, -0.0308, 0.2338),
    85: (0.0000, -0.1013, 0.2078), 86: (-0.0172, -0.0990, 0.2056), 87: (-0.0327, -0.0934, 0.1996),
    88: (-0.0544, -0.0590, 0.1770), 89: (-0.0252, -0.0451, 0.2072), 90: (0.0000, -0.0457, 0.2154),
    94: (0.0000, -0.0798, 0.2073), 95: (-0.0269, -0.0766, 0.1996), 96: (-0.0841, 0.1231, 0.1757),
}


@functools.lru_cache(maxsize=1)
def _canonical_template() -> np.ndarray:
    side = landmark_sides()
    out = np.zeros((98, 3), np.float32)
    for i, xyz in _RIGHT_HALF_TEMPLATE.items():
        out[i] = xyz
    left = landmarks.MIRROR_98[RIGHT_HALF]
    out[left] = out[RIGHT_HALF] * np.array([-1.0, 1.0, 1.0], np.float32)  # mirror: x → −x
    out[side == 0, 0] = 0.0
    return out


def canonical_template() -> np.ndarray:
    """(98, 3) an average face in world (GAN canonical) space, face toward +z, mirror-symmetric.

    Used as the lifting fallback for points that cannot be triangulated and as the default
    geometry of the normal template. Training uses the mean of the lifted pseudo-labels instead
    (``multiview/template.npy``).
    """
    return _canonical_template().copy()


def normal_template(template=None) -> np.ndarray:
    """(98, 3) unit outward normals (world) of ``template`` (98, 3) (default: canonical_template).

    Normals are gradients of the ellipsoid ((x−c_x)/a)² + ((y−c_y)/b)² + ((z−c_z)/c)² = 1 with
    a = 1.1·max|x − c_x| (the jaw width), b = 1.3·a, c = 1.8·a, centred on the template's middle in
    x and y and c behind its front-most point: the nose looks forward, the jaw sideways, the chin
    down and forward.
    """
    t = canonical_template() if template is None else np.asarray(template, np.float64)
    if t.shape != (98, 3) or not np.all(np.isfinite(t)):
        raise ValueError(f"template must be a finite (98, 3) array, got shape {np.shape(t)}")
    cx = 0.5 * (t[:, 0].min() + t[:, 0].max())
    cy = 0.5 * (t[:, 1].min() + t[:, 1].max())
    a = 1.1 * np.abs(t[:, 0] - cx).max()
    b, c = 1.3 * a, 1.8 * a
    cz = t[:, 2].max() - c
    g = np.stack([(t[:, 0] - cx) / a**2, (t[:, 1] - cy) / b**2, (t[:, 2] - cz) / c**2], -1)
    return (g / np.linalg.norm(g, axis=-1, keepdims=True)).astype(np.float32)


def normal_visibility_mask(rotation, normals=None, threshold: float = 0.0):
    """(..., 98) bool: landmarks whose template normal faces a camera with world→camera ``rotation``
    (..., 3, 3): dot(R·n, −ẑ) > threshold, i.e. cos of the angle between the normal and the
    direction toward the camera (along the optical axis) exceeds ``threshold``.

    normals: (98, 3) world normals (default ``normal_template()``). Differentiable-free use:
    callers pass a stop-gradient rotation.
    """
    n = jnp.asarray(normal_template() if normals is None else normals, jnp.float32)
    R = jnp.asarray(rotation, jnp.float32)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must be (..., 3, 3), got shape {R.shape}")
    toward_camera = -jnp.einsum("...j,nj->...n", R[..., 2, :], n)  # −(R n)_z
    return toward_camera > threshold
