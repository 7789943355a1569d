"""Video labels and the command line: ``python -m bridges.mediapipe INPUT... --out DIR``."""

from __future__ import annotations

import pathlib
from typing import Sequence

import cv2
import numpy as np

from bridges.mediapipe.drawing import draw_faces
from bridges.mediapipe.landmarker import DETECTORS, MediaPipeDetector
from bridges.mediapipe.source import MediaPipeSource
from facelift_jax import media


def label_video(path: str | pathlib.Path, out: str | pathlib.Path | None = None,
                source: MediaPipeSource | None = None, track: bool = True, filter: str = "kalman") -> pathlib.Path:
    """2D pseudo-labels of a user's video for the multi-frame branch.

    Writes ``out`` (default: ``<video stem>.npz`` beside the video) with ``landmarks2d (T, 98, 2)``
    normalized image coordinates and ``confidence (T, 98)`` — the keys of the synthetic clips'
    label files — plus ``image_size (2,) = (W, H)`` and ``fps``. Returns the npz path.

    ``filter`` ("kalman", "one_euro", "none"; facelift_jax.temporal) smooths the landmarks over
    time: ``landmarks2d`` is filtered, ``landmarks2d_raw`` the per-frame mesh, ``filter`` its name.
    MediaPipe predicts no covariance, so the Kalman filter's measurement noise is a fixed isotropic
    σ = ``MEDIAPIPE_SIGMA`` face sizes per landmark (an assumed value, not measured on MediaPipe);
    frames without a face are predicted, not measured, and keep landmarks 0.
    """
    path = pathlib.Path(path)
    out = pathlib.Path(out) if out is not None else path.with_suffix(".npz")
    frames, (_, fps) = media.read_video(path), media.video_properties(path)
    source = source or MediaPipeSource()
    run = source.track if track else source.detect
    landmarks, confidence = run(frames, return_confidence=True, progress=True)
    h, w = frames.shape[1:3]
    from facelift_jax import temporal

    found = confidence[:, 0] > 0
    config = temporal.FilterConfig(kind=filter, fps=fps)
    smooth = temporal.filter_clip(config, temporal.observation(landmarks * (w, h), valid=found,
                                                               sigma2d=MEDIAPIPE_SIGMA))["landmarks2d"]
    smooth = np.where(found[:, None, None], np.asarray(smooth) / (w, h), 0.0).astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, landmarks2d=smooth, landmarks2d_raw=landmarks, confidence=confidence,
                        image_size=np.array([w, h]), fps=np.float32(fps), filter=np.array(filter))
    return out


MEDIAPIPE_SIGMA = 0.01  # face sizes: the isotropic measurement noise label_video's Kalman filter assumes


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bridges.mediapipe INPUT... --out DIR``: overlays for photos, labels for videos.

    Photos: ``DIR/<stem>_mediapipe.png`` (overlay) and ``DIR/<stem>_mediapipe.npz`` (per face
    ``boxes (F, 4)``, ``scores (F,)``, ``landmarks98 (F, 98, 2)``, ``landmarks468 (F, 468, 3)``,
    pixels). Videos: ``DIR/<stem>.npz`` (see :func:`label_video`) and ``DIR/<stem>_preview.png``.
    ``astronaut`` as INPUT runs on ``skimage.data.astronaut()``.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bridges.mediapipe", description=main.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image or video files (or 'astronaut')")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="output folder")
    parser.add_argument("--min-score", type=float, default=0.5)
    parser.add_argument("--detectors", choices=DETECTORS, default="all",
                        help="short: BlazeFace short range (close-up faces, fastest); full: full range on the "
                        "whole image; tiled: full range on tiles down to --min-face; all (default): short + tiled")
    parser.add_argument("--min-face", type=float, default=1 / 20,
                        help="smallest face searched for by the tiles, as a fraction of the image's short side")
    parser.add_argument("--numbers", action="store_true", help="write landmark indices on the overlay")
    parser.add_argument("--filter", default="kalman", choices=("kalman", "one_euro", "none"),
                        help="videos: temporal filter of the labels (see label_video)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    detector = MediaPipeDetector(min_score=args.min_score, detectors=args.detectors, min_face=args.min_face)
    for item in args.inputs:
        path = pathlib.Path(item)
        if media.is_video(path):
            npz = label_video(path, args.out / f"{path.stem}.npz", MediaPipeSource(detector), filter=args.filter)
            labels = np.load(npz)
            frames = media.read_video(path)
            picks = np.linspace(0, len(frames) - 1, min(4, len(frames))).astype(int)
            h, w = frames.shape[1:3]
            tiles = []
            for t in picks:
                face = dict(landmarks98=labels["landmarks2d"][t] * (w, h))
                tiles.append(draw_faces(frames[t], [face] if labels["confidence"][t, 0] > 0 else []))
            cv2.imwrite(str(args.out / f"{path.stem}_preview.png"), cv2.cvtColor(np.concatenate(tiles, 1), cv2.COLOR_RGB2BGR))
            found = int((labels["confidence"][:, 0] > 0).sum())
            print(f"{path}: face in {found}/{len(frames)} frames -> {npz}")
            continue
        if item == "astronaut" and not path.exists():
            from skimage import data

            image = data.astronaut()
        else:
            image = media.read_image(path)
        faces = detector.detect(image)
        overlay = draw_faces(image, faces, numbers=args.numbers)
        cv2.imwrite(str(args.out / f"{path.stem}_mediapipe.png"), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
        np.savez_compressed(args.out / f"{path.stem}_mediapipe.npz",
                            boxes=np.array([f["box"] for f in faces], np.float32).reshape(-1, 4),
                            scores=np.array([f["score"] for f in faces], np.float32),
                            landmarks98=np.array([f["landmarks98"] for f in faces], np.float32).reshape(-1, 98, 2),
                            landmarks468=np.array([f["landmarks468"] for f in faces], np.float32).reshape(-1, 468, 3))
        print(f"{path}: {len(faces)} face(s) -> {args.out / f'{path.stem}_mediapipe.png'}")
