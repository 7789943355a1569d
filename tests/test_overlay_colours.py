"""inference.overlays draws each region in landmarks.REGION_COLOURS (the table itself, read at draw
time: one home for the colours, shared with preprocess's previews and the MediaPipe bridge)."""

import numpy as np

from facelift_jax import landmarks as lm
from facelift_jax.inference.overlays import draw_overlay
from facelift_jax.inference.predictor import PredictionResult


def _result(size: int) -> PredictionResult:
    """One face: the 98 points on a grid 10 px apart (no two dots overlap), tiny covariances (no
    ellipse drawn), a pose whose axes project off the image (nothing drawn over the dots)."""
    ij = np.stack(np.meshgrid(np.arange(10), np.arange(10), indexing="xy"), -1).reshape(-1, 2)[:98]
    pts = 15.0 + 10.0 * ij
    return PredictionResult(
        landmarks3d=np.zeros((1, 98, 3)), landmarks2d=pts[None], covariances=np.tile(np.eye(2) * 0.1, (1, 98, 1, 1)),
        rotation=np.eye(3)[None], translation=np.array([[0.0, 0.0, np.nan]]), euler_degrees=np.zeros((1, 3)),
        crop_boxes=np.array([[0.0, 0.0, size - 1.0, size - 1.0]]))


def test_overlay_reads_the_landmarks_table(monkeypatch):
    size = 128  # under 160 px: no text
    monkeypatch.setitem(lm.REGION_COLOURS, "nose", (1, 2, 3))  # a colour no other drawing uses
    result = _result(size)
    out = draw_overlay(np.zeros((size, size, 3), np.uint8), result)
    for region, idx in lm.REGIONS_98.items():
        for i in idx:
            x, y = np.round(result.landmarks2d[0, i]).astype(int)
            assert tuple(out[y, x]) == lm.REGION_COLOURS[region], (region, i)
