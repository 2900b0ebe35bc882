"""Timing helpers shared by the benchmark modules."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

# The real datasets beside the checkout (../shared/data), as in tests/conftest.py.
SHARED = Path(
    os.environ.get("SSCL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def median_time(fn, repeat: int = 5, number: int = 1) -> float:
    """Median seconds of one call of ``fn`` over ``repeat`` rounds of ``number`` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return statistics.median(times)


def alternating_times(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds of each call of every function in ``fns``, over ``rounds`` rounds that call them in
    turn after one warm-up call each: load from other processes shifts all of them alike."""
    for fn in fns.values():  # warm-up: extension builds, the allocator
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times
