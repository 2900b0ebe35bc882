"""The generic importer's per-sequence metadata: the --meta file and split tags.

``--meta FILE``: CSV with a header naming ``seq_id`` and any of ``subject``, ``split``,
``camera``, ``setup``; its values override the npz ones. A seq_id that names no file, or leads
outside SRC (``..``, absolute), is an error. A split such as "test" becomes the split tag
"split:test"; one with a colon, "xsub:test", is kept; several are separated by spaces or commas.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Collection
from pathlib import Path, PurePosixPath

from sscl.errors import FormatError

META_COLUMNS = ("subject", "split", "camera", "setup")
_SPLIT_RE = re.compile(r"[,\s]+")


def split_tags(value: str) -> tuple[str, ...]:
    """``"test"`` -> ("split:test",); ``"xsub:test, xview:train"`` kept as two tags."""
    return tuple(t if ":" in t else f"split:{t}" for t in _SPLIT_RE.split(value.strip()) if t)


def read_meta(path: Path, ids: Collection[str], src: Path) -> dict[str, dict[str, str]]:
    """Per-sequence subject / split / camera / setup rows of a --meta CSV, by seq_id.

    Raises:
        FormatError: an unreadable file, no header naming seq_id, an unknown column, a row of
            the wrong length, a seq_id outside ``src``, naming no file or listed twice.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read the meta file ({exc})") from exc
    rows = list(csv.reader(io.StringIO(text)))
    rows = [[c.strip() for c in r] for r in rows if any(c.strip() for c in r)]
    if not rows or "seq_id" not in rows[0]:
        raise FormatError(path, "expected a header row naming seq_id and any of "
                          + ", ".join(META_COLUMNS), line=1)
    head = rows[0]
    unknown = [c for c in head if c != "seq_id" and c not in META_COLUMNS]
    if unknown:
        raise FormatError(path, f"unknown column(s) {unknown}; expected seq_id and any of "
                          + ", ".join(META_COLUMNS), line=1)
    out: dict[str, dict[str, str]] = {}
    for line, r in enumerate(rows[1:], start=2):
        if len(r) != len(head):
            raise FormatError(path, f"{len(r)} fields; the header has {len(head)}", line=line)
        rec = dict(zip(head, r))
        sid = rec.pop("seq_id")
        parts = PurePosixPath(sid).parts
        if sid.startswith("/") or ".." in parts or "\\" in sid:
            raise FormatError(path, f"seq_id {sid!r} leads outside {src}; expected an id "
                              "relative to it (its path without the suffix)", line=line)
        if sid not in ids:
            raise FormatError(path, f"seq_id {sid!r} matches no file in {src}", line=line)
        if sid in out:
            raise FormatError(path, f"seq_id {sid!r} is listed twice", line=line)
        out[sid] = rec
    return out
