"""Experiment configs: one file per experiment, each with ``get_config()``.

The ablation configs take an optional base, ``paper`` (the default: the ablation as in the paper's
Tables 1-2) or ``default`` (the same change on the CPU-sized synthetic setting), chosen after a
colon on the command line: ``--config configs/mv_only.py:default``.
"""

import ml_collections


def base_config(base: str | None) -> ml_collections.ConfigDict:
    """``configs/paper.py`` or ``configs/default.py``'s config, by name."""
    from configs import default, paper

    bases = {"paper": paper.get_config, "default": default.get_config}
    base = base or "paper"
    if base not in bases:
        raise ValueError(f"unknown base config {base!r}; use one of {sorted(bases)} (e.g. configs/mv_only.py:default)")
    return bases[base]()


def with_samples(base: str | None, samples: int) -> ml_collections.ConfigDict:
    """The "Ours (100)" / "Ours (1K)" ablations: ``samples`` videos and GAN latents instead of 10K.

    On the ``paper`` base both counts become ``samples``; on the ``default`` base they are scaled by
    the same factor, samples / 10K (at least 1). The number of optimization steps is the base's.
    """
    c = base_config(base)
    if (base or "paper") == "paper":
        c.preprocess.num_latents = samples
        c.preprocess.num_videos = samples
    else:
        divisor = 10_000 // samples
        c.preprocess.num_latents = max(c.preprocess.num_latents // divisor, 1)
        c.preprocess.num_videos = max(c.preprocess.num_videos // divisor, 1)
    return c
