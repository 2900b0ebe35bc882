"""The code version a run records: the package version, plus the git commit of a checkout."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from sscl import __version__


@functools.cache
def code_version() -> str:
    """``0.1.0+<short commit>`` when running from a git checkout, else the package version."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return f"{__version__}+{head}" if head else __version__
