"""One video face policy (facelift_jax.inference.tracking): a fake detector on a synthetic two-face
clip whose larger face has the LOWER detector score, so following the best score instead of the
largest face shows; predict_video and the MediaPipe bridge's labelling on top of it; predict's
detector settings reach MediaPipe."""

import json
import sys
import types

import cv2
import numpy as np
import pytest

from facelift_jax import predict
from facelift_jax.inference import FaceTracker, pick_face
from test_export_predict import _write_video, export_dir, model  # noqa: F401  (module fixtures reused)

W, H = 160, 96
LARGE, SMALL = 40, 16                       # face square sides, pixels
LARGE_SCORE, SMALL_SCORE = 0.6, 0.9         # the larger face is the less confident one
GONE = (4, 5)                               # frames cut to black: no face at all
FRAMES = 10
PATTERN = np.random.default_rng(0).uniform(0.05, 0.95, size=(98, 2))
PATTERN[0], PATTERN[1] = (0.0, 0.0), (1.0, 1.0)  # the landmarks' box is the face square exactly


def large_box(t: int) -> np.ndarray:
    """The large face's square (x0, y0, x1, y1) at frame t: moves 2 px right per frame."""
    x0, y0 = 10 + 2 * t, 30
    return np.array([x0, y0, x0 + LARGE, y0 + LARGE], np.float64)


SMALL_BOX = np.array([120, 40, 120 + SMALL, 40 + SMALL], np.float64)


def clip() -> list[np.ndarray]:
    """(H, W, 3) uint8 RGB frames: white squares on black, both faces gone in GONE."""
    frames = []
    for t in range(FRAMES):
        f = np.zeros((H, W, 3), np.uint8)
        if t not in GONE:
            for b in (large_box(t), SMALL_BOX):
                x0, y0, x1, y1 = b.astype(int)
                f[y0:y1, x0:x1] = 255
        frames.append(f)
    return frames


def _bright_box(frame: np.ndarray, window) -> np.ndarray | None:
    """Box (x0, y0, x1, y1) of the bright pixels inside ``window``; None when (almost) none."""
    x0, y0, x1, y1 = (int(round(v)) for v in window)
    x0, y0 = max(x0, 0), max(y0, 0)
    ys, xs = np.nonzero(frame[y0:y1, x0:x1, 0] > 128)
    if len(xs) < 20:
        return None
    return np.array([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1], np.float64)


class FakeDetector:
    """MediaPipeDetector's interface on the white squares: the left half holds the large face
    (score LARGE_SCORE), the right half the small one (SMALL_SCORE); faces listed best score first,
    as MediaPipe does. ``landmarks_from_roi`` looks for the face around the previous crop."""

    min_presence = 0.5

    def __init__(self):
        self.calls = []

    @staticmethod
    def _points(box):
        return box[:2] + PATTERN * (box[2:] - box[:2])

    def detect(self, frame):
        self.calls.append("detect")
        faces = []
        for window, score in (((W // 2, 0, W, H), SMALL_SCORE), ((0, 0, W // 2, H), LARGE_SCORE)):
            box = _bright_box(frame, window)
            if box is not None:
                faces.append(dict(box=tuple(box), score=score, presence=0.99, roi=tuple(box),
                                  landmarks98=self._points(box).astype(np.float32)))
        return faces

    def landmarks_from_roi(self, frame, roi):
        self.calls.append("roi")
        roi = np.asarray(roi, np.float64)
        margin = 0.5 * (roi[2:] - roi[:2])
        box = _bright_box(frame, np.r_[roi[:2] - margin, roi[2:] + margin])
        if box is None:
            return np.zeros((98, 2)), 0.0, tuple(roi)
        return self._points(box), 0.95, tuple(box)

    def landmarks98(self, frame, points):
        return np.asarray(points, np.float64)


def test_pick_face_takes_the_largest_box_and_breaks_ties_by_score():
    big = dict(box=(0, 0, 40, 40), score=0.6)
    small = dict(box=(100, 0, 116, 16), score=0.9)
    assert pick_face([small, big]) is big
    twin = dict(box=(50, 50, 90, 90), score=0.7)  # the same area as big, a higher score
    assert pick_face([big, twin, small]) is twin and pick_face([twin, big]) is twin
    assert pick_face([]) is None


def test_tracker_detects_tracks_loses_and_redetects_the_large_face():
    det = FakeDetector()
    tracker = FaceTracker(det)
    steps = [tracker.step(f) for f in clip()]
    assert [s.source for s in steps] == ["detected", "tracked", "tracked", "tracked", "lost", "lost",
                                         "detected", "tracked", "tracked", "tracked"]
    for t, s in enumerate(steps):
        if t in GONE:
            assert s.landmarks98 is None and s.presence == 0 and s.roi is None
        else:  # always the large face (its square is the landmarks' box), never the small one
            pts = np.asarray(s.landmarks98)
            np.testing.assert_allclose(np.r_[pts.min(0), pts.max(0)], large_box(t), atol=1e-4, err_msg=str(t))
    # tracking skips detection: detect ran on the first frame, the lost ones and the return
    assert det.calls.count("detect") == 4
    tracker.reset()  # a new clip starts with a detection, not the old crop
    assert tracker.step(clip()[8]).source == "detected"


def test_tracker_without_roi_tracking_detects_every_frame():
    class DetectOnly:
        min_presence = 0.5
        detect = FakeDetector.detect
        _points = staticmethod(FakeDetector._points)

        def __init__(self):
            self.calls = []

    steps = [FaceTracker(DetectOnly()).step(f) for f in clip()[3:7]]
    assert [s.source for s in steps] == ["detected", "lost", "lost", "detected"]
    np.testing.assert_allclose(np.asarray(steps[0].landmarks98).max(0), large_box(3)[2:], atol=1e-4)


def test_mediapipe_bridge_labels_follow_the_same_face_as_predict():
    """The bridge's video labelling (MediaPipeSource.track / .detect, the "mediapipe" detector
    source of preprocessing) on the two-face clip: the large face every frame, normalized by (W, H);
    the frames without a face get landmarks 0 and confidence 0."""
    source_lib = pytest.importorskip("bridges.mediapipe.source")
    frames = np.stack(clip())
    for method in ("track", "detect"):
        det = FakeDetector()
        landmarks, confidence = getattr(source_lib.MediaPipeSource(det), method)(frames, return_confidence=True)
        assert landmarks.shape == (FRAMES, 98, 2) and confidence.shape == (FRAMES, 98)
        for t in range(FRAMES):
            if t in GONE:
                assert (landmarks[t] == 0).all() and (confidence[t] == 0).all(), (method, t)
                continue
            px = landmarks[t] * (W, H)
            np.testing.assert_allclose(np.r_[px.min(0), px.max(0)], large_box(t), atol=1e-3, err_msg=f"{method} {t}")
            assert (confidence[t] >= 0.95).all()
        # track holds the crop (detects on the first frame, the lost ones and the return); detect never does
        assert det.calls.count("detect") == (4 if method == "track" else FRAMES) and \
            ("roi" in det.calls) == (method == "track")


def test_predict_video_crops_around_the_large_face_and_holds_it_when_lost(export_dir, tmp_path):  # noqa: F811
    _write_video(tmp_path / "clip.avi", [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in clip()], fps=10)
    cropper = predict.FaceCropper("none", crop_scale=1.5)
    cropper.detector = FakeDetector()
    summary = predict.predict_video(predict.load(export_dir, batch_size=4), cropper, tmp_path / "clip.avi",
                                    tmp_path, progress=False, filter="kalman")
    assert summary["face_source"] == {"mediapipe": 2, "previous": 2, "tracked": 6}
    boxes = np.load(tmp_path / "clip.npz")["crop_boxes"]
    for t in range(FRAMES):
        if t in GONE:  # nothing found: the last found face's box is held
            np.testing.assert_array_equal(boxes[t], boxes[GONE[0] - 1])
            continue
        # independent of face_crop_box: the square of 1.5 × the large face's side about its centre,
        # on the integer pixel grid (MJPG blurs the squares' edges by at most a pixel)
        centre = (large_box(t)[:2] + large_box(t)[2:]) / 2
        np.testing.assert_allclose((boxes[t, :2] + boxes[t, 2:]) / 2, centre, atol=1.5, err_msg=str(t))
        np.testing.assert_allclose(boxes[t, 2] - boxes[t, 0], 1.5 * LARGE, atol=2.5, err_msg=str(t))
    assert json.loads((tmp_path / "clip.json").read_text())["frames"] == FRAMES


class RecordingDetector:
    """Stands in for bridges.mediapipe.MediaPipeDetector: records its keyword arguments, finds no face."""

    made = []
    min_presence = 0.5

    def __init__(self, **kwargs):
        RecordingDetector.made.append(kwargs)

    def detect(self, image):
        return []


@pytest.fixture
def recording_mediapipe(monkeypatch):
    RecordingDetector.made = []
    monkeypatch.setitem(sys.modules, "bridges.mediapipe", types.SimpleNamespace(MediaPipeDetector=RecordingDetector))
    return RecordingDetector.made


def test_face_cropper_forwards_detector_options(recording_mediapipe):
    predict.FaceCropper("mediapipe", max_faces=2, detector_options={"min_score": 0.7, "pupils": "centre"})
    predict.FaceCropper("mediapipe")
    assert recording_mediapipe == [{"max_faces": 2, "min_score": 0.7, "pupils": "centre"}, {"max_faces": None}]
    with pytest.raises(ValueError, match="max_faces"):
        predict.FaceCropper("mediapipe", detector_options={"max_faces": 3})


def test_run_passes_detector_options_to_mediapipe(recording_mediapipe, export_dir, tmp_path):  # noqa: F811
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), np.full((40, 40, 3), 100, np.uint8))
    options = {"min_score": 0.3, "min_presence": 0.8, "refine_passes": 2, "pupils": "iris",
               "detectors": "full", "min_face": 0.1}
    done, failed = predict.run([str(src)], export_dir, tmp_path / "out", detector="mediapipe", progress=False,
                               detector_options=options)
    assert not failed and done[0]["faces"][0]["face_source"] == "whole-image"
    assert recording_mediapipe == [{"max_faces": None, **options}]
