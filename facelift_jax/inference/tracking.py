"""Following one face through a video: the detect / track / hold policy and the temporal filter
setup, shared by every caller that turns frames into one face's landmarks.

Policy (``FaceTracker.step``, one frame at a time):

1. While a face is held (a crop ``roi`` from the previous frame), run the landmark model on that
   crop (MediaPipe's tracking, no detection). If its face presence is at least the detector's
   ``min_presence``, the frame is "tracked" and its new crop is held for the next frame.
2. Otherwise (no roi yet, or the face was lost), detect every face of the frame and take ONE:
   the largest detector box, the higher detector score between boxes of equal area
   (``pick_face``). The frame is "detected" and that face's crop is held.
3. When the detector finds no face the frame is "lost" and nothing is held, so the next frame
   detects again. What a lost frame gets is the caller's choice (predict keeps the previous crop
   box as source "previous"; a labeller writes zeros with confidence 0).

The detector is duck-typed on ``bridges.mediapipe.MediaPipeDetector``: ``detect(frame) ->
[dict(box=(x0, y0, x1, y1) px, landmarks98=(98, 2) px, presence, score, roi)]``,
``landmarks_from_roi(frame, roi) -> (points, presence, roi)``, ``landmarks98(frame, points) ->
(98, 2) px`` and ``min_presence``. A detector without ``landmarks_from_roi`` is detected on
every frame (step 2 only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from facelift_jax import rotation as rotation_lib
from facelift_jax import temporal

SOURCES = ("tracked", "detected", "lost")


def box_area(box) -> float:
    """Area of an (x0, y0, x1, y1) box; 0 for an empty or inverted one."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def pick_face(faces: Sequence[dict]) -> dict | None:
    """The face a video follows: the largest ``"box"``, ties broken by the higher ``"score"``
    (a missing score counts as 0); None when there is no face."""
    if not faces:
        return None
    return max(faces, key=lambda f: (box_area(f["box"]), float(f.get("score") or 0.0)))


@dataclasses.dataclass(frozen=True)
class TrackStep:
    """One frame's outcome: ``landmarks98`` (98, 2) pixels of the frame or None when lost;
    ``presence`` the landmark model's face presence (0 when lost); ``source`` one of SOURCES;
    ``roi`` the crop held for the next frame (None when lost)."""

    landmarks98: np.ndarray | None
    presence: float
    source: str
    roi: object | None


class FaceTracker:
    """``FaceTracker(detector).step(frame) -> TrackStep`` for consecutive frames of one clip (the
    policy of the module docstring); ``reset()`` before a new clip."""

    def __init__(self, detector):
        self.detector = detector
        self.roi = None

    def reset(self) -> None:
        self.roi = None

    def _track(self, frame: np.ndarray) -> TrackStep | None:
        det = self.detector
        if self.roi is None or not hasattr(det, "landmarks_from_roi"):
            return None
        points, presence, roi = det.landmarks_from_roi(frame, self.roi)
        if presence < det.min_presence:
            return None
        return TrackStep(np.asarray(det.landmarks98(frame, points)), float(presence), "tracked", roi)

    def step(self, frame: np.ndarray) -> TrackStep:
        """One frame (H, W, 3) uint8 RGB → its TrackStep; updates the held roi."""
        out = self._track(frame)
        if out is None:
            face = pick_face(self.detector.detect(frame))
            if face is None:
                out = TrackStep(None, 0.0, "lost", None)
            else:
                out = TrackStep(np.asarray(face["landmarks98"]), float(face.get("presence", 1.0)), "detected",
                                face.get("roi"))
        self.roi = out.roi
        return out


# ----------------------------------------------------------------------------------------------
# Temporal filtering of a clip's predictions, batch by batch
# ----------------------------------------------------------------------------------------------

def filter_observation(result, valid: np.ndarray, focal: float) -> temporal.Observation:
    """The temporal filter's measurements of B frames' predictions ``result`` (a
    ``PredictionResult``: landmarks2d (B, 98, 2) px, covariances (B, 98, 2, 2), landmarks3d,
    rotation, translation, crop_boxes (B, 4)): the model's covariances as the 2D noise and their
    lift to 3D at the crop's scale (temporal.lift_variance_3d); ``valid`` (B,) False where the
    frame is not a measurement (no face found)."""
    side = result.crop_boxes[:, 2] - result.crop_boxes[:, 0]
    var3 = temporal.lift_variance_3d(result.covariances, result.landmarks3d, result.rotation, result.translation,
                                     side, focal)
    return temporal.observation(result.landmarks2d, result.covariances, result.landmarks3d, result.rotation,
                                result.translation, variance3d=var3, valid=valid)


class ClipFilter:
    """A streaming temporal filter over one clip: ``kind`` "kalman", "one_euro" or "none"
    (facelift_jax.temporal, its default parameters at ``fps``); ``focal`` the model camera's
    normalized focal (the 3D noise lift). ``update(result, valid)`` filters the next batch."""

    def __init__(self, kind: str, fps: float, focal: float, num_points: int = 98):
        self.config = temporal.FilterConfig(kind=kind, fps=fps)
        self.state = temporal.init(num_points)
        self.focal = float(focal)

    def update(self, result, valid: np.ndarray) -> dict[str, np.ndarray]:
        """The next B frames (see ``filter_observation``) → their filtered arrays: landmarks2d,
        landmarks3d, rotation, translation, covariances as the filter gives them (numpy) plus
        euler_degrees (B, 3) of the filtered rotation."""
        self.state, out = temporal.run(self.config, self.state, filter_observation(result, valid, self.focal))
        out = {k: np.asarray(v) for k, v in out.items()}
        out["euler_degrees"] = np.asarray(rotation_lib.euler_degrees(out["rotation"]))
        return out
