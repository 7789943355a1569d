"""The simulated human-style 2D detector: exactness without noise, marching, gaze bias, failures."""

import jax
import numpy as np
import pytest

from facelift_jax import camera as cam
from facelift_jax.synthetic import SyntheticDetector, SyntheticGenerator, detection_gap, mesh
from facelift_jax.synthetic.generator import default_config

SIZE = 160


def _quiet(**overrides):
    """A detector config with every perturbation switched off (then selectively on)."""
    c = default_config().detector
    for k in c.sigma:
        c.sigma[k] = (0.0, 0.0)
    c.occluded_sigma = 0.0
    c.brow_offset = 0.0
    c.failure_rate = 0.0
    c.update(overrides)
    return c


@pytest.fixture(scope="module")
def gen():
    return SyntheticGenerator()


@pytest.fixture(scope="module")
def turned(gen):
    """Eight faces seen from 45-75° either side, eyes open."""
    lat = np.arange(40, 48)
    p = gen.params(lat)
    ex = np.asarray(p.expression).copy()
    ex[:, [mesh.EXPRESSION_NAMES.index("blink_right"), mesh.EXPRESSION_NAMES.index("blink_left")]] = 0.0
    p = p.replace(expression=ex)
    az = np.array([45.0, 55.0, 65.0, 75.0, -45.0, -55.0, -65.0, -75.0])
    return gen.render_params(p, cam.camera_from_angles(az, np.linspace(-15, 15, 8)), SIZE)


def test_without_noise_visible_points_are_the_exact_projection(turned):
    det = SyntheticDetector(_quiet()).detect(turned, jax.random.key(0))
    vis = turned.visible.copy()
    vis[:, 96:] = False  # pupils follow the camera, tested below
    np.testing.assert_allclose(det[vis], turned.landmarks2d[vis], atol=1e-5)
    # and the noise-free detector is not the identity: occluded contour points moved
    hidden = ~turned.visible[:, :33]
    assert hidden.sum() > 20
    assert np.linalg.norm(det[:, :33] - turned.landmarks2d[:, :33], axis=-1)[hidden].mean() * SIZE > 3.0


def test_marched_contour_points_lie_on_the_silhouette(turned):
    det = SyntheticDetector(_quiet()).detect(turned, jax.random.key(0))
    hidden = ~turned.visible[:, :33]
    checked = 0
    for b, i in zip(*np.nonzero(hidden)):
        if not turned.contour_candidates_visible[b, i].any():
            continue
        x, y = np.floor(det[b, i] * SIZE).astype(int)
        d0 = turned.depth[b, y - 1:y + 2, x - 1:x + 2].min()
        assert np.isfinite(d0), (b, i)  # the marched point touches the face (it may sit on its very edge)
        # an occluding contour: within 3 px there is background or a surface ≥ 1.5 cm farther behind
        win = turned.depth[b, max(y - 3, 0):y + 4, max(x - 3, 0):x + 4]
        assert (win > d0 + 1.5 * mesh.SCALE).any(), (b, i, d0, win.max())
        checked += 1
    assert checked > 20
    # and the true projections of those points are NOT on a silhouette (they are hidden inside)
    inner = 0
    for b, i in zip(*np.nonzero(hidden)):
        x, y = np.floor(turned.landmarks2d[b, i] * SIZE).astype(int)
        win = turned.depth[b, max(y - 3, 0):y + 4, max(x - 3, 0):x + 4]
        inner += np.isfinite(win).all() and (win < win.min() + 1.5 * mesh.SCALE).all()
    assert inner > 0.5 * hidden.sum()


def test_pupils_follow_the_camera_onto_the_rendered_pupil(gen, turned):
    det = SyntheticDetector(_quiet()).detect(turned, jax.random.key(0))
    # detected pupils sit on the dark rendered pupil, not on the 3D landmarks' projection
    px = np.floor(det[:, 96:] * SIZE).astype(int)
    luminance = turned.image.mean(-1)
    vis = turned.visible[:, 96:]
    # the pupil is ~2 px wide here: take the darkest pixel within 1 px
    dark = np.array([luminance[b, y - 1:y + 2, x - 1:x + 2].min() for b in range(8) for (x, y) in px[b]]).reshape(8, 2)
    assert (dark[vis] < 60).mean() > 0.85, dark
    shift = np.linalg.norm(det[:, 96:] - turned.landmarks2d[:, 96:], axis=-1) * SIZE
    assert np.median(shift) > 1.0
    # in a frontal view the gaze points at the camera: pupils coincide with the 3D definition
    front = gen.render(np.arange(40, 44), cam.camera_from_angles(np.zeros(4), np.zeros(4)), SIZE)
    d = SyntheticDetector(_quiet()).detect(front, jax.random.key(0))
    assert np.abs(d[:, 96:] - front.landmarks2d[:, 96:]).max() * SIZE < 0.6


def test_noise_matches_the_configured_sigma(gen):
    lat = np.arange(64)
    out = gen.render(lat, cam.camera_from_angles(np.zeros(64), np.zeros(64)), 96)
    sigma = 0.01
    cfg = _quiet()
    cfg.sigma.nose = (sigma, sigma)
    det = SyntheticDetector(cfg).detect(out, jax.random.key(3))
    box = np.concatenate([out.landmarks2d[:, :96].min(1), out.landmarks2d[:, :96].max(1)], -1)
    size = np.sqrt((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))
    err = (det[:, 51:60] - out.landmarks2d[:, 51:60]) / size[:, None, None]
    assert abs(err.std() / sigma - 1) < 0.1
    assert abs(err.mean()) < 3 * sigma / np.sqrt(err.size)
    np.testing.assert_allclose(det[:, 60:96], out.landmarks2d[:, 60:96], atol=1e-6)  # other regions quiet


def test_failures_only_at_extreme_yaw(gen):
    lat = np.arange(16)
    cfg = _quiet(failure_rate=1.0, failure_yaw=60.0)
    d = SyntheticDetector(cfg)
    side = gen.render(lat, cam.camera_from_angles(np.full(16, 110.0), np.zeros(16)), 96)
    front = gen.render(lat, cam.camera_from_angles(np.zeros(16), np.zeros(16)), 96)
    ds = d.detect(side, jax.random.key(1))
    assert d.last_failed.all()
    df = d.detect(front, jax.random.key(1))
    assert not d.last_failed.any()
    assert detection_gap(side, ds)["full"] > 10 * detection_gap(front, df)["full"]
    half = SyntheticDetector(_quiet(failure_rate=0.5, failure_yaw=60.0))
    rates = []
    for k in range(4):
        half.detect(side, jax.random.key(10 + k))
        rates.append(half.last_failed.mean())
    assert 0.3 < np.mean(rates) < 0.7


def test_detection_gap_by_hand_and_determinism(turned):
    shift = np.array([0.01, 0.0], np.float32)
    gap = detection_gap(turned, turned.landmarks2d + shift)
    l2 = turned.landmarks2d[:, :96]
    size = np.sqrt((l2[..., 0].max(1) - l2[..., 0].min(1)) * (l2[..., 1].max(1) - l2[..., 1].min(1)))
    assert gap["full"] == pytest.approx(np.mean(0.01 / size), rel=1e-5)
    d = SyntheticDetector()
    a, ca = d.detect(turned, jax.random.key(5), return_confidence=True)
    b = d.detect(turned, jax.random.key(5))
    c = d.detect(turned, jax.random.key(6))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4
    assert ca.shape == (8, 98) and ca.min() >= 0 and ca.max() <= 1
    # a slice of a RenderOutput is a RenderOutput; images are not
    np.testing.assert_array_equal(d.detect(turned[2:4], jax.random.key(5)).shape, (2, 98, 2))
    with pytest.raises(TypeError, match="RenderOutput"):
        d.detect(turned.image, jax.random.key(5))
    # default detector: hidden contour points carry most of the gap, and lower confidence
    g = detection_gap(turned, a)
    assert g["contours_occluded"] > 2 * g["contours_visible"]
    assert ca[turned.visible].mean() > ca[~turned.visible].mean() + 0.2
