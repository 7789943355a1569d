"""FaceLift's 3D landmark regressor (Fig. 4): encoder → landmark/pose decoder → heads → 2.5D.

Frames: ``landmarks3d`` live in world space (the GAN canonical space of ``camera.py``);
``rotation``/``translation`` are the predicted world→camera pose (OpenCV axes); ``landmarks2d``
are the 2.5D landmarks π(L̂3D; ĉ) in normalized image coordinates ([0, 1]² inside the image,
origin top-left) with the fixed intrinsics K; ``scale_tril`` is the Cholesky factor L of each
projected landmark's 2×2 covariance Σ = L Lᵀ, in normalized image units.

Heads (one shared MLP per token type, Linear → GELU → Linear):
* landmark token → 6 numbers (o_x, o_y, o_z, a, b, c):
  L̂3D = template + offset_scale · o;
  L = [[σ_min + softplus(a + s₀), 0], [σ₀ · b, σ_min + softplus(c + s₀)]],
  s₀ = softplus⁻¹(σ₀ − σ_min), so the diagonal is positive and a = b = c = 0 gives L = σ₀·I.
* rotation token → 6D vector u; R̂ = rotation_from_6d(u + 6D(R_frontal)).
* T_xy token → 2 numbers, T_z token → 1 number; Δt̂ = translation_scale ⊙ (txy, tz);
  t̂ = t̄(R̂) + Δt̂, with t̄ = camera.translation_to_sphere (the camera sphere of §3).
The output layers start small (``init_scale``), so an untrained model predicts the template seen
by the frontal camera on the sphere, with σ₀ uncertainty: a sane start for the losses.
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from facelift_jax import camera as camera_lib
from facelift_jax import rotation as rotation_lib
from facelift_jax.landmarks import NUM_LANDMARKS
from facelift_jax.model.decoder import LandmarkPoseDecoder
from facelift_jax.model.efficientnet import EfficientNetLite
from facelift_jax.model.face_mesh import FaceMeshEncoder
from facelift_jax.model.layers import count_parameters, gelu
from facelift_jax.model.resnet import DEPTHS, ResNet
from facelift_jax.model.vit import VisionTransformer


class Template(nnx.Variable):
    """Non-trainable model state: the (98, 3) landmark template in world space.

    Not an ``nnx.Param``, so ``nnx.state(model, nnx.Param)`` (what optimizers and checkpoints
    see) leaves it out.
    """


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Prediction:
    """Regressor output, batched by B.

    landmarks3d (B, 98, 3) world; landmarks2d (B, 98, 2) normalized image coords = π(L̂3D; ĉ);
    scale_tril (B, 98, 2, 2) lower-triangular Cholesky factor (normalized image units);
    rotation (B, 3, 3) world→camera; translation (B, 3) (p_cam = R p_world + t).
    """

    landmarks3d: jax.Array
    landmarks2d: jax.Array
    scale_tril: jax.Array
    rotation: jax.Array
    translation: jax.Array

    def camera(self, focal: float = camera_lib.FOCAL) -> camera_lib.Camera:
        """The predicted camera ĉ = [K, R̂, t̂] (K fixed)."""
        K = jnp.broadcast_to(camera_lib.intrinsics(focal), self.rotation.shape)
        return camera_lib.Camera(K=K, R=self.rotation, t=self.translation)

    def outputs(self) -> dict[str, jax.Array]:
        """The model's output contract (``OUTPUT_FRAMES``): what the predictor, the StableHLO export
        and the evaluator return. Covariance Σ = L Lᵀ (normalized units²), Euler angles in degrees."""
        L = self.scale_tril
        return {
            "landmarks3d": self.landmarks3d,
            "landmarks2d": self.landmarks2d,
            "covariances": jnp.einsum("...ij,...kj->...ik", L, L),
            "rotation": self.rotation,
            "translation": self.translation,
            "euler_degrees": rotation_lib.euler_degrees(self.rotation),
        }


# The frame of each entry of ``Prediction.outputs()`` (written into an export's metadata.json).
OUTPUT_FRAMES = {
    "landmarks3d": "(B, 98, 3) world (GAN canonical space)",
    "landmarks2d": "(B, 98, 2) normalized image coords of the model input, [0, 1]^2, origin top-left",
    "covariances": "(B, 98, 2, 2) normalized image units^2",
    "rotation": "(B, 3, 3) world->camera, OpenCV axes",
    "translation": "(B, 3), p_cam = R p_world + t",
    "euler_degrees": "(B, 3) yaw, pitch, roll (rotation.euler_degrees)",
}


class Head(nnx.Module):
    """(…, width) → (…, out): Linear → GELU → Linear; output layer initialized with std ∝ init_scale."""

    def __init__(self, width: int, out: int, init_scale: float, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(width, width, rngs=rngs)
        self.fc2 = nnx.Linear(width, out, rngs=rngs,
                              kernel_init=nnx.initializers.variance_scaling(init_scale**2, "fan_in", "truncated_normal"))

    def __call__(self, x):
        return self.fc2(gelu(self.fc1(x)))


def _softplus_inverse(y: float) -> float:
    return float(np.log(np.expm1(y)))


def scale_tril_from_raw(raw, sigma0: float, sigma_min: float):
    """(…, 3) raw (a, b, c) → (…, 2, 2) lower-triangular L with positive diagonal (see module doc)."""
    s0 = _softplus_inverse(sigma0 - sigma_min)
    l00 = sigma_min + jax.nn.softplus(raw[..., 0] + s0)
    l11 = sigma_min + jax.nn.softplus(raw[..., 2] + s0)
    l10 = sigma0 * raw[..., 1]
    zero = jnp.zeros_like(l00)
    return jnp.stack([jnp.stack([l00, zero], -1), jnp.stack([l10, l11], -1)], -2)


class FaceLiftRegressor(nnx.Module):
    """images (B, S, S, 3) uint8 or float in [0, 1] → Prediction (see module doc)."""

    def __init__(self, encoder: nnx.Module, encoder_width: int, template, *, width: int = 256, depth: int = 3,
                 heads: int = 8, mlp_ratio: float = 4.0, offset_scale: float = 0.1,
                 translation_scale=(0.1, 0.1, 0.1), sigma0: float = 0.02, sigma_min: float = 1e-4,
                 init_scale: float = 1e-2, radius: float = camera_lib.DEFAULT_RADIUS,
                 look_at=camera_lib.DEFAULT_LOOK_AT, focal: float = camera_lib.FOCAL, dtype=jnp.float32,
                 rngs: nnx.Rngs):
        template = np.asarray(template, np.float32)
        if template.shape != (NUM_LANDMARKS, 3) or not np.all(np.isfinite(template)):
            raise ValueError(f"template must be a finite ({NUM_LANDMARKS}, 3) array, got shape {template.shape}"
                             + ("" if template.shape != (NUM_LANDMARKS, 3) else " with non-finite values"))
        if not 0 < sigma_min < sigma0:
            raise ValueError(f"need 0 < sigma_min < sigma0, got sigma_min={sigma_min}, sigma0={sigma0}")
        self.encoder = encoder
        self.decoder = LandmarkPoseDecoder(encoder_width, width, depth, heads, mlp_ratio, NUM_LANDMARKS,
                                           dtype=dtype, rngs=rngs)
        self.landmark_head = Head(width, 6, init_scale, rngs=rngs)
        self.rotation_head = Head(width, 6, init_scale, rngs=rngs)
        self.txy_head = Head(width, 2, init_scale, rngs=rngs)
        self.tz_head = Head(width, 1, init_scale, rngs=rngs)
        self.template = Template(jnp.asarray(template))
        self.offset_scale, self.sigma0, self.sigma_min = float(offset_scale), float(sigma0), float(sigma_min)
        self.translation_scale = tuple(float(s) for s in translation_scale)
        self.radius, self.look_at, self.focal = float(radius), tuple(float(v) for v in look_at), float(focal)

    def __call__(self, images) -> Prediction:
        tokens = self.decoder(self.encoder(images)).astype(jnp.float32)
        n = tokens.shape[1] - 3
        raw = self.landmark_head(tokens[:, :n])  # (B, 98, 6)
        landmarks3d = self.template[...] + self.offset_scale * raw[..., :3]
        scale_tril = scale_tril_from_raw(raw[..., 3:], self.sigma0, self.sigma_min)
        frontal6d = rotation_lib.rotation_to_6d(rotation_lib.FRONTAL)
        R = rotation_lib.rotation_from_6d(self.rotation_head(tokens[:, n]) + frontal6d)
        delta = jnp.concatenate([self.txy_head(tokens[:, n + 1]), self.tz_head(tokens[:, n + 2])], -1)
        t = camera_lib.translation_to_sphere(R, self.radius, self.look_at) + jnp.asarray(self.translation_scale) * delta
        K = jnp.broadcast_to(camera_lib.intrinsics(self.focal), R.shape)
        landmarks2d = camera_lib.project(landmarks3d, camera_lib.Camera(K=K, R=R, t=t))
        return Prediction(landmarks3d=landmarks3d, landmarks2d=landmarks2d, scale_tril=scale_tril,
                          rotation=R, translation=t)


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


# The encoder names ``build_encoder`` knows (config_check reads them from here).
ENCODERS = ("face_mesh", "efficientnet_lite0", "vit", *DEPTHS)
# Model sections written before ``model.image_size`` existed (exports, workdirs' config.json) kept
# the input size in the encoder's own section; resnet read model.vit's.
_LEGACY_SIZE_SECTION = {"vit": "vit", "efficientnet_lite0": "efficientnet", "face_mesh": "face_mesh"}


def input_size(model_config) -> int:
    """The encoder's input side in pixels: ``model.image_size`` (a reference to the config's
    ``image_size``), or the encoder section's own field in a model section saved before it."""
    if "image_size" in model_config:
        return int(model_config.image_size)
    section = model_config.get(_LEGACY_SIZE_SECTION.get(model_config.encoder, "vit"), {})
    if "image_size" in section:
        return int(section["image_size"])
    raise ValueError(f"the model config has no image_size (model.image_size); encoder {model_config.encoder!r}")


def build_encoder(model_config, *, rngs: nnx.Rngs) -> tuple[nnx.Module, int]:
    """(encoder module, token width) for ``model_config.encoder`` (one of ``ENCODERS``) at
    ``input_size(model_config)``."""
    name = model_config.encoder
    if name not in ENCODERS:
        raise ValueError(f"unknown model.encoder {name!r}; choose one of {', '.join(map(repr, ENCODERS))}")
    dtype = _DTYPES[model_config.dtype]
    size = input_size(model_config)
    if name == "vit":
        v = model_config.vit
        enc = VisionTransformer(int(v.width), int(v.depth), int(v.heads), int(v.patch), size,
                                float(v.mlp_ratio), v.stem,
                                v.stem_width, dtype=dtype, rngs=rngs)
        return enc, int(v.width)
    if name in DEPTHS:
        r = model_config.resnet
        enc = ResNet(DEPTHS[name], int(r.base_width), size, r.norm,
                     int(r.groups), dtype=dtype, rngs=rngs)
        return enc, enc.width
    if name == "efficientnet_lite0":
        e = model_config.efficientnet
        enc = EfficientNetLite(size, int(e.width), tuple(e.token_strides), dtype=dtype, rngs=rngs)
        return enc, enc.width
    f = model_config.face_mesh
    enc = FaceMeshEncoder(size, int(f.width), tuple(f.token_strides), mesh_tokens=bool(f.mesh_tokens),
                          frozen_blocks=int(f.frozen_blocks), dtype=dtype, rngs=rngs)
    return enc, enc.width


def build_model(model_config, template, *, rngs: nnx.Rngs) -> FaceLiftRegressor:
    """FaceLiftRegressor from the ``config.model`` section and a (98, 3) world-space template.

    Does not load pretrained weights: ``model_config.pretrained`` is handled by entry points
    through the bridges (``bridges.face_mesh``, ``bridges.efficientnet``, ``bridges.farl``; torch and
    TFLite stay out of facelift_jax).
    """
    dtype_name = model_config.dtype
    if dtype_name not in _DTYPES:
        raise ValueError(f"unknown model.dtype {dtype_name!r}; choose from {sorted(_DTYPES)}")
    encoder, encoder_width = build_encoder(model_config, rngs=rngs)
    d = model_config.decoder
    h = model_config.heads
    model = FaceLiftRegressor(
        encoder, encoder_width, template,
        width=int(d.width), depth=int(d.depth), heads=int(d.heads), mlp_ratio=float(d.mlp_ratio),
        offset_scale=h.offset_scale, translation_scale=tuple(h.translation_scale),
        sigma0=h.sigma0, sigma_min=h.sigma_min, init_scale=h.init_scale,
        radius=model_config.radius, look_at=tuple(model_config.look_at), focal=model_config.focal, dtype=_DTYPES[dtype_name], rngs=rngs)
    logging.info("FaceLiftRegressor parameters: %s", parameter_counts(model))
    return model


def parameter_counts(model: FaceLiftRegressor) -> dict[str, int]:
    """Trainable scalars per part: encoder, decoder, heads, total."""
    enc, dec = count_parameters(model.encoder), count_parameters(model.decoder)
    heads = sum(count_parameters(m) for m in (model.landmark_head, model.rotation_head, model.txy_head, model.tz_head))
    return {"encoder": enc, "decoder": dec, "heads": heads, "total": enc + dec + heads}
