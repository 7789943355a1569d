"""Inference with an exported FaceLift model: API (``Predictor``) and CLI for images and videos.

    python -m facelift_jax.predict INPUT... --model EXPORT_DIR --out OUT_DIR

INPUT: image files (png, jpg, ...), video files (mp4, avi, mov, mkv, ...) or folders of them,
read by ``facelift_jax.media`` (the project's one policy: grayscale, 16-bit, alpha and CMYK images
are converted to 8-bit RGB, EXIF orientation applied). Per image ``<stem>.json`` + ``<stem>.npz`` +
``<stem>_overlay.png``; per video ``<stem>.json`` (summary) + ``<stem>.npz`` (per-frame arrays) +
``<stem>_overlay.mp4``. A file that fails (missing, empty, truncated, not an image or video, an
unsupported pixel format, smaller than 8×8 or above ``media.MAX_IMAGE_PIXELS``, a video without a
frame, an unwritable output) gets a one-line error on the console and in ``failures.txt`` in the
output directory (``<input>: <reason>`` per line; absent when all succeed) and is skipped; any
other error stops the run. The exit status is the number of failed inputs (capped at 125).

Face crop: the model was trained on renders framed like EG3D's (face centred, landmark box
≈ 55–75 % of the side). A face box comes from the MediaPipe bridge (``bridges.mediapipe``, needs
the optional ``[bridges]`` extra) when it is importable; the model input is the square of side
``crop_scale`` × the box's longer side about its centre. Without a detector, or when it finds no
face, the whole image (padded to a square) is used and a warning says so.

Frames: ``landmarks2d`` and ``covariances`` are in pixels of the INPUT image (origin at its
top-left corner, x right, y down); ``landmarks3d`` is world (GAN canonical) space; ``rotation``,
``translation`` are the world→camera pose of the virtual camera that sees the model input crop
(fixed normalized intrinsics K of facelift_jax.camera); ``euler_degrees`` = (yaw, pitch, roll) of
that rotation (rotation.euler_degrees).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

from facelift_jax import checkpointing, config_check, logs
from facelift_jax.cli import common
from facelift_jax.config import DEFAULT_CROP_SCALE, predict_config
# The library lives in facelift_jax.inference; its names stay importable from here.
from facelift_jax.inference.crops import FaceCropper, crop_square, face_crop_box, project_points, whole_image_box
from facelift_jax.inference.files import expand_inputs, predict_image, predict_video, run
from facelift_jax.inference.overlays import draw_overlay
from facelift_jax.inference.predictor import PredictionResult, Predictor, check_image, compiled_forward_count, load

__all__ = ["FaceCropper", "PredictionResult", "Predictor", "check_image", "compiled_forward_count", "crop_square",
           "draw_overlay", "expand_inputs", "face_crop_box", "load", "main", "predict_image", "predict_video",
           "project_points", "run", "whole_image_box"]


# Config fields that a flag of this command sets (the flag wins over the config and --config.x=v).
FLAGS = {f"predict.{key}": "--" + key.replace("_", "-") for key in ("crop_scale", "batch_size", "detector", "max_faces")}


def _fill_predict_section(config) -> None:
    """Give a config from before the predict section (or one of its fields) existed the defaults."""
    if "predict" not in config:
        config.predict = predict_config()
    for key, value in predict_config().items():
        if key not in config.predict:
            with config.predict.unlocked():
                config.predict[key] = value


@logs.main_guard
def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facelift_jax.predict", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image/video files or folders")
    p.add_argument("--model", required=True, help="export directory (python -m facelift_jax.export)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--detector", default=None, choices=("auto", "mediapipe", "none"),
                   help="face box source (default: config.predict.detector, 'auto': MediaPipe bridge when "
                        "available, else the whole image)")
    p.add_argument("--crop-scale", type=float, default=None,
                   help=f"model input side / face landmark box side (default: config.predict.crop_scale, "
                        f"{DEFAULT_CROP_SCALE:.3f})")
    p.add_argument("--batch-size", type=int, default=None, help="default: config.predict.batch_size (16)")
    p.add_argument("--max-faces", type=int, default=None,
                   help="images: at most this many faces each, highest detector score first (default: "
                        "config.predict.max_faces, 0 = every face found); videos follow one face")
    p.add_argument("--config", default=None, help="config .py[:arg]/.json whose predict section is used (default: "
                   "facelift_jax.config); --config.predict.x=v overrides a field. The model comes from --model.")
    p.add_argument("--filter", default="kalman", choices=("kalman", "one_euro", "none"),
                   help="videos: temporal filter of the landmarks and pose (default %(default)s: the model's "
                        "covariances as measurement noise; see facelift_jax.temporal)")
    p.add_argument("--no-progress", action="store_true")
    logs.add_verbosity(p)
    args, assignments = common.parse(p, argv)
    with logs.session("predict", args.verbosity) as session:
        config = common.resolve_config(args.config, assignments)
        _fill_predict_section(config)
        common.set_from_flags(config, args, FLAGS)
        common.check(config, "predict", args, FLAGS)
        model = pathlib.Path(args.model)
        if not (model / checkpointing.EXPORT_METADATA).is_file():
            raise config_check.input_error("--model", args.model, "not an export (no metadata.json); make one with "
                                           "python -m facelift_jax.export --checkpoint WORKDIR --out DIR")
        session.log_to(args.out)
        pc = config.predict
        done, failed = run(args.inputs, model, args.out, detector=pc.detector, crop_scale=float(pc.crop_scale),
                           batch_size=int(pc.batch_size), progress=not args.no_progress, filter=args.filter,
                           max_faces=int(pc.max_faces), detector_options=config.get("mediapipe"))
    print(f"{len(done)} input(s) done, {len(failed)} failed; outputs in {args.out}")
    for path, msg in failed:
        print(f"  failed: {path}: {msg}", file=sys.stderr)
    return min(len(failed), 125)


if __name__ == "__main__":
    sys.exit(main())
