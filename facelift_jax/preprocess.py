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
  multiview/chunks/             one .npz per finished chunk (kept; a restart skips them)
  videos/index.json             [{"video": relative path, "labels": relative npz, "frames": T}]
  videos/*.avi + *.npz          clips and their 2D pseudo-labels landmarks2d (T,98,2), confidence (T,98)
  preview/*.png                 detections vs reprojected lifted points per view; 3D scatter

Restartable: chunk files and video label files are written atomically (temporary file, then
rename), and a rerun with the same plan skips whatever is already there; a rerun with a different
plan (latents, chunking, views, generator, detector, lifting) into the same DIR is refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from facelift_jax import camera as camera_lib
from facelift_jax import stamps
from facelift_jax import landmarks, lifting, media, sources, views
from facelift_jax import random_streams as streams

REGIONS = ("contours", "brows", "nose", "eyes", "mouth")


def default_config() -> ml_collections.ConfigDict:
    """The ``preprocess`` config section: the one source of its defaults (``configs/default.py``
    takes them from here)."""
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


def _section(config) -> ml_collections.ConfigDict:
    base = default_config()
    base.update(dict(config.get("preprocess", {})))
    return base


# ------------------------------------------------------------------------------------ files


def _atomic_write(path: pathlib.Path, write) -> None:
    """Run ``write(tmp_path)`` and rename the result onto ``path`` (same folder, so atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(pathlib.Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_npz(path: pathlib.Path, **arrays) -> None:
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic_write(path, write)


def save_json(path: pathlib.Path, obj) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n"))


def load_npz(path: pathlib.Path) -> dict | None:
    """The arrays of a finished file, or None when it is missing or unreadable (then it is redone)."""
    try:
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError):
        return None


# ------------------------------------------------------------------------------------ multi-view


def _plan(config, pre) -> dict:
    """Everything that decides the chunks' contents; a restart must match it."""
    return dict(
        generator=config.get("generator", "synthetic"), detector=config.get("detector", "synthetic"),
        synthetic=config.synthetic.to_dict() if config.get("generator", "synthetic") == "synthetic" and "synthetic" in config else None,
        first_latent=int(pre.first_latent), num_latents=int(pre.num_latents), chunk_size=int(pre.chunk_size),
        min_confidence=float(pre.min_confidence), image_size=int(config.get("image_size", 224)),
        seed=int(config.get("seed", 0)), views=[list(v) for v in views.LIFTING_VIEWS],
        lifting=dataclasses.asdict(lifting.LiftSettings.from_config(config.get("lifting"))),
    )


def _check_plan(root: pathlib.Path, plan: dict) -> None:
    stamps.check(root / "plan.json", plan, what_is_there="chunks of a different preprocessing plan",
                 fix="use a new --out folder or delete the old one")


def check_plan(config, out_dir) -> None:
    """Refuse the preprocessing output in ``out_dir`` when ``config`` would have made it differently
    (another generator, detector, latents, image size, lifting …): training must not silently
    reuse stale pseudo-labels."""
    _check_plan(pathlib.Path(out_dir) / "multiview", _plan(config, _section(config)))


def render_and_detect(generator, detector, latents, cams, image_size, key, render_batch, keep_images=False):
    """Render every latent in every view and detect: → (det (B,V,98,2), conf (B,V,98), extras).

    extras: ``true3d`` (B,98,3) when the render output carries landmarks3d, ``visible`` (B,V,98)
    when it carries visibility, ``images`` (B,V,H,W,3) if ``keep_images``.
    """
    B, V = len(latents), cams.batch_shape[0]
    lat = np.repeat(np.asarray(latents, np.int64), V)  # latent-major: (b, v) → b·V + v
    view_idx = np.tile(np.arange(V), B)
    dets, confs, true3d, visible, images = [], [], [], [], []
    for s in range(0, B * V, render_batch):
        sl = slice(s, min(s + render_batch, B * V))
        cam_b = cams[view_idx[sl]]
        out = generator.render(lat[sl], cam_b, image_size)
        det, conf = detector.detect(out, jax.random.fold_in(key, s), return_confidence=True)
        dets.append(np.asarray(det, np.float32))
        confs.append(np.asarray(conf, np.float32))
        if getattr(out, "landmarks3d", None) is not None:
            true3d.append(np.asarray(out.landmarks3d, np.float32))
        if getattr(out, "visible", None) is not None:
            visible.append(np.asarray(out.visible, bool))
        if keep_images:
            images.append(np.asarray(out.image))
    det = np.concatenate(dets).reshape(B, V, 98, 2)
    conf = np.concatenate(confs).reshape(B, V, 98)
    extras = {}
    if true3d:
        extras["true3d"] = np.concatenate(true3d).reshape(B, V, 98, 3)[:, 0]
    if visible:
        extras["visible"] = np.concatenate(visible).reshape(B, V, 98)
    if images:
        extras["images"] = np.concatenate(images).reshape((B, V) + images[0].shape[1:])
    return det, conf, extras


def lift_chunk(det, conf, cams, config, min_confidence: float):
    """Mask (view masks ∧ confidence ≥ min_confidence) and lift one chunk → (LiftResult, mask)."""
    mask = views.view_masks()[None] & (conf >= min_confidence)
    return lifting.lift(det, cams, mask, config.get("lifting")), mask


def run_multiview(config, out_dir: pathlib.Path, progress: bool = True) -> pathlib.Path:
    """Render, detect and lift all latents chunk by chunk; assemble ``multiview/``. Returns its path."""
    pre = _section(config)
    root = out_dir / "multiview"
    chunk_dir = root / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    plan = _plan(config, pre)
    _check_plan(root, plan)
    if pre.num_latents < 1 or pre.chunk_size < 1:
        raise ValueError(f"preprocess.num_latents and chunk_size must be ≥ 1, got {pre.num_latents}, {pre.chunk_size}")

    cams = views.lifting_cameras(radius=config.camera.get("radius", camera_lib.DEFAULT_RADIUS),
                                 look_at=tuple(config.camera.get("look_at", camera_lib.DEFAULT_LOOK_AT)))
    latents = np.arange(pre.first_latent, pre.first_latent + pre.num_latents, dtype=np.int64)
    key = jax.random.fold_in(jax.random.key(int(config.get("seed", 0))), streams.PREPROCESS_DETECTIONS)
    generator = detector = None
    starts = list(range(0, len(latents), pre.chunk_size))
    bar = tqdm(total=len(latents), desc="preprocess: render, detect, lift", unit="latent", disable=not progress)
    timing = dict(render_detect_s=0.0, lift_s=0.0)
    for start in starts:
        stop = min(start + pre.chunk_size, len(latents))
        path = chunk_dir / f"chunk_{latents[start]:09d}_{latents[stop - 1]:09d}.npz"
        if load_npz(path) is not None:
            bar.update(stop - start)
            continue
        if generator is None:
            generator, detector = sources.make_generator(config), sources.make_detector(config)
        t0 = time.perf_counter()
        det, conf, extras = render_and_detect(generator, detector, latents[start:stop], cams,
                                              int(config.get("image_size", 224)),
                                              jax.random.fold_in(key, int(latents[start])), int(pre.render_batch))
        t1 = time.perf_counter()
        res, mask = lift_chunk(det, conf, cams, config, float(pre.min_confidence))
        arrays = {k: np.asarray(v) for k, v in dataclasses.asdict(res).items()}
        t2 = time.perf_counter()
        timing["render_detect_s"] += t1 - t0
        timing["lift_s"] += t2 - t1
        save_npz(path, latents=latents[start:stop], detections=det, confidence=conf, mask=mask,
                 **arrays, **{k: v for k, v in extras.items() if k in ("true3d", "visible")})
        bar.update(stop - start)
    bar.close()
    return assemble(root, plan, latents, timing)


def assemble(root: pathlib.Path, plan: dict, latents: np.ndarray, timing: dict) -> pathlib.Path:
    """Concatenate the chunks into pseudo_labels.npz, template.npy and metadata.json."""
    chunks = [load_npz(p) for p in sorted((root / "chunks").glob("chunk_*.npz"))]
    chunks = [c for c in chunks if c is not None and np.isin(c["latents"], latents).all()]
    data = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    order = np.argsort(data["latents"], kind="stable")
    data = {k: v[order] for k, v in data.items()}
    if not np.array_equal(data["latents"], latents):
        raise RuntimeError(f"chunks in {root / 'chunks'} do not cover latents {latents[0]}…{latents[-1]} exactly")
    fields = ["latents", "points3d", "valid", "residual", "num_views", "num_inliers", "status"]
    if "true3d" in data:
        fields.append("true3d")
    save_npz(root / "pseudo_labels.npz", **{k: data[k] for k in fields})
    valid = data["valid"]
    weights = valid[..., None].astype(np.float64)
    counts = weights.sum(0)
    template = np.where(counts > 0, (data["points3d"] * weights).sum(0) / np.maximum(counts, 1), views.canonical_template())
    np.save(root / "template.npy", template.astype(np.float32))
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
            got = load_npz(labels)
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
            got = load_npz(labels)
            if got is None or not video.exists() or got["landmarks2d"].shape[0] != int(pre.frames_per_video):
                if gen is None:
                    gen, det = sources.make_generator(config), sources.make_detector(config)
                # make_video writes the clip, then its labels; both land under temporary names first
                tmp_video = root / f".tmp_video_{seed:06d}.avi"
                synthetic.make_video(seed, tmp_video, frames=int(pre.frames_per_video),
                                     image_size=int(config.get("image_size", 224)), generator=gen, detector=det)
                os.replace(tmp_video, video)
                os.replace(synthetic.labels_path(tmp_video), labels)
                got = load_npz(labels)
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
    save_npz(labels, **out)
    return out


# ------------------------------------------------------------------------------------ pictures


_REGION_COLOURS = {"contours": "tab:orange", "brows": "tab:brown", "nose": "tab:cyan", "eyes": "tab:green",
                   "mouth": "tab:pink", "pupils": "k"}


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
    cams = views.lifting_cameras(radius=config.camera.get("radius", camera_lib.DEFAULT_RADIUS),
                                 look_at=tuple(config.camera.get("look_at", camera_lib.DEFAULT_LOOK_AT)))
    lat = data["latents"][:n]
    generator, detector = sources.make_generator(config), sources.make_detector(config)
    key = jax.random.fold_in(jax.random.key(int(config.get("seed", 0))), streams.PREPROCESS_PREVIEW)
    det, conf, extras = render_and_detect(generator, detector, lat, cams, int(config.get("image_size", 224)), key,
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
        fig.savefig(path, dpi=80)
        written.append(path)

    fig = Figure(figsize=(11, 5.5))
    for k, (elev, azim) in enumerate(((10, -90), (10, 0))):
        ax = fig.add_subplot(1, 2, k + 1, projection="3d")
        P, ok = data["points3d"][0], data["valid"][0]
        for region, colour in _REGION_COLOURS.items():
            idx = landmarks.REGIONS_98[region]
            sel = idx[ok[idx]]
            ax.scatter(P[sel, 0], P[sel, 2], P[sel, 1], s=10, c=colour, label=region)
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
    fig.savefig(path, dpi=80)
    written.append(path)
    return written


# ------------------------------------------------------------------------------------ entry


def run_preprocess(config, out_dir, progress: bool = True) -> pathlib.Path:
    """The whole stage; returns ``out_dir``. Reruns skip finished chunks and videos."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = run_multiview(config, out_dir, progress)
    run_videos(config, out_dir, progress)
    write_previews(config, out_dir)
    meta = json.loads((root / "metadata.json").read_text())
    if progress:
        msg = f"preprocess: {meta['num_latents']} latents, {meta['invalid_points']['excluding_pupils']} invalid points"
        if "error_vs_truth" in meta:
            msg += " | mean 3D error vs truth: " + ", ".join(f"{k} {v:.4f}" for k, v in meta["error_vs_truth"].items())
        print(msg, file=sys.stderr)
    return out_dir


def main(argv=None) -> None:
    from absl import app, flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", "configs/default.py", "experiment config file")
    flags.DEFINE_string("out", None, "output folder (the dataset goes here; reruns resume)", required=True)

    def _main(_):
        run_preprocess(flags.FLAGS.config, flags.FLAGS.out)

    app.run(_main, argv=argv)


if __name__ == "__main__":
    main()
