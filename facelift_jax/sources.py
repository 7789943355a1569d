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

Intrinsics: every camera of a run (lifting views, training pool and on-the-fly samples, held-out
set, the model's own camera) is built with ONE normalized focal, ``config.camera.focal`` (default
``camera.FOCAL``; ``config.model.focal`` refers to it). A generator whose images obey a K of its
own (IDE-3D renders from an 18° field of view, not from the label's K) exposes it as
``intrinsics.focal`` (or ``focal``); ``generator_focal`` holds the two together and
``make_generator`` calls it, so a mismatch is refused before anything is rendered.
"""

from __future__ import annotations

GENERATORS = ("synthetic", "ide3d")
DETECTORS = ("synthetic", "pyfacer", "mediapipe")


def make_generator(config):
    """The generator named by ``config.generator`` (the full experiment config)."""
    name = config.generator
    if name == "synthetic":
        from facelift_jax.synthetic import SyntheticGenerator

        generator = SyntheticGenerator(config.synthetic)
    elif name == "ide3d":
        from bridges.ide3d import IDE3DGenerator

        generator = IDE3DGenerator.from_config(config.ide3d)
    else:
        raise ValueError(f"config.generator must be one of {GENERATORS}, got {name!r}")
    generator_focal(generator, config)  # refuse cameras its images would not obey, before any work
    return generator


FOCAL_RTOL = 1e-4  # relative difference between two focals still taken as the same


def own_focal(generator) -> float | None:
    """The normalized focal a generator's images obey whatever K its cameras carry, or None when it
    follows the cameras' K (the synthetic rasterizer; IDE-3D with ``fov="label"``).

    Read from ``generator.intrinsics.focal`` (``bridges.ide3d.RenderIntrinsics``) or ``generator.focal``."""
    intrinsics = getattr(generator, "intrinsics", None)
    focal = getattr(intrinsics, "focal", None) if intrinsics is not None else getattr(generator, "focal", None)
    return None if focal is None else float(focal)


def generator_focal(generator, config) -> float:
    """The normalized focal every camera of this run is built with: ``config.camera.focal``.

    Rule: the config is the one source (it is fixed before any generator exists: the model's
    ``config.model.focal`` refers to it, and the preprocessing plan and the render caches are keyed
    by it), so it is never adopted silently from the generator. A generator with a focal of its own
    (``own_focal``) must agree with it within ``FOCAL_RTOL``, else ValueError naming the fix,
    ``--config.camera.focal=<the generator's value>``. A generator that follows the cameras' K (the
    synthetic one) takes any ``config.camera.focal``. A config without ``camera.focal`` (written
    before the field) means ``camera.FOCAL``.
    """
    from facelift_jax import camera

    focal = camera.config_focal(config.camera) if "camera" in config else camera.FOCAL
    own = own_focal(generator)
    if own is not None and abs(own - focal) > FOCAL_RTOL * own:
        source = getattr(getattr(generator, "intrinsics", None), "source", None)
        raise ValueError(
            f"config.camera.focal={focal:.6g} disagrees with the focal the {type(generator).__name__}'s images "
            f"obey, {own:.6g}{f' ({source})' if source else ''}: every camera (lifting views, training samples, "
            f"the model's) would project the landmarks off the rendered face by a factor {focal / own:.3f} about "
            f"the image centre. Fix: --config.camera.focal={own:.6g} (config.model.focal follows it)")
    return focal


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
