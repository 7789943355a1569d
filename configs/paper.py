"""The paper's setting (FaceLift, CVPR 2024, §4): IDE-3D + CelebV-HQ + FaRL ViT-B/16.

Run (needs the [bridges] extra, an IDE-3D checkout and checkpoint, the FaRL weights, a 98-point
torch detector and the CelebV-HQ clips; on the order of days on one GPU, as in the paper):

    python -m facelift_jax.train --config configs/paper.py --workdir runs/paper \
        --config.ide3d.repo=/path/to/IDE-3D --config.ide3d.checkpoint=/path/to/ide3d-ffhq-64-512.pkl \
        --config.pyfacer.weights=/path/to/face_alignment.farl.wflw.pt \
        --config.model.pretrained=/path/to/FaRL-Base-Patch16-LAIONFace20M-ep64.pth \
        --config.preprocess.video_dir=/path/to/celebvhq/35666

Settings from §4: the first 10K CelebV-HQ videos and the first 10K GAN seeds; 224² renders and
frame crops; batches of 4 multi-view + 4 multi-frame samples; Adam, learning rate 1e-5 decayed
×0.9 every 3 epochs, 225 epochs; cameras from C with acceptance exp(−((α/A)² + (β/B)² + (γ/Γ)²)),
A = 110°, B = 60°, Γ = 90°, landmark box inside the image and larger than half of it. An epoch is
one pass over the 10K latents (2,500 steps of 4), so 225 epochs are 562,500 steps.
"""

import ml_collections

from configs import default
from facelift_jax import camera

NUM_SAMPLES = 10_000
EPOCHS = 225
IDE3D_FOV_DEG, IDE3D_RAY_GRID = 18.0, 64  # ide3d-ffhq-64-512.pkl's ray field of view and grid width


def get_config() -> ml_collections.ConfigDict:
    c = default.get_config()
    c.image_size = 224
    c.generator = "ide3d"
    c.detector = "pyfacer"
    c.ide3d.truncation_psi = 0.7
    c.ide3d.fix_background = True  # §4: background density set to 1 in the near half of the frustum

    c.camera.azimuth_range = 110.0
    c.camera.elevation_range = 60.0
    c.camera.roll_range = 90.0
    c.camera.min_box_fraction = 0.5
    # IDE-3D renders from an 18° field of view on its 64-ray grid, not from the label's K: every camera
    # (and the model's, model.focal refers to it) gets that focal, 3.1076. IDE3DGenerator reads the
    # value from the checkpoint at load time; sources.generator_focal refuses a mismatch, naming
    # --config.camera.focal=<the generator's value>.
    c.camera.focal = camera.focal_from_fov(IDE3D_FOV_DEG, IDE3D_RAY_GRID)

    c.preprocess.num_latents = NUM_SAMPLES
    c.preprocess.first_latent = 0
    c.preprocess.num_videos = NUM_SAMPLES

    # FaRL ViT-B/16 encoder (CLIP VisualTransformer shape), 3-block landmark/pose decoder.
    c.model.encoder = "vit"
    # stem="patch": the FaRL/CLIP patch embedding the weights fit (stem_width is read by the conv stem only).
    c.model.vit = ml_collections.ConfigDict(dict(width=768, depth=12, heads=12, patch=16, mlp_ratio=4,
                                                 stem="patch", stem_width=768))
    c.model.decoder.update(dict(width=768, depth=3, heads=12, mlp_ratio=4))

    c.model.pretrained = ""  # path to FaRL-Base-Patch16-LAIONFace20M-ep64.pth (--config.model.pretrained=...)
    # Eq. (3) as written: every term weight 1 (default.py up-weights 3D/pose for its short CPU run).
    c.loss.update(w_landmarks3d=1.0, w_translation=1.0, w_lll_multiview=1.0, w_geodesic=1.0, w_multiframe=1.0)

    c.batch.multiview = 4
    c.batch.multiframe = 4
    steps_per_epoch = NUM_SAMPLES // c.batch.multiview
    c.optim.learning_rate = 1e-5
    c.optim.decay_rate = 0.9
    c.optim.decay_epochs = 3
    c.optim.steps_per_epoch = steps_per_epoch
    c.optim.clip_norm = 0.0
    c.optim.warmup_steps = 0
    c.train.num_steps = EPOCHS * steps_per_epoch
    c.train.log_every = 100
    c.train.eval_every = 10 * steps_per_epoch
    c.train.checkpoint_every = steps_per_epoch
    c.train.keep_checkpoints = 5
    c.data.num_threads = 8
    c.data.pool_size = 0  # IDE-3D renders on the fly from fresh cameras of C, as the paper
    c.data.prefetch = 8

    c.eval.num_latents = 1000
    c.eval.num_videos = 100
    return c
