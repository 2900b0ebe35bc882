"""Shared benchmark plumbing: a ratio table printed at the end of `pytest bench/`.

Speed claims are ratios against a baseline measured in the same run (HOUSE_STYLE "Tests and
benchmarks"). `ratios.add(...)` records one row; targets are checked only when benchmarks are
enabled (`--benchmark-disable`, used as a smoke test in CI, skips the checks but still runs the
code once).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # bench modules import benchutil

_ROWS: list[tuple[str, str, float, str, str]] = []


class Ratios:
    def __init__(self, config):
        self.enabled = not config.getoption("benchmark_disable", False)
        self.missed: list[str] = []

    def add(self, name: str, ratio: float, target: float | None = None, detail: str = "",
            higher_is_better: bool = True) -> None:
        """Record ``ratio`` (ours vs baseline); fail when a target is missed with timing on."""
        ok = "" if target is None else (
            "ok" if (ratio >= target if higher_is_better else ratio <= target) else "MISSED")
        tgt = "" if target is None else (">=" if higher_is_better else "<=") + f"{target:g}"
        _ROWS.append((name, f"{ratio:.2f}x", ratio, tgt + (f" {ok}" if ok else ""), detail))
        if self.enabled and ok == "MISSED":
            self.missed.append(f"{name}: ratio {ratio:.2f} missed target {tgt} ({detail})")


@pytest.fixture
def ratios(request):
    """Records ratio rows; a missed target fails the test after all its rows are recorded."""
    r = Ratios(request.config)
    yield r
    if r.missed:
        pytest.fail("; ".join(r.missed))


def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    tr = terminalreporter
    tr.section("sscl ratios (ours / baseline, same run)")
    w = max(len(r[0]) for r in _ROWS)
    for name, ratio, _, tgt, detail in _ROWS:
        tr.write_line(f"{name:<{w}}  {ratio:>8}  {tgt:<14} {detail}")
