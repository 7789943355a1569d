"""The embedded 3D-aware synthetic face source: generator, human-style 2D detector, videos.

Public API (details in the module docstrings):
  SyntheticGenerator(config=None): landmarks3d(latents), vertices3d(latents),
      render(latents, cameras, image_size=224) -> RenderOutput
  SyntheticDetector(config=None): detect(render_output, key, return_confidence=False)
  detection_gap(render_output, detections) -> per-region error of detections vs the exact projection
  make_video(seed, path, frames=48, image_size=224, fps=25) (read back with facelift_jax.media)
  SEMANTIC_CLASSES
"""

from facelift_jax.synthetic.classes import SEMANTIC_CLASSES, SEMANTIC_INDEX
from facelift_jax.synthetic.generator import RenderOutput, SyntheticGenerator, default_config
from facelift_jax.synthetic.detector import SyntheticDetector, detection_error, detection_gap
from facelift_jax.synthetic.params import FaceParams
from facelift_jax.synthetic.video import labels_path, make_video

__all__ = ["SEMANTIC_CLASSES", "SEMANTIC_INDEX", "RenderOutput", "SyntheticGenerator", "default_config",
           "FaceParams", "SyntheticDetector", "detection_error", "detection_gap", "make_video", "labels_path"]
