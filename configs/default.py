"""Default config: the embedded synthetic source, a tiny ViT, train + eval on a 2-core CPU.

Run:     python -m facelift_jax.train --config configs/default.py --workdir runs/default
Runtime: (to be measured; target < 20 min on a 2-core CPU, preprocessing included)
Result:  (to be measured: held-out NMLC vs the template baseline)

Schema shared by every stage (preprocess, train, evaluate); other configs start from this one.
"""

import ml_collections

from facelift_jax import camera


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.image_size = 224  # model input and render size

    # Sources of faces. Names are resolved in facelift_jax/sources.py; "ide3d", "pyfacer",
    # "mediapipe" are reached through the top-level bridges package (torch / tflite).
    c.generator = "synthetic"
    c.detector = "synthetic"
    c.ide3d = ml_collections.ConfigDict(dict(checkpoint="", repo="", truncation_psi=0.7, fix_background=True))
    c.pyfacer = ml_collections.ConfigDict(dict(weights=""))

    c.camera = camera.default_camera_config()

    c.preprocess = ml_collections.ConfigDict(dict(
        num_latents=512,        # GAN latents lifted to 3D pseudo-labels (seeds first_latent ...)
        first_latent=0,
        chunk_size=128,         # latents rendered + detected + lifted per restartable chunk
        num_videos=16,          # synthetic training videos (multi-frame branch)
        frames_per_video=48,
        first_video=0,
        video_dir="",           # real videos (a folder of files) instead of synthetic ones, when set
    ))
    c.lifting = ml_collections.ConfigDict(dict(
        optimizer="gauss_newton",  # or "adam"
        steps=10,
        learning_rate=1.0,
        loss="huber",           # "huber", "laplacian" or "l2"
        huber_delta=0.01,       # normalized image units
        residual_threshold=0.02,  # RMS reprojection residual above which a point is invalid
        chunk_size=4096,        # latents per jitted call
    ))

    c.model = ml_collections.ConfigDict(dict(
        encoder="vit",          # "vit", "resnet50", "resnet152"
        vit=ml_collections.ConfigDict(dict(width=96, depth=4, heads=4, patch=16, image_size=224, mlp_ratio=4)),
        decoder=ml_collections.ConfigDict(dict(width=96, depth=3, heads=4, mlp_ratio=4)),
        dtype="float32",
    ))
    c.loss = ml_collections.ConfigDict(dict(
        w_landmarks3d=1.0, w_translation=1.0, w_lll_multiview=1.0, w_geodesic=1.0, w_multiframe=1.0,
        normal_threshold=0.0,   # multi-frame visibility: dot(rotated normal, toward camera) > threshold
    ))
    c.batch = ml_collections.ConfigDict(dict(multiview=4, multiframe=4))
    c.optim = ml_collections.ConfigDict(dict(
        learning_rate=3e-4, decay_rate=0.9, decay_epochs=3, steps_per_epoch=100, clip_norm=1.0))
    c.train = ml_collections.ConfigDict(dict(
        num_steps=1500, log_every=25, eval_every=500, checkpoint_every=250, keep_checkpoints=3))
    c.eval = ml_collections.ConfigDict(dict(
        num_latents=128, first_latent=1_000_000,  # held-out latents, never used in training
        num_videos=4, first_video=1_000_000, frames_per_video=16))
    return c
