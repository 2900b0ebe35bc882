"""The baselines every speed ratio divides by are frozen: a change needs its reason in bench/README.

bench/README.md "Frozen baselines" lists each baseline with the sha256 prefix of its source. A
changed baseline fails here until that table carries the new digest and a line saying why, so
no ratio moves silently because its denominator did.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from pathlib import Path

import bench_train

BENCH = Path(__file__).resolve().parent


def digests() -> dict[str, str]:
    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    return {
        "bench/reference_stgcn.py": h((BENCH / "reference_stgcn.py").read_text()),
        "bench/per_sample_baseline.py": h((BENCH / "per_sample_baseline.py").read_text()),
        "bench/bench_train.py::_step_flops": h(inspect.getsource(bench_train._step_flops)),
    }


def test_baselines_match_the_digests_recorded_with_their_reasons():
    text = (BENCH / "README.md").read_text()
    section = text.split("## Frozen baselines", 1)[1].split("\n## ", 1)[0]
    recorded = dict(re.findall(r"^\| `([^`]+)` \| `([0-9a-f]{16})` \|", section, re.M))
    for name, digest in digests().items():
        assert name in recorded, f"bench/README.md 'Frozen baselines' lacks a row for {name}"
        assert recorded[name] == digest, (
            f"{name} changed (sha256 prefix {digest}, recorded {recorded[name]}): a baseline "
            "change moves every ratio that divides by it; put the new digest and the reason in "
            "bench/README.md 'Frozen baselines'")
