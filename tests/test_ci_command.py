"""The README's test command is the one CI runs (README.md Quick start, .ci/run)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", quick, flags=re.S)
    (command,) = [b for b in blocks if "pytest" in b]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert command in ci, f"README's test command {command!r} is not a line of .ci/run"
    assert "--durations=15" in command  # the suite's slowest tests stay visible in CI logs
