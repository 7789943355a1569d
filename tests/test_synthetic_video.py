"""Synthetic clips: real files that read back, labels consistent with the stored cameras."""

import numpy as np
import pytest

from facelift_jax.media import read_frame, read_video
from facelift_jax.synthetic import labels_path, make_video
from facelift_jax.synthetic.video import trajectories


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(11, tmp_path_factory.mktemp("vid") / "clip.avi", frames=12, image_size=96, fps=25)


def test_video_reads_back_with_same_frame_count_and_size(clip):
    frames = read_video(clip)
    assert frames.shape == (12, 96, 96, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(read_frame(clip, 7), frames[7])
    # decoded frames are images of a face, not blank: strong contrast in every frame
    assert (frames.reshape(12, -1).std(-1) > 10).all()
    with pytest.raises(IndexError):
        read_frame(clip, 12)


def test_labels_beside_the_clip_agree_with_the_stored_cameras(clip):
    lab = np.load(labels_path(clip))
    T = 12
    for k, shape in dict(landmarks2d=(T, 98, 2), confidence=(T, 98), landmarks3d=(T, 98, 3), true2d=(T, 98, 2),
                         rotation=(T, 3, 3), translation=(T, 3), visible=(T, 98)).items():
        assert lab[k].shape == shape, k
    assert int(lab["latent"]) == 11
    # the exact projection, by hand, from the stored truth and cameras
    X = lab["landmarks3d"].astype(np.float64)
    pc = np.einsum("tij,tnj->tni", lab["rotation"], X) + lab["translation"][:, None]
    uvw = np.einsum("tij,tnj->tni", lab["intrinsics"], pc)
    np.testing.assert_allclose(lab["true2d"], uvw[..., :2] / uvw[..., 2:], atol=1e-5)
    # R is a rotation
    np.testing.assert_allclose(np.einsum("tij,tkj->tik", lab["rotation"], lab["rotation"]),
                               np.broadcast_to(np.eye(3), (T, 3, 3)), atol=1e-5)
    # detections of visible points are close to the truth (label noise, not failures)
    err = np.linalg.norm(lab["landmarks2d"] - lab["true2d"], axis=-1)[lab["visible"]]
    assert np.median(err) < 0.02
    # the face moves: identity fixed (same 3D up to expression), pose changes across frames
    assert np.abs(np.diff(lab["rotation"], axis=0)).max() > 1e-3


def test_mp4_and_errors(tmp_path):
    p = make_video(12, tmp_path / "c.mp4", frames=3, image_size=64)
    assert read_video(p).shape == (3, 64, 64, 3)
    with pytest.raises(ValueError, match=".avi or .mp4"):
        make_video(1, tmp_path / "c.gif", frames=2)
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.avi")
    (tmp_path / "junk.avi").write_bytes(b"not a video")
    with pytest.raises(ValueError):
        read_video(tmp_path / "junk.avi")


def test_trajectories_are_smooth_frontal_biased_and_deterministic():
    neutral = np.zeros(7, np.float32)
    a = trajectories(5, 100, 25.0, neutral)
    b = trajectories(5, 100, 25.0, neutral)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    yaws = np.concatenate([trajectories(s, 100, 25.0, neutral)["yaw"] for s in range(40)])
    assert np.median(np.abs(yaws)) < 35 and np.abs(yaws).max() > 45
    steps = np.abs(np.diff(np.stack([trajectories(s, 100, 25.0, neutral)["yaw"] for s in range(40)]), axis=1))
    assert steps.max() < 8.0  # degrees per frame at 25 fps
    ex = np.stack([trajectories(s, 250, 25.0, neutral)["expression"] for s in range(10)])
    blink = ex[..., 4]
    assert (blink.max(1) > 0.9).mean() > 0.5      # most 10 s clips contain a blink
    assert (blink > 0.5).mean() < 0.1             # eyes are mostly open
    jaw = ex[..., 0]
    assert np.abs(np.diff(jaw, axis=1)).mean() > 0.02  # the mouth moves like speech


def test_configured_focal_reaches_the_clip_and_projects_as_the_pinhole_says(tmp_path):
    """preprocess's synthetic videos are rendered with config.camera.focal, not the default: the
    stored K has it, the exact labels are f·x/z + ½ of the stored truth (independent pinhole), and
    against the same clip at the default focal every point's offset from the centre scales by the
    ratio of the focals (same face, pose and camera distance)."""
    from configs import default
    from conftest import FOCAL, pinhole

    from facelift_jax import preprocess

    focal = 1.5 * FOCAL
    config = default.get_config()
    config.image_size = 64
    config.camera.focal = focal
    config.preprocess.update(num_videos=1, frames_per_video=2, first_video=5)
    root = preprocess.run_videos(config, tmp_path / "out", progress=False)
    lab = np.load(root / "video_000005.npz")
    np.testing.assert_allclose(lab["intrinsics"][:, [0, 1], [0, 1]], focal, rtol=1e-6)
    np.testing.assert_allclose(lab["true2d"], pinhole(lab["landmarks3d"], lab["rotation"], lab["translation"],
                                                      focal=focal), atol=1e-5)
    base = np.load(labels_path(make_video(5, tmp_path / "default.avi", frames=2, image_size=64)))
    np.testing.assert_allclose(base["intrinsics"][:, 0, 0], FOCAL, rtol=1e-6)
    np.testing.assert_allclose(lab["landmarks3d"], base["landmarks3d"], atol=1e-6)
    np.testing.assert_allclose(lab["true2d"] - 0.5, (focal / FOCAL) * (base["true2d"] - 0.5), atol=1e-5)
