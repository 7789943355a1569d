"""Cache stamps (facelift_jax/stamps.py): a changed config is refused or rebuilt, never reused."""

import json

import numpy as np
import pytest

from facelift_jax import stamps


def test_check_writes_then_refuses_what_differs(tmp_path):
    path = tmp_path / "data" / "plan.json"
    plan = dict(image_size=64, views=[(0, 0), (30, 0)], seed=np.int64(3))
    stamps.check(path, plan, what_is_there="x", fix="y")  # first use: written
    assert json.loads(path.read_text()) == {"image_size": 64, "views": [[0, 0], [30, 0]], "seed": 3}
    stamps.check(path, dict(plan), what_is_there="x", fix="y")  # same plan (tuples vs lists): accepted
    with pytest.raises(ValueError, match=r"holds old labels \(differs in \['image_size', 'new'\]\); start over"):
        stamps.check(path, dict(plan, image_size=128, new=1), what_is_there="old labels", fix="start over")
    assert stamps.differences(tmp_path / "missing.json", plan) is None
    assert not stamps.matches(tmp_path / "missing.json", plan)


def test_digest_depends_on_every_input():
    a = np.arange(6.0)
    base = stamps.digest({"k": 1}, a)
    assert base == stamps.digest({"k": 1}, a.copy())
    assert len({base, stamps.digest({"k": 2}, a), stamps.digest({"k": 1}, a + 1), stamps.digest({"k": 1})}) == 4


@pytest.mark.slow
def test_held_out_set_follows_the_generator_config(tmp_path):
    """The held-out cache is rebuilt when the synthetic generator changes (its videos included),
    and reused when nothing changed."""
    from _training_data import tiny_config

    from facelift_jax.evaluation.datasets import synthetic as heldout

    config = tiny_config()
    config.eval.update(num_latents=2, num_videos=1, frames_per_video=2)
    first = heldout.load_or_build(config, tmp_path)
    again = heldout.load_or_build(config, tmp_path)
    np.testing.assert_array_equal(first.multiview.image, again.multiview.image)
    config.synthetic.base_seed = 7  # another population of faces
    other = heldout.load_or_build(config, tmp_path)
    assert not np.array_equal(other.multiview.image, first.multiview.image)
    assert not np.array_equal(other.multiframe.image, first.multiframe.image)
    assert json.loads((tmp_path / "test" / "settings.json").read_text())["synthetic"]["base_seed"] == 7
