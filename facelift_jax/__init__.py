"""facelift_jax: FaceLift (CVPR 2024) semi-supervised 3D facial landmark localization in JAX/Flax.

Pure JAX/Flax/Optax/NumPy. PyTorch models are reached only through the top-level ``bridges``
package, never imported from here.
"""

__version__ = "0.1.0"
