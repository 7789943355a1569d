"""The held-out baselines (evaluation/baselines.py): the PnP template fit (independent pinhole
maths), the detector baseline against the true-pose template baseline in the noise-free case, the
fallback, the tables (evaluation/evaluator.py) and the learning curve."""

import json

import numpy as np
import pytest

from conftest import pinhole
from facelift_jax import camera
from facelift_jax.evaluation import baselines, evaluator, scoring
from facelift_jax.evaluation.datasets import synthetic as testset_lib


def _template():
    from facelift_jax.synthetic import SyntheticGenerator

    return np.asarray(SyntheticGenerator().landmarks3d(np.array([3])), np.float64)[0]


def _angle_deg(A, B):
    c = (np.einsum("bij,bij->b", A, B) - 1) / 2  # trace(AᵀB) = Σ A∘B
    return np.degrees(np.arccos(np.clip(c, -1, 1)))


def _poses():
    yaw = np.array([0.0, 25.0, -50.0, 70.0, 10.0])
    pitch = np.array([0.0, -15.0, 20.0, 5.0, 30.0])
    roll = np.array([0.0, 10.0, -5.0, 20.0, -30.0])
    cams = camera.camera_from_angles(yaw, pitch, roll, translation=(0.02, -0.01, 0.1))
    return np.asarray(cams.R, np.float64), np.asarray(cams.t, np.float64)


def test_pnp_recovers_a_known_rotation_and_ignores_pupils():
    template = _template()
    R, t = _poses()
    pts = pinhole(template, R, t)
    pts[:, 96:] += 0.3  # pupils wildly off (and confident): they must not enter the fit
    conf = np.ones(pts.shape[:2])
    conf[:, ::3] = 0.2  # a third of the points unconfident: left out
    pts[:, ::3] += 0.2
    fR, ft, fitted = baselines.fit_template_pose(template, pts, conf)
    assert fitted.all()
    assert _angle_deg(fR, R).max() < 0.1
    np.testing.assert_allclose(ft, t, atol=1e-4)


def _truth(template, R, t, rng):
    m = len(R)
    true3d = template[None] + rng.normal(0, 0.01, (m, 98, 3))
    l2d = np.stack([pinhole(true3d[i], R[i:i + 1], t[i:i + 1])[0] for i in range(m)])
    verts = np.concatenate([l2d, l2d + rng.normal(0, 0.01, l2d.shape)], 1)
    return testset_lib.TestImages(
        image=np.zeros((m, 8, 8, 3), np.uint8), landmarks2d=l2d.astype(np.float32),
        landmarks3d=true3d.astype(np.float32), rotation=R.astype(np.float32), translation=t.astype(np.float32),
        visible=np.ones((m, 98), bool), vertices2d=verts.astype(np.float32),
        box_size=testset_lib.box_size(l2d).astype(np.float32),
        detections=pinhole(template, R, t).astype(np.float32), detection_confidence=np.ones((m, 98), np.float32))


def test_noise_free_detector_baseline_equals_true_pose_baseline():
    template = _template()
    R, t = _poses()
    truth = _truth(template, R, t, np.random.default_rng(0))
    cats = np.array(["front", "sided", "atypical", "atypical", "atypical"])
    det = baselines.detector_baseline(template, truth, cats)
    ref = baselines.template_baseline(template, truth, cats)
    assert det["pnp_fallbacks"] == 0 and det["pnp_points"] == 96
    for metric in ("nme", "nmlc"):
        for region, v in ref[metric].items():
            assert det[metric][region] == pytest.approx(v, rel=1e-3, abs=1e-4), (metric, region)
    assert det["landmarks3d_nme"] == pytest.approx(ref["landmarks3d_nme"], rel=1e-6)
    assert ref["pose_error_deg"] == pytest.approx(0.0, abs=0.05) and det["pose_error_deg"] < 0.1
    # The detections are the template's projection: their own NME is the baseline's.
    assert det["detector_nme"]["full"] == pytest.approx(ref["nme"]["full"], rel=1e-3)
    # Per category: the image means of each category.
    assert det["categories"]["nme"]["front"] == pytest.approx(ref["categories"]["nme"]["front"], rel=1e-3)
    assert set(ref["categories"]) == {"nme", "nmlc", "landmarks3d_nme", "pose_error_deg"}


def test_failed_fit_falls_back_to_the_frontal_pose():
    template = _template()
    R, t = _poses()
    truth = _truth(template, R, t, np.random.default_rng(1))
    conf = np.array(truth.detection_confidence)
    conf[1, :91] = 0.4  # image 1: 5 confident non-pupil points (< 6) → fallback
    conf[3, :] = 0.5  # image 3: nothing above 0.5 (strictly) → fallback
    fR, ft, fitted = baselines.fit_template_pose(template, truth.detections, conf)
    assert fitted.tolist() == [True, False, True, False, True]
    R0, t0 = baselines.frontal_pose()
    np.testing.assert_allclose(fR[[1, 3]], np.stack([R0, R0]), atol=1e-6)
    np.testing.assert_allclose(ft[[1, 3]], np.stack([t0, t0]), atol=1e-6)
    assert _angle_deg(R0[None], np.diag([1.0, -1.0, -1.0])[None])[0] < 1e-3  # frontal: camera faces the face
    import dataclasses

    det = baselines.detector_baseline(template, dataclasses.replace(truth, detection_confidence=conf))
    assert det["pnp_fallbacks"] == 2
    expected = np.mean(_angle_deg(np.stack([R0, R0]), R[[1, 3]].astype(np.float32)))
    assert det["pose_error_deg"] == pytest.approx((expected * 2 + _angle_deg(fR[[0, 2, 4]], R[[0, 2, 4]]).sum()) / 5,
                                                  abs=0.05)


def test_category_tables_and_markdown():
    template = _template()
    R, t = _poses()
    truth = _truth(template, R, t, np.random.default_rng(2))
    cats = np.array(["front", "sided", "front", "atypical", "front"])
    model = scoring.score_images(np.asarray(truth.landmarks2d) + 0.01, truth.landmarks3d, truth.rotation, truth, cats)
    results = {"multiview": model, "baseline": {"multiview": baselines.template_baseline(template, truth, cats)},
               "detector_baseline": {"multiview": baselines.detector_baseline(template, truth, cats)}}
    tables = evaluator.category_tables(results, {"multiview": cats})
    mv = tables["multiview"]
    assert mv["counts"] == {"front": 3, "sided": 1, "atypical": 1} and mv["pnp_fallbacks"] == 0
    assert set(mv["methods"]) == {"model", "baseline", "detector_baseline"}
    nme = mv["methods"]["model"]["nme"]
    # All images have the same number of points: "all" is the count-weighted mean of the categories.
    assert nme["all"] == pytest.approx(sum(nme[c] * n for c, n in mv["counts"].items()) / 5, rel=1e-9)
    assert mv["methods"]["model"]["pose_error_deg"]["all"] == pytest.approx(0.0, abs=0.05)
    md = evaluator.categories_markdown(tables)
    assert "| NMLC | 2D detector + template fit (PnP) |" in md and "front (3)" in md
    assert "2D detector's own landmarks" in md
    json.dumps(tables)


def test_learning_curve_from_eval_rows(tmp_path):
    from facelift_jax import plots

    rows = [{"step": 10, "split": "train", "loss": 1.0},
            {"step": 10, "split": "eval", "multiview/nmlc/full": 9.0, "multiview/pose_error_deg": 30.0},
            {"step": 20, "split": "eval", "multiview/nmlc/full": 7.0, "multiview/pose_error_deg": 20.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = plots.learning_curve(tmp_path / "metrics.jsonl", tmp_path / "lc.png", images_per_step=8,
                               baselines={"baseline/multiview/nmlc/full": 3.0,
                                          "detector_baseline/multiview/pose_error_deg": 7.0})
    assert out.stat().st_size > 1000
    (tmp_path / "empty.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert plots.learning_curve(tmp_path / "empty.jsonl", tmp_path / "lc2.png", images_per_step=8).is_file()
