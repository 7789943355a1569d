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
import dataclasses
import functools
import json
import logging
import pathlib
import sys
import warnings
from collections.abc import Sequence

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from facelift_jax import camera as camera_lib
from facelift_jax import checkpointing, config_check, logs, media
from facelift_jax.config import DEFAULT_CROP_SCALE, predict_config
from facelift_jax import io as fio
from facelift_jax import export as export_lib
from facelift_jax import landmarks as lm
from facelift_jax import workdir as workdir_lib
from facelift_jax.batching import next_power_of_two, pad_batch
from facelift_jax.evaluation.datasets.base import face_crop_box, whole_image_box

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class PredictionResult:
    """Host (numpy) predictions for B images; pixel frame of each input image (see module doc).

    landmarks3d (B, 98, 3) world; landmarks2d (B, 98, 2) pixels; covariances (B, 98, 2, 2)
    pixels²; rotation (B, 3, 3); translation (B, 3); euler_degrees (B, 3) yaw, pitch, roll;
    crop_boxes (B, 4) (x0, y0, x1, y1) pixels of the model input in the image.
    """

    landmarks3d: np.ndarray
    landmarks2d: np.ndarray
    covariances: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    euler_degrees: np.ndarray
    crop_boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.landmarks2d)

    def __getitem__(self, index) -> "PredictionResult":
        return PredictionResult(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @staticmethod
    def concatenate(results: Sequence["PredictionResult"]) -> "PredictionResult":
        return PredictionResult(**{f.name: np.concatenate([getattr(r, f.name) for r in results])
                                   for f in dataclasses.fields(PredictionResult)})


# ----------------------------------------------------------------------------------------------
# Cropping: square boxes, exact back-mapping
# ----------------------------------------------------------------------------------------------

def _integer_square(box) -> tuple[int, int, int]:
    box = np.asarray(box, np.float64)
    side = max(1, int(round(float(np.max(box[2:] - box[:2])))))
    c = (box[:2] + box[2:]) / 2
    x0, y0 = (int(round(v - side / 2)) for v in c)
    return x0, y0, side


def crop_square(image: np.ndarray, box, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut the square ``box`` out of ``image`` (zero padding outside) and resize it to size².

    Returns (crop (size, size, 3) uint8, used box (4,) = (x0, y0, x0+side, y0+side) on the integer
    pixel grid). A crop point p (normalized, [0, 1]²) is image point x0y0 + p·side.
    """
    h, w = image.shape[:2]
    x0, y0, side = _integer_square(box)
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0) if pad else image
    patch = src[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    crop = patch if side == size else cv2.resize(patch, (size, size), interpolation=interp)
    return np.ascontiguousarray(crop), np.array([x0, y0, x0 + side, y0 + side], np.float64)


def check_image(image, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB or a clear ValueError naming ``name``."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) RGB, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if min(image.shape[:2]) < 8:
        raise ValueError(f"{name} is too small: {image.shape[1]}×{image.shape[0]} pixels (at least 8×8 needed)")
    return image


# ----------------------------------------------------------------------------------------------
# The predictor
# ----------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=0)
def _jitted_forward(graphdef, state, images):
    # The architecture (graphdef) is static, the parameters are arguments: predictors of the same
    # architecture (e.g. a model and its reloaded export) share one compiled function per shape.
    return nnx.merge(graphdef, state)(images).outputs()


def compiled_forward_count() -> int:
    """How many (architecture, batch shape) versions of the shared forward pass are compiled."""
    return _jitted_forward._cache_size()


class Predictor:
    """A ready model: ``predictor(images (B, H, W, 3) uint8) → PredictionResult``.

    Images are fed whole (padded to a square, resized to the model size); ``predict_crops`` takes
    face crops of larger images. Batches are split into chunks of ``batch_size``, each padded to a
    power of two (≤ batch_size): the forward pass is one ``jax.jit`` compiled once per such size.
    """

    def __init__(self, model, *, image_size: int | None = None, batch_size: int = 16, metadata: dict | None = None):
        self._graphdef, self._state = nnx.split(model)
        self.focal = float(model.focal)  # the model camera's normalized focal (pose axes, 3D filter noise)
        self.metadata = dict(metadata or {})
        self.image_size = int(image_size or self.metadata.get("image_size") or 224)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    @classmethod
    def load(cls, directory, *, batch_size: int = 16) -> "Predictor":
        """Restore an export written by ``facelift_jax.export`` (params via Orbax + metadata)."""
        model, metadata = export_lib.load_model(directory)
        return cls(model, image_size=metadata["image_size"], batch_size=batch_size, metadata=metadata)

    @property
    def template(self) -> np.ndarray:
        return np.asarray(nnx.merge(self._graphdef, self._state).template[...])

    def bucket(self, n: int) -> int:
        """The padded chunk size for n images: the next power of two, at most ``batch_size``."""
        return min(self.batch_size, next_power_of_two(n))

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        # Padding to a few bucket sizes bounds both recompiles (log2(batch_size) + 1 shapes) and
        # wasted work (< 2×).
        n = len(batch)
        batch = pad_batch(np.asarray(batch), self.bucket(n))
        out = jax.device_get(_jitted_forward(self._graphdef, self._state, jnp.asarray(batch)))
        return {k: np.asarray(v)[:n] for k, v in out.items()}

    def predict_normalized(self, images) -> dict[str, np.ndarray]:
        """(B, S, S, 3) uint8 model inputs → raw outputs in normalized image coordinates."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1:3] != (self.image_size,) * 2:
            raise ValueError(f"images must be (B, {self.image_size}, {self.image_size}, 3), got {images.shape}")
        chunks = []
        for start in range(0, len(images), self.batch_size):
            chunks.append(self._run(images[start:start + self.batch_size]))
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def predict_crops(self, images: Sequence[np.ndarray], crop_boxes) -> PredictionResult:
        """Full images (each (H, W, 3) uint8) + square crop boxes (B, 4) → results in image pixels."""
        crop_boxes = np.asarray(crop_boxes, np.float64).reshape(-1, 4)
        if len(images) != len(crop_boxes):
            raise ValueError(f"{len(images)} images but {len(crop_boxes)} crop boxes")
        crops, used = [], []
        for i, (image, box) in enumerate(zip(images, crop_boxes)):
            crop, b = crop_square(check_image(image, f"image {i}"), box, self.image_size)
            crops.append(crop)
            used.append(b)
        used = np.stack(used) if used else np.zeros((0, 4))
        if not crops:
            raise ValueError("no image to predict")
        raw = self.predict_normalized(np.stack(crops))
        side = (used[:, 2] - used[:, 0])[:, None, None]
        return PredictionResult(
            landmarks3d=raw["landmarks3d"],
            landmarks2d=used[:, None, :2] + raw["landmarks2d"] * side,
            covariances=raw["covariances"] * side[..., None] ** 2,
            rotation=raw["rotation"], translation=raw["translation"], euler_degrees=raw["euler_degrees"],
            crop_boxes=used)

    def __call__(self, images) -> PredictionResult:
        """(B, H, W, 3) uint8 (or a list of such images) → PredictionResult in input pixels.

        Each image is fed whole (resized to the model size; non-square images are padded to a
        square first, so no aspect distortion).
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise ValueError(f"images must be a batch (B, H, W, 3); got one image {images.shape} (use images[None])")
        images = [check_image(im, f"image {i}") for i, im in enumerate(images)]
        boxes = np.stack([whole_image_box(*im.shape[:2]) for im in images])
        return self.predict_crops(images, boxes)


def load(directory, **kwargs) -> Predictor:
    """``Predictor.load(directory)``."""
    return Predictor.load(directory, **kwargs)


# ----------------------------------------------------------------------------------------------
# Face boxes
# ----------------------------------------------------------------------------------------------

class FaceCropper:
    """Square model-input boxes for images: MediaPipe face landmarks when available, else the image.

    ``mode``: "auto" (MediaPipe if importable, else whole image with a warning), "mediapipe"
    (required; errors if missing), "none" (whole image, no warning). ``max_faces``: at most this
    many faces per image, highest detector score first (0 = every face found).
    """

    def __init__(self, mode: str = "auto", crop_scale: float = DEFAULT_CROP_SCALE, max_faces: int = 0):
        if mode not in ("auto", "mediapipe", "none"):
            raise ValueError(f"detector mode must be auto, mediapipe or none, got {mode!r}")
        if int(max_faces) < 0:
            raise ValueError(f"max_faces must be >= 0 (0 = all), got {max_faces}")
        self.mode, self.crop_scale, self.max_faces = mode, float(crop_scale), int(max_faces)
        self.detector = None
        self.reason = "disabled (--detector none)"
        if mode != "none":
            try:
                from bridges.mediapipe import MediaPipeDetector  # optional [bridges] extra

                self.detector = MediaPipeDetector(max_faces=self.max_faces or None)
            except (ImportError, OSError) as e:  # the optional runtime or its model files are missing
                if mode == "mediapipe":
                    raise RuntimeError(f"the MediaPipe face detector is not available: {e}") from e
                self.reason = f"bridges.mediapipe unavailable ({type(e).__name__}: {e})"
                warnings.warn(
                    f"no face detector: {self.reason}. Feeding the whole image (padded to a square); results are "
                    "only meaningful when the face fills the frame like the training renders.", stacklevel=2)

    def faces(self, image: np.ndarray) -> list[dict]:
        """Every face of an image, highest detector score first: [{"crop_box" (4,), "source"
        ("mediapipe" or "whole-image"), "score", "detector_box" (4,) or None}]. Without a detector,
        or when it finds no face, one entry: the whole image."""
        if self.detector is not None:
            found = self.detector.detect(image)
            if found:
                return [{"crop_box": face_crop_box(f["landmarks98"], self.crop_scale), "source": "mediapipe",
                         "score": float(f["score"]), "detector_box": np.asarray(f["box"], np.float64)}
                        for f in found]
            log.warning("no face found by MediaPipe; using the whole image")
        return [{"crop_box": whole_image_box(*image.shape[:2]), "source": "whole-image", "score": None,
                 "detector_box": None}]

    def box(self, image: np.ndarray, previous: np.ndarray | None = None) -> tuple[np.ndarray, str]:
        """(square crop box (4,), source) of the best face: source "mediapipe", "previous" (no face
        found in this video frame: the last frame's box is kept) or "whole-image"."""
        if self.detector is not None:
            faces = self.detector.detect(image)
            if faces:
                return face_crop_box(faces[0]["landmarks98"], self.crop_scale), "mediapipe"
            if previous is not None:
                return previous, "previous"
            log.warning("no face found by MediaPipe; using the whole image")
        return whole_image_box(*image.shape[:2]), "whole-image"


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------

_REGION_COLOURS = {  # RGB
    "contours": (255, 200, 0), "brows": (255, 90, 60), "nose": (80, 220, 80),
    "eyes": (60, 170, 255), "mouth": (255, 80, 200), "pupils": (255, 255, 255),
}


def project_points(points3d, rotation, translation, crop_box, focal: float = camera_lib.FOCAL) -> np.ndarray:
    """World points (P, 3) seen by the predicted camera → (P, 2) pixels of the full image."""
    p = np.asarray(points3d) @ np.asarray(rotation).T + np.asarray(translation)
    uv = focal * p[:, :2] / p[:, 2:3] + camera_lib.PRINCIPAL
    side = crop_box[2] - crop_box[0]
    return crop_box[:2] + uv * side


def draw_overlay(image: np.ndarray, result: PredictionResult, index: int = 0, *, label: str | None = None,
                 colour_override=None, focal: float = camera_lib.FOCAL, text_at_box: bool = False) -> np.ndarray:
    """RGB copy of ``image`` with the 98 landmarks (per-region colours), 1σ ellipses, the crop box,
    head-pose axes at the landmark centroid (x red, y green, z blue; projected with the model's
    ``focal``) and yaw/pitch/roll text (top left, or above the crop box with ``text_at_box``: one
    text per face when several are drawn)."""
    out = image.copy()
    h, w = out.shape[:2]
    scale = max(1, round(max(h, w) / 400))
    r = result[index]
    pts = r.landmarks2d
    for region, idx in lm.REGIONS_98.items():
        colour = colour_override or _REGION_COLOURS[region]
        for i in idx:
            evals, evecs = np.linalg.eigh(r.covariances[i])
            axes = np.sqrt(np.maximum(evals, 0))
            if np.all(axes > 1.5) and np.all(axes < max(h, w)):
                angle = float(np.degrees(np.arctan2(evecs[1, 1], evecs[0, 1])))
                cv2.ellipse(out, (int(pts[i, 0]), int(pts[i, 1])), (int(axes[1]), int(axes[0])), angle, 0, 360,
                            colour, 1, cv2.LINE_AA)
            cv2.circle(out, (int(round(pts[i, 0])), int(round(pts[i, 1]))), scale + 1, colour, -1, cv2.LINE_AA)
    b = r.crop_boxes.astype(int)
    cv2.rectangle(out, (b[0], b[1]), (b[2], b[3]), (200, 200, 200), 1)
    centre = r.landmarks3d.mean(0)
    length = 0.6 * float(np.max(np.ptp(r.landmarks3d, axis=0)))
    ends = project_points(np.stack([centre, *(centre + length * np.eye(3))]), r.rotation, r.translation,
                          r.crop_boxes, focal)
    if np.all(np.isfinite(ends)):
        for k, colour in enumerate(((255, 0, 0), (0, 255, 0), (0, 0, 255))):
            cv2.arrowedLine(out, tuple(int(v) for v in ends[0]), tuple(int(v) for v in ends[k + 1]), colour,
                            scale + 1, cv2.LINE_AA, tipLength=0.15)
    text = "yaw %.0f pitch %.0f roll %.0f" % tuple(r.euler_degrees)
    if label:
        text = f"{label}  {text}"
    corner = (max(5, int(b[0])), max(15 * scale, int(b[1]) - 4 * scale)) if text_at_box else (5, 15 * scale)
    if max(h, w) >= 160:  # text on tiny frames would hide the face
        cv2.putText(out, text, corner, cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale, (255, 255, 255), scale,
                    cv2.LINE_AA)
    return out


def _write_rgb(path: pathlib.Path, image: np.ndarray) -> None:
    ok, encoded = cv2.imencode(pathlib.Path(path).suffix or ".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    fio.atomic_write(path, encoded.tobytes())


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------

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


def _video_filter_observation(result: "PredictionResult", valid: np.ndarray, focal: float):
    """The temporal filter's measurements of a batch of frames: the model's covariances as the 2D
    noise, their lift to 3D at the crop's scale (temporal.lift_variance_3d)."""
    from facelift_jax import temporal

    side = result.crop_boxes[:, 2] - result.crop_boxes[:, 0]
    var3 = temporal.lift_variance_3d(result.covariances, result.landmarks3d, result.rotation, result.translation,
                                     side, focal)
    return temporal.observation(result.landmarks2d, result.covariances, result.landmarks3d, result.rotation,
                                result.translation, variance3d=var3, valid=valid)


def _track_box(cropper: "FaceCropper", frame: np.ndarray, roi) -> tuple[np.ndarray | None, object]:
    """MediaPipe's tracking: the face mesh on the previous frame's crop ``roi`` (no detection).
    Returns (square crop box, new roi), or (None, None) when there is no roi or the face is lost."""
    det = cropper.detector
    if det is None or roi is None or not hasattr(det, "landmarks_from_roi"):
        return None, None
    points, presence, roi = det.landmarks_from_roi(frame, roi)
    if presence < det.min_presence:
        return None, None
    pts = np.asarray(det.landmarks98(frame, points), np.float64)
    return face_crop_box(pts, cropper.crop_scale), roi


def predict_video(predictor: Predictor, cropper: FaceCropper, path: pathlib.Path, out_dir: pathlib.Path,
                  progress: bool = True, filter: str = "kalman") -> dict:
    """Predict every frame of a video, tracking the face and filtering over time.

    Face boxes: MediaPipe's tracking (the mesh on the previous frame's crop) while the face is
    held, detection otherwise, the previous box when nothing is found. ``filter``: "kalman" (the
    model's covariances as measurement noise), "one_euro" or "none" (facelift_jax.temporal, its
    default parameters at the video's frame rate); frames where the detector found no face are
    predicted, not measured. The overlay shows the filtered points; ``<stem>.npz`` holds the raw
    arrays under their usual names and the filtered ones as ``filtered_<name>`` plus ``filter``;
    the JSON says which filter ran with which parameters.
    """
    from facelift_jax import rotation as rotation_lib
    from facelift_jax import temporal

    total, fps = media.video_properties(path)
    config = temporal.FilterConfig(kind=filter, fps=fps)
    state = temporal.init(98)
    writer, results, filtered, sources = None, [], [], []
    roi = None
    overlay_path = out_dir / f"{path.stem}_overlay.mp4"
    # the overlay is written under a temporary name and renamed when complete: a run cut short
    # (a full disk, Ctrl-C) leaves no half video to be taken for a finished one
    with fio.atomic_path(overlay_path) as overlay_tmp:
        bar = tqdm(total=total or None, desc=path.name, unit="frame", leave=False, disable=not progress)
        try:
            for frames in media.iter_video(path, predictor.batch_size):
                boxes = []
                for f in frames:
                    b, roi = _track_box(cropper, f, roi)
                    s = "tracked"
                    if b is None and hasattr(cropper.detector, "landmarks_from_roi"):
                        faces = cropper.detector.detect(f)
                        if faces:  # the detection's crop starts the tracking
                            b = face_crop_box(faces[0]["landmarks98"], cropper.crop_scale)
                            s, roi = "mediapipe", faces[0].get("roi")
                        else:
                            last = boxes[-1] if boxes else (results[-1].crop_boxes[-1] if results else None)
                            held = last is not None and sources[-1] != "whole-image"
                            b, s = (last, "previous") if held else (whole_image_box(*f.shape[:2]), "whole-image")
                    elif b is None:
                        last = boxes[-1] if boxes else (results[-1].crop_boxes[-1] if results else None)
                        b, s = cropper.box(f, previous=last if sources and sources[-1] != "whole-image" else None)
                    boxes.append(b)
                    sources.append(s)
                result = predictor.predict_crops(frames, np.stack(boxes))
                results.append(result)
                # a frame without a found face (the whole image or the previous box while a detector runs)
                # is not a measurement
                valid = np.array([not (cropper.detector is not None and s in ("whole-image", "previous"))
                                  for s in sources[-len(frames):]])
                state, out = temporal.run(config, state, _video_filter_observation(result, valid, predictor.focal))
                out = {k: np.asarray(v) for k, v in out.items()}
                smooth = dataclasses.replace(result, **out, euler_degrees=np.asarray(rotation_lib.euler_degrees(
                    out["rotation"])))
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
               "filter": config.describe(),
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
        max_faces: int = 0) -> tuple[list[dict], list[tuple[str, str]]]:
    """Predict every input; returns (successful entries, [(input, one-line error)]), the latter also
    written to ``out_dir/failures.txt`` (removed when nothing failed). A full disk stops the run
    (``io.DiskFullError``: every later file would fail too); the outputs already written are complete."""
    predictor = Predictor.load(model_dir, batch_size=batch_size)
    cropper = FaceCropper(detector, crop_scale, max_faces)
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
    with logs.user_input():
        argv, assignments = workdir_lib.split_overrides(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    with logs.session("predict", args.verbosity) as session:
        with logs.user_input("--config", args.config):
            config = workdir_lib.load_config(args.config) if args.config else workdir_lib.default_config()
        with logs.user_input():
            workdir_lib.override(config, assignments)
        if "predict" not in config:  # a config (a workdir's config.json) from before the section existed
            config.predict = predict_config()
        for key, value in predict_config().items():  # ... or before one of its fields did
            if key not in config.predict:
                with config.predict.unlocked():
                    config.predict[key] = value
        flags = {"crop_scale": "--crop-scale", "batch_size": "--batch-size", "detector": "--detector",
                 "max_faces": "--max-faces"}
        for key, flag in flags.items():
            if getattr(args, key) is not None:
                config.predict[key] = getattr(args, key)
        try:
            config_check.check(config, "predict")
        except config_check.ConfigError as e:  # name the flag the user typed, not the field it sets
            key = e.field.removeprefix("predict.")
            if key in flags and getattr(args, key) is not None:
                raise config_check.input_error(flags[key], e.value, e.need) from e
            raise
        model = pathlib.Path(args.model)
        if not (model / checkpointing.EXPORT_METADATA).is_file():
            raise config_check.input_error("--model", args.model, "not an export (no metadata.json); make one with "
                                           "python -m facelift_jax.export --checkpoint WORKDIR --out DIR")
        session.log_to(args.out)
        pc = config.predict
        done, failed = run(args.inputs, model, args.out, detector=pc.detector, crop_scale=float(pc.crop_scale),
                           batch_size=int(pc.batch_size), progress=not args.no_progress, filter=args.filter,
                           max_faces=int(pc.max_faces))
    print(f"{len(done)} input(s) done, {len(failed)} failed; outputs in {args.out}")
    for path, msg in failed:
        print(f"  failed: {path}: {msg}", file=sys.stderr)
    return min(len(failed), 125)


if __name__ == "__main__":
    sys.exit(main())
