"""Pick the source of faces (generator) and the 2D landmark detector named by a config.

``"synthetic"`` is built in (pure JAX/NumPy). The others live in the top-level ``bridges`` package
and are imported only when a config names them, so a run on the synthetic source never imports
torch or a tflite runtime:

  generator  "synthetic" → facelift_jax.synthetic.SyntheticGenerator(config.synthetic)
             "ide3d"     → bridges.ide3d.IDE3DGenerator.from_config(config.ide3d)   (torch)
  detector   "synthetic" → facelift_jax.synthetic.SyntheticDetector(config.synthetic)
             "pyfacer"   → bridges.detector2d.from_config(config.pyfacer)          (torch)
             "mediapipe" → bridges.mediapipe.make_detector(config)                 (ai-edge-litert)

Every generator has ``render(latents (B,), cameras (B,), image_size) -> render output`` with an
``image (B, H, W, 3)`` field; the synthetic one also knows the exact ``landmarks3d(latents)``.
Every detector has ``detect(images_or_render_output, key, return_confidence=...)``.
"""

from __future__ import annotations

GENERATORS = ("synthetic", "ide3d")
DETECTORS = ("synthetic", "pyfacer", "mediapipe")


def make_generator(config):
    """The generator named by ``config.generator`` (the full experiment config)."""
    name = config.generator
    if name == "synthetic":
        from facelift_jax.synthetic import SyntheticGenerator

        return SyntheticGenerator(config.synthetic)
    if name == "ide3d":
        from bridges.ide3d import IDE3DGenerator

        return IDE3DGenerator.from_config(config.ide3d)
    raise ValueError(f"config.generator must be one of {GENERATORS}, got {name!r}")


def make_detector(config):
    """The 2D landmark detector named by ``config.detector`` (the full experiment config)."""
    name = config.detector
    if name == "synthetic":
        from facelift_jax.synthetic import SyntheticDetector

        return SyntheticDetector(config.synthetic)
    if name == "pyfacer":
        from bridges import detector2d

        return detector2d.from_config(config.pyfacer)
    if name == "mediapipe":
        from bridges import mediapipe

        return mediapipe.make_detector(config)
    raise ValueError(f"config.detector must be one of {DETECTORS}, got {name!r}")


def has_exact_landmarks(generator) -> bool:
    """True for generators that know their exact 3D landmarks (the synthetic one)."""
    return callable(getattr(generator, "landmarks3d", None))
