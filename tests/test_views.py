"""View set, masks and the normal-template visibility heuristic, checked against independent
geometry (camera centres from the angle formula, mirror symmetry, brute-force dot products)."""

import numpy as np
import pytest

from facelift_jax import camera, landmarks, views


def test_cameras_sit_at_their_angles_and_look_at_the_pivot():
    cams = views.lifting_cameras()
    ang = np.deg2rad(views.view_angles())
    a, e = ang[:, 0], ang[:, 1]
    expected = camera.DEFAULT_RADIUS * np.stack([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)], -1)
    np.testing.assert_allclose(np.asarray(cams.center), expected, atol=1e-5)
    uv = np.asarray(camera.project(np.array([[0.0, 0.0, 0.2]], np.float32)[None], cams))[:, 0]
    np.testing.assert_allclose(uv, 0.5, atol=1e-5)  # the look-at point projects to the image centre
    assert len(views.LIFTING_VIEWS) == views.NUM_VIEWS == cams.batch_shape[0]


def test_template_face_is_symmetric_and_fills_the_frontal_image():
    t = views.canonical_template()
    np.testing.assert_allclose(t[landmarks.MIRROR_98] * np.array([-1, 1, 1]), t, atol=1e-7)
    side = views.landmark_sides()
    np.testing.assert_array_equal(side[landmarks.MIRROR_98], -side)
    np.testing.assert_array_equal(np.sign(np.round(t[:, 0], 6)).astype(int), side)
    # the layout of landmarks.py: image-left points (subject's right) have x < 0
    assert t[0, 0] < 0 and t[60, 0] < 0 and t[76, 0] < 0 and t[96, 0] < 0
    front = views.lifting_cameras()[0]
    uv = np.asarray(camera.project(t[None], front))[0]
    width = uv[:, 0].max() - uv[:, 0].min()
    assert 0.5 < width < 0.8  # the interface's frontal landmark box: ~55-75% of the image
    assert uv[96, 0] < 0.5 < uv[97, 0]  # pupil 96 is on the image left


def test_view_masks_follow_the_rules():
    m = views.view_masks()
    V = len(views.LIFTING_VIEWS)
    assert m.shape == (V, 98) and m.dtype == bool
    assert not m[:, landmarks.PUPILS].any()
    assert m[0, :96].all()  # frontal: everything but the pupils
    side = views.landmark_sides()
    az = views.view_angles()[:, 0]
    for v in range(V):
        near = side == np.sign(az[v])
        assert m[v, near & (np.arange(98) < 96)].all()  # the near side is always kept
    # the rule table, spot-checked by hand: az+60 drops the subject's right eye/brow, keeps the left
    v60 = [n for n, *_ in views.LIFTING_VIEWS].index("az+60")
    assert not m[v60, 60:68].any() and m[v60, 68:76].all()
    assert not m[v60, 33:42].any() and m[v60, 42:51].all()
    assert not m[v60, 0:16].any() and m[v60, 16]  # far jaw gone, chin kept
    v20 = [n for n, *_ in views.LIFTING_VIEWS].index("az+20")
    assert not m[v20, 0:11].any() and m[v20, 11:].sum() == 98 - 11 - 2  # far jaw above the chin goes first
    # every landmark but the pupils is seen by enough views to be lifted, from both sides
    assert m[:, :96].sum(0).min() >= 6


def test_view_masks_are_mirror_symmetric():
    m = views.view_masks()
    names = [n for n, *_ in views.LIFTING_VIEWS]
    for v, (name, az, el) in enumerate(views.LIFTING_VIEWS):
        mirror = [i for i, (_, a2, e2) in enumerate(views.LIFTING_VIEWS) if a2 == -az and e2 == el]
        assert len(mirror) == 1, name
        # the mirrored view sees the mirrored landmarks
        np.testing.assert_array_equal(m[mirror[0]], m[v][landmarks.MIRROR_98], err_msg=f"{name} vs {names[mirror[0]]}")


def test_normal_template_points_outward():
    n = views.normal_template()
    np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(n[landmarks.MIRROR_98] * np.array([-1, 1, 1]), n, atol=1e-6)
    assert n[54, 2] > 0.9  # nose tip looks forward
    assert n[0, 0] < -0.7 and n[32, 0] > 0.7  # jaw ends look sideways
    assert n[16, 1] < -0.3 and n[16, 2] > 0.3  # chin: down and forward
    with pytest.raises(ValueError, match="template"):
        views.normal_template(np.zeros((68, 3)))


def test_normal_visibility_mask_matches_brute_force():
    rng = np.random.default_rng(0)
    n = views.normal_template()
    cams = camera.camera_from_angles(rng.uniform(-90, 90, 20), rng.uniform(-40, 40, 20), rng.uniform(-30, 30, 20))
    R = np.asarray(cams.R)
    for thr in (0.0, 0.3):
        got = np.asarray(views.normal_visibility_mask(R, threshold=thr))
        centres = np.asarray(cams.center)
        # the direction toward the camera along its optical axis, written via the camera centre
        # relative to the look-at point (independent of R's rows)
        toward = centres - np.array(camera.DEFAULT_LOOK_AT)
        toward /= np.linalg.norm(toward, axis=-1, keepdims=True)
        expected = np.einsum("bj,nj->bn", toward, n) > thr
        agree = (got == expected).mean()
        assert agree > 0.99, agree  # roll does not change the optical axis; only ties may differ
    # frontal: the face is visible; profile from +x: the subject's right half is not
    frontal = np.asarray(views.lifting_cameras()[0].R)
    assert np.asarray(views.normal_visibility_mask(frontal))[landmarks.REGIONS_98["nose"]].all()
    side_cam = np.asarray(camera.camera_from_angles(90.0, 0.0).R)
    vis = np.asarray(views.normal_visibility_mask(side_cam))
    side = views.landmark_sides()
    assert not vis[side < 0].any() and vis[side > 0].mean() > 0.8
    # batched rotations broadcast
    assert views.normal_visibility_mask(np.broadcast_to(frontal, (4, 5, 3, 3))).shape == (4, 5, 98)
