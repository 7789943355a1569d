"""The held-out synthetic test set as an ``EvalSet``: exact 2D/3D truth and the projected mesh.

Images come from ``facelift_jax.data.testset`` (the same set train.py's periodic evaluation
uses): latents ``config.eval.first_latent … + num_latents`` (never used in training), one camera
each sampled from C with ``camera.sample_cameras`` (acceptance rule + landmark-box constraint),
rendered at ``config.image_size``. With a ``data_dir`` the set is the one cached under
``<data_dir>/test/`` (built there on first use); without, it is rendered in memory.

Per image: landmarks2d (98, 2) = exact projection of the true 3D landmarks (NME), vertices2d
(|V|, 2) = the generator's deformed mesh projected with the same camera (NMLC), box = tight box of
the true 2D landmarks, the whole render is the model input (it is framed like the training data).
Categories:
* pose — from the true camera's (yaw, pitch, roll) (rotation.euler_degrees): "front" if
  |yaw| < pose_thresholds[0], "sided" if below pose_thresholds[1], else "atypical"; also
  "atypical" when |pitch| ≥ atypical_pitch or |roll| ≥ atypical_roll (unusual head tilts, as in
  DAD-3DHeads' pose classes);
* expression — "True" when some expression coefficient of the latent's face (jaw open, smiles,
  pucker, blinks, brow raise) has magnitude ≥ expression_threshold (synthetic generator only).
Extra truth for 3D metrics: landmarks3d (98, 3) world, rotation (3, 3), translation (3,).
"""

from __future__ import annotations

import numpy as np

from facelift_jax import rotation as rotation_lib
from facelift_jax.datasets.base import EvalSample, EvalSet, points_box


def _generator(config):
    try:
        from facelift_jax import sources

        return sources.make_generator(config)
    except ImportError:  # sources.py not there: the embedded generator is the default source
        if config.get("generator", "synthetic") != "synthetic":
            raise
        from facelift_jax.synthetic import SyntheticGenerator

        return SyntheticGenerator(config.get("synthetic"))


def pose_categories(rotations, thresholds=(30.0, 60.0), atypical_pitch: float = 40.0,
                    atypical_roll: float = 45.0) -> np.ndarray:
    """(M, 3, 3) world→camera rotations → (M,) "front" / "sided" / "atypical" (see module doc)."""
    ypr = np.abs(np.asarray(rotation_lib.euler_degrees(np.asarray(rotations, np.float32)), np.float64))
    lo, hi = thresholds
    out = np.where(ypr[:, 0] < lo, "front", np.where(ypr[:, 0] < hi, "sided", "atypical"))
    tilted = (ypr[:, 1] >= atypical_pitch) | (ypr[:, 2] >= atypical_roll)
    return np.where(tilted, "atypical", out).astype(object)


class SyntheticTestSet(EvalSet):
    """The held-out multi-view test images (see module doc). ``limit``: first n images (0 = all)."""

    name = "synthetic (held-out)"
    num_points = 98

    def __init__(self, config, data_dir=None, limit: int = 0):
        from facelift_jax.data import testset as testset_lib

        ev = config.eval
        if data_dir is not None:
            images = testset_lib.load_or_build(config, data_dir).multiview
        else:
            if limit:  # render only what is evaluated (same latents and cameras as the full set's first N)
                config = config.copy_and_resolve_references()
                config.eval.num_latents = min(int(limit), int(ev.num_latents))
            images = testset_lib.render_multiview(config, _generator(config))
        if images.vertices2d is None:
            raise ValueError("the synthetic test set has no projected mesh vertices (generator without vertices3d)")
        n = len(images) if not limit else min(int(limit), len(images))
        self.images = images.take(n)
        self.size = int(images.image.shape[1])
        self.latents = np.arange(int(ev.first_latent), int(ev.first_latent) + n, dtype=np.int64)
        self.pose = pose_categories(self.images.rotation, tuple(ev.get("pose_thresholds", (30.0, 60.0))),
                                    float(ev.get("atypical_pitch", 40.0)), float(ev.get("atypical_roll", 45.0)))
        self.expression = None
        gen = _generator(config)
        if hasattr(gen, "params"):
            coeffs = np.asarray(gen.params(self.latents).expression)
            self.expression = np.abs(coeffs).max(-1) >= float(ev.get("expression_threshold", 0.3))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> EvalSample:
        t, s = self.images, self.size
        lm2d = t.landmarks2d[index].astype(np.float64) * s
        cats = {"pose": str(self.pose[index])}
        if self.expression is not None:
            cats["expression"] = str(bool(self.expression[index]))
        return EvalSample(
            name=f"latent{self.latents[index]}", image=t.image[index], box=points_box(lm2d), crop_box=None,
            landmarks2d=lm2d, vertices2d=t.vertices2d[index].astype(np.float64) * s, categories=cats,
            extra={"landmarks3d": t.landmarks3d[index], "rotation": t.rotation[index],
                   "translation": t.translation[index], "visible": t.visible[index]})
