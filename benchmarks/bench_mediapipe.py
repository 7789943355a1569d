"""MediaPipe bridge throughput on CPU: per-frame detection vs tracking, against the bare model.

    python benchmarks/bench_mediapipe.py            # 64 frames of skimage's astronaut, moving
    python benchmarks/bench_mediapipe.py --frames 200

Prints frames/s of ``MediaPipeSource.detect`` (BlazeFace + landmark passes on every frame),
``MediaPipeSource.track`` (landmark passes from the previous frame's crop, the way
``label_video`` labels a user's clip) and, as the baseline measured in the same run, one bare
``face_landmark.tflite`` invocation per frame on a fixed 192² crop (the model's irreducible cost).
Timings on a shared machine are noisy; only the ratios of one run are meaningful.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bridges import mediapipe as mp  # noqa: E402


def moving_frames(n: int) -> np.ndarray:
    """(n, 512, 512, 3) uint8: the astronaut photo sliding 0..40 px right and 0..20 px down."""
    from skimage import data

    image = data.astronaut()
    frames = np.zeros((n, 512, 512, 3), np.uint8)
    for t in range(n):
        dx, dy = round(40 * t / max(n - 1, 1)), round(20 * t / max(n - 1, 1))
        frames[t, dy:, dx:] = image[: 512 - dy, : 512 - dx]
    return frames


def best_of(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    frames = moving_frames(args.frames)
    source = mp.MediaPipeSource()
    detector = source.detector
    crop = np.random.default_rng(0).random((1, 192, 192, 3), dtype=np.float32)

    def bare():
        for _ in range(len(frames)):
            detector._landmarker.set_tensor(detector._lm_in, crop)
            detector._landmarker.invoke()

    source.detect(frames[:2])  # warm-up
    t_bare = best_of(bare, args.reps)
    t_detect = best_of(lambda: source.detect(frames), args.reps)
    t_track = best_of(lambda: source.track(frames), args.reps)
    n = len(frames)
    print(f"{n} frames 512², refine_passes={detector.refine_passes}, pupils={detector.pupils}")
    print(f"  bare landmark model (baseline): {n / t_bare:8.1f} frames/s")
    print(f"  MediaPipeSource.detect:         {n / t_detect:8.1f} frames/s  ({t_detect / t_bare:.2f}× baseline time)")
    print(f"  MediaPipeSource.track:          {n / t_track:8.1f} frames/s  ({t_track / t_bare:.2f}× baseline time)")
    print(f"  track / detect speed-up: {t_detect / t_track:.2f}×")


if __name__ == "__main__":
    main()
