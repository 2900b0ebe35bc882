"""Temporary builds beside a destination, and the leftovers of killed writes.

A corpus is built under ``.NAME.tmp-XXXXXXXX`` beside ``NAME`` and renamed into place when
complete (sscl.data.writer.CorpusWriter); an overwrite first moves the old corpus aside to
``.NAME.old-XXXXXXXX``. A write killed by SIGKILL or a power loss cannot clean up, so each
build holds a small owner file (pid and host) and the next write to the same name removes the
builds whose process is gone and names the others to the user (SsclWarning).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import warnings
from pathlib import Path

from sscl.errors import SsclWarning

OWNER_FILE = ".sscl-writer.json"  # in a temporary build: who is writing it


def write_owner(tmp: Path) -> None:
    """Record this process as the writer of the build at ``tmp``."""
    (tmp / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))


def clean_stale_builds(dest: Path) -> None:
    """Remove temporary builds (``.NAME.tmp-*``) whose writer process is gone and moved-
    aside old corpora (``.NAME.old-*``) of a finished swap; name everything else."""
    if not dest.parent.is_dir():
        return
    removed, kept = [], []
    for p in sorted(dest.parent.glob(f".{glob.escape(dest.name)}.*")):
        tail = p.name[len(dest.name) + 1:]
        if tail.startswith(".tmp-"):
            owner = _read_owner(p)
            pid = owner.get("pid") if isinstance(owner, dict) else None
            dead = isinstance(pid, int) and owner.get("host") == socket.gethostname() and \
                not _pid_alive(pid)
            (removed if dead else kept).append(p)
        elif tail.startswith(".old-"):
            # left by a write killed between its two renames: the previous corpus; it is
            # garbage only once a corpus is in place again
            (removed if dest.exists() else kept).append(p)
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    if removed:
        warnings.warn(f"removed {len(removed)} leftover(s) of killed writes to {dest}: "
                      + ", ".join(str(p) for p in removed), SsclWarning, stacklevel=3)
    if kept:
        warnings.warn(f"found {len(kept)} temporary folder(s) beside {dest} from writes "
                      "that may still be running (or from another host, or a previous "
                      "corpus moved aside by a killed write): " + ", ".join(map(str, kept))
                      + "; remove them by hand once no write is running", SsclWarning,
                      stacklevel=3)


def _read_owner(tmp: Path) -> dict | None:
    try:
        return json.loads((tmp / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
