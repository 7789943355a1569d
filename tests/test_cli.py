"""The command-line experience (facelift_jax/logs.py): quiet console, complete log file, user errors
as one line with exit status 2, and the --config / --config.x=v convention of evaluate, export and
predict."""

import logging
import warnings

import numpy as np
import pytest

from facelift_jax import checkpointing, config_check, evaluate, export, logs, predict, train, workdir


def _emit_all():
    logging.getLogger("absl").info("orbax: saving with async handler")  # Orbax and grain log through absl
    logging.getLogger("jax._src.xla_bridge").info("jax backend chosen")
    logging.getLogger("facelift_jax.train").info("resuming from the checkpoint of step 7")
    logging.getLogger("orbax").warning("disk almost full")
    warnings.warn("a library's UserWarning")


def test_console_is_quiet_and_the_log_file_has_everything(tmp_path, capsys):
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    with logs.session("train", 0, tmp_path) as s:
        _emit_all()
    err = capsys.readouterr().err
    assert "resuming from the checkpoint of step 7" in err  # the package's stage lines
    assert "disk almost full" in err and "a library's UserWarning" in err  # warnings always
    assert "orbax: saving" not in err and "jax backend chosen" not in err  # library INFO off
    text = s.log_file.read_text()
    assert s.log_file == tmp_path / "logs" / "train.log"
    for line in ("orbax: saving", "jax backend chosen", "step 7", "disk almost full", "UserWarning"):
        assert line in text
    assert (list(root.handlers), root.level) == before  # restored: commands run in-process too

    with logs.session("train", 1):  # --verbosity=1 / -v brings the library lines back
        _emit_all()
    err = capsys.readouterr().err
    assert "orbax: saving" in err and "jax backend chosen" in err


def test_orbax_checkpoint_save_leaves_the_console_alone(tmp_path, capsys):
    """The issue's symptom: Orbax's INFO lines between the progress bars."""
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    with logs.session("train", 0, tmp_path) as s:
        with checkpointing.Checkpointer(tmp_path / "checkpoints", keep=2, async_save=False) as ck:
            ck.save(1, params, {"m": np.zeros(3, np.float32)}, {"pos": 0}, {"note": "x"}, wait=True)
    err = capsys.readouterr().err
    assert err.strip() == "", err
    assert len(s.log_file.read_text().splitlines()) > 3  # Orbax did log; it went to the file


def test_verbosity_flags():
    assert logs.absl_argv(["--config", "c.py", "-v", "-vv", "--verbosity=0"]) == [
        "--config", "c.py", "--verbosity=1", "--verbosity=2", "--verbosity=0"]
    p = __import__("argparse").ArgumentParser()
    logs.add_verbosity(p)
    assert p.parse_args([]).verbosity == 0 and p.parse_args(["-vv"]).verbosity == 2
    assert p.parse_args(["--verbosity", "1"]).verbosity == 1


# Stands in for the config check that train's main runs first: logs one library INFO line (what
# Orbax, grain and jax log through absl) and one of the package's, then stops as a user error would.
_TRAIN_ENTRY = """
import logging, runpy, sys
from facelift_jax import config_check, logs

def check(config, *args, **kwargs):
    logging.getLogger("absl").info("LIBRARY-INFO-LINE")
    logging.getLogger("facelift_jax.train").info("OWN-STAGE-LINE")
    raise logs.ConfigError("", config_check.NO_VALUE, "STOP-HERE")

config_check.check = check
sys.argv = ["facelift_jax.train", *sys.argv[1:]]
runpy.run_module("facelift_jax.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("flag", [None, "-v", "--verbosity=1"])
def test_train_verbosity_flag_reaches_the_console(tmp_path, flag, capsys, monkeypatch):
    """``python -m facelift_jax.train ... -v`` (absl's global flags) and ``train.cli`` (a fresh
    FlagValues, as tests and wrappers call it) both show libraries' INFO lines with -v, not without."""
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    argv = ["--config", "configs/default.py", "--workdir", str(tmp_path / "run"), *([flag] if flag else [])]
    proc = subprocess.run([sys.executable, "-c", _TRAIN_ENTRY, *argv], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "error: STOP-HERE" in proc.stderr, proc.stderr[-3000:]
    assert "OWN-STAGE-LINE" in proc.stderr
    assert ("LIBRARY-INFO-LINE" in proc.stderr) == (flag is not None), proc.stderr[-3000:]

    def stop(config, *args, **kwargs):
        logging.getLogger("absl").info("LIBRARY-INFO-LINE")
        logging.getLogger("facelift_jax.train").info("OWN-STAGE-LINE")
        raise logs.ConfigError("", config_check.NO_VALUE, "STOP-HERE")

    monkeypatch.setattr(config_check, "check", stop)
    capsys.readouterr()
    assert train.cli(argv) == 2
    err = capsys.readouterr().err
    assert "error: STOP-HERE" in err and "OWN-STAGE-LINE" in err, err
    assert ("LIBRARY-INFO-LINE" in err) == (flag is not None), err


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(capsys):
    @logs.main_guard
    def user(_):
        raise config_check.input_error("--model", "x", "not an export")

    @logs.main_guard
    def bug(_):
        raise KeyError("a bug")

    assert user(None) == 2
    assert capsys.readouterr().err == "error: --model='x': not an export\n"
    with pytest.raises(KeyError, match="a bug"):
        bug(None)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    from flax import nnx

    from facelift_jax.model import build_model
    from tests.test_export_predict import SIZE, tiny_config, tiny_template

    out = tmp_path_factory.mktemp("cli") / "exp"
    model = build_model(tiny_config().model, tiny_template(), rngs=nnx.Rngs(0))
    meta = export.make_metadata(tiny_config().model, SIZE, tiny_template())
    return export.save_model(model, out, image_size=SIZE, metadata=meta, stablehlo=False)


def test_predict_takes_config_overrides_and_flags(export_dir, tmp_path, monkeypatch, capsys):
    import cv2

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), 128, np.uint8))
    seen = {}

    def fake_run(inputs, model_dir, out_dir, **kwargs):
        seen.update(kwargs)
        return [], []

    monkeypatch.setattr(predict, "run", fake_run)
    base = [str(image), "--model", str(export_dir), "--out", str(tmp_path / "out")]
    assert predict.main(base + ["--config.predict.crop_scale=2.0", "--config.predict.batch_size=4"]) == 0
    assert {k: seen[k] for k in ("detector", "crop_scale", "batch_size")} == dict(detector="auto", crop_scale=2.0,
                                                                                   batch_size=4)
    assert (tmp_path / "out" / "logs" / "predict.log").is_file()
    assert predict.main(base + ["--config.predict.crop_scale=2.0", "--crop-scale", "1.25"]) == 0
    assert seen["crop_scale"] == 1.25  # the flag is the shorthand of the field, and wins
    assert predict.main(base) == 0
    assert seen["crop_scale"] == pytest.approx(1 / 0.65) and seen["batch_size"] == 16  # predict.default_config
    assert seen["detector_options"]["min_score"] == 0.5  # config.mediapipe reaches the detector ...
    assert predict.main(base + ["--config.mediapipe.min_score=0.8"]) == 0
    assert seen["detector_options"]["min_score"] == 0.8  # ... overrides included
    capsys.readouterr()

    for extra, message in ((["--config.predict.batch_size=0"], "config.predict.batch_size=0: must be an integer ≥ 1"),
                           (["--config.predict.batch_sise=4"], "no field 'batch_sise'"),
                           (["--batch-size", "0"], "--batch-size=0: must be an integer ≥ 1"),
                           (["--config", "configs/none.py"], "configs/none.py does not exist")):
        seen.clear()
        assert predict.main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and not seen, (extra, err)
    assert predict.main([str(image), "--model", str(tmp_path), "--out", str(tmp_path / "o2")]) == 2
    assert "--model=" in capsys.readouterr().err


def test_export_and_evaluate_validate_overrides_before_loading(export_dir, tmp_path, capsys):
    from tests.test_export_predict import tiny_config

    work = tmp_path / "work"
    (work / "checkpoints" / "3").mkdir(parents=True)
    (work / "config.json").write_text(tiny_config().to_json())
    cases = [
        (["--config.model.dtype=float8"], "config.model.dtype='float8'"),
        (["--config.model.dtyp=bfloat16"], "no field 'dtyp'"),
        (["--step", "5"], "--step=5: no such checkpoint"),
    ]
    for extra, message in cases:
        assert export.main(["--checkpoint", str(work), "--out", str(tmp_path / "e"), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "e").exists()

    base = ["--checkpoint", str(export_dir), "--out", str(tmp_path / "ev")]
    for extra, message in ((["--data", "celeba"], "--data='celeba': unknown kind 'celeba'; use 'synthetic[:N]'"),
                           (["--data", f"dad3dheads:{tmp_path / 'nope'}"], "does not exist"),
                           (["--limit", "-1"], "--limit=-1"),
                           (["--config.eval.batch_size=0"], "config.eval.batch_size=0"),
                           (["--config.eval.pose_thresholds=(60.0,30.0)"], "must be increasing")):
        assert evaluate.main(base + extra) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "ev").exists()


def test_train_final_report_puts_each_number_in_its_column():
    part = lambda nmlc, nme, pose, e3d: {"nmlc": {"full": nmlc}, "nme": {"full": nme},  # noqa: E731
                                         "pose_error_deg": pose, "landmarks3d_nme": e3d}
    results = {"multiview": part(4.22, 4.0, 4.82, 7.11), "multiframe": part(None, 2.57, 3.0, 1.0),
               "baseline": {"multiview": part(3.16, 2.81, 0.0, 5.8), "multiframe": part(None, 2.39, 0.0, 1.0)},
               "detector_baseline": {"multiview": part(4.51, 4.28, 7.51, 5.8)},
               "images_per_second": 75.9, "plots": {"curve": "w/plots/learning_curve.png"},
               "categories": "w/eval/categories/results.md", "export": "w/export"}
    text = train.final_report(results, 21 * 60 + 8, "w/logs/train.log")
    rows = {line[:30].strip(): line[30:].split() for line in text.splitlines()[1:7]}
    assert rows["multi-view NMLC (full)"] == ["4.22", "4.51", "3.16"]  # model, detector + PnP, true pose
    assert rows["multi-view pose error (°)"] == ["4.82", "7.51", "0.00"]
    assert rows["video frames NME (full)"] == ["2.57", "–", "2.39"]  # no detector baseline given: a dash
    assert "wall time 21 min 08 s, 75.9 training images/s" in text
    for path in ("w/plots/learning_curve.png", "w/eval/categories/results.md", "w/export", "w/logs/train.log"):
        assert path in text



def test_flags_set_their_fields_in_the_fields_own_types_and_errors_name_the_flag():
    import argparse

    from facelift_jax.cli import common
    from facelift_jax.config_check import ConfigError
    from facelift_jax.config import get_config

    import json

    import ml_collections

    flags = {"eval.limit": "--limit", "eval.multiface.sequences": "--sequences"}
    args = argparse.Namespace(limit=None, sequences=["s1", "s2"])
    config = get_config()  # a .py config: tuples
    common.set_from_flags(config, args, flags)
    assert config.eval.multiface.sequences == ("s1", "s2")
    config = ml_collections.ConfigDict(json.loads(get_config().to_json()))  # a workdir's config.json: lists
    limit = config.eval.limit
    common.set_from_flags(config, args, flags)
    assert config.eval.limit == limit  # a flag not given leaves its field alone
    assert config.eval.multiface.sequences == ["s1", "s2"]

    args = argparse.Namespace(limit=-1, sequences=None, cameras=None)
    common.set_from_flags(config, args, flags)
    with pytest.raises(ConfigError, match="--limit=-1"):
        common.check(config, "evaluate", args, flags)
    with pytest.raises(ConfigError, match="config.eval.limit=-1"):  # set by --config.eval.limit: named so
        common.check(config, "evaluate", argparse.Namespace(limit=None), flags)
