"""NME (eq. 5) and NMLC (eq. 6) against independent math: closed forms and brute force."""

import itertools

import numpy as np
import pytest

from facelift_jax import landmarks as lm
from facelift_jax import metrics


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_nme_closed_form():
    # One image, two landmarks, errors 3-4-5 and 0; box 10 x 40 → sqrt = 20.
    pred = np.array([[[3.0, 4.0], [1.0, 1.0]]])
    target = np.array([[[0.0, 0.0], [1.0, 1.0]]])
    assert metrics.nme(pred, target, [20.0]) == pytest.approx(100 * (5 / 20 + 0) / 2)
    assert metrics.nme(pred, target, [[10.0, 40.0]]) == pytest.approx(12.5)
    # The mask drops the perfect landmark.
    assert metrics.nme(pred, target, [20.0], mask=[[True, False]]) == pytest.approx(25.0)


def test_nme_matches_loop():
    r = _rng(1)
    pred, target = r.normal(size=(7, 5, 2)), r.normal(size=(7, 5, 2))
    box = r.uniform(1, 3, size=7)
    expected = np.mean([np.linalg.norm(pred[m, n] - target[m, n]) / box[m]
                        for m in range(7) for n in range(5)]) * 100
    assert metrics.nme(pred, target, box) == pytest.approx(expected, rel=1e-6)


def _eq5(pred, vertices, box, K):
    """Eq. (5) written out as a double loop."""
    M, N = pred.shape[:2]
    return 100 * sum(np.linalg.norm(pred[m, n] - vertices[m, K[n]]) / box[m]
                     for m in range(M) for n in range(N)) / (M * N)


def test_nmlc_brute_force_over_all_K():
    r = _rng(2)
    M, N, V = 4, 3, 5
    pred, vertices = r.normal(size=(M, N, 2)), r.normal(size=(M, V, 2))
    box = r.uniform(0.5, 2, size=M)
    best = min(itertools.product(range(V), repeat=N), key=lambda K: _eq5(pred, vertices, box, K))
    value, K = metrics.nmlc(pred, vertices, box)
    assert value == pytest.approx(_eq5(pred, vertices, box, best), rel=1e-5)
    assert tuple(K) == best


def test_nmlc_le_nme_and_equal_when_vertices_contain_landmarks():
    r = _rng(3)
    M, N, V = 30, 98, 200
    target = r.normal(size=(M, N, 2)) * 50 + 100
    pred = target + r.normal(size=(M, N, 2)) * 3
    box = r.uniform(80, 120, size=M)
    other = r.normal(size=(M, V - N, 2)) * 50 + 100
    # Vertex set that contains the exact landmarks at scattered positions.
    perm = r.permutation(V)
    vertices = np.concatenate([target, other], 1)[:, np.argsort(perm)]
    K_true = perm[:N]  # column j of vertices holds column argsort(perm)[j] of the concatenation
    assert np.allclose(vertices[:, K_true], target)
    value, K = metrics.nmlc(pred, vertices, box)
    nme = metrics.nme(pred, target, box)
    assert value <= nme + 1e-6
    # Predictions equal to the truth: both metrics are 0 and K recovers the landmark vertices.
    value0, K0 = metrics.nmlc(target, vertices, box)
    assert value0 == pytest.approx(0.0, abs=1e-6)
    assert np.array_equal(K0, K_true)
    # NMLC ≤ NME also on random inputs where the vertices do not contain the landmarks.
    v2 = r.normal(size=(M, 50, 2)) * 50 + 100
    t2 = v2[:, r.integers(0, 50, size=N)]
    assert metrics.nmlc(pred, v2, box)[0] <= metrics.nme(pred, t2, box) + 1e-6


def test_nmlc_picks_vertex_under_consistent_offset():
    # The model predicts each landmark with a fixed offset from its ground-truth vertex; one
    # vertex of the mesh lies at exactly that offset → NMLC finds it and scores ~0, NME does not.
    r = _rng(4)
    M, N, V = 40, 6, 300
    vertices = r.normal(size=(M, V, 2)) * 30
    K_true = r.choice(V, size=N, replace=False)
    offset_vertex = r.choice(np.setdiff1d(np.arange(V), K_true), size=N, replace=False)
    offset = r.normal(size=(N, 2)) * 4
    vertices[:, offset_vertex] = vertices[:, K_true] + offset  # a neighbour at the offset
    pred = vertices[:, K_true] + offset + r.normal(size=(M, N, 2)) * 0.01
    box = np.full(M, 50.0)
    value, K = metrics.nmlc(pred, vertices, box)
    assert np.array_equal(K, offset_vertex)
    assert value < 0.05
    assert metrics.nme(pred, vertices[:, K_true], box) > 5.0


def test_nmlc_chunked_equals_single_block_and_handles_many_vertices():
    r = _rng(5)
    M, N, V = 37, 68, 1001  # sizes that do not divide the blocks
    pred, vertices = r.normal(size=(M, N, 2)), r.normal(size=(M, V, 2))
    box = r.uniform(0.5, 2, size=M)
    v_small, K_small = metrics.nmlc(pred, vertices, box, block_elements=5000)
    # Independent reference: the full (N, V) cost table in float64.
    cost = (np.linalg.norm(pred[:, :, None] - vertices[:, None], axis=-1) / box[:, None, None]).sum(0)
    assert np.array_equal(K_small, cost.argmin(1))
    assert v_small == pytest.approx(100 * cost.min(1).sum() / (M * N), rel=1e-5)
    v_big, K_big = metrics.nmlc(pred, vertices, box, block_elements=1 << 26)
    assert np.array_equal(K_big, K_small) and v_big == pytest.approx(v_small, rel=1e-6)


def test_nmlc_mask_matches_masked_nme_of_chosen_definition():
    r = _rng(6)
    M, N, V = 20, 5, 40
    pred, vertices = r.normal(size=(M, N, 2)), r.normal(size=(M, V, 2))
    box = r.uniform(0.5, 2, size=M)
    mask = r.random((M, N)) > 0.3
    value, K = metrics.nmlc(pred, vertices, box, mask=mask)
    assert value == pytest.approx(metrics.nme(pred, vertices[:, K], box, mask=mask), rel=1e-5)
    # Brute force per landmark with the mask: only the selected images count.
    for n in range(N):
        costs = [sum(np.linalg.norm(pred[m, n] - vertices[m, v]) / box[m] for m in range(M) if mask[m, n])
                 for v in range(V)]
        assert K[n] == int(np.argmin(costs))


def test_region_and_category_means():
    errors = np.zeros((4, 98))
    errors[:, lm.region_indices("eyes")] = 2.0
    errors[:, lm.region_indices("mouth")] = 4.0
    errors[:, lm.PUPILS] = 1000.0  # pupils are not part of "full"
    regions = metrics.region_means(errors)
    assert regions["eyes"] == 2.0 and regions["mouth"] == 4.0 and regions["contours"] == 0.0
    assert regions["full"] == pytest.approx((16 * 2 + 20 * 4) / 96)
    errors[2:] *= 3
    cats = metrics.category_means(errors, {"pose": np.array(["front", "front", "sided", "sided"])})
    assert cats["pose"]["sided"] == pytest.approx(3 * cats["pose"]["front"])
    e68 = np.arange(68, dtype=float)[None].repeat(2, 0)
    r68 = metrics.region_means(e68)
    assert r68["contours"] == pytest.approx(8.0) and r68["mouth"] == pytest.approx(57.5)


def test_landmark_report_and_errors():
    r = _rng(7)
    M, V = 6, 150
    vertices = r.normal(size=(M, V, 2)) * 20
    target = vertices[:, :68]
    pred = target + r.normal(size=target.shape)
    box = metrics.box_size_from_points(target)
    rep = metrics.landmark_report(pred, box, target=target, vertices=vertices,
                                  categories={"expr": np.array([True, False] * 3)})
    assert rep["nmlc"]["regions"]["full"] <= rep["nme"]["regions"]["full"] + 1e-6
    assert set(rep["nme"]["categories"]["expr"]) == {"True", "False"}
    assert len(rep["nmlc"]["K"]) == 68
    with pytest.raises(ValueError, match="non-finite"):
        metrics.nme(np.full((1, 2, 2), np.nan), np.zeros((1, 2, 2)), [1.0])
    with pytest.raises(ValueError, match="box_size"):
        metrics.nme(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), [0.0])
    with pytest.raises(ValueError, match="3 images"):
        metrics.nmlc(np.zeros((2, 3, 2)), np.zeros((3, 5, 2)), [1.0, 1.0])
