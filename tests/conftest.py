"""Helpers shared by the tests: an independent numpy pinhole projection and the tiny ViT setting.

Import them with ``from conftest import ...`` (pytest puts tests/ on sys.path).
"""

import numpy as np

# EG3D's normalized focal length, written out here (not read from facelift_jax.camera).
FOCAL = 2985.29 / 700.0


def pinhole(points, R, t, K=None, focal: float = FOCAL, centre: float = 0.5):
    """Independent float64 projection: p = R X + t, then (f·x/z + c, f·y/z + c), or K p / (K p)_z
    when ``K`` is given. points (..., N, 3); R (..., 3, 3), t (..., 3) and K broadcast over the
    leading axes → (..., N, 2)."""
    R, t = np.asarray(R, np.float64), np.asarray(t, np.float64)
    p = np.einsum("...ij,...nj->...ni", R, np.asarray(points, np.float64)) + t[..., None, :]
    if K is not None:
        q = np.einsum("...ij,...nj->...ni", np.asarray(K, np.float64), p)
        return q[..., :2] / q[..., 2:3]
    return focal * p[..., :2] / p[..., 2:3] + centre


def tiny_vit(model_config, *, image_size: int, width: int, depth: int, heads: int = 2, patch: int, stem_width: int):
    """``model_config`` (a config's ``model`` section) turned into a tiny from-scratch ViT with a
    decoder of the same width, depth and heads (in place; returned), whatever the default encoder."""
    model_config.encoder, model_config.pretrained = "vit", ""
    model_config.image_size = image_size  # a reference: sets the config's image_size too
    model_config.vit.update(width=width, depth=depth, heads=heads, patch=patch, stem_width=stem_width)
    model_config.decoder.update(width=width, depth=depth, heads=heads)
    return model_config
