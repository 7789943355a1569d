"""The preprocessing stage (FaceLift §3): 3D pseudo-labels for GAN latents, 2D pseudo-labels for videos.

    python -m facelift_jax.preprocess --config configs/default.py --out DIR [--config.preprocess.num_latents=64]

For latents first_latent … first_latent + num_latents − 1 of the configured generator, chunk by
chunk (``config.preprocess.chunk_size`` latents): render the lifting view set of ``views.py``,
detect 2D landmarks with the configured detector, mask them (the view masks, and detector
confidence below ``min_confidence``), lift them to 3D (``lifting.lift``), and save the chunk.
Then assemble the dataset, write the video pseudo-labels and the preview pictures.

Output under DIR (what input_pipeline/labels.py and the training pipeline read):
  multiview/pseudo_labels.npz   latents (N,) int64, points3d (N,98,3) world, valid (N,98),
                                residual (N,98), num_views (N,98), num_inliers (N,98), status (N,),
                                and for a generator with exact landmarks true3d (N,98,3)
  multiview/metadata.json       generator, detector, views, masks, lifting settings, invalid counts
                                (and the per-region error against the exact truth when known)
  multiview/template.npy        (98,3) landmark-wise mean of the valid pseudo-labels
  multiview/chunks/             one .npz per finished chunk (kept; a restart skips them) and its
                                seal .seal.json (size, SHA-256, plan digest, latents)
  videos/index.json             [{"video": relative path, "labels": relative npz, "frames": T}]
  videos/*.avi + *.npz          clips and their 2D pseudo-labels landmarks2d (T,98,2), confidence (T,98)
  preview/*.png                 detections vs reprojected lifted points per view; 3D scatter
  finished.json                 written last: the folder is complete (``finished``); removed when a run starts

Restartable: chunk files, video label files and previews are written atomically (temporary file,
then rename), and a rerun with the same plan skips whatever is already there; a rerun with a different
plan (latents, chunking, views, generator, detector, lifting) into the same DIR is refused. A
chunk counts as done only when its seal (``stamps.seal``, written after it) matches its bytes and
the plan: a truncated, corrupt or overwritten chunk is redone, never loaded.

Both cores busy: rendering, detection and lifting + saving run as three overlapped stages
(threads; the numbers are bit-identical to running them one after the other).

Many processes or hosts (a folder they share): ``--process_index=K --process_count=N`` on each;
process K lifts chunks K, K + N, …; process 0 then waits until every chunk is sealed by the same
plan and assembles (and writes videos and previews). Every chunk's numbers depend only on its
latents (per-chunk keys), so the labels are bit-identical to one process. Lifting inside a process
is sharded over that process's devices (``lifting.lift``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import queue
import sys
import threading
import time

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from facelift_jax import camera as camera_lib
from facelift_jax import io as fio
from facelift_jax import stamps
from facelift_jax import config_check, landmarks, lifting, media, sources, views
from facelift_jax import random_streams as streams

log = logging.getLogger(__name__)

REGIONS = ("contours", "brows", "nose", "eyes", "mouth")


def _section(config) -> ml_collections.ConfigDict:
    return config.preprocess


# ------------------------------------------------------------------------------------ files


def save_json(path: pathlib.Path, obj) -> None:
    fio.atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ------------------------------------------------------------------------------------ multi-view


def _plan(config, pre) -> dict:
    """Everything that decides the chunks' contents; a restart must match it."""
    return dict(
        generator=config.generator, detector=config.detector,
        synthetic=config.synthetic.to_dict() if config.generator == "synthetic" else None,
        first_latent=int(pre.first_latent), num_latents=int(pre.num_latents), chunk_size=int(pre.chunk_size),
        min_confidence=float(pre.min_confidence), image_size=int(config.image_size),
        seed=int(config.seed), views=[list(v) for v in views.LIFTING_VIEWS],
        lifting=dataclasses.asdict(lifting.LiftSettings.from_config(config.lifting)),
        # the lifting cameras' focal; absent at camera.FOCAL so default plans keep their digest
        **({} if camera_lib.config_focal(config.camera) == camera_lib.FOCAL
           else dict(focal=camera_lib.config_focal(config.camera))),
    )


def _check_plan(root: pathlib.Path, plan: dict) -> None:
    stamps.check(root / "plan.json", plan, what_is_there="chunks of a different preprocessing plan",
                 fix="use a new --out folder or delete the old one")


def check_plan(config, out_dir) -> None:
    """Refuse the preprocessing output in ``out_dir`` when ``config`` would have made it differently
    (another generator, detector, latents, image size, lifting …): training must not silently
    reuse stale pseudo-labels."""
    _check_plan(pathlib.Path(out_dir) / "multiview", _plan(config, _section(config)))


def _render_rows(latents, V: int, render_batch: int):
    """The (latent, view) rows of a chunk in latent-major order (row b·V + v), cut into render
    batches → [(offset s, latents (b,), view indices (b,))]; ``s`` also picks the detection key."""
    B = len(latents)
    lat = np.repeat(np.asarray(latents, np.int64), V)
    view_idx = np.tile(np.arange(V), B)
    return [(s, lat[s:s + render_batch], view_idx[s:s + render_batch]) for s in range(0, B * V, render_batch)]


def _detect_rows(detector, out, key, keep_images: bool) -> dict:
    """Detect one rendered batch → NumPy dict det (b,98,2), conf (b,98) [, true3d, visible, images]."""
    det, conf = detector.detect(out, key, return_confidence=True)
    got = dict(det=np.asarray(det, np.float32), conf=np.asarray(conf, np.float32))
    if getattr(out, "landmarks3d", None) is not None:
        got["true3d"] = np.asarray(out.landmarks3d, np.float32)
    if getattr(out, "visible", None) is not None:
        got["visible"] = np.asarray(out.visible, bool)
    if keep_images:
        got["images"] = np.asarray(out.image)
    return got


def _gather_rows(parts: list[dict], B: int, V: int):
    """Concatenate the detected batches of one chunk → (det (B,V,98,2), conf (B,V,98), extras)."""
    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    extras = {}
    if "true3d" in cat:
        extras["true3d"] = cat["true3d"].reshape(B, V, 98, 3)[:, 0]
    if "visible" in cat:
        extras["visible"] = cat["visible"].reshape(B, V, 98)
    if "images" in cat:
        extras["images"] = cat["images"].reshape((B, V) + cat["images"].shape[1:])
    return cat["det"].reshape(B, V, 98, 2), cat["conf"].reshape(B, V, 98), extras


def render_and_detect(generator, detector, latents, cams, image_size, key, render_batch, keep_images=False):
    """Render every latent in every view and detect: → (det (B,V,98,2), conf (B,V,98), extras).

    extras: ``true3d`` (B,98,3) when the render output carries landmarks3d, ``visible`` (B,V,98)
    when it carries visibility, ``images`` (B,V,H,W,3) if ``keep_images``. Sequential; the
    overlapped pipeline of ``run_multiview`` calls the same per-batch steps, so its numbers match.
    """
    V = cams.batch_shape[0]
    parts = [_detect_rows(detector, generator.render(lat, cams[vi], image_size), jax.random.fold_in(key, s),
                          keep_images)
             for s, lat, vi in _render_rows(latents, V, render_batch)]
    return _gather_rows(parts, len(latents), V)


def lift_chunk(det, conf, cams, config, min_confidence: float):
    """Mask (view masks ∧ confidence ≥ min_confidence) and lift one chunk → (LiftResult, mask)."""
    mask = views.view_masks()[None] & (conf >= min_confidence)
    return lifting.lift(det, cams, mask, config.lifting), mask


_END = object()


def _ahead(fn, items, depth: int = 2):
    """Yield ``fn(item)`` for each item in order, computed in a background thread at most ``depth``
    results ahead of the consumer (bounded memory). Exceptions in ``fn`` reach the consumer; when
    the consumer stops early the thread stops after its current item. Chained, these overlap the
    stages of a pipeline: JAX, NumPy, OpenCV and torch release the GIL in their kernels."""
    results = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                results.put(x, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def work():
        try:
            for item in items:
                if stop.is_set() or not put((fn(item), None)):
                    return
            put((_END, None))
        except BaseException as e:  # noqa: BLE001 -- handed to the consumer, which re-raises
            put((None, e))
        finally:
            if hasattr(items, "close"):  # an upstream _ahead: stop its thread too
                items.close()

    thread = threading.Thread(target=work, name="preprocess-stage", daemon=True)
    thread.start()
    try:
        while True:
            value, error = results.get()
            if error is not None:
                raise error
            if value is _END:
                return
            yield value
    finally:
        stop.set()
        thread.join()


def _chunk_ranges(num_latents: int, chunk_size: int) -> list[tuple[int, int]]:
    """[(start, stop)) index ranges of the chunks; chunk i belongs to process i mod process_count."""
    return [(s, min(s + chunk_size, num_latents)) for s in range(0, num_latents, chunk_size)]


def _chunk_path(chunk_dir: pathlib.Path, latents: np.ndarray, start: int, stop: int) -> pathlib.Path:
    return chunk_dir / f"chunk_{latents[start]:09d}_{latents[stop - 1]:09d}.npz"


def _chunk_stamp(plan_digest: str, latents: np.ndarray, start: int, stop: int) -> dict:
    """What a chunk's seal must say: the plan that made it and its latents."""
    return dict(plan=plan_digest, first_latent=int(latents[start]), last_latent=int(latents[stop - 1]))


class _Chunks:
    """Render → detect → lift → save for a list of chunk ranges of one plan, sequentially or with
    the three stages overlapped (render ahead in one thread, detect in another, lift + save here).
    Both run the same per-batch functions in the same order, so the files are bit-identical."""

    def __init__(self, config, pre, cams, latents, key, chunk_dir, plan_digest, timing):
        self.config, self.pre, self.cams, self.latents, self.key = config, pre, cams, latents, key
        self.chunk_dir, self.plan_digest, self.timing = chunk_dir, plan_digest, timing
        self.generator = self.detector = None

    def status(self, start: int, stop: int) -> tuple[str, str]:
        path = _chunk_path(self.chunk_dir, self.latents, start, stop)
        return stamps.seal_status(path, _chunk_stamp(self.plan_digest, self.latents, start, stop))

    def run(self, ranges, overlap: bool, on_done=lambda n: None) -> None:
        if not ranges:
            return
        if self.generator is None:
            self.generator, self.detector = sources.make_generator(self.config), sources.make_detector(self.config)
        V = self.cams.batch_shape[0]
        size, batch = int(self.config.image_size), int(self.pre.render_batch)
        jobs = [(c, s, lat, vi, len(rows)) for c, (start, stop) in enumerate(ranges)
                for rows in [_render_rows(self.latents[start:stop], V, batch)] for s, lat, vi in rows]

        def render(job):
            t = time.perf_counter()
            c, s, lat, vi, n = job
            out = self.generator.render(lat, self.cams[vi], size)
            self.timing["render_s"] += time.perf_counter() - t
            return job, out

        def detect(job_out):
            t = time.perf_counter()
            (c, s, lat, vi, n), out = job_out
            key = jax.random.fold_in(jax.random.fold_in(self.key, int(self.latents[ranges[c][0]])), s)
            got = _detect_rows(self.detector, out, key, keep_images=False)
            self.timing["detect_s"] += time.perf_counter() - t
            return c, n, got

        if overlap:
            detected = _ahead(detect, _ahead(render, iter(jobs)))
        else:
            detected = (detect(render(job)) for job in jobs)
        parts = []
        try:
            for c, n, got in detected:
                parts.append(got)
                if len(parts) == n:  # the chunk's last batch: lift and save it while the next renders
                    self._finish(*ranges[c], parts)
                    on_done(ranges[c][1] - ranges[c][0])
                    parts = []
        finally:  # interrupted (an error, Ctrl-C): stop the stage threads now, not when garbage-collected
            detected.close()

    def _finish(self, start: int, stop: int, parts: list[dict]) -> None:
        t = time.perf_counter()
        det, conf, extras = _gather_rows(parts, stop - start, self.cams.batch_shape[0])
        res, mask = lift_chunk(det, conf, self.cams, self.config, float(self.pre.min_confidence))
        arrays = {k: np.asarray(v) for k, v in dataclasses.asdict(res).items()}
        self.timing["lift_s"] += time.perf_counter() - t
        path = _chunk_path(self.chunk_dir, self.latents, start, stop)
        fio.save_npz(path, latents=self.latents[start:stop], detections=det, confidence=conf, mask=mask,
                     **arrays, **{k: v for k, v in extras.items() if k in ("true3d", "visible")})
        stamps.seal(path, _chunk_stamp(self.plan_digest, self.latents, start, stop))


def _check_processes(process_index: int, process_count: int) -> None:
    if int(process_count) < 1 or not 0 <= int(process_index) < int(process_count):
        raise config_check.input_error(
            "--process_index", process_index,
            f"with --process_count={process_count}: need process_count ≥ 1 and 0 ≤ process_index < process_count "
            f"(number the processes 0 … process_count − 1, each started once with the same config and --out)")


def run_multiview(config, out_dir: pathlib.Path, progress: bool = True, *, process_index: int = 0,
                  process_count: int = 1, overlap: bool = True, wait_timeout_s: float | None = None,
                  poll_s: float = 2.0) -> pathlib.Path:
    """Render, detect and lift all latents chunk by chunk; assemble ``multiview/``. Returns its path.

    Over several processes (or hosts sharing ``out_dir``): process k does chunks k, k + n, k + 2n …
    of the n = ``process_count``; process 0 then waits (polling every ``poll_s``, up to
    ``wait_timeout_s``, None = no limit) until every chunk is sealed by the same plan, redoing any
    found truncated or corrupt, and assembles. The others return after their own chunks. Every
    chunk's numbers depend only on its latents, so any split gives bit-identical pseudo-labels.
    ``overlap``: render, detect and lift in three overlapped stages (same numbers as sequential).
    """
    _check_processes(process_index, process_count)
    pre = _section(config)
    root = out_dir / "multiview"
    chunk_dir = root / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(config, pre)
    _check_plan(root, plan)
    if pre.num_latents < 1 or pre.chunk_size < 1:
        raise ValueError(f"preprocess.num_latents and chunk_size must be ≥ 1, got {pre.num_latents}, {pre.chunk_size}")

    cams = views.lifting_cameras(radius=config.camera.radius,
                                 look_at=tuple(config.camera.look_at),
                                 focal=camera_lib.config_focal(config.camera))  # = sources.generator_focal
    latents = np.arange(pre.first_latent, pre.first_latent + pre.num_latents, dtype=np.int64)
    key = jax.random.fold_in(jax.random.key(int(config.seed)), streams.PREPROCESS_DETECTIONS)
    timing = dict(render_s=0.0, detect_s=0.0, lift_s=0.0, wall_s=0.0)
    t0 = time.perf_counter()
    chunks = _Chunks(config, pre, cams, latents, key, chunk_dir, stamps.digest(plan), timing)
    ranges = _chunk_ranges(len(latents), int(pre.chunk_size))
    mine = ranges[int(process_index)::int(process_count)]
    todo = []
    for r in mine:
        status, why = chunks.status(*r)
        if status == stamps.BAD:
            log.warning("redoing %s", why)
        if status != stamps.SEALED:
            todo.append(r)
    desc = "preprocess: render, detect, lift" + (f" (process {process_index}/{process_count})" if process_count > 1 else "")
    with tqdm(total=sum(b - a for a, b in mine), desc=desc, unit="latent", disable=not progress) as bar:
        bar.update(sum(b - a for a, b in mine) - sum(b - a for a, b in todo))
        chunks.run(todo, overlap, bar.update)
    if int(process_index) != 0:
        return root
    _wait_for_chunks(chunks, ranges, int(process_count), overlap, wait_timeout_s, poll_s)
    timing["wall_s"] = time.perf_counter() - t0
    return assemble(root, plan, latents, [_chunk_path(chunk_dir, latents, *r) for r in ranges], timing)


def _wait_for_chunks(chunks: _Chunks, ranges, process_count: int, overlap: bool, timeout_s, poll_s: float) -> None:
    """Until every chunk is sealed by this plan: redo (here) those found bad, wait for the missing
    ones (other processes' work in progress). TimeoutError naming the missing chunks' processes."""
    deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
    # this process's own chunks (i % process_count == 0) were checked or made and sealed just before
    waiting = [i for i in range(len(ranges)) if i % process_count]
    told = False
    while True:
        missing = []
        for i in waiting:
            status, why = chunks.status(*ranges[i])
            # damaged on disk: redo it here rather than load it
            if status == stamps.BAD:
                log.warning("redoing %s", why)
                chunks.run([ranges[i]], overlap)
                status, why = chunks.status(*ranges[i])
            if status != stamps.SEALED:
                missing.append(i)
        if not missing:
            return
        if deadline is not None and time.monotonic() > deadline:
            owners = sorted({i % process_count for i in missing})
            raise TimeoutError(
                f"{len(missing)} chunk(s) of {chunks.chunk_dir} still missing after {timeout_s} s (e.g. "
                f"{_chunk_path(chunks.chunk_dir, chunks.latents, *ranges[missing[0]]).name}), owned by process(es) "
                f"{owners} of {process_count}: (re)start them with --process_index=K --process_count={process_count} "
                f"(finished chunks are kept), then rerun process 0")
        if not told:
            log.info("process 0: waiting for %d chunk(s) of the other %d process(es)", len(missing), process_count - 1)
            told = True
        waiting = missing
        time.sleep(poll_s)


def assemble(root: pathlib.Path, plan: dict, latents: np.ndarray, paths: list[pathlib.Path], timing: dict) -> pathlib.Path:
    """Concatenate the (sealed) chunk files ``paths`` into pseudo_labels.npz, template.npy and metadata.json."""
    chunks = []
    for p in paths:
        got = fio.load_npz_if_valid(p)
        if got is None:
            raise RuntimeError(f"chunk {p} could not be read after its seal was checked (changed on disk during "
                               f"assembly?); rerun preprocessing with the same --out")
        chunks.append(got)
    data = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    if not np.array_equal(data["latents"], latents):
        raise RuntimeError(f"chunks in {root / 'chunks'} do not cover latents {latents[0]}…{latents[-1]} exactly")
    fields = ["latents", "points3d", "valid", "residual", "num_views", "num_inliers", "status"]
    if "true3d" in data:
        fields.append("true3d")
    fio.save_npz(root / "pseudo_labels.npz", **{k: data[k] for k in fields})
    valid = data["valid"]
    weights = valid[..., None].astype(np.float64)
    counts = weights.sum(0)
    template = np.where(counts > 0, (data["points3d"] * weights).sum(0) / np.maximum(counts, 1), views.canonical_template())
    fio.atomic_write(root / "template.npy", lambda f: np.save(f, template.astype(np.float32)))
    save_json(root / "metadata.json", _metadata(plan, data, timing))
    return root


def truth_errors(points3d, true3d, valid) -> dict:
    """Mean 3D distance (world units) of valid lifted landmarks to the exact truth, per region."""
    err = np.linalg.norm(points3d - true3d, axis=-1)
    out = {}
    for region in ("full",) + REGIONS:
        idx = landmarks.region_indices(region)
        v = valid[:, idx]
        out[region] = float(err[:, idx][v].mean()) if v.any() else float("nan")
    return out


def _metadata(plan: dict, data: dict, timing: dict) -> dict:
    valid = data["valid"]
    status = data["status"]
    meta = dict(
        generator=plan["generator"], detector=plan["detector"], num_latents=int(len(data["latents"])),
        first_latent=plan["first_latent"], image_size=plan["image_size"],
        views=[dict(name=n, azimuth=a, elevation=e) for n, a, e in views.LIFTING_VIEWS],
        view_masks={n: np.flatnonzero(~m).tolist() for (n, _, _), m in zip(views.LIFTING_VIEWS, views.view_masks())},
        view_mask_rules=dict(views.MASK_RULES), min_confidence=plan["min_confidence"],
        lifting=plan["lifting"],
        invalid_points=dict(
            total=int((~valid).sum()), excluding_pupils=int((~valid[:, landmarks.NON_PUPILS]).sum()),
            per_region={r: int((~valid[:, landmarks.region_indices(r)]).sum()) for r in REGIONS + ("pupils",)},
            per_landmark=(~valid).sum(0).tolist()),
        status_counts={name: int(((status & bit) != 0).sum()) for bit, name in lifting.STATUS_NAMES.items()},
        latents_ok=int((status == 0).sum()),
        mean_residual_valid=float(data["residual"][valid].mean()) if valid.any() else None,
        timing_this_run=timing,
        status_codes={str(b): n for b, n in lifting.STATUS_NAMES.items()},
    )
    if "true3d" in data:
        meta["error_vs_truth"] = truth_errors(data["points3d"], data["true3d"], valid)
        meta["error_vs_truth_units"] = "world (GAN canonical) units, valid points only"
    return meta


# ------------------------------------------------------------------------------------ videos


def run_videos(config, out_dir: pathlib.Path, progress: bool = True) -> pathlib.Path:
    """2D pseudo-labels of the configured videos → ``videos/index.json`` (+ clips / npz)."""
    pre = _section(config)
    root = out_dir / "videos"
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    if pre.video_dir:
        files = sorted(p for p in pathlib.Path(pre.video_dir).iterdir() if media.is_video(p))
        if not files:
            raise ValueError(f"preprocess.video_dir {pre.video_dir!r} holds no video ({', '.join(media.VIDEO_SUFFIXES)})")
        detector = None
        for path in tqdm(files, desc="preprocess: video labels", unit="video", disable=not progress):
            labels = root / f"{path.stem}.npz"
            got = fio.load_npz_if_valid(labels)
            if got is None:
                if detector is None:
                    detector = sources.make_detector(config)
                got = label_video(path, detector, labels)
            entries.append(dict(video=os.path.relpath(path.resolve(), root.resolve()), labels=labels.name,
                                frames=int(got["landmarks2d"].shape[0])))
    else:
        from facelift_jax import synthetic

        gen = det = None
        seeds = range(int(pre.first_video), int(pre.first_video) + int(pre.num_videos))
        for seed in tqdm(seeds, desc="preprocess: synthetic videos", unit="video", disable=not progress):
            video = root / f"video_{seed:06d}.avi"
            labels = synthetic.labels_path(video)
            got = fio.load_npz_if_valid(labels)
            if got is None or not video.exists() or got["landmarks2d"].shape[0] != int(pre.frames_per_video):
                if gen is None:
                    gen, det = sources.make_generator(config), sources.make_detector(config)
                # the clip and its labels land under temporary names first; the labels, renamed
                # last, mark the pair finished (a rerun redoes a clip without them)
                tmp_labels = None
                try:
                    with fio.atomic_path(video) as tmp_video:
                        tmp_labels = synthetic.labels_path(tmp_video)
                        synthetic.make_video(seed, tmp_video, frames=int(pre.frames_per_video),
                                             image_size=int(config.image_size), generator=gen, detector=det,
                                             focal=camera_lib.config_focal(config.camera))
                    os.replace(tmp_labels, labels)
                finally:
                    if tmp_labels is not None:
                        tmp_labels.unlink(missing_ok=True)
                got = fio.load_npz_if_valid(labels)
            entries.append(dict(video=video.name, labels=labels.name, frames=int(got["landmarks2d"].shape[0])))
    save_json(root / "index.json", entries)
    return root


def label_video(path: pathlib.Path, detector, labels: pathlib.Path, batch: int = 32) -> dict:
    """Detect 98 landmarks in every frame of a real video → atomically saved ``labels`` npz."""
    frames = media.read_video(path)
    if callable(getattr(detector, "track", None)):  # a tracker follows the face from frame to frame
        lm, conf = detector.track(frames, return_confidence=True)
    else:
        parts = [detector.detect(frames[s:s + batch], None, return_confidence=True) for s in range(0, len(frames), batch)]
        lm, conf = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    out = dict(landmarks2d=np.asarray(lm, np.float32), confidence=np.asarray(conf, np.float32))
    fio.save_npz(labels, **out)
    return out


# ------------------------------------------------------------------------------------ pictures


def _save_figure(fig, path: pathlib.Path) -> None:
    with fio.atomic_path(path) as tmp:  # a kill mid-savefig leaves no half PNG
        fig.savefig(tmp, dpi=80, format="png")


def write_previews(config, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """Per-view detections vs reprojected lifted points for a few latents, and a 3D scatter."""
    from matplotlib.figure import Figure  # no pyplot: no global backend switch (plots.py)

    pre = _section(config)
    root = out_dir / "preview"
    root.mkdir(parents=True, exist_ok=True)
    with np.load(out_dir / "multiview" / "pseudo_labels.npz") as f:
        data = {k: f[k] for k in f.files}
    n = min(int(pre.preview_latents), len(data["latents"]))
    if n == 0:
        return []
    cams = views.lifting_cameras(radius=config.camera.radius,
                                 look_at=tuple(config.camera.look_at),
                                 focal=camera_lib.config_focal(config.camera))  # = sources.generator_focal
    lat = data["latents"][:n]
    generator, detector = sources.make_generator(config), sources.make_detector(config)
    key = jax.random.fold_in(jax.random.key(int(config.seed)), streams.PREPROCESS_PREVIEW)
    det, conf, extras = render_and_detect(generator, detector, lat, cams, int(config.image_size), key,
                                          int(pre.render_batch), keep_images=True)
    mask = views.view_masks()[None] & (conf >= float(pre.min_confidence))
    reproj = np.asarray(camera_lib.project(data["points3d"][:n, None], cams))  # (n, V, 98, 2)
    written = []
    V = cams.batch_shape[0]
    cols = 5
    rows = -(-V // cols)
    for b in range(n):
        fig = Figure(figsize=(3 * cols, 3.2 * rows))
        axes = fig.subplots(rows, cols)
        for v, ax in enumerate(axes.ravel()):
            ax.axis("off")
            if v >= V:
                continue
            img = extras["images"][b, v]
            H, W = img.shape[:2]
            ax.imshow(img)
            m, ok = mask[b, v], data["valid"][b]
            d = det[b, v] * [W, H]
            r = reproj[b, v] * [W, H]
            ax.scatter(d[m, 0], d[m, 1], s=6, c="tab:blue", label="detection (used)")
            ax.scatter(d[~m, 0], d[~m, 1], s=6, c="tab:gray", marker="x", label="detection (masked)")
            ax.scatter(r[ok, 0], r[ok, 1], s=6, facecolors="none", edgecolors="lime", label="lifted, reprojected")
            ax.scatter(r[~ok, 0], r[~ok, 1], s=6, c="red", marker="+", label="lifted, invalid")
            ax.set_title(views.LIFTING_VIEWS[v][0], fontsize=9)
        axes.ravel()[0].legend(loc="lower left", fontsize=6)
        fig.suptitle(f"latent {int(lat[b])}: detections vs reprojected 3D pseudo-label "
                     f"({int(data['valid'][b].sum())}/98 valid)")
        fig.tight_layout()
        path = root / f"lifting_latent{int(lat[b]):06d}.png"
        _save_figure(fig, path)
        written.append(path)

    fig = Figure(figsize=(11, 5.5))
    for k, (elev, azim) in enumerate(((10, -90), (10, 0))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        P, ok = data["points3d"][0], data["valid"][0]
        for region, rgb in landmarks.REGION_COLOURS.items():
            idx = landmarks.REGIONS_98[region]
            sel = idx[ok[idx]]
            # color=, not c=: three points with c=(r, g, b) would be read as values for a colormap;
            # the thin dark edge keeps the white pupils visible on the white figure
            ax.scatter(P[sel, 0], P[sel, 2], P[sel, 1], s=10, color=tuple(v / 255 for v in rgb), edgecolors="k",
                       linewidths=0.2, label=region)
        if "true3d" in data:
            T = data["true3d"][0]
            ax.scatter(T[:96, 0], T[:96, 2], T[:96, 1], s=10, facecolors="none", edgecolors="k", linewidths=0.4,
                       label="exact truth")
        ax.set_xlabel("x")
        ax.set_ylabel("z (toward the viewer)")
        ax.set_zlabel("y (up)")
        ax.view_init(elev=elev, azim=azim)
        ax.set_box_aspect((1, 1, 1.2))
        if k == 0:
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"latent {int(lat[0])}: 3D pseudo-label (world), front and side")
    path = root / f"scatter3d_latent{int(lat[0]):06d}.png"
    _save_figure(fig, path)
    written.append(path)
    return written


# ------------------------------------------------------------------------------------ entry


FINISHED = "finished.json"  # run_preprocess's last write


def finished(out_dir) -> bool:
    """Whether a ``run_preprocess`` into ``out_dir`` got to its end (pseudo-labels, videos and
    previews all written): a run killed part-way leaves no ``finished.json``, and a rerun completes
    it, keeping sealed chunks and finished clips."""
    return (pathlib.Path(out_dir) / FINISHED).is_file()


def run_preprocess(config, out_dir, progress: bool = True, *, process_index: int = 0, process_count: int = 1,
                   wait_timeout_s: float | None = None) -> pathlib.Path:
    """The whole stage; returns ``out_dir``. Reruns skip finished chunks and videos.

    Split over ``process_count`` processes (hosts sharing ``out_dir``), process ``process_index``
    lifts its stride of the chunks (``run_multiview``); process 0 also waits for the others'
    chunks, assembles, and writes the videos and previews.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if int(process_index) == 0:  # until this run ends, the folder is not a finished one
        (out_dir / FINISHED).unlink(missing_ok=True)
    root = run_multiview(config, out_dir, progress, process_index=process_index, process_count=process_count,
                         wait_timeout_s=wait_timeout_s)
    if int(process_index) != 0:
        return out_dir
    run_videos(config, out_dir, progress)
    write_previews(config, out_dir)
    meta = json.loads((root / "metadata.json").read_text())
    stamps.write(out_dir / FINISHED, dict(num_latents=meta["num_latents"]))  # its plan: multiview/plan.json
    if progress:
        msg = f"preprocess: {meta['num_latents']} latents, {meta['invalid_points']['excluding_pupils']} invalid points"
        if "error_vs_truth" in meta:
            msg += " | mean 3D error vs truth: " + ", ".join(f"{k} {v:.4f}" for k, v in meta["error_vs_truth"].items())
        print(msg, file=sys.stderr)
    return out_dir


def lock_out(out_dir, process_index: int = 0, process_count: int = 1) -> fio.WorkdirLock:
    """The lock of this process's share of ``out_dir`` (``io.WorkdirLock``): a second command started
    with the same --out and --process_index is refused (``WorkdirLockedError`` naming the folder and
    the holder's pid) instead of redoing the same chunks and assembling beside the first. The N
    processes of one split each hold their own lock file, so they still share the folder."""
    what = "preprocessing folder" + (f" (process {process_index} of {process_count})" if int(process_count) > 1 else "")
    return fio.lock_workdir(out_dir, what, name=f"{fio.LOCK_FILE}.process{int(process_index)}")


def _define_process_flags(flags) -> None:
    """Multi-process / multi-host preprocessing: start the same command once per process with the
    same --out (a shared folder), --process_index=0 … N−1 and --process_count=N."""
    flags.DEFINE_integer("process_index", 0, "this process's number, 0 … process_count − 1 (it lifts chunks "
                         "process_index, process_index + process_count, …; process 0 also assembles)")
    flags.DEFINE_integer("process_count", 1, "number of processes (on any hosts sharing --out) splitting the chunks")
    flags.DEFINE_float("wait_timeout_s", 0.0, "process 0: give up waiting for the other processes' chunks after "
                       "this many seconds (0: wait as long as it takes)")


def main(argv=None) -> None:
    from absl import app, flags
    from ml_collections import config_flags

    from facelift_jax import config as default_config

    config_flags.DEFINE_config_file("config", default_config.__file__,
                                    "experiment config file (default: the library's, facelift_jax/config.py)")
    flags.DEFINE_string("out", None, "output folder (the dataset goes here; reruns resume)", required=True)
    _define_process_flags(flags)

    from facelift_jax import logs

    def _main(_):
        F = flags.FLAGS
        with logs.session("preprocess", logs.absl_verbosity()) as session:
            config_check.check(F.config, "preprocess")  # before any rendering
            session.log_to(F.out)
            with lock_out(F.out, F.process_index, F.process_count):
                run_preprocess(F.config, F.out, process_index=F.process_index, process_count=F.process_count,
                               wait_timeout_s=F.wait_timeout_s or None)
        return 0

    app.run(logs.main_guard(_main), argv=argv, flags_parser=logs.parse_absl_flags)


if __name__ == "__main__":
    main()
