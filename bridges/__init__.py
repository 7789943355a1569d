"""Bridges to PyTorch (and TFLite) models. Arrays cross into JAX by DLPack.

Nothing in ``facelift_jax`` imports this package; it needs the ``[bridges]`` extra.
"""
