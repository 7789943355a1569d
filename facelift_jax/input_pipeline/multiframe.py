"""Multi-frame samples (§3): one frame decoded from a real video file with its 2D pseudo-label.

An element (numpy): image (S, S, 3) uint8 RGB; landmarks2d (98, 2) detector pseudo-label in
normalized image coords; mask (98,) bool = detector confidence above the threshold (the trainer
ANDs in the normal-template visibility of the predicted pose, eq. 4).
"""

from __future__ import annotations

import cv2
import numpy as np

from facelift_jax.input_pipeline.labels import VideoLabels
from facelift_jax.media import read_frame


class FrameSource:
    """grain random-access source over every (clip, frame) of the training videos."""

    def __init__(self, videos: VideoLabels, image_size: int, confidence_threshold: float = 0.5):
        self.videos = videos
        self.image_size = int(image_size)
        self.confidence_threshold = float(confidence_threshold)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        v = self.videos
        clip, frame = int(v.frame_clip[index]), int(v.frame_index[index])
        image = np.asarray(read_frame(v.paths[clip], frame))
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(f"{v.paths[clip]} frame {frame}: expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if image.shape[:2] != (self.image_size, self.image_size):
            # Normalized coordinates are resolution-free: resizing the frame leaves the labels valid.
            image = cv2.resize(image, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
        return {
            "image": image,
            "landmarks2d": v.landmarks2d[index],
            "mask": v.confidence[index] > self.confidence_threshold,
        }

    def __repr__(self) -> str:  # grain logs sources by repr; keep it short
        return f"FrameSource({len(self.videos.paths)} clips, {len(self)} frames)"


class DecodedFrameSource(FrameSource):
    """``FrameSource`` over frames decoded once (``pool.py``): (F, S, S, 3) uint8, row i = frame i."""

    def __init__(self, videos: VideoLabels, frames: np.ndarray, confidence_threshold: float = 0.5):
        if frames.shape[0] != len(videos):
            raise ValueError(f"{frames.shape[0]} decoded frames for {len(videos)} labelled frames")
        super().__init__(videos, frames.shape[1], confidence_threshold)
        self.frames = frames

    def __getitem__(self, index: int) -> dict:
        return {"image": self.frames[index], "landmarks2d": self.videos.landmarks2d[index],
                "mask": self.videos.confidence[index] > self.confidence_threshold}
