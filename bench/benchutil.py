"""Timing helpers shared by the benchmark modules."""

from __future__ import annotations

import statistics
import time


def median_time(fn, repeat: int = 5, number: int = 1) -> float:
    """Median seconds of one call of ``fn`` over ``repeat`` rounds of ``number`` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return statistics.median(times)
