"""Grain training pipeline: sample contents against independent math, determinism, resume, sharding."""

import json

import cv2
import numpy as np
import pytest

from facelift_jax import landmarks as lm
from facelift_jax.input_pipeline import labels as labels_lib
from facelift_jax.input_pipeline import pipeline
from facelift_jax.evaluation.datasets import synthetic as testset_lib

from _training_data import TINY_IMAGE, tiny_config, tiny_data_dir
from conftest import pinhole


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tiny_data_dir(tmp_path_factory)


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_multiview_batch_matches_labels_and_cameras(data_dir):
    config = tiny_config()
    labels = labels_lib.load_pseudo_labels(data_dir)
    batch = next(pipeline.train_iterator(config, data_dir))["multiview"]
    b = config.batch.multiview
    assert batch["image"].shape == (b, TINY_IMAGE, TINY_IMAGE, 3) and batch["image"].dtype == np.uint8
    # The image is a render, not a blank: pixel variance well above zero.
    assert batch["image"].std() > 5
    # landmarks3d are rows of the pseudo-label table (with invalid points replaced by the template).
    rows = [np.flatnonzero(np.all(np.abs(labels.points3d - x).max(-1) < 1e-6, axis=-1)) for x in batch["landmarks3d"]]
    assert all(len(r) >= 1 for r in rows)
    idx = np.array([r[0] for r in rows])
    # Mask = valid pseudo-label and not a pupil.
    expected = labels.valid[idx].copy()
    expected[:, lm.PUPILS] = False
    np.testing.assert_array_equal(batch["mask"], expected)
    # R is a rotation; landmarks2d is the projection of the 3D label with the true camera.
    R, t = batch["rotation"], batch["translation"]
    np.testing.assert_allclose(np.einsum("bij,bkj->bik", R, R), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-5)
    np.testing.assert_allclose(batch["landmarks2d"], pinhole(batch["landmarks3d"], R, t), atol=1e-5)
    # The camera obeys the landmark-box constraint of C: inside the image, min side > half of it.
    box_lo, box_hi = batch["landmarks2d"].min(1), batch["landmarks2d"].max(1)
    assert np.all(box_lo >= 0) and np.all(box_hi <= 1)
    assert np.all((box_hi - box_lo).min(-1) > config.camera.min_box_fraction)
    # The camera sits on the sampling sphere up to the translation jitter Δt.
    centres = -np.einsum("bji,bj->bi", R, t)
    radius = np.linalg.norm(centres, axis=-1)
    assert np.all(np.abs(radius - config.camera.radius) < np.linalg.norm(config.camera.translation_range) + 1e-4)


def test_multiframe_batch_is_decoded_frames_with_their_labels(data_dir):
    config = tiny_config()
    videos = labels_lib.load_video_labels(data_dir)
    index = json.loads((data_dir / labels_lib.VIDEO_INDEX).read_text())
    assert len(videos.paths) == len(index) == config.preprocess.num_videos
    batch = next(pipeline.train_iterator(config, data_dir))["multiframe"]
    assert batch["image"].shape == (config.batch.multiframe, TINY_IMAGE, TINY_IMAGE, 3)
    for image, points, mask in zip(batch["image"], batch["landmarks2d"], batch["mask"]):
        # Find the frame by its label row, then decode it independently with OpenCV.
        row = np.flatnonzero(np.all(np.abs(videos.landmarks2d - points).max(-1) < 1e-7, axis=-1))[0]
        cap = cv2.VideoCapture(videos.paths[videos.frame_clip[row]])
        for _ in range(videos.frame_index[row] + 1):
            ok, frame = cap.read()
            assert ok
        cap.release()
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if frame.shape[0] != TINY_IMAGE:
            frame = cv2.resize(frame, (TINY_IMAGE, TINY_IMAGE), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(image, frame)
        np.testing.assert_array_equal(mask, videos.confidence[row] > config.data.confidence_threshold)
        clip, frame_no = videos.frame_clip[row], videos.frame_index[row]
        entry = index[clip]
        with np.load(data_dir / "videos" / entry["labels"]) as f:
            np.testing.assert_allclose(points, f["landmarks2d"][frame_no])


def test_deterministic_and_resumable(data_dir):
    config = tiny_config()
    a = _take(pipeline.train_iterator(config, data_dir), 5)
    b = _take(pipeline.train_iterator(config, data_dir), 5)
    for x, y in zip(a, b):
        for branch in ("multiview", "multiframe"):
            for k in x[branch]:
                np.testing.assert_array_equal(x[branch][k], y[branch][k])
    # Resume from the state after 3 batches: the 4th and 5th come out again, exactly.
    it = pipeline.train_iterator(config, data_dir)
    _take(it, 3)
    state = json.loads(json.dumps(it.get_state()))  # goes through JSON in the checkpoint
    resumed = pipeline.train_iterator(config, data_dir, state=state)
    for x, y in zip(a[3:], _take(resumed, 2)):
        for branch in ("multiview", "multiframe"):
            for k in x[branch]:
                np.testing.assert_array_equal(x[branch][k], y[branch][k])
    # Another seed gives other batches.
    config.seed = 1
    c = next(pipeline.train_iterator(config, data_dir))
    assert not np.array_equal(c["multiframe"]["landmarks2d"], a[0]["multiframe"]["landmarks2d"])


def test_epochs_cover_every_sample_once(data_dir):
    config = tiny_config()
    videos = labels_lib.load_video_labels(data_dir)
    n = len(videos)
    config.batch.multiview = 0
    config.batch.multiframe = 1
    it = pipeline.train_iterator(config, data_dir)
    seen = [next(it)["multiframe"]["landmarks2d"][0] for _ in range(2 * n)]
    rows = [int(np.flatnonzero(np.all(np.abs(videos.landmarks2d - s).max(-1) < 1e-7, axis=-1))[0]) for s in seen]
    assert sorted(rows[:n]) == list(range(n)) and sorted(rows[n:]) == list(range(n))
    assert rows[:n] != rows[n:]  # a fresh permutation every epoch


def test_process_shards_partition_the_global_batch(data_dir):
    config = tiny_config()
    config.batch.multiframe = 4
    config.batch.multiview = 2
    whole = _take(pipeline.train_iterator(config, data_dir), 3)
    parts = [_take(pipeline.train_iterator(config, data_dir, process_index=p, process_count=2), 3) for p in range(2)]
    for step in range(3):
        g = whole[step]["multiframe"]["landmarks2d"]
        p0, p1 = parts[0][step]["multiframe"]["landmarks2d"], parts[1][step]["multiframe"]["landmarks2d"]
        assert p0.shape[0] == p1.shape[0] == 2
        # Host p holds global rows p, p + 2, ...
        np.testing.assert_array_equal(g[0::2], p0)
        np.testing.assert_array_equal(g[1::2], p1)
        gm = whole[step]["multiview"]["landmarks3d"]
        np.testing.assert_array_equal(gm[0::2], parts[0][step]["multiview"]["landmarks3d"])
        np.testing.assert_array_equal(gm[1::2], parts[1][step]["multiview"]["landmarks3d"])
    with pytest.raises(ValueError, match="not divisible"):
        config.batch.multiframe = 3
        pipeline.train_dataset(config, data_dir, process_count=2)


def test_bad_inputs(tmp_path, data_dir):
    with pytest.raises(FileNotFoundError, match="preprocess"):
        labels_lib.load_pseudo_labels(tmp_path)
    config = tiny_config()
    config.batch.multiview = config.batch.multiframe = 0
    with pytest.raises(ValueError, match="nothing to train"):
        pipeline.train_dataset(config, data_dir)


def test_test_set_truth(data_dir):
    config = tiny_config()
    ts = testset_lib.load_or_build(config, data_dir)
    mv = ts.multiview
    assert len(mv) == config.eval.num_latents
    np.testing.assert_allclose(mv.landmarks2d, pinhole(mv.landmarks3d, mv.rotation, mv.translation), atol=1e-5)
    ext = mv.landmarks2d.max(1) - mv.landmarks2d.min(1)
    np.testing.assert_allclose(mv.box_size, np.sqrt(ext[:, 0] * ext[:, 1]), rtol=1e-5)
    assert mv.vertices2d is not None and mv.vertices2d.shape[0] == len(mv)
    from facelift_jax import synthetic

    truth = synthetic.SyntheticGenerator().landmarks3d(np.arange(config.eval.first_latent,
                                                                  config.eval.first_latent + len(mv)))
    np.testing.assert_allclose(mv.landmarks3d, truth, atol=1e-5)
    assert ts.multiframe is not None and len(ts.multiframe) == config.eval.num_videos * config.eval.frames_per_video
