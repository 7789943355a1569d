"""The predictor: an exported FaceLift model as ``Predictor(images) -> PredictionResult``, with
results mapped back into the pixels of each input image (frames: see ``facelift_jax.predict``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facelift_jax import export as export_lib
from facelift_jax.batching import next_power_of_two, pad_batch
from facelift_jax.inference.crops import crop_square, whole_image_box

__all__ = ["PredictionResult", "Predictor", "check_image", "compiled_forward_count", "load"]


@dataclasses.dataclass
class PredictionResult:
    """Host (numpy) predictions for B images; pixel frame of each input image (see module doc).

    landmarks3d (B, 98, 3) world; landmarks2d (B, 98, 2) pixels; covariances (B, 98, 2, 2)
    pixels²; rotation (B, 3, 3); translation (B, 3); euler_degrees (B, 3) yaw, pitch, roll;
    crop_boxes (B, 4) (x0, y0, x1, y1) pixels of the model input in the image.
    """

    landmarks3d: np.ndarray
    landmarks2d: np.ndarray
    covariances: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    euler_degrees: np.ndarray
    crop_boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.landmarks2d)

    def __getitem__(self, index) -> "PredictionResult":
        return PredictionResult(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @staticmethod
    def concatenate(results: Sequence["PredictionResult"]) -> "PredictionResult":
        return PredictionResult(**{f.name: np.concatenate([getattr(r, f.name) for r in results])
                                   for f in dataclasses.fields(PredictionResult)})


def check_image(image, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB or a clear ValueError naming ``name``."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if min(image.shape[:2]) < 8:
        raise ValueError(f"{name} is too small: {image.shape[1]}×{image.shape[0]} pixels (at least 8×8 needed)")
    return image


@functools.partial(jax.jit, static_argnums=0)
def _jitted_forward(graphdef, state, images):
    # The architecture (graphdef) is static, the parameters are arguments: predictors of the same
    # architecture (e.g. a model and its reloaded export) share one compiled function per shape.
    return nnx.merge(graphdef, state)(images).outputs()


def compiled_forward_count() -> int:
    """How many (architecture, batch shape) versions of the shared forward pass are compiled."""
    return _jitted_forward._cache_size()


class Predictor:
    """A ready model: ``predictor(images (B, H, W, 3) uint8) → PredictionResult``.

    Images are fed whole (padded to a square, resized to the model size); ``predict_crops`` takes
    face crops of larger images. Batches are split into chunks of ``batch_size``, each padded to a
    power of two (≤ batch_size): the forward pass is one ``jax.jit`` compiled once per such size.
    """

    def __init__(self, model, *, image_size: int | None = None, batch_size: int = 16, metadata: dict | None = None):
        self._graphdef, self._state = nnx.split(model)
        self.focal = float(model.focal)  # the model camera's normalized focal (pose axes, 3D filter noise)
        self.metadata = dict(metadata or {})
        own = int(model.encoder.image_size)  # the side the encoder was built for (config.image_size)
        given = image_size or self.metadata.get("image_size")
        if given is not None and int(given) != own:
            raise ValueError(f"image_size={given} but the model's encoder takes {own}×{own} images")
        self.image_size = own
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    @classmethod
    def load(cls, directory, *, batch_size: int = 16) -> "Predictor":
        """Restore an export written by ``facelift_jax.export`` (params via Orbax + metadata)."""
        model, metadata = export_lib.load_model(directory)
        return cls(model, image_size=metadata["image_size"], batch_size=batch_size, metadata=metadata)

    @property
    def template(self) -> np.ndarray:
        return np.asarray(nnx.merge(self._graphdef, self._state).template[...])

    def bucket(self, n: int) -> int:
        """The padded chunk size for n images: the next power of two, at most ``batch_size``."""
        return min(self.batch_size, next_power_of_two(n))

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        # Padding to a few bucket sizes bounds both recompiles (log2(batch_size) + 1 shapes) and
        # wasted work (< 2×).
        n = len(batch)
        batch = pad_batch(np.asarray(batch), self.bucket(n))
        out = jax.device_get(_jitted_forward(self._graphdef, self._state, jnp.asarray(batch)))
        return {k: np.asarray(v)[:n] for k, v in out.items()}

    def predict_normalized(self, images) -> dict[str, np.ndarray]:
        """(B, S, S, 3) uint8 model inputs → raw outputs in normalized image coordinates."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1:3] != (self.image_size,) * 2:
            raise ValueError(f"images must be (B, {self.image_size}, {self.image_size}, 3), got {images.shape}")
        chunks = []
        for start in range(0, len(images), self.batch_size):
            chunks.append(self._run(images[start:start + self.batch_size]))
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def predict_crops(self, images: Sequence[np.ndarray], crop_boxes) -> PredictionResult:
        """Full images (each (H, W, 3) uint8) + square crop boxes (B, 4) → results in image pixels."""
        crop_boxes = np.asarray(crop_boxes, np.float64).reshape(-1, 4)
        if len(images) != len(crop_boxes):
            raise ValueError(f"{len(images)} images but {len(crop_boxes)} crop boxes")
        crops, used = [], []
        for i, (image, box) in enumerate(zip(images, crop_boxes)):
            crop, b = crop_square(check_image(image, f"image {i}"), box, self.image_size)
            crops.append(crop)
            used.append(b)
        used = np.stack(used) if used else np.zeros((0, 4))
        if not crops:
            raise ValueError("no image to predict")
        raw = self.predict_normalized(np.stack(crops))
        side = (used[:, 2] - used[:, 0])[:, None, None]
        return PredictionResult(
            landmarks3d=raw["landmarks3d"],
            landmarks2d=used[:, None, :2] + raw["landmarks2d"] * side,
            covariances=raw["covariances"] * side[..., None] ** 2,
            rotation=raw["rotation"], translation=raw["translation"], euler_degrees=raw["euler_degrees"],
            crop_boxes=used)

    def __call__(self, images) -> PredictionResult:
        """(B, H, W, 3) uint8 (or a list of such images) → PredictionResult in input pixels.

        Each image is fed whole (resized to the model size; non-square images are padded to a
        square first, so no aspect distortion).
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise ValueError(f"images must be a batch (B, H, W, 3); got one image {images.shape} (use images[None])")
        images = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        boxes = np.stack([whole_image_box(*im.shape[:2]) for im in images])
        return self.predict_crops(images, boxes)


def load(directory, **kwargs) -> Predictor:
    """``Predictor.load(directory)``."""
    return Predictor.load(directory, **kwargs)
