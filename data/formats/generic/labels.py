"""The generic importer's labels: the class list, the --labels rows, and each frame's label.

``--classes``: one class name per line, or JSON (a list of names, or {"classes": [...]}).
``--labels``: CSV rows ``seq_id,start,end,class`` (optional header): frames start..end-1 take
the class, an index or a --classes name; the later row wins; in a sequence with rows, uncovered
frames are background (K). Without --classes, indices in --labels define K = max + 1 (names
class_0..) and npz ``labels`` are refused (K unknown). npz ``labels`` (T,) in -1..K are taken as
given, -1 unlabelled or, with ``--minus-one background``, background. A sequence with both rows
and npz ``labels`` is an error (ambiguous).
"""

from __future__ import annotations

import json
from collections.abc import Sequence as Seq
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sscl.data.formats._text import comma_rows, parses
from sscl.data.formats.generic.files import Source
from sscl.data.formats.generic.options import GenericOptions
from sscl.errors import FormatError


@dataclass(frozen=True)
class LabelRows:
    """The rows of a --labels file, checked against the classes and the sequence ids.

    Attributes:
        path: the file.
        by_seq: seq_id -> [(line, start, end, class index)], in file order.
    """

    path: Path
    by_seq: dict[str, list[tuple[int, int, int, int]]]


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


def parse_label_rows(text: str, path: str | Path) -> list[tuple[int, str, int, int, str]]:
    """Rows (line, seq_id, start, end, class token) of a label CSV; a non-integer start on the
    first row marks a header.

    Raises:
        FormatError: wrong field count, non-integer start/end, or end <= start, with the line.
    """
    out: list[tuple[int, str, int, int, str]] = []
    for k, (i, fields) in enumerate(comma_rows(text, path, "seq_id,start,end,class")):
        try:
            start, end = int(fields[1]), int(fields[2])
        except ValueError:
            if k == 0:
                continue  # header
            raise FormatError(
                path, f"start and end must be integers, got {fields[1]!r}, {fields[2]!r}", line=i
            ) from None
        if start < 0 or end <= start:
            raise FormatError(
                path, f"expected 0 <= start < end (end exclusive), got {start}, {end}", line=i
            )
        if not fields[0] or not fields[3]:
            raise FormatError(path, "seq_id and class must not be empty", line=i)
        out.append((i, fields[0], start, end, fields[3]))
    return out


def read_label_rows(path: Path, class_names: tuple[str, ...] | None, ids: Seq[str], src: Path
                    ) -> tuple[tuple[str, ...], LabelRows]:
    """The --labels file, its classes resolved (``class_names`` None: indices define them).

    Returns:
        (the class names, the rows).

    Raises:
        FormatError: an unreadable file, a bad row, a class name without --classes, a class
            that is not one of them, a seq_id that names no file (each naming the line).
    """
    try:
        rows = parse_label_rows(path.read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read the label file ({exc})") from exc
    if class_names is None:
        bad = next((r for r in rows if not parses(int, r[4])), None)
        if bad is not None:
            raise FormatError(path, f"class {bad[4]!r} is a name; pass --classes to name the "
                              "classes", line=bad[0])
        class_names = tuple(
            f"class_{k}" for k in range(max((int(r[4]) for r in rows), default=-1) + 1)
        )
    index = {c: k for k, c in enumerate(class_names)}
    known = set(ids)
    by_seq: dict[str, list[tuple[int, int, int, int]]] = {}
    for line, seq_id, start, end, cls in rows:
        k = int(cls) if parses(int, cls) else index.get(cls)
        if k is None or not 0 <= k < len(class_names):
            raise FormatError(
                path,
                f"class {cls!r} is not one of the {len(class_names)} classes "
                f"(index 0..{len(class_names) - 1} or a --classes name)",
                line=line,
            )
        if seq_id not in known:
            raise FormatError(path, f"seq_id {seq_id!r} matches no file in {src}", line=line)
        by_seq.setdefault(seq_id, []).append((line, start, end, k))
    return class_names, LabelRows(path, by_seq)


def classes_and_rows(opts: GenericOptions, sources: list[Source], src: Path
                     ) -> tuple[tuple[str, ...], LabelRows | None]:
    """The corpus classes and the --labels rows, checked against the files' npz ``labels``.

    Raises:
        FormatError: as :func:`read_classes` and :func:`read_label_rows`; npz ``labels``
            without --classes; a file with both npz ``labels`` and rows.
    """
    class_names = read_classes(opts.classes) if opts.classes is not None else None
    rows = None
    if opts.labels is not None:
        class_names, rows = read_label_rows(opts.labels, class_names,
                                            [s.seq_id for s in sources], src)
    if class_names is None:
        with_labels = next((s for s in sources if s.has_labels and not opts.ignore_labels),
                           None)
        if with_labels is not None:
            raise FormatError(
                with_labels.path,
                "holds 'labels' but no --classes was given; K (background) is unknown",
            )
        class_names = ()
    if rows is not None:
        both = next((s for s in sources if s.has_labels and s.seq_id in rows.by_seq), None)
        if both is not None:
            raise FormatError(both.path, f"has both npz 'labels' and rows in {rows.path}; "
                              "keep one")
    return class_names, rows


def label_rule(opts: GenericOptions, rows: LabelRows | None) -> str:
    """The corpus attribute ``label_rule``: how the frame labels were derived."""
    if opts.ignore_labels:
        return "input labels ignored (--ignore-labels): every frame unlabelled (-1)"
    rule = (f"label rows of {rows.path} cover frames [start, end) (later row wins, uncovered "
            "frames background); " if rows is not None else "")
    if opts.minus_one == "unlabelled":
        return rule + "npz 'labels' taken as given, -1 unlabelled"
    return rule + "npz 'labels' taken as given, -1 read as background"


def frame_labels(s: Source, labels: np.ndarray | None, num_frames: int, num_classes: int,
                 opts: GenericOptions, rows: LabelRows | None) -> np.ndarray | None:
    """(T,) int16 labels of one sequence from its npz ``labels`` or its rows; None: none.

    Raises:
        FormatError: an npz label outside -1..K, a row past the sequence's end.
    """
    K = num_classes
    if labels is not None:
        bad = (labels < -1) | (labels > K)
        if bad.any():
            t = int(np.flatnonzero(bad)[0])
            raise FormatError(s.path, f"labels[{t}] = {int(labels[t])}; expected -1..{K} "
                              f"(-1 unlabelled, {K} background)")
        labels = labels.astype(np.int16)
        if opts.minus_one == "background":
            labels[labels == -1] = K
    if rows is not None and s.seq_id in rows.by_seq:
        labels = np.full(num_frames, K, dtype=np.int16)
        for line, start, end, k in rows.by_seq[s.seq_id]:
            if end > num_frames:
                raise FormatError(rows.path, f"row ends at frame {end} but {s.seq_id} has "
                                  f"{num_frames} frames", line=line)
            labels[start:end] = k
    return labels
