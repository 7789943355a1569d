"""Contact sheet of the synthetic source: identities × views with true projections (green) and
simulated detections (red), a row of semantic maps, and a strip of a synthetic video clip."""

from __future__ import annotations

import pathlib

import cv2
import jax
import numpy as np
from tqdm import tqdm

from facelift_jax import camera as cam
from facelift_jax.media import read_video
from facelift_jax.synthetic.classes import SEMANTIC_CLASSES
from facelift_jax.synthetic.detector import SyntheticDetector
from facelift_jax.synthetic.generator import SyntheticGenerator
from facelift_jax.synthetic.video import labels_path, make_video

# (azimuth, elevation, roll) in degrees: the yaw range of C at level, then pitch and roll
SHEET_VIEWS = ((-110, 0, 0), (-75, 0, 0), (-40, 10, 0), (0, 0, 0), (40, -10, 0), (75, 0, 0), (110, 0, 0),
               (0, 45, 0), (0, -45, 0), (30, 20, 45))
TRUE_BGR, DETECTED_BGR = (60, 220, 60), (40, 40, 240)
SEMANTIC_BGR = np.array([[40, 40, 40], [150, 180, 230], [30, 60, 110], [250, 250, 250], [60, 140, 240],
                         [90, 60, 220], [30, 160, 200]], np.uint8)


def _overlay(image_rgb, true2d, detected2d, visible, scale: int):
    """Upscaled BGR tile with landmarks: true (green; hollow where self-occluded), detected (red)."""
    h, w = image_rgb.shape[:2]
    tile = cv2.resize(np.ascontiguousarray(image_rgb[..., ::-1]), (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
    to_px = np.array([w * scale, h * scale])
    for p, v in zip(true2d * to_px, visible):
        cv2.circle(tile, tuple(int(round(c)) for c in p), 2, TRUE_BGR, -1 if v else 1, cv2.LINE_AA)
    if detected2d is not None:
        for p in detected2d * to_px:
            cv2.circle(tile, tuple(int(round(c)) for c in p), 1, DETECTED_BGR, -1, cv2.LINE_AA)
    return tile


def _label(tile, text):
    cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(out_dir, identities: int = 4, image_size: int = 224, first_latent: int = 0, video_seed: int = 0,
                  video_frames: int = 48, scale: int = 1) -> pathlib.Path:
    """Write ``out_dir/synthetic_contact_sheet.png`` (and the clip it shows); returns the PNG path."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen, det = SyntheticGenerator(), SyntheticDetector()
    views = np.asarray(SHEET_VIEWS, np.float32)
    V = len(views)
    rows = []
    for i in tqdm(range(identities), desc="contact sheet: identities"):
        lat = np.full(V, first_latent + i)
        out = gen.render(lat, cam.camera_from_angles(views[:, 0], views[:, 1], views[:, 2]), image_size)
        d = det.detect(out, jax.random.key(first_latent + i))
        tiles = [_overlay(out.image[v], out.landmarks2d[v], d[v], out.visible[v], scale) for v in range(V)]
        if i == 0:
            for v, (a, e, r) in enumerate(views):
                _label(tiles[v], f"az {a:+.0f} el {e:+.0f} roll {r:+.0f}")
            sem = [cv2.resize(SEMANTIC_BGR[s], (image_size * scale,) * 2, interpolation=cv2.INTER_NEAREST)
                   for s in out.semantic]
            _label(sem[0], "semantic: " + " ".join(c[:4] for c in SEMANTIC_CLASSES[1:]))
            rows.append(np.concatenate(tiles, 1))
            rows.append(np.concatenate(sem, 1))
            continue
        rows.append(np.concatenate(tiles, 1))
    clip = make_video(video_seed, out_dir / "synthetic_clip.avi", frames=video_frames, image_size=image_size,
                      generator=gen, detector=det)
    frames = read_video(clip)  # the strip shows the decoded file, not the arrays that were written
    lab = np.load(labels_path(clip))
    pick = np.linspace(0, len(frames) - 1, V).round().astype(int)
    strip = [_overlay(frames[t], lab["true2d"][t], lab["landmarks2d"][t], lab["visible"][t], scale) for t in pick]
    for k, t in enumerate(pick):
        _label(strip[k], f"clip frame {t}")
    rows.append(np.concatenate(strip, 1))
    sheet = np.concatenate(rows, 0)
    legend = np.full((28, sheet.shape[1], 3), 255, np.uint8)
    cv2.putText(legend, "green: exact projection (hollow = self-occluded)   red: simulated human-style detection",
                (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    path = out_dir / "synthetic_contact_sheet.png"
    if not cv2.imwrite(str(path), np.concatenate([legend, sheet], 0)):
        raise RuntimeError(f"could not write {path}")
    return path
