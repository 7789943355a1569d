"""Grain input pipelines for training (multi-view renders + multi-frame video frames) and the
held-out synthetic test set."""

from facelift_jax.input_pipeline.labels import (PseudoLabels, VideoLabels, has_pseudo_labels, load_pseudo_labels,
                                      load_template, load_video_labels)
from facelift_jax.input_pipeline.pipeline import steps_per_epoch, train_dataset, train_iterator

__all__ = [
    "PseudoLabels", "VideoLabels", "has_pseudo_labels", "load_pseudo_labels", "load_template",
    "load_video_labels", "steps_per_epoch", "train_dataset", "train_iterator",
]
