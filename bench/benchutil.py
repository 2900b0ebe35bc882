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
