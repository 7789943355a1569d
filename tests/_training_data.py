"""Shared by test_input_pipeline.py and test_train.py: the real default config shrunk to test size, and one
preprocessed tiny dataset per pytest session (built on first use under pytest's base temp dir)."""

from __future__ import annotations

import pathlib
import shutil

from configs import default

TINY_IMAGE = 48


def tiny_config():
    """configs/default.py with tiny sizes: a few latents and clips, a 1-block ViT, short training."""
    c = default.get_config()
    c.image_size = TINY_IMAGE
    c.preprocess.num_latents = 8
    c.preprocess.chunk_size = 8
    c.preprocess.num_videos = 2
    c.preprocess.frames_per_video = 6
    # The tiny ViT keeps these tests fast; the default's pretrained EfficientNet + rendered pool are
    # run end to end by test_train.test_default_encoder_and_pool_end_to_end.
    c.model.encoder, c.model.pretrained, c.data.pool_size = "vit", "", 0
    c.model.vit.update(width=16, depth=1, heads=2, patch=16, stem_width=16)
    c.model.decoder.update(width=16, depth=1, heads=2)
    c.batch.multiview = 2
    c.batch.multiframe = 2
    c.optim.steps_per_epoch = 2
    c.optim.warmup_steps = 0  # parameters must move within a few steps (resume test)
    c.train.update(num_steps=1, log_every=1, eval_every=0, checkpoint_every=1, keep_checkpoints=2, plot_examples=2)
    c.data.num_threads = 1
    c.data.prefetch = 2
    c.eval.update(num_latents=4, num_videos=1, frames_per_video=3, batch_size=4)
    c.eval.photos = ""  # the real-photo evaluation (MediaPipe crops) runs in test_train.test_one_step_smoke only
    return c


def tiny_data_dir(tmp_path_factory) -> pathlib.Path:
    """Preprocessing output of ``tiny_config()`` (pseudo-labels, videos, test set), built once."""
    root = tmp_path_factory.getbasetemp() / "tiny_facelift_data"
    done = root / "done"
    if not done.exists():
        from facelift_jax import preprocess
        from facelift_jax.evaluation.datasets import synthetic as testset

        shutil.rmtree(root, ignore_errors=True)
        preprocess.run_preprocess(tiny_config(), root)
        testset.load_or_build(tiny_config(), root)
        done.touch()
    return root


def tiny_workdir(tmp_path, data_dir) -> pathlib.Path:
    """A fresh workdir whose data/ is a copy of the shared tiny dataset (runs may write into it)."""
    workdir = tmp_path / "run"
    shutil.copytree(data_dir, workdir / "data", ignore=shutil.ignore_patterns("done"))
    return workdir
