"""The training input pipeline: mixed multi-view + multi-frame batches (4 + 4 in the paper).

Built on grain's ``MapDataset`` so every batch is a pure function of (seed, step): the two index
streams are shuffled (a fresh permutation every epoch) and repeated forever, each host takes its
stride of every global batch (``slice(process_index, None, process_count)``), the multi-view
indices are rendered from random cameras per batch, the multi-frame indices are decoded per frame.
The iterator's state is one integer (the next step), saved with the model checkpoint, so a resumed
run sees exactly the batches an uninterrupted run would have seen.

A batch: ``{"multiview": {...}, "multiframe": {...}}`` (a branch is absent when its count is 0),
with this host's share of the global batch (see multiview.py and multiframe.py for the fields).
"""

from __future__ import annotations

import pathlib

import grain
import numpy as np

from facelift_jax import random_streams as streams
from facelift_jax.input_pipeline import labels as labels_lib
from facelift_jax.input_pipeline import pool as pool_lib
from facelift_jax.input_pipeline.multiframe import DecodedFrameSource, FrameSource
from facelift_jax.input_pipeline.multiview import PooledMultiView, RenderMultiView

_ENDLESS = 2**40


def local_batch_size(global_size: int, process_count: int, name: str) -> int:
    if global_size % process_count:
        raise ValueError(f"batch.{name}={global_size} is not divisible by the {process_count} processes")
    return global_size // process_count


def _endless(ds: grain.MapDataset, seed: int, process_index: int, process_count: int) -> grain.MapDataset:
    """Shuffled with a fresh permutation every epoch, repeated forever; this host's stride."""
    # "Forever" = ~2**40 samples: grain's infinite length (sys.maxsize) overflows in batch/zip.
    epochs = max(1, _ENDLESS // len(ds))
    return ds.shuffle(seed=seed).repeat(epochs).slice(slice(process_index, None, process_count))


def multiview_batches(config, pseudo_labels: labels_lib.PseudoLabels, *, process_index: int = 0,
                      process_count: int = 1, rendered: pool_lib.RenderedPool | None = None) -> grain.MapDataset:
    """Batches of multi-view samples: from the rendered pool when given (roll re-drawn per use),
    else rendered on the fly (one generator call for B latents per batch)."""
    b = local_batch_size(int(config.batch.multiview), process_count, "multiview")
    n = len(rendered) if rendered is not None else len(pseudo_labels)
    ds = _endless(grain.MapDataset.range(n), int(config.seed) + streams.MULTIVIEW_SHUFFLE, process_index, process_count)
    transform = PooledMultiView(rendered, pseudo_labels, config) if rendered is not None \
        else RenderMultiView(pseudo_labels, config)
    # Seeded per (seed, batch index): every batch is a pure function of the step.
    seed = int(config.seed) + streams.MULTIVIEW_RENDER + streams.PROCESS_STRIDE * process_index
    return ds.batch(b).random_map(transform, seed=seed)


def multiframe_batches(config, videos: labels_lib.VideoLabels, *, process_index: int = 0,
                       process_count: int = 1, frames: np.ndarray | None = None) -> grain.MapDataset:
    b = local_batch_size(int(config.batch.multiframe), process_count, "multiframe")
    threshold = float(config.data.confidence_threshold)
    source = grain.MapDataset.source(DecodedFrameSource(videos, frames, threshold) if frames is not None
                                     else FrameSource(videos, int(config.image_size), threshold))
    return _endless(source, int(config.seed) + streams.MULTIFRAME_SHUFFLE, process_index, process_count).batch(b)


def _name_branches(*batches, names):
    return dict(zip(names, batches))


def train_dataset(config, data_dir, *, process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
    """Endless MapDataset of mixed batches: element ``k`` is training step ``k``'s batch."""
    data_dir = pathlib.Path(data_dir)
    branches, names = [], []
    use_mv, use_mf = int(config.batch.multiview) > 0, int(config.batch.multiframe) > 0
    labels = labels_lib.load_pseudo_labels(data_dir) if use_mv else None  # MF only: no 3D labels read
    videos = labels_lib.load_video_labels(data_dir) if use_mf else None
    rendered = frames = None
    if int(config.data.pool_size) > 0:  # render once and decode once, then only gather
        progress = process_index == 0
        rendered = pool_lib.load_or_render(config, data_dir, labels, progress=progress) if use_mv else None
        frames = pool_lib.decoded_frames(config, data_dir, videos, progress=progress) if use_mf else None
    if use_mv:
        branches.append(multiview_batches(config, labels, process_index=process_index,
                                          process_count=process_count, rendered=rendered))
        names.append("multiview")
    if use_mf:
        branches.append(multiframe_batches(config, videos, process_index=process_index,
                                           process_count=process_count, frames=frames))
        names.append("multiframe")
    if not branches:
        raise ValueError("batch.multiview and batch.multiframe are both 0: nothing to train on")
    steps = min(len(b) for b in branches)  # the branches' batch counts differ with their batch sizes
    zipped = grain.experimental.ZipMapDataset([b.slice(slice(0, steps)) for b in branches])
    return zipped.map(lambda pair: _name_branches(*pair, names=names))


def train_iterator(config, data_dir, *, process_index: int = 0, process_count: int = 1,
                   state: dict | None = None) -> grain.DatasetIterator:
    """Prefetching iterator over ``train_dataset``; ``state`` (from ``get_state()``) resumes it."""
    ds = train_dataset(config, data_dir, process_index=process_index, process_count=process_count)
    read = grain.ReadOptions(num_threads=int(config.data.num_threads), prefetch_buffer_size=int(config.data.prefetch))
    iterator = iter(ds.to_iter_dataset(read))
    if state:
        iterator.set_state(state)
    return iterator


def steps_per_epoch(config, data_dir=None) -> int:
    """``config.optim.steps_per_epoch``, or when 0 one pass over the lifted latents (frames when no
    multi-view branch)."""
    explicit = int(config.optim.steps_per_epoch)
    if explicit > 0:
        return explicit
    if data_dir is None:
        raise ValueError("optim.steps_per_epoch is 0 (derive from the data) but no data directory was given")
    if int(config.batch.multiview) > 0:
        n = len(labels_lib.load_pseudo_labels(data_dir))
        return max(int(np.ceil(n / int(config.batch.multiview))), 1)
    n = len(labels_lib.load_video_labels(data_dir))
    return max(int(np.ceil(n / int(config.batch.multiframe))), 1)
