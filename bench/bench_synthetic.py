"""Synthetic corpus throughput: frames generated per second on one core.

The issue's target is at least 1M frames per minute on one core (16,667 frames/s) for
`sscl.data.synthetic.generate_sequence` with the default `SynthConfig` (sensor noise on). The
ratio row is measured frames/s over that target (there is no competing generator to race; the
work is numpy-vectorised forward kinematics over all frames of a sequence at once). Writing the
corpus is the writer's cost and is benchmarked in ``bench_corpus.py``.

Run ``pytest bench/bench_synthetic.py -s`` (or ``python bench/bench_synthetic.py``). Pin one core
with ``OMP_NUM_THREADS=1 taskset -c 0`` for the one-core figure; the generator itself is
single-threaded numpy.
"""

from __future__ import annotations

import time

from sscl.data.synthetic import SynthConfig, generate_sequence

TARGET_FRAMES_PER_S = 1_000_000 / 60
CFG = SynthConfig()
SEQUENCES = range(16)  # ~32k frames at the default 1000-3000 frames per sequence


def _generate() -> int:
    return sum(len(generate_sequence(0, i, CFG).labels) for i in SEQUENCES)


def test_synthetic_frames_per_second(benchmark, ratios):
    frames = _generate()  # warm up (imports, layout cache)
    benchmark.pedantic(_generate, rounds=3, iterations=1)
    seconds = benchmark.stats.stats.median if benchmark.stats else None
    if seconds is None:  # --benchmark-disable: time one pass by hand
        t = time.perf_counter()
        _generate()
        seconds = time.perf_counter() - t
    fps = frames / seconds
    benchmark.extra_info.update(
        frames=frames, frames_per_s=round(fps), frames_per_min=round(fps * 60)
    )
    ratios.add(
        "synthetic generate_sequence vs 1M frames/min",
        fps / TARGET_FRAMES_PER_S,
        target=1.0,
        detail=f"{fps:,.0f} frames/s ({fps * 60 / 1e6:.2f}M frames/min), {frames} frames",
    )


if __name__ == "__main__":
    n = _generate()
    t = time.perf_counter()
    n = _generate()
    dt = time.perf_counter() - t
    print(
        f"{n} frames in {dt:.2f} s: {n / dt:,.0f} frames/s = {n / dt * 60 / 1e6:.2f}M frames/min "
        f"({n / dt / TARGET_FRAMES_PER_S:.2f}x the 1M frames/min target)"
    )
