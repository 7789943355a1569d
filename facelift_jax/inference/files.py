"""Per-file prediction: an image's faces, a video's tracked and filtered face, a batch of inputs
with their failures listed (the outputs and frames are described in ``facelift_jax.predict``)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from facelift_jax import io as fio
from facelift_jax import media
from facelift_jax.config import DEFAULT_CROP_SCALE
from facelift_jax.inference.crops import FaceCropper, face_crop_box, whole_image_box
from facelift_jax.inference.overlays import draw_overlay
from facelift_jax.inference.predictor import PredictionResult, Predictor, check_image
from facelift_jax.inference.tracking import ClipFilter, FaceTracker

__all__ = ["expand_inputs", "predict_image", "predict_video", "run"]


def _write_rgb(path: pathlib.Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(pathlib.Path(path).suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    fio.atomic_write(path, encoded.tobytes())


def _rounded(x, decimals: int) -> list:
    # float64 first: rounding float32 values leaves digits like 0.12700000405 in the JSON
    return np.round(np.asarray(x, np.float64), decimals).tolist()


def _json_entry(r: PredictionResult, index: int) -> dict:
    one = r[index]
    return {
        "landmarks2d": _rounded(one.landmarks2d, 3),
        "landmarks3d": _rounded(one.landmarks3d, 5),
        "covariances": _rounded(one.covariances, 4),
        "rotation": _rounded(one.rotation, 6),
        "translation": _rounded(one.translation, 6),
        "yaw_pitch_roll_degrees": _rounded(one.euler_degrees, 3),
        "crop_box": _rounded(one.crop_boxes, 2),
    }


def predict_image(predictor: Predictor, cropper: FaceCropper, path: pathlib.Path, out_dir: pathlib.Path) -> dict:
    """Every face of one image (``cropper.faces``) in one batch: ``<stem>.json`` lists them (best
    detector score first), ``<stem>.npz`` holds the arrays with a leading face axis, the overlay
    draws them all (numbered as in the list)."""
    image = check_image(media.read_image(path), "the image")
    faces = cropper.faces(image)
    result = predictor.predict_crops([image] * len(faces), np.stack([f["crop_box"] for f in faces]))
    entry = {"input": str(path), "kind": "image", "width": image.shape[1], "height": image.shape[0],
             "num_faces": len(faces),
             "faces": [{"face": k, "face_source": f["source"],
                        "detector_score": None if f["score"] is None else round(f["score"], 4),
                        **_json_entry(result, k)} for k, f in enumerate(faces)]}
    overlay = image
    for k in range(len(faces)):
        overlay = draw_overlay(overlay, result, k, label=f"face {k}" if len(faces) > 1 else None,
                               focal=predictor.focal, text_at_box=len(faces) > 1)
    fio.atomic_write(out_dir / f"{path.stem}.json", json.dumps(entry, indent=1))
    fio.atomic_write(out_dir / f"{path.stem}.npz", lambda f: np.savez(f, **result.arrays()))
    _write_rgb(out_dir / f"{path.stem}_overlay.png", overlay)
    return entry


def _video_box(tracker: FaceTracker | None, frame: np.ndarray, crop_scale: float,
               held: np.ndarray | None) -> tuple[np.ndarray, str]:
    """(square crop box (4,), source) of one video frame: "tracked" / "mediapipe" (the tracker's
    "detected") about the followed face's landmarks; when it is lost, ``held`` (the last found
    face's box) as "previous", or the whole image when nothing is held or there is no detector."""
    if tracker is not None:
        step = tracker.step(frame)
        if step.landmarks98 is not None:
            return face_crop_box(step.landmarks98, crop_scale), "tracked" if step.source == "tracked" else "mediapipe"
        if held is not None:
            return held, "previous"
    return whole_image_box(*frame.shape[:2]), "whole-image"


def predict_video(predictor: Predictor, cropper: FaceCropper, path: pathlib.Path, out_dir: pathlib.Path,
                  progress: bool = True, filter: str = "kalman") -> dict:
    """Predict every frame of a video, following one face and filtering over time.

    Face boxes: ``tracking.FaceTracker`` on ``cropper.detector`` (tracked from the previous crop
    while the face is held, else the largest face detected; JSON sources "tracked" and
    "mediapipe"), the previous box when nothing is found ("previous"), the whole image without a
    detector or before any face was found ("whole-image"). ``filter``: "kalman" (the model's
    covariances as measurement noise), "one_euro" or "none" (``tracking.ClipFilter``: temporal's
    default parameters at the video's frame rate); frames where the detector found no face are
    predicted, not measured. The overlay shows the filtered points; ``<stem>.npz`` holds the raw
    arrays under their usual names and the filtered ones as ``filtered_<name>`` plus ``filter``;
    the JSON says which filter ran with which parameters.
    """
    total, fps = media.video_properties(path)
    smoother = ClipFilter(filter, fps, predictor.focal)
    tracker = FaceTracker(cropper.detector) if cropper.detector is not None else None
    writer, results, filtered, sources = None, [], [], []
    held = None  # the last found face's crop box, kept for frames where the face is lost
    overlay_path = out_dir / f"{path.stem}_overlay.mp4"
    # the overlay is written under a temporary name and renamed when complete: a run cut short
    # (a full disk, Ctrl-C) leaves no half video to be taken for a finished one
    with fio.atomic_path(overlay_path) as overlay_tmp:
        bar = tqdm(total=total or None, desc=path.name, unit="frame", leave=False, disable=not progress)
        try:
            for frames in media.iter_video(path, predictor.batch_size):
                boxes, batch_sources = [], []
                for f in frames:
                    b, s = _video_box(tracker, f, cropper.crop_scale, held)
                    held = b if s != "whole-image" else None
                    boxes.append(b)
                    batch_sources.append(s)
                sources += batch_sources
                result = predictor.predict_crops(frames, np.stack(boxes))
                results.append(result)
                # a frame without a found face (the whole image or the previous box while a detector runs)
                # is not a measurement
                valid = np.array([tracker is None or s in ("tracked", "mediapipe") for s in batch_sources])
                smooth = dataclasses.replace(result, **smoother.update(result, valid))
                filtered.append(smooth)
                if writer is None:
                    h, w = frames[0].shape[:2]
                    writer = cv2.VideoWriter(str(overlay_tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise OSError(f"could not open {overlay_path} for writing")
                for i, f in enumerate(frames):
                    label = f"frame {len(sources) - len(frames) + i} {filter}"
                    writer.write(cv2.cvtColor(draw_overlay(f, smooth, i, label=label, focal=predictor.focal), cv2.COLOR_RGB2BGR))
                bar.update(len(frames))
        finally:
            bar.close()
            if writer is not None:
                writer.release()
    result = PredictionResult.concatenate(results)
    smooth = PredictionResult.concatenate(filtered)
    arrays = {**result.arrays(), **{f"filtered_{k}": v for k, v in smooth.arrays().items() if k != "crop_boxes"},
              "filter": np.array(filter)}
    fio.atomic_write(out_dir / f"{path.stem}.npz", lambda f: np.savez(f, **arrays))
    summary = {"input": str(path), "kind": "video", "frames": len(result),
               "face_source": {s: sources.count(s) for s in sorted(set(sources))},
               "filter": smoother.config.describe(),
               "yaw_pitch_roll_degrees_mean": _rounded(result.euler_degrees.mean(0), 3),
               "filtered_yaw_pitch_roll_degrees_mean": _rounded(smooth.euler_degrees.mean(0), 3),
               "arrays": f"{path.stem}.npz", "overlay": overlay_path.name}
    fio.atomic_write(out_dir / f"{path.stem}.json", json.dumps(summary, indent=1))
    return summary


def expand_inputs(inputs: Sequence[str]) -> list[pathlib.Path]:
    """Files as given; folders → their image and video files (sorted). Missing paths stay (they fail later)."""
    out = []
    for s in inputs:
        p = pathlib.Path(s)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if media.is_image(q) or media.is_video(q))
        else:
            out.append(p)
    return out


def run(inputs: Sequence[str], model_dir, out_dir, *, detector: str = "auto", crop_scale: float = DEFAULT_CROP_SCALE,
        batch_size: int = 16, progress: bool = True, filter: str = "kalman",
        max_faces: int = 0, detector_options: Mapping | None = None) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predict every input; returns (successful entries, [(input, one-line error)]), the latter also
    written to ``out_dir/failures.txt`` (removed when nothing failed). A full disk stops the run
    (``io.DiskFullError``: every later file would fail too); the outputs already written are complete.
    ``detector_options``: the MediaPipe detector's settings (``config.mediapipe``; see FaceCropper)."""
    predictor = Predictor.load(model_dir, batch_size=batch_size)
    cropper = FaceCropper(detector, crop_scale, max_faces, detector_options)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done, failed = [], []
    paths = expand_inputs(inputs)
    if not paths:
        raise ValueError(f"no input files found in {list(inputs)}")
    for path in tqdm(paths, desc="predict", unit="file", disable=not progress):
        try:
            if not path.is_file():
                raise FileNotFoundError("no such file")
            if media.is_video(path):
                done.append(predict_video(predictor, cropper, path, out_dir, progress, filter=filter))
            else:
                done.append(predict_image(predictor, cropper, path, out_dir))
        except fio.DiskFullError:
            raise
        except (ValueError, OSError) as e:  # a bad or unwritable file must not stop the others; a bug does
            msg = " ".join((e.reason if isinstance(e, media.MediaError) else str(e)).split())  # one line
            failed.append((str(path), msg))
            tqdm.write(f"error: {path}: {msg}", file=sys.stderr)
    failures = out_dir / "failures.txt"
    failures.unlink(missing_ok=True)  # a stale list from an earlier run would blame files that now succeed
    if failed:
        fio.atomic_write(failures, "".join(f"{path}: {msg}\n" for path, msg in failed))
    return done, failed
