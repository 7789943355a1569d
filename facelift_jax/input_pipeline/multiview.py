"""Multi-view samples (§3, §4): a lifted latent seen from a random camera of C, rendered on the fly.

Geometric augmentation (crop, scale, shift) would break the 3D labels under perspective
projection, so every sample is a fresh render: the camera is drawn from the augmented camera space
C with the paper's acceptance rule and the landmark-box constraint (``camera.sample_cameras``,
applied to the sample's 3D pseudo-label), and the generator renders the latent from it.

A batch element (numpy):
  image (B, S, S, 3) uint8 RGB; landmarks3d (B, 98, 3) world pseudo-label; landmarks2d (B, 98, 2)
  its projection by the true camera (normalized image coords); rotation (B, 3, 3) world→camera;
  translation (B, 3); mask (B, 98) bool = valid pseudo-label and not a pupil (§4: GAN pupils follow
  the camera).
"""

from __future__ import annotations

import threading

import grain
import jax
import numpy as np

from facelift_jax import camera
from facelift_jax import landmarks as lm
from facelift_jax.input_pipeline.labels import PseudoLabels


# One render at a time per process: concurrent calls of the generator's jitted geometry from
# several grain threads (two live iterators) were seen to hang on the 2-core CPU backend.
_RENDER_LOCK = threading.Lock()



class RenderMultiView(grain.transforms.RandomMap):
    """Batch of label indices (B,) → multi-view batch dict, rendered from random cameras.

    The generator is built lazily (once per process, thread-safe) so the transform stays cheap
    to construct and to copy into grain workers.
    """

    def __init__(self, labels: PseudoLabels, config):
        self.labels = labels
        self.config = config
        self._generator = None
        self._lock = threading.Lock()

    @property
    def generator(self):
        with self._lock:
            if self._generator is None:
                from facelift_jax import sources

                self._generator = sources.make_generator(self.config)
            return self._generator

    def random_map(self, indices, rng: np.random.Generator) -> dict:
        indices = np.asarray(indices, np.int64).reshape(-1)
        points = self.labels.points3d[indices]
        key = jax.random.key(int(rng.integers(2**62)))
        cams = camera.sample_cameras(key, len(indices), self.config.camera, landmarks3d=points)
        with _RENDER_LOCK:
            rendered = self.generator.render(self.labels.latents[indices], cams,
                                             image_size=int(self.config.image_size))
        return {
            "image": np.asarray(rendered.image, np.uint8),
            "landmarks3d": points,
            "landmarks2d": np.asarray(camera.project(points, cams), np.float32),
            "rotation": np.asarray(cams.R, np.float32),
            "translation": np.asarray(cams.t, np.float32),
            "mask": self.labels.valid[indices] & lm.NON_PUPIL_MASK,
        }


class PooledMultiView(grain.transforms.RandomMap):
    """Batch of pool indices (B,) → multi-view batch dict (the fields above), from the rendered pool
    (``pool.py``) with the camera roll re-drawn from C for every sample (an exact image rotation)."""

    def __init__(self, rendered, labels: PseudoLabels, config):
        self.pool = rendered
        self.labels = labels
        self.camera_config = config.camera
        self.focal = camera.config_focal(config.camera)  # the pool's cameras' K (sample_cameras)
        self.resample_roll = bool(config.data.resample_roll)

    def random_map(self, indices, rng: np.random.Generator) -> dict:
        from facelift_jax.input_pipeline import pool as pool_lib

        indices = np.asarray(indices, np.int64).reshape(-1)
        rows = self.pool.index[indices]
        points = self.labels.points3d[rows]
        R, t = self.pool.R[indices].astype(np.float64), self.pool.t[indices].astype(np.float64)
        images = self.pool.images[indices].copy()
        for i in range(len(indices) if self.resample_roll else 0):
            uv = pool_lib.project(points[i], R[i], t[i], focal=self.focal)
            delta = pool_lib.resample_roll(rng, self.pool.roll[indices[i]], uv, self.camera_config)
            if delta:
                images[i] = pool_lib.roll_image(images[i], delta)
                Rz = pool_lib.roll_matrix(delta)
                R[i], t[i] = Rz @ R[i], Rz @ t[i]
        return {
            "image": images,
            "landmarks3d": points,
            "landmarks2d": pool_lib.project(points, R, t, focal=self.focal).astype(np.float32),
            "rotation": R.astype(np.float32),
            "translation": t.astype(np.float32),
            "mask": self.labels.valid[rows] & lm.NON_PUPIL_MASK,
        }
