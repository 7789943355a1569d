"""The evaluation pipeline: oracle predictions with known errors, categories, the CLI, outputs."""

import csv
import json

import numpy as np
import pytest

from facelift_jax import camera, evaluate
from facelift_jax import landmarks as lm
from facelift_jax.evaluation.datasets import synthetic as synthetic_ds
from facelift_jax.evaluation.datasets.dad3dheads import DAD3DHeads
from facelift_jax.predict import PredictionResult
from tests.test_datasets import _write_dad


class OraclePredictor:
    """Returns given 98-point landmarks (image pixels) in dataset order, like Predictor.predict_crops."""

    def __init__(self, landmarks98):
        self.landmarks98, self.pos, self.batch_size = landmarks98, 0, 3

    def predict_crops(self, images, crop_boxes):
        n = len(images)
        pts = self.landmarks98[self.pos:self.pos + n]
        self.pos += n
        eye = np.broadcast_to(np.eye(3), (n, 3, 3))
        return PredictionResult(landmarks3d=np.zeros((n, 98, 3)), landmarks2d=pts,
                                covariances=np.broadcast_to(np.eye(2), (n, 98, 2, 2)), rotation=eye,
                                translation=np.zeros((n, 3)), euler_degrees=np.zeros((n, 3)),
                                crop_boxes=np.asarray(crop_boxes, float))


def _dad_with_truth(tmp_path, n=5):
    root, _ = _write_dad(tmp_path, n=n)
    faces = np.stack([np.arange(68) * 7, np.arange(68) * 7 + 1, np.arange(68) * 7 + 2], 1)
    bary = np.tile([1.0, 0.0, 0.0], (68, 1))  # landmark l = vertex 21·l: the vertices contain the truth
    np.savez(tmp_path / "emb.npz", faces=faces, lmk_face_idx=np.arange(68), lmk_b_coords=bary)
    ds = DAD3DHeads(root, landmark_embedding=tmp_path / "emb.npz")
    truth68 = np.stack([ds[i].landmarks2d for i in range(len(ds))])
    return root, ds, truth68


def test_oracle_scores_closed_form(tmp_path):
    _, ds, truth68 = _dad_with_truth(tmp_path)
    offset = np.array([3.0, 4.0])  # 5 px for every landmark
    pred98 = np.zeros((len(ds), 98, 2))
    pred98[:, lm.WFLW98_TO_68] = truth68 + offset
    out = evaluate.evaluate(OraclePredictor(pred98), ds, tmp_path / "eval", num_examples=2, progress=False)
    boxes = np.array([[30 + i, 40] for i in range(len(ds))], float)
    expected = np.mean(100 * 5.0 / np.sqrt(boxes[:, 0] * boxes[:, 1]))
    assert out["nme"]["regions"]["full"] == pytest.approx(expected, rel=1e-9)
    assert out["nme"]["regions"]["eyes"] == pytest.approx(expected, rel=1e-9)
    assert out["nmlc"]["regions"]["full"] <= out["nme"]["regions"]["full"] * (1 + 1e-6)  # float32 vertices
    # Category means: images 0, 2, 4 are "front" (box widths 30, 32, 34).
    front = np.mean(100 * 5.0 / np.sqrt(np.array([30, 32, 34]) * 40.0))
    assert out["nme"]["categories"]["pose"]["front"] == pytest.approx(front, rel=1e-9)
    md = (tmp_path / "eval" / "results.md").read_text()
    assert "| Ours | NME |" in md and "pose: front" in md and "expression: True" in md
    rows = list(csv.DictReader(open(tmp_path / "eval" / "per_image.csv")))
    assert len(rows) == len(ds) and float(rows[1]["nme"]) == pytest.approx(100 * 5 / np.sqrt(31 * 40), rel=1e-4)
    assert (tmp_path / "eval" / "examples.png").stat().st_size > 10_000
    # Oracle rotation I vs truth diag(1, −1, −1)·Ry(a): trace −1 → 180° for every image; ‖I − R‖_F = 2·sqrt(2).
    assert out["pose_error_deg"] == pytest.approx(180.0, abs=1e-2)
    assert out["pose_error_frobenius"] == pytest.approx(2 * np.sqrt(2), rel=1e-5)
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert len(saved["nmlc"]["K"]) == 68


def test_oracle_without_offset_is_zero_and_nmlc_finds_the_vertices(tmp_path):
    _, ds, truth68 = _dad_with_truth(tmp_path, n=4)
    pred98 = np.zeros((len(ds), 98, 2))
    pred98[:, lm.WFLW98_TO_68] = truth68
    out = evaluate.evaluate(OraclePredictor(pred98), ds, tmp_path / "eval", num_examples=1, progress=False)
    assert out["nme"]["regions"]["full"] == pytest.approx(0.0, abs=1e-9)
    assert out["nmlc"]["regions"]["full"] == pytest.approx(0.0, abs=1e-4)
    assert out["nmlc"]["K"] == (np.arange(68) * 7).tolist()


def test_pose_categories_from_known_cameras():
    yaw = np.array([10.0, -45.0, 80.0, 5.0, 0.0])
    pitch = np.array([0.0, 0.0, 0.0, 50.0, 0.0])
    roll = np.array([0.0, 0.0, 0.0, 0.0, 60.0])
    cams = camera.camera_from_angles(yaw, pitch, roll, look_at=(0.0, 0.0, 0.0))
    cats = synthetic_ds.pose_categories(np.asarray(cams.R))
    assert cats.tolist() == ["front", "sided", "atypical", "atypical", "atypical"]


def test_synthetic_wrapper_scales_to_pixels_and_labels_expressions(monkeypatch):
    from configs.default import get_config
    from facelift_jax.evaluation.datasets import synthetic as testset_lib

    m, s = 3, 64
    r = np.random.default_rng(0)
    fake = testset_lib.TestImages(
        image=np.zeros((m, s, s, 3), np.uint8), landmarks2d=r.uniform(0.2, 0.8, (m, 98, 2)).astype(np.float32),
        landmarks3d=np.zeros((m, 98, 3), np.float32), rotation=np.broadcast_to(np.diag([1.0, -1, -1]), (m, 3, 3)),
        translation=np.zeros((m, 3)), visible=np.ones((m, 98), bool),
        vertices2d=r.uniform(0, 1, (m, 50, 2)).astype(np.float32), box_size=np.ones(m))

    class Gen:
        def params(self, latents):
            class P:
                expression = np.array([[0.1, 0.0], [0.0, -0.5], [0.29, 0.2]])[: len(latents)]
            return P()

    monkeypatch.setattr(testset_lib, "render_multiview", lambda config, gen: fake)
    monkeypatch.setattr(synthetic_ds, "_generator", lambda config: Gen())
    ds = synthetic_ds.SyntheticTestSet(get_config())
    assert len(ds) == 3 and ds[0].name == "latent1000000"
    np.testing.assert_allclose(ds[1].landmarks2d, fake.landmarks2d[1] * s, rtol=1e-6)
    np.testing.assert_allclose(ds[2].vertices2d, fake.vertices2d[2] * s, rtol=1e-6)
    np.testing.assert_allclose(ds[0].box, [*(fake.landmarks2d[0] * s).min(0), *(fake.landmarks2d[0] * s).max(0)],
                               rtol=1e-6)
    assert [ds[i].categories["expression"] for i in range(3)] == ["False", "True", "False"]
    assert ds[0].categories["pose"] == "front" and ds[0].crop_box is None


def test_cli_on_dad_fixture_with_exported_model(tmp_path, capsys):
    from flax import nnx

    from facelift_jax import export
    from facelift_jax.model import build_model
    from tests.test_export_predict import SIZE, tiny_config, tiny_template

    root, ds, _ = _dad_with_truth(tmp_path, n=3)
    model = build_model(tiny_config().model, tiny_template(), rngs=nnx.Rngs(0))
    meta = export.make_metadata(tiny_config().model, SIZE, tiny_template())
    exp = export.save_model(model, tmp_path / "exp", image_size=SIZE, metadata=meta, stablehlo=False)
    code = evaluate.main(["--checkpoint", str(exp), "--data", f"dad3dheads:{root}", "--landmark-embedding",
                          str(tmp_path / "emb.npz"), "--out", str(tmp_path / "ev"), "--no-progress",
                          "--name", "Tiny"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| Tiny | NMLC |" in printed and "| Tiny | NME |" in printed
    res = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert res["num_images"] == 3 and res["num_points"] == 68
    assert res["nmlc"]["regions"]["full"] <= res["nme"]["regions"]["full"] * (1 + 1e-6)
    assert evaluate.main(["--checkpoint", str(tmp_path / "missing"), "--data", "synthetic"]) == 2


@pytest.mark.slow
def test_synthetic_end_to_end(tmp_path):
    from flax import nnx

    from configs.default import get_config
    from facelift_jax.model import build_model
    from facelift_jax.predict import Predictor
    from tests.test_export_predict import SIZE, tiny_config, tiny_template

    config = get_config()
    config.image_size = SIZE
    model = build_model(tiny_config().model, tiny_template(), rngs=nnx.Rngs(0))
    out = evaluate.evaluate(Predictor(model, image_size=SIZE), "synthetic:4", tmp_path, config=config,
                            progress=False)
    assert out["num_images"] == 4 and out["num_points"] == 98
    assert out["nmlc"]["regions"]["full"] <= out["nme"]["regions"]["full"] * (1 + 1e-6)  # float32 vertices
    assert "pose" in out["nme"]["categories"] and np.isfinite(out["pose_error_deg"])
    assert (tmp_path / "examples.png").is_file()


def test_98_point_set_scored_on_68_subset(tmp_path):
    from facelift_jax.evaluation.datasets.base import EvalSample, EvalSet

    r = np.random.default_rng(0)
    truth = r.uniform(20, 80, size=(4, 98, 2))
    pred = truth.copy()
    pred[:, lm.WFLW98_TO_68] += [6.0, 8.0]  # 10 px on the 68 subset, 0 on the other 30 points

    class Set98(EvalSet):
        name, num_points = "toy98", 98

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return EvalSample(name=f"s{i}", image=np.zeros((100, 100, 3), np.uint8), box=np.array([0, 0, 50, 50.0]),
                              landmarks2d=truth[i], categories={})

    out98 = evaluate.evaluate(OraclePredictor(pred), Set98(), tmp_path / "a", progress=False)
    out68 = evaluate.evaluate(OraclePredictor(pred), Set98(), tmp_path / "b", progress=False, num_points=68)
    assert out68["num_points"] == 68 and out68["nme"]["regions"]["full"] == pytest.approx(100 * 10 / 50)
    n_sub = len(set(lm.WFLW98_TO_68.tolist()) & set(range(96)))
    assert out98["nme"]["regions"]["full"] == pytest.approx(100 * 10 / 50 * n_sub / 96)
    assert "nmlc" not in out98  # no vertices in this set


def test_bad_file_is_skipped_and_reported(tmp_path):
    root, ds, truth68 = _dad_with_truth(tmp_path, n=4)
    (root / "annotations" / "item2.json").write_text("{broken")
    keep = [0, 1, 3]
    pred98 = np.zeros((3, 98, 2))
    pred98[:, lm.WFLW98_TO_68] = truth68[keep] + [0.0, 2.0]
    out = evaluate.evaluate(OraclePredictor(pred98), ds, tmp_path / "eval", num_examples=1, progress=False)
    assert out["num_images"] == 3 and out["skipped"][0]["index"] == 2 and "item2.json" in out["skipped"][0]["error"]
    expected = np.mean([100 * 2.0 / np.sqrt((30 + i) * 40.0) for i in keep])
    assert out["nme"]["regions"]["full"] == pytest.approx(expected, rel=1e-9)
    rows = list(csv.DictReader(open(tmp_path / "eval" / "per_image.csv")))
    assert [int(r["index"]) for r in rows] == keep


def test_annotated_photos_model_and_baseline_rows_closed_form(tmp_path):
    from facelift_jax.evaluation.datasets import annotated
    from tests.test_datasets import _truth68, _write_annotated

    truths = {"a.jpg": _truth68(0), "b.png": _truth68(1), "c.ppm": _truth68(2)}
    _write_annotated(tmp_path / "photos", truths)
    order = sorted(truths)

    def as98(points68, fill):
        out = np.full((98, 2), fill, float)
        out[lm.WFLW98_TO_68] = points68
        return out

    # the detector: 1 px off in x on every point; the model: 3 px right and 4 px down (5 px)
    baseline = {n: as98(t + [1.0, 0.0], t.mean()) for n, t in truths.items()}
    faces = iter([[{"landmarks98": baseline[n], "score": 0.9}] for n in order])
    ds = annotated.AnnotatedPhotos(tmp_path / "photos", crop_scale=1.5, detect=lambda image: next(faces))
    pred98 = np.stack([as98(truths[n] + [3.0, 4.0], 0.0) for n in order])
    out = evaluate.evaluate(OraclePredictor(pred98), ds, tmp_path / "eval", num_examples=2, progress=False)
    size = np.array([np.sqrt(np.prod(np.ptp(truths[n], axis=0))) for n in order])
    assert out["num_points"] == 68
    assert out["nme"]["regions"]["full"] == pytest.approx(np.mean(100 * 5.0 / size), rel=1e-6)  # .pts / .ljson hold 6 decimals
    base = out["baselines"][evaluate.BASELINE_NAME]
    assert base["nme"]["regions"]["full"] == pytest.approx(np.mean(100 * 1.0 / size), rel=1e-6)  # .pts / .ljson hold 6 decimals
    assert base["nme"]["categories"]["colour"]["grayscale"] == pytest.approx(100 * 1.0 / size[2], rel=1e-6)  # .pts / .ljson hold 6 decimals
    md = (tmp_path / "eval" / "results.md").read_text()
    assert f"| {evaluate.BASELINE_NAME} | NME |" in md and "| Ours | NME |" in md
    rows = list(csv.DictReader(open(tmp_path / "eval" / "per_image.csv")))
    assert [float(r["baseline_nme"]) for r in rows] == pytest.approx(list(100 * 1.0 / size), rel=1e-4)
    assert (tmp_path / "eval" / "examples.png").stat().st_size > 5_000
