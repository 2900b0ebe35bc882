"""The generic importer's side inputs and notes: the class list (text or JSON), the --meta
file of per-sequence subjects and splits, the size limits, and the one warning that lists what
was applied or left out (unused npz members, the default fps, linked folders).
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings
from pathlib import Path, PurePosixPath

from sscl.errors import FormatError, SsclWarning

META_COLUMNS = ("subject", "split", "camera", "setup")
_SPLIT_RE = re.compile(r"[,\s]+")


def read_classes(path: Path) -> tuple[str, ...]:
    """Class names from a text file (one per line) or JSON (a list, or {"classes": [...]})."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read the class list ({exc})") from exc
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise FormatError(path, f"not valid JSON ({exc}); expected a list of class names "
                              'or {"classes": [...]}') from exc
        doc = doc.get("classes") if isinstance(doc, dict) else doc
        if not isinstance(doc, list) or not all(isinstance(n, str) and n.strip() for n in doc):
            raise FormatError(path, 'expected a JSON list of class names or {"classes": [...]}')
        names = [n.strip() for n in doc]
    else:
        names = [line.strip() for line in text.split("\n") if line.strip()]
    if not names:
        raise FormatError(path, "no class names; expected one name per line")
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise FormatError(path, f"class {dup!r} is listed twice")
    return tuple(names)


def check_limits(path: Path, frames: int, persons: int, max_frames: int, max_persons: int
                  ) -> None:
    if frames > max_frames:
        raise FormatError(path, f"{frames:,} frames, over the limit of {max_frames:,}; pass "
                          "--max-frames to raise it if the file is genuine")
    if persons > max_persons:
        raise FormatError(path, f"{persons:,} persons, over the limit of {max_persons}; pass "
                          "--max-persons to raise it if the file is genuine")


def split_tags(value: str) -> tuple[str, ...]:
    """``"test"`` -> ("split:test",); ``"xsub:test, xview:train"`` kept as two tags."""
    return tuple(t if ":" in t else f"split:{t}" for t in _SPLIT_RE.split(value.strip()) if t)


def read_meta(path: Path, ids: dict[str, Path], src: Path) -> dict[str, dict[str, str]]:
    """Per-sequence subject / split / camera / setup rows of a --meta CSV, by seq_id."""
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


def warn_unused(src: Path, sources: list, linked: list[Path], fps: float,
                 fps_given: bool) -> None:
    """One warning listing what was applied or left out silently before: members not used,
    the default frame rate, linked folders not searched (``sources``: the importer's scanned
    files, with ``unused`` members and ``has_fps``)."""
    notes = []
    unused: dict[str, int] = {}
    for s in sources:
        for k in s.unused:
            unused[k] = unused.get(k, 0) + 1
    if unused:
        notes.append("members not used: " + ", ".join(f"{k} (in {n} file(s))" for k, n in
                                                      sorted(unused.items())))
    no_fps = sum(1 for s in sources if not s.has_fps)
    if no_fps and not fps_given:
        notes.append(f"{no_fps} file(s) without 'fps' take the default {fps:g} fps (--fps)")
    if linked:
        shown = ", ".join(str(p.relative_to(src)) for p in linked[:5])
        notes.append(f"{len(linked)} linked folder(s) not searched: {shown}"
                     + (" ..." if len(linked) > 5 else ""))
    if notes:
        warnings.warn(f"generic import of {src}: " + "; ".join(notes), SsclWarning,
                      stacklevel=3)
