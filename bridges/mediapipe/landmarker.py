"""The detector: BlazeFace passes (whole image, tiles, second looks) merged by one NMS, then the
face-landmark model on each face's crop, refined on its own mesh, mapped to WFLW-98."""

from __future__ import annotations

import math

import cv2
import numpy as np

from bridges.mediapipe.blazeface import ANCHORS, FULL_RANGE_ANCHORS, SCORE_CLIP, BlazeFace, box_iou, weighted_nms
from bridges.mediapipe.crops import Roi, crop_to_image, letterbox, roi_from_detection, roi_from_mesh, warp_crop
from bridges.mediapipe.runtime import (DETECTOR_MODEL, DETECTOR_SIZE, FULL_RANGE_MODEL, FULL_RANGE_SIZE, LANDMARK_MODEL,
                                      LANDMARK_SIZE, check_image, load_interpreter)
from bridges.mediapipe.tiles import inside_tile, tile_grid
from bridges.mediapipe.wflw import NUM_MESH_POINTS, PUPIL_EYE_LOOPS, iris_centre, wflw98_from_mediapipe468

DETECTORS = ("short", "full", "tiled", "all")
# A second look: with tiles, candidates scoring in [CANDIDATE_SCORE, min_score) are run again on a
# square tile VERIFY_ZOOM × their box side around them, where the face is ~64 of 192 pixels (at
# the smallest tile level it had ~24 and clutter around small faces pulls their score down: faces
# 1/20 of a 1080-px side pasted on a photo scored 0.15-0.45 there, 0.6-0.9 in the zoomed tile;
# zooms of 4-6 lost faces cut by the image edge, 2.5-3 kept them).
# (A second look by the short-range model too found no more faces there and added false ones, with
# landmark presence up to 0.55, on skimage's astronaut ×2.5 and rocket.)
CANDIDATE_SCORE = 0.1
VERIFY_ZOOM = 3.0
# Two faces whose final crops (after the mesh refinement) overlap by more than this IoU are one face
# found twice (e.g. a small tile saw an eye or mouth region of a large face as a face); the one
# with the higher landmark presence stays.
DUPLICATE_IOU = 0.5
# With the full-range model loaded, a face whose landmark presence is below CONFIRM_PRESENCE must be
# found again by it (score ≥ CONFIRM_SCORE) in its final crop zoomed out 2×. True faces pasted on a
# photo scored 0.2-0.95 there; the false faces the tiles let through (presence 0.55-0.65, on
# skimage's astronaut and rocket) scored < 0.02.
CONFIRM_PRESENCE = 0.9
CONFIRM_SCORE = 0.1


class MediaPipeDetector:
    """MediaPipe face detection + face mesh on RGB images, with WFLW-98 landmarks.

    ``min_score``: BlazeFace score threshold (MediaPipe's default 0.5). ``min_presence``: faces
    whose landmark model's face-presence probability is below this are dropped (MediaPipe's
    tracking threshold 0.5). ``max_faces``: keep at most this many (highest score first).
    ``refine_passes``: extra landmark passes on the crop re-centred on the previous pass's mesh.
    ``pupils``: "iris" (the dark iris in the image, :func:`iris_centre`, falling back to the eye
    centre) or "centre" (the lid polygon's centroid only).

    ``detectors`` chooses where faces are looked for (all candidates are merged by one weighted
    NMS, then each goes through the landmark model):

    * ``"short"``: BlazeFace short range on the whole image letterboxed to 128² (MediaPipe's
      model_selection 0): faces larger than about 1/5 of the image's long side; one model run.
    * ``"full"``: BlazeFace full range on the whole image letterboxed to 192² (model_selection 1):
      faces larger than about 1/8 of the long side; one run.
    * ``"tiled"``: ``"full"`` plus the full-range model on a pyramid of overlapping square tiles
      (:func:`tile_grid`) down to faces of ``min_face`` × the image's short side, and a zoomed second
      look at weak candidates; about 70 model runs for 1920×1080 at ``min_face`` 1/20.
    * ``"all"`` (default): ``"short"`` and ``"tiled"``.

    ``min_face``: smallest face box side searched for by the tiles, as a fraction of the image's
    shorter side (default 1/20). The face box is BlazeFace's (brows to chin, cheek to cheek).
    """

    def __init__(self, min_score: float = 0.5, *, min_presence: float = 0.5, max_faces: int | None = None,
                 refine_passes: int = 1, pupils: str = "iris", num_threads: int | None = None,
                 detectors: str = "all", min_face: float = 1 / 20):
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if not 0.0 <= min_presence <= 1.0:
            raise ValueError(f"min_presence must be in [0, 1], got {min_presence}")
        if refine_passes < 0:
            raise ValueError(f"refine_passes must be >= 0, got {refine_passes}")
        if pupils not in ("iris", "centre"):
            raise ValueError(f"pupils must be 'iris' or 'centre', got {pupils!r}")
        self.pupils = pupils
        self.min_score = float(min_score)
        self.min_presence = float(min_presence)
        self.max_faces = max_faces
        self.refine_passes = int(refine_passes)
        if detectors not in DETECTORS:
            raise ValueError(f"detectors must be one of {DETECTORS}, got {detectors!r}")
        if not 0.0 < min_face <= 1.0:
            raise ValueError(f"min_face is a fraction of the image's short side in (0, 1], got {min_face}")
        self.detectors = detectors
        self.min_face = float(min_face)
        self._short = (BlazeFace(DETECTOR_MODEL, DETECTOR_SIZE, ANCHORS, num_threads)
                       if detectors in ("short", "all") else None)
        self._full = (BlazeFace(FULL_RANGE_MODEL, FULL_RANGE_SIZE, FULL_RANGE_ANCHORS, num_threads)
                      if detectors != "short" else None)
        self._landmarker = load_interpreter(LANDMARK_MODEL, num_threads)
        self._lm_in = self._landmarker.get_input_details()[0]["index"]
        # The mesh output has 1404 values, the presence output 1.
        lm_outs = {int(np.prod(d["shape"])): d["index"] for d in self._landmarker.get_output_details()}
        self._lm_mesh, self._lm_flag = lm_outs[NUM_MESH_POINTS * 3], lm_outs[1]

    # -- stage 1: boxes --------------------------------------------------------------------- #
    def detect_faces(self, image: np.ndarray) -> list[dict]:
        """Face boxes of an RGB uint8 (H, W, 3) image, best first.

        Returns [dict(box=(x0, y0, x1, y1) pixels, score, keypoints (6, 2) pixels)], keypoints in
        :data:`DETECTOR_KEYPOINTS` order; the passes chosen by ``detectors`` (with tiles, plus a
        zoomed second look at weak candidates), merged by one weighted NMS.
        """
        image = check_image(image)
        h, w = image.shape[:2]
        tiled = self.detectors in ("tiled", "all")
        floor = min(self.min_score, CANDIDATE_SCORE) if tiled else self.min_score
        found = []  # (boxes (n, 4), keypoints (n, 6, 2), scores (n,)) in image pixels, per pass

        def run(model: BlazeFace, canvas, scale, offset, tile=None):
            boxes, keypoints, scores = model(canvas)
            keep = scores >= floor
            boxes = ((boxes[keep].reshape(-1, 2, 2) * model.size - offset) / scale).reshape(-1, 4)
            keypoints = (keypoints[keep] * model.size - offset) / scale
            scores = scores[keep]
            if tile is not None:
                inside = inside_tile(boxes, tile, w, h)
                boxes, keypoints, scores = boxes[inside], keypoints[inside], scores[inside]
            found.append((boxes, keypoints, scores))

        def run_tile(x0: int, y0: int, side: int, model: BlazeFace):
            crop = image[y0:y0 + side, x0:x0 + side]
            interp = cv2.INTER_AREA if side > model.size else cv2.INTER_LINEAR
            canvas = cv2.resize(crop, (model.size, model.size), interpolation=interp)
            k = model.size / side  # canvas_xy = (image_xy - (x0, y0)) * k
            run(model, canvas, np.full(2, k), -k * np.array([x0, y0], np.float64), (x0, y0, side))

        def around(box: np.ndarray, zoom: float) -> tuple[int, int, int]:
            """The square tile ``zoom`` × the box's long side centred on it, shifted into the image."""
            centre = (box[:2] + box[2:]) / 2
            side = max(2, int(round(min(zoom * float(np.max(box[2:] - box[:2])), w, h))))
            x0, y0 = (int(round(np.clip(c - side / 2, 0, n - side))) for c, n in zip(centre, (w, h)))
            return x0, y0, side

        if self._short is not None:
            run(self._short, *letterbox(image, DETECTOR_SIZE))
        if self._full is not None:
            run(self._full, *letterbox(image, FULL_RANGE_SIZE))
        if tiled:
            for tile in tile_grid(w, h, self.min_face * min(w, h)):
                run_tile(*tile, self._full)
            weak = [box for box, _, score in weighted_nms(*(np.concatenate(p) for p in zip(*found)))
                    if score < self.min_score]
            for box in weak:  # the second look
                run_tile(*around(box, VERIFY_ZOOM), self._full)
        boxes, keypoints, scores = (np.concatenate(parts) for parts in zip(*found))
        strong = scores >= self.min_score
        merged = weighted_nms(boxes[strong], keypoints[strong], scores[strong])
        faces = [dict(box=tuple(float(v) for v in box), score=score, keypoints=kps) for box, kps, score in merged]
        return faces[: self.max_faces] if self.max_faces else faces

    # -- stage 2: mesh ---------------------------------------------------------------------- #
    def mesh(self, image: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """Run the landmark model on ``roi`` of an RGB uint8 (H, W, 3) image.

        Returns (points (468, 3) image pixels, z in the same pixel scale; presence probability).
        """
        crop = warp_crop(check_image(image), roi, LANDMARK_SIZE).astype(np.float32)[None] / 255.0
        self._landmarker.set_tensor(self._lm_in, crop)
        self._landmarker.invoke()
        raw = self._landmarker.get_tensor(self._lm_mesh).reshape(NUM_MESH_POINTS, 3).astype(np.float64)
        logit = float(self._landmarker.get_tensor(self._lm_flag).reshape(()))
        points = np.empty_like(raw)
        points[:, :2] = crop_to_image(raw[:, :2], roi, LANDMARK_SIZE)
        points[:, 2] = raw[:, 2] * roi.size / LANDMARK_SIZE
        return points, 1.0 / (1.0 + math.exp(-np.clip(logit, -SCORE_CLIP, SCORE_CLIP)))

    def landmarks_from_roi(self, image: np.ndarray, roi: Roi) -> tuple[np.ndarray, float, Roi]:
        """Mesh on ``roi`` then ``refine_passes`` re-centred passes: (points, presence, last roi)."""
        points, presence = self.mesh(image, roi)
        for _ in range(self.refine_passes):
            roi = roi_from_mesh(points)
            points, presence = self.mesh(image, roi)
        return points, presence, roi

    def landmarks98(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(98, 2) WFLW pixels from mesh ``points`` (468, 3) of ``image``, pupils per ``self.pupils``."""
        out = wflw98_from_mediapipe468(points)
        if self.pupils == "iris":
            for k, loop in zip((96, 97), PUPIL_EYE_LOOPS):
                centre = iris_centre(image, points[list(loop), :2])
                if centre is not None:
                    out[k] = centre
        return out

    def _confirmed(self, image: np.ndarray, roi: Roi) -> bool:
        """Whether the full-range model finds a face at the centre of ``roi`` zoomed out 2× (True
        without the full-range model: nothing to ask)."""
        if self._full is None:
            return True
        canvas = warp_crop(image, Roi(roi.center, 2.0 * roi.size, roi.angle), FULL_RANGE_SIZE)
        boxes, _, scores = self._full(canvas)
        central = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - 0.5, axis=1) < 0.15
        return bool((scores[central] >= CONFIRM_SCORE).any())

    def detect(self, image: np.ndarray) -> list[dict]:
        """All faces of an RGB uint8 (H, W, 3) image, highest detector score first.

        Returns [dict(box=(x0, y0, x1, y1) pixels (BlazeFace), score (detector), presence (landmark
        model), keypoints (6, 2), roi (:class:`Roi`, the final crop), landmarks468 (468, 3) float32,
        landmarks98 (98, 2) float32 pixels (WFLW))]. Faces below ``min_presence`` are dropped, those
        below CONFIRM_PRESENCE unless the full-range model (when loaded) finds them in their crop, and
        of two faces whose meshes' boxes overlap by IoU > DUPLICATE_IOU the one with the lower
        presence (the same face found twice).
        """
        image = check_image(image)
        out = []
        for face in self.detect_faces(image):
            roi = roi_from_detection(np.asarray(face["box"]), face["keypoints"])
            points, presence, roi = self.landmarks_from_roi(image, roi)
            if presence < self.min_presence or (presence < CONFIRM_PRESENCE and not self._confirmed(image, roi)):
                continue
            out.append(dict(face, presence=presence, roi=roi, landmarks468=points.astype(np.float32),
                            landmarks98=self.landmarks98(image, points).astype(np.float32)))
        mesh_boxes = np.array([np.r_[f["landmarks468"][:, :2].min(0), f["landmarks468"][:, :2].max(0)] for f in out],
                              np.float64).reshape(-1, 4)
        kept: list[int] = []
        for i in sorted(range(len(out)), key=lambda i: -out[i]["presence"]):
            if not kept or box_iou(mesh_boxes[i], mesh_boxes[kept]).max() <= DUPLICATE_IOU:
                kept.append(i)
        return [out[i] for i in sorted(kept)]
