"""Every random stream derived from one seed, in one table, so that no two of them collide.

JAX streams are ``jax.random.fold_in(jax.random.key(config.seed), STREAM)``; Grain streams are
``config.seed + STREAM``; the synthetic videos' faces are a population of the generator's
``base_seed + VIDEO_POPULATION``. ``tests/test_architecture.py`` checks that the values are distinct.
"""

# Preprocessing (preprocess.py): detections of the lifting views; the preview figures.
PREPROCESS_DETECTIONS = 4
PREPROCESS_PREVIEW = 5

# Training input pipeline (input_pipeline/pipeline.py): multi-view shuffle and render, multi-frame shuffle;
# each host adds PROCESS_STRIDE × process_index to the render stream.
MULTIVIEW_SHUFFLE = 101
MULTIVIEW_RENDER = 202
MULTIFRAME_SHUFFLE = 303
PROCESS_STRIDE = 7919

# The rendered training pool's cameras (input_pipeline/pool.py).
POOL_CAMERAS = 505

# The held-out synthetic set (evaluation/datasets/synthetic.py): cameras and detector noise.
TEST_CAMERAS = 7_000_003
TEST_DETECTOR = 7_000_004

# Synthetic videos (synthetic/video.py): added to the generator's base_seed, so video faces are a
# population apart from the GAN latents.
VIDEO_POPULATION = 7919
