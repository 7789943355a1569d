"""Configs and workdirs: one loader for every command line, one override convention."""

import json

import ml_collections
import pytest

from configs import mv_only
from facelift_jax import workdir


def test_load_config_py_with_argument_json_and_errors(tmp_path):
    c = workdir.load_config("configs/mv_only.py:default")
    assert c.to_dict() == mv_only.get_config("default").to_dict()
    (tmp_path / "config.json").write_text(c.to_json())
    assert workdir.load_config(tmp_path / "config.json").batch.multiframe == c.batch.multiframe
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        workdir.load_config(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        workdir.load_config(tmp_path / "missing.py")


def test_overrides_take_the_type_of_the_field():
    c = ml_collections.ConfigDict(dict(a=dict(n=1, x=0.5, s="vit", flag=True, sizes=(16, 32), opt=None)))
    rest, assignments = workdir.split_overrides(["--out", "d", "--config.a.n=4", "--config.a.x=2", "--config.a.s=resnet50",
                                                 "--config.a.flag=false", "--config.a.sizes=(8,)", "--config.a.opt=3"])
    assert rest == ["--out", "d"]
    workdir.override(c, assignments)
    assert c.a.to_dict() == dict(n=4, x=2.0, s="resnet50", flag=False, sizes=(8,), opt=3)
    assert isinstance(c.a.x, float)
    with pytest.raises(KeyError, match="no field 'm'"):
        workdir.override(c, ["a.m=1"])
    with pytest.raises(KeyError, match="no section 'b'"):
        workdir.override(c, ["b.n=1"])
    with pytest.raises(ValueError, match="expected int"):
        workdir.override(c, ["a.n=1.5"])
    with pytest.raises(ValueError, match="true or false"):
        workdir.override(c, ["a.flag=maybe"])
    with pytest.raises(ValueError, match="section.field=value"):
        workdir.split_overrides(["--config.a.n", "4"])


def test_locate_checkpoint_forms(tmp_path):
    (tmp_path / "checkpoints" / "7").mkdir(parents=True)
    for path in (tmp_path, tmp_path / "checkpoints", tmp_path / "checkpoints" / "7"):
        assert workdir.locate_checkpoint(path) == (tmp_path, tmp_path / "checkpoints")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoints/"):
        workdir.locate_checkpoint(tmp_path / "empty")
    assert workdir.template_path(tmp_path) == tmp_path / "data" / "multiview" / "template.npy"
    assert json.loads(workdir.default_config().to_json())["image_size"] > 0
