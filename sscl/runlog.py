"""The run's log: the ``sscl`` logger writes to ``train.log`` and the terminal (main process).

Other ranks log nothing (their lines would repeat rank 0's). :func:`warn_once` is for warnings
that a loop could repeat every step: the first one is logged, later ones with the same key are
not.
"""

from __future__ import annotations

import logging
import sys

from sscl.rundir import RunDir

log = logging.getLogger("sscl")
_warned: set[str] = set()


def setup_logging(run: RunDir, is_main: bool) -> None:
    """Log lines to ``run.log_file`` and stderr on the main process; nowhere on the others."""
    log.setLevel(logging.INFO)
    log.handlers.clear()
    log.propagate = False
    _warned.clear()
    if not is_main:
        log.addHandler(logging.NullHandler())
        return
    fh = logging.FileHandler(run.log_file)
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(fh)
    log.addHandler(sh)


def warn_once(key: str, message: str) -> bool:
    """Log ``warning: <message>`` the first time ``key`` is seen in this run; returns whether it
    was logged."""
    if key in _warned:
        return False
    _warned.add(key)
    log.warning("warning: %s", message)
    return True
