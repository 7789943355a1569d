"""Any torch 98-point landmark network as a detector with the synthetic detector's interface.

``TorchLandmarkDetector(module).detect(images_or_render_output, key=None, boxes=None)`` crops each
face to the network's square input, runs the network, decodes heatmaps (soft-argmax) or takes its
coordinates, and maps the points back to the full image: (B, 98, 2) normalized image coordinates,
like ``SyntheticDetector.detect``. ``load_pyfacer_wflw(path)`` builds it for pyfacer's FaRL WFLW
detector (448² crop, face scale 0.8) from a local weights file.

Coordinates: pixel positions are continuous with the origin at the top-left image corner; pixel
(row i, column j) covers [j, j+1) × [i, i+1), so its centre is (j + ½, i + ½). Normalized image
coordinates are pixel positions divided by (width, height), as in ``facelift_jax.camera``.
A crop is a 3×3 matrix M (B, 3, 3) mapping image pixel positions to crop pixel positions
(p_crop ~ M·[p, 1]); ``crop_points`` / ``uncrop_points`` apply M and M⁻¹ and are exact inverses.
This is pyfacer's convention (facer/transform.py: warp grids built from pixel centres at +½,
``grid_sample(align_corners=False)``); its final ``denormalize_points`` shift of −½ to integer
pixel centres is not applied here, since normalized coordinates are what this package uses.

Crops: ``boxes`` (B, 4) pixel (x0, y0, x1, y1) give a square crop about the box centre with side
max(w, h) / face_scale (pyfacer's get_crop_and_resize_matrix); ``points5`` (B, 5, 2) pixel (eye
centres, nose tip, mouth corners, image-left first) give pyfacer's similarity alignment onto its
standard 5-point face scaled by face_scale, which is how its WFLW model was trained; neither means
the whole image, letterboxed to a square (for GAN renders, whose faces fill the frame).
"""

from __future__ import annotations

import io
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from bridges import dlpack

NUM_LANDMARKS = 98

# pyfacer's standard 5-point face in [-1, 1] (facer/transform.py _standard_face_pts): eye centres,
# nose tip, mouth corners, on a 512-pixel reference face.
STANDARD_FACE_5 = np.array([[196.0, 226.0], [316.0, 226.0], [256.0, 286.0], [220.0, 360.4], [292.0, 360.4]]) / 256.0 - 1.0


# --------------------------------------------------------------------------- crop geometry (numpy)


def box_crop_matrix(boxes, crop_size: int, face_scale: float) -> np.ndarray:
    """(B, 3, 3) crops: square about each box (B, 4) centre, side max(w, h) / face_scale → crop_size."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    if np.any(w <= 0) or np.any(h <= 0) or not np.all(np.isfinite(boxes)):
        raise ValueError(f"boxes must be finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {boxes.tolist()}")
    if face_scale <= 0:
        raise ValueError(f"face_scale must be positive, got {face_scale}")
    side = np.maximum(w, h) / face_scale
    s = crop_size / side
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    M = np.zeros((len(boxes), 3, 3))
    M[:, 0, 0] = M[:, 1, 1] = s
    M[:, 0, 2] = crop_size / 2 - s * cx
    M[:, 1, 2] = crop_size / 2 - s * cy
    M[:, 2, 2] = 1.0
    return M


def full_image_crop_matrix(height: int, width: int, crop_size: int, batch: int = 1) -> np.ndarray:
    """(batch, 3, 3) crops showing the whole image, centred and letterboxed to a square."""
    return box_crop_matrix(np.tile([[0.0, 0.0, width, height]], (batch, 1)), crop_size, 1.0)


def similarity_matrix(src, dst) -> np.ndarray:
    """(3, 3) least-squares similarity (rotation, uniform scale, translation) taking src → dst (N, 2).

    Closed form: with centred points, the complex ratio a + ib = Σ conj(s)·d / Σ|s|² (points as
    complex numbers x + iy) is the scaled rotation.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    denom = np.sum(s**2)
    if denom <= 0:
        raise ValueError("similarity_matrix: the source points coincide")
    a = np.sum(s * d) / denom
    b = np.sum(s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]) / denom
    R = np.array([[a, -b], [b, a]])
    M = np.eye(3)
    M[:2, :2] = R
    M[:2, 2] = md - R @ ms
    return M


def points5_crop_matrix(points5, crop_size: int, face_scale: float) -> np.ndarray:
    """(B, 3, 3) crops aligning five face points (B, 5, 2) to pyfacer's standard face at face_scale.

    The target points are (standard · face_scale + 1) · (crop_size − 1) / 2, as pyfacer computes
    them (facer/transform.py get_face_align_matrix).
    """
    points5 = np.asarray(points5, np.float64).reshape(-1, 5, 2)
    if not np.all(np.isfinite(points5)):
        raise ValueError("points5 must be finite")
    target = (STANDARD_FACE_5 * face_scale + 1.0) * (crop_size - 1) / 2.0
    return np.stack([similarity_matrix(p, target) for p in points5])


def crop_points(points, M) -> np.ndarray:
    """Image pixel positions (B, N, 2) → crop pixel positions (B, N, 2) under crops M (B, 3, 3)."""
    points, M = np.asarray(points, np.float64), np.asarray(M, np.float64)
    q = np.einsum("bij,bnj->bni", M[:, :2, :2], points) + M[:, None, :2, 2]
    return q


def uncrop_points(points, M) -> np.ndarray:
    """Crop pixel positions (B, N, 2) → image pixel positions (B, N, 2): the inverse of crop_points."""
    return crop_points(points, np.linalg.inv(np.asarray(M, np.float64)))


# --------------------------------------------------------------------------- torch steps


def warp_crops(images: torch.Tensor, M: np.ndarray, crop_size: int) -> torch.Tensor:
    """Bilinear crops (B, C, S, S) of images (B, C, H, W): crop pixel centre c samples image M⁻¹·c.

    Outside the image reads as zero (pyfacer's grid_sample with zero padding).
    """
    B, _, H, W = images.shape
    centres = np.arange(crop_size) + 0.5
    grid = np.stack(np.meshgrid(centres, centres, indexing="xy"), -1).reshape(1, -1, 2)
    src = uncrop_points(np.broadcast_to(grid, (B,) + grid.shape[1:]), M)  # image pixel positions
    norm = src / np.array([W, H]) * 2.0 - 1.0  # align_corners=False: ±1 are the outer pixel edges
    grid_t = torch.as_tensor(norm.reshape(B, crop_size, crop_size, 2), dtype=images.dtype, device=images.device)
    return F.grid_sample(images, grid_t, mode="bilinear", padding_mode="zeros", align_corners=False)


def decode_heatmaps(heatmaps: torch.Tensor, method: str = "mean", beta: float = 1.0):
    """Soft-argmax of heatmaps (B, N, h, w) → ((B, N, 2) normalized crop xy in [0, 1], (B, N) peak).

    method "mean": the heatmap-weighted mean of pixel centres, negative values clipped — pyfacer's
    heatmap2points for its sigmoid heatmaps. "softmax": weights softmax(beta · heatmap), the classic
    soft-argmax for logit heatmaps. An all-zero heatmap decodes to the crop centre. The peak is the
    heatmap maximum clipped to [0, 1] (a confidence for sigmoid heatmaps).
    pyfacer instead upsamples the heatmaps to the crop, warps them back into the image and takes
    the weighted mean there; a similarity warp has a constant Jacobian, so the weighted mean
    commutes with it and decoding in the crop then uncropping agrees up to resampling at borders.
    """
    B, N, h, w = heatmaps.shape
    x = heatmaps.float().reshape(B, N, h * w)
    if method == "mean":
        weights = x.clamp_min(0.0)
    elif method == "softmax":
        weights = torch.softmax(beta * x, dim=-1)
    else:
        raise ValueError(f"heatmap decode method must be 'mean' or 'softmax', got {method!r}")
    total = weights.sum(-1)
    empty = total <= 1e-12
    weights = weights / torch.where(empty, torch.ones_like(total), total)[..., None]
    xs = (torch.arange(w, dtype=x.dtype, device=x.device) + 0.5) / w
    ys = (torch.arange(h, dtype=x.dtype, device=x.device) + 0.5) / h
    weights = weights.reshape(B, N, h, w)
    px = (weights.sum(2) * xs).sum(-1)
    py = (weights.sum(3) * ys).sum(-1)
    points = torch.stack([px, py], -1)
    points = torch.where(empty[..., None], torch.full_like(points, 0.5), points)
    peak = x.max(-1).values.clamp(0.0, 1.0)
    return points, torch.where(empty, torch.zeros_like(peak), peak)


# --------------------------------------------------------------------------- the detector


def _images_as_torch(images_or_render_output) -> torch.Tensor:
    """(B, H, W, 3) uint8 or float-in-[0, 1] images (jax, numpy or torch), or anything with .image."""
    x = getattr(images_or_render_output, "image", images_or_render_output)
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, (jax.Array, np.ndarray)):
        t = dlpack.to_torch(x)
    else:
        raise TypeError(f"images must be a (B, H, W, 3) array or a render output with .image, got {type(x).__name__}")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"images must have shape (B, H, W, 3) or (H, W, 3), got {tuple(t.shape)}")
    if t.dtype != torch.uint8 and not t.is_floating_point():
        raise TypeError(f"images must be uint8 or float in [0, 1], got {t.dtype}")
    return t


def _to_unit_nchw(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 or float → (B, 3, H, W) float32 in [0, 1]."""
    x = images.permute(0, 3, 1, 2).float()
    return x / 255.0 if images.dtype == torch.uint8 else x


class TorchLandmarkDetector:
    """A torch face-crop → landmarks network behind the synthetic detector's ``detect`` interface.

    module: maps (B, 3, S, S) float crops to heatmaps (B, N, h, w) or coordinates (B, N, 2) /
    (B, 2N). crop_size S, face_scale: the crop the network was trained on. output: "auto" (4-D
    output = heatmaps), "heatmap" or "coords". coord_units: "normalized" ([0, 1] of the crop) or
    "pixels" (crop pixels, continuous convention) for coordinate outputs. heatmap_decode, beta:
    see ``decode_heatmaps``. mean, std: per-channel input normalization applied to [0, 1] crops
    (None when the network normalizes itself, as pyfacer's FaRL backbone does).
    """

    def __init__(self, module: torch.nn.Module, crop_size: int = 448, face_scale: float = 0.8,
                 output: str = "auto", coord_units: str = "normalized", heatmap_decode: str = "mean",
                 beta: float = 1.0, mean=None, std=None, device: str | torch.device | None = None,
                 batch_size: int = 16, num_landmarks: int = NUM_LANDMARKS):
        if output not in ("auto", "heatmap", "coords"):
            raise ValueError(f"output must be 'auto', 'heatmap' or 'coords', got {output!r}")
        if coord_units not in ("normalized", "pixels"):
            raise ValueError(f"coord_units must be 'normalized' or 'pixels', got {coord_units!r}")
        if heatmap_decode not in ("mean", "softmax"):
            raise ValueError(f"heatmap_decode must be 'mean' or 'softmax', got {heatmap_decode!r}")
        self.device = torch.device(device) if device is not None else torch.device(
            "cuda" if torch.cuda.is_available() else "cpu")
        self.module = module.eval().to(self.device)
        self.crop_size, self.face_scale = int(crop_size), float(face_scale)
        self.output, self.coord_units = output, coord_units
        self.heatmap_decode, self.beta = heatmap_decode, float(beta)
        self.batch_size, self.num_landmarks = int(batch_size), int(num_landmarks)
        self.mean = None if mean is None else torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = None if std is None else torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def crop_matrices(self, batch: int, height: int, width: int, boxes=None, points5=None) -> np.ndarray:
        """(B, 3, 3) crop matrices for the chosen crop rule (see the module docstring)."""
        if boxes is not None and points5 is not None:
            raise ValueError("give boxes or points5, not both")
        if boxes is not None:
            M = box_crop_matrix(boxes, self.crop_size, self.face_scale)
        elif points5 is not None:
            M = points5_crop_matrix(points5, self.crop_size, self.face_scale)
        else:
            M = full_image_crop_matrix(height, width, self.crop_size, batch)
        if M.shape[0] != batch:
            raise ValueError(f"{M.shape[0]} crops for {batch} images; give one box / point set per image")
        return M

    def _points_in_crop(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output → ((B, N, 2) normalized crop xy, (B, N) confidence)."""
        kind = self.output if self.output != "auto" else ("heatmap" if out.ndim == 4 else "coords")
        if kind == "heatmap":
            if out.ndim != 4 or out.shape[1] != self.num_landmarks:
                raise ValueError(f"expected heatmaps (B, {self.num_landmarks}, h, w), got {tuple(out.shape)}")
            return decode_heatmaps(out, self.heatmap_decode, self.beta)
        pts = out.float().reshape(out.shape[0], -1, 2)
        if pts.shape[1] != self.num_landmarks:
            raise ValueError(f"expected {self.num_landmarks} coordinates per face, got output {tuple(out.shape)}")
        if self.coord_units == "pixels":
            pts = pts / self.crop_size
        return pts, torch.ones(pts.shape[:2], device=pts.device)

    @torch.no_grad()
    def detect(self, images_or_render_output, key=None, boxes=None, points5=None,
               return_confidence: bool = False):
        """98 landmarks per image: (B, 98, 2) normalized image xy (and (B, 98) confidence).

        images_or_render_output: (B, H, W, 3) / (H, W, 3) uint8 RGB (or float in [0, 1]), or a render
        output with ``.image``. key: accepted for the synthetic detector's signature; unused (the
        network is deterministic). boxes (B, 4) / points5 (B, 5, 2): face crops in pixels.
        """
        if key is not None and np.ndim(key) == 2 and np.shape(key)[-1] == 4:
            raise TypeError("the second positional argument of detect is the PRNG key; pass boxes=...")
        images = _images_as_torch(images_or_render_output)  # (B, H, W, 3), converted per batch below
        B, H, W, _ = images.shape
        M = self.crop_matrices(B, H, W, boxes, points5)
        points, conf = [], []
        starts = range(0, B, self.batch_size)
        for s in tqdm(starts, desc="2D landmarks", unit="batch", disable=len(starts) <= 1, leave=False):
            sl = slice(s, s + self.batch_size)
            # Move uint8 to the device before converting: a quarter of the float32 transfer.
            crops = warp_crops(_to_unit_nchw(images[sl].to(self.device)), M[sl], self.crop_size)
            if self.mean is not None:
                crops = crops - self.mean
            if self.std is not None:
                crops = crops / self.std
            p, c = self._points_in_crop(self.module(crops))
            points.append(p.double().cpu().numpy())
            conf.append(c.float().cpu().numpy())
        crop_px = np.concatenate(points) * self.crop_size
        image_xy = uncrop_points(crop_px, M) / np.array([W, H])
        landmarks = jnp.asarray(image_xy.astype(np.float32))
        if return_confidence:
            return landmarks, jnp.asarray(np.concatenate(conf))
        return landmarks


# --------------------------------------------------------------------------- pyfacer's FaRL WFLW model


def load_pyfacer_wflw(weights: str | Path, device: str | torch.device | None = None,
                      batch_size: int = 8) -> TorchLandmarkDetector:
    """pyfacer's FaRL WFLW detector (config ``wflw/448``) from a local TorchScript file.

    Two layouts load: pyfacer's release file ``face_alignment.farl.wflw.main_ema_jit.pt`` — a traced
    heatmap head with the FaRL ViT-B/16 backbone's state_dict stored as the extra file "backbone";
    rebuilding that backbone needs pyfacer's network code (``pip install --no-deps pyfacer==0.0.5``,
    imported without ``facer/__init__``, see ``bridges.upstream``) — or a TorchScript of the whole
    network (e.g. ``torch.jit.trace`` of pyfacer's ``FaRLFaceAlignment.net``), which needs no pyfacer.
    Either maps (B, 3, 448, 448) crops in [0, 1] (the backbone normalizes) to sigmoid heatmaps
    (B, 98, h, w), decoded by pyfacer's heatmap-weighted mean; crops use face scale 0.8.
    """
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pyfacer WFLW weights {path} do not exist; download "
                                "face_alignment.farl.wflw.main_ema_jit.pt elsewhere and give its path")
    extra = {"backbone": ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as e:
        raise ValueError(f"{path} is not a TorchScript file: {e}") from e
    if extra["backbone"]:
        module = assemble_pyfacer_network(module, extra["backbone"], path)
    return TorchLandmarkDetector(module, crop_size=448, face_scale=0.8, output="heatmap",
                                 heatmap_decode="mean", device=device, batch_size=batch_size)


def assemble_pyfacer_network(head: torch.nn.Module, backbone_state: bytes, path: str | Path = "the file"
                             ) -> torch.nn.Module:
    """pyfacer's network from its release layout: FaRL backbone (pyfacer's code, the stored
    weights) → traced heatmap head → sigmoid, as pyfacer's ``load_face_alignment_model`` builds it."""
    from bridges import upstream

    try:
        network = upstream.pyfacer("face_alignment.network")
    except ModuleNotFoundError as e:
        raise ImportError(
            f"{path} stores only the heatmap head plus the FaRL backbone's weights; rebuilding the backbone "
            f"needs pyfacer's network code: {upstream.PYFACER_INSTALL} (or give a TorchScript of the whole "
            f"network). Import failed with: {e}") from e
    backbone = network.FaRLVisualFeatures("base", None, forced_input_resolution=448, output_indices=None)
    state = torch.load(io.BytesIO(backbone_state), map_location="cpu")
    try:
        backbone.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"the backbone weights in {path} do not fit pyfacer's FaRL ViT-B/16 "
                         f"(FaRLVisualFeatures('base', forced_input_resolution=448)): {e}") from e
    return network.FaceAlignmentTransformer(backbone, head, heatmap_act="sigmoid")


def from_config(config, device=None) -> TorchLandmarkDetector:
    """The detector of ``config.pyfacer`` (``weights``: the local TorchScript path)."""
    if not config.get("weights"):
        raise ValueError("config.pyfacer.weights is empty: give the local path of pyfacer's WFLW TorchScript file")
    return load_pyfacer_wflw(config.weights, device=device)



# --------------------------------------------------------------------------- command line


def draw_landmarks(image: np.ndarray, landmarks, box=None) -> np.ndarray:
    """A copy of the RGB uint8 image (H, W, 3) with landmarks (N, 2) (normalized xy) drawn as dots."""
    import cv2

    out = np.ascontiguousarray(np.asarray(image, np.uint8)).copy()
    H, W = out.shape[:2]
    radius = max(1, round(min(H, W) / 200))
    for x, y in np.asarray(landmarks, np.float64) * np.array([W, H]):
        if np.isfinite(x) and np.isfinite(y):
            # cv2 pixel (i, j) is centred at integer coordinates: shift by −½ from our convention.
            cv2.circle(out, (round(x - 0.5), round(y - 0.5)), radius, (0, 255, 0), -1, lineType=cv2.LINE_AA)
    if box is not None:
        x0, y0, x1, y1 = (round(v) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 200, 0), max(1, radius // 2))
    return out


def main(argv=None) -> Path:
    """``python -m bridges.detector2d --weights PT --image IMG --out PNG [--box x0,y0,x1,y1]``."""
    import argparse

    import cv2

    from facelift_jax import media

    parser = argparse.ArgumentParser(description="Detect 98 WFLW landmarks with pyfacer's FaRL model "
                                                 "(local TorchScript file) and draw them on the image.")
    parser.add_argument("--weights", required=True, help="pyfacer WFLW TorchScript file")
    parser.add_argument("--image", required=True, help="an RGB image file")
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument("--box", default=None, help="face box x0,y0,x1,y1 in pixels (default: whole image)")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    image = media.read_image(args.image)
    box = None
    if args.box:
        box = [float(v) for v in args.box.split(",")]
        if len(box) != 4:
            raise ValueError(f"--box needs four numbers x0,y0,x1,y1, got {args.box!r}")
    detector = load_pyfacer_wflw(args.weights, device=args.device)
    landmarks = detector.detect(image, boxes=None if box is None else [box])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(draw_landmarks(image, np.asarray(landmarks)[0], box), cv2.COLOR_RGB2BGR))
    np.save(out.with_suffix(".npy"), np.asarray(landmarks)[0])
    print(f"wrote {out} and {out.with_suffix('.npy')} (98 normalized xy)")
    return out


if __name__ == "__main__":
    main()
