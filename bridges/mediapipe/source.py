"""The MediaPipe detector behind the synthetic detector's interface: frames in, normalized
WFLW-98 landmarks (and confidence) out; the ``"mediapipe"`` detector source."""

from __future__ import annotations

from typing import Any

import numpy as np

from bridges.mediapipe.landmarker import MediaPipeDetector
from bridges.mediapipe.runtime import check_image
from facelift_jax.inference.tracking import FaceTracker


def _frames_of(source: Any) -> np.ndarray:
    """(B, H, W, 3) uint8 frames from an array or anything with an ``.image`` attribute."""
    frames = getattr(source, "image", source)
    frames = np.asarray(frames)
    if frames.ndim == 3:
        raise ValueError(f"frames must be a batch (B, H, W, 3); got one image {frames.shape}, add a leading axis")
    if frames.ndim != 4:
        raise ValueError(f"frames must have shape (B, H, W, 3), got {frames.shape}")
    return frames


class MediaPipeSource:
    """The MediaPipe detector behind the synthetic detector's interface (for real frames).

    ``detect(frames, key=None, return_confidence=False)``: ``frames`` is (B, H, W, 3) uint8 RGB or
    an object with an ``.image`` of that shape (e.g. a ``RenderOutput``); ``key`` is accepted and
    ignored (the detector is deterministic). Returns landmarks (B, 98, 2) float32 in normalized
    image coordinates (pixels / (W, H)) and, on request, confidence (B, 98) float32 in [0, 1].

    Frames are independent in :meth:`detect` (the largest face of each is taken) and consecutive
    in :meth:`track`, both by ``facelift_jax.inference.tracking.FaceTracker`` (predict's policy).
    Confidence is the landmark model's face-presence probability, the same for all 98 points
    (MediaPipe gives no per-point confidence). A frame without a face gets landmarks 0 and
    confidence 0, so a confidence mask drops it.
    """

    def __init__(self, detector: MediaPipeDetector | None = None, **kwargs):
        self.detector = detector if detector is not None else MediaPipeDetector(**kwargs)

    def _run(self, frames: Any, track: bool, return_confidence: bool, progress: bool):
        from tqdm import tqdm

        frames = _frames_of(frames)
        landmarks = np.zeros((len(frames), 98, 2), np.float32)
        presence = np.zeros(len(frames), np.float32)
        # The one face policy of predict's videos (largest box; hold it while tracked): the labels a
        # clip trains on and the predictions on it follow the same face.
        tracker = FaceTracker(self.detector)
        desc = "mediapipe tracking" if track else "mediapipe"
        for i, frame in enumerate(tqdm(frames, desc=desc, unit="frame", disable=not progress)):
            frame = check_image(frame, f"frames[{i}]")
            if not track:
                tracker.reset()  # each frame on its own: detect, never the previous frame's crop
            step = tracker.step(frame)
            if step.landmarks98 is not None:  # lost: landmarks 0, confidence 0 (a mask drops it)
                landmarks[i] = step.landmarks98 / np.array(frame.shape[1::-1], np.float64)  # / (W, H)
                presence[i] = step.presence
        if not return_confidence:
            return landmarks
        return landmarks, np.repeat(presence[:, None], 98, axis=1)

    def detect(self, frames: Any, key: Any = None, return_confidence: bool = False, progress: bool = False):
        """Each frame on its own: BlazeFace, then the landmark model on the largest face."""
        return self._run(frames, False, return_confidence, progress)

    def track(self, frames: Any, return_confidence: bool = False, progress: bool = False):
        """Consecutive video frames: each frame's crop starts from the previous frame's mesh
        (MediaPipe's tracking), falling back to detection when the face is lost (presence <
        ``min_presence``). Steadier than per-frame detection and skips BlazeFace while tracking."""
        return self._run(frames, True, return_confidence, progress)


def make_detector(config: Any = None) -> MediaPipeSource:
    """The ``"mediapipe"`` detector source; ``config.mediapipe`` (optional) may set ``min_score``,
    ``min_presence``, ``refine_passes``, ``pupils``, ``detectors``, ``min_face``."""
    section = getattr(config, "mediapipe", None) if config is not None else None
    kwargs = {k: section[k] for k in ("min_score", "min_presence", "refine_passes", "pupils", "detectors", "min_face")
              if section is not None and k in section}
    return MediaPipeSource(**kwargs)

