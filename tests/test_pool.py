"""The rendered training pool and its roll re-sampling (facelift_jax/input_pipeline/pool.py).

Checked against independent facts: the camera of C with roll γ+δ (camera_from_angles) is the
rolled camera; a re-render from that camera is the rotated image; roll draws follow C's roll
marginal (the density exp(−(γ/Γ)²) on [−Γ, Γ], by a KS test against its closed-form CDF).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy import special, stats

from facelift_jax import camera
from facelift_jax.input_pipeline import pool as pool_lib
from tests._training_data import tiny_config, tiny_data_dir


def test_roll_is_the_camera_roll_of_C():
    """(Rz(δ)R, Rz(δ)t) is C's camera with roll γ+δ (and its offset Δt turned by δ); the 2D labels
    of the rolled camera are the old ones rotated about the principal point."""
    a, b, g, d = 35.0, -20.0, 15.0, 40.0
    dt = np.array([0.03, -0.02, 0.1])
    base = camera.camera_from_angles(a, b, g, dt)
    Rz = pool_lib.roll_matrix(d)
    rolled = camera.camera_from_angles(a, b, g + d, Rz @ dt)
    np.testing.assert_allclose(Rz @ np.asarray(base.R), np.asarray(rolled.R), atol=1e-6)
    np.testing.assert_allclose(Rz @ np.asarray(base.t), np.asarray(rolled.t), atol=1e-6)
    points = np.random.default_rng(0).normal(0.0, 0.2, (20, 3)) + np.array([0.0, 0.0, 0.2])
    uv = np.asarray(camera.project(points, base), np.float64)
    uv_rolled = np.asarray(camera.project(points, rolled), np.float64)
    np.testing.assert_allclose(pool_lib.roll_points(uv, d), uv_rolled, atol=1e-5)
    np.testing.assert_allclose(pool_lib.project(points, np.asarray(base.R), np.asarray(base.t)), uv, atol=1e-5)


def test_roll_of_reads_the_sampled_roll():
    g = np.array([-85.0, -30.0, 0.0, 12.5, 89.0])
    cams = camera.camera_from_angles(np.array([-100.0, 20, 0, 60, 5]), np.array([50.0, -40, 0, 10, -55]), g)
    np.testing.assert_allclose(pool_lib._roll_of(cams), g, atol=1e-3)


def test_rolled_image_matches_a_rerender():
    """The warped render equals the render from the rolled camera (inside the face, away from the
    border that the warp fills by reflection), much closer than the unrolled render does."""
    from facelift_jax import sources

    config = tiny_config()
    size = 64
    generator = sources.make_generator(config)
    dt = np.array([0.02, -0.01, 0.05])
    d = 30.0
    base = camera.camera_from_angles(20.0, 10.0, 5.0, dt)
    rolled = camera.camera_from_angles(20.0, 10.0, 5.0 + d, pool_lib.roll_matrix(d) @ dt)
    image = np.asarray(generator.render(np.array([3]), base, image_size=size).image[0], np.float64)
    truth = np.asarray(generator.render(np.array([3]), rolled, image_size=size).image[0], np.float64)
    warped = pool_lib.roll_image(image.astype(np.uint8), d).astype(np.float64)
    yy, xx = np.mgrid[:size, :size]
    inner = np.hypot(yy - size / 2, xx - size / 2) < 0.4 * size
    err = np.abs(warped - truth)[inner].mean()
    unrolled = np.abs(image - truth)[inner].mean()
    assert err < 6.0, err
    assert err < 0.25 * unrolled, (err, unrolled)


def test_roll_draws_follow_the_roll_marginal_of_C():
    G = 90.0
    rng = np.random.default_rng(0)
    draws = np.array([pool_lib.draw_roll(rng, G) for _ in range(4000)])
    # density ∝ exp(−(γ/Γ)²) on [−Γ, Γ]: CDF(γ) = (erf(γ/Γ) + erf(1)) / (2 erf(1))
    cdf = lambda x: (special.erf(np.asarray(x) / G) + math.erf(1.0)) / (2 * math.erf(1.0))  # noqa: E731
    assert stats.kstest(draws, cdf).pvalue > 0.01
    # and the sampler of C itself (box constraint off) agrees with the same marginal
    cfg = tiny_config().camera
    cfg.min_box_fraction = 0.0
    cams = camera.sample_cameras(jax.random.key(1), 2000, cfg)
    assert stats.kstest(pool_lib._roll_of(cams), cdf).pvalue > 0.01


def test_resample_roll_keeps_the_landmark_box_inside():
    rng = np.random.default_rng(1)
    cfg = tiny_config().camera
    pts = np.array([[0.2, 0.25], [0.8, 0.3], [0.5, 0.8], [0.3, 0.7]])
    for _ in range(50):
        delta = pool_lib.resample_roll(rng, 10.0, pts, cfg)
        assert pool_lib.box_ok(pool_lib.roll_points(pts, delta), cfg.min_box_fraction) or delta == 0.0
    # a box that no roll can keep inside: the Gibbs step keeps the current roll
    wide = np.array([[0.0, 0.0], [1.0, 1.0]])
    assert pool_lib.resample_roll(rng, 10.0, wide, cfg) == 0.0


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tiny_data_dir(tmp_path_factory)


def test_pooled_batches_are_consistent_and_resume(tmp_path, data_dir):
    """Pool-fed batches: labels are the projection of the 3D labels by the batch's camera, rolls
    are re-drawn (the rotation differs from the pool's), and the iterator resumes exactly."""
    import shutil

    from facelift_jax import input_pipeline

    work = tmp_path / "data"
    shutil.copytree(data_dir, work, ignore=shutil.ignore_patterns("done"))
    config = tiny_config()
    config.data.pool_size = 12
    it = input_pipeline.train_iterator(config, work)
    batches = [next(it) for _ in range(3)]
    state = it.get_state()
    nxt = next(it)
    mv = batches[0]["multiview"]
    uv = pool_lib.project(mv["landmarks3d"], mv["rotation"], mv["translation"])
    np.testing.assert_allclose(mv["landmarks2d"], uv, atol=1e-5)
    assert mv["image"].shape == (2, config.image_size, config.image_size, 3)
    assert batches[0]["multiframe"]["image"].shape == (2, config.image_size, config.image_size, 3)
    it2 = input_pipeline.train_iterator(config, work, state=state)
    again = next(it2)
    np.testing.assert_array_equal(again["multiview"]["image"], nxt["multiview"]["image"])
    np.testing.assert_array_equal(again["multiframe"]["image"], nxt["multiframe"]["image"])
    # the pool is on disk once; a changed image size gets its own pool
    assert len(list((work / "pool").glob("*/chunk_*.npz"))) == 1
    config.image_size = 32
    pool_lib.load_or_render(config, work, input_pipeline.load_pseudo_labels(work), progress=False)
    assert len(list((work / "pool").glob("*/chunk_*.npz"))) == 2
