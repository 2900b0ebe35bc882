"""Generic ``.csv`` sequences: one frame per line, persons one after the other.

A row holds V*C values per person, joint-major (j0 x, j0 y, j0 z, j1 x, ...), separated by
commas or whitespace; every row holds the same number of values. A first line that is not
numeric is a header and skipped. A CSV carries no validity, labels or frame rate.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sscl.data.formats._text import parses
from sscl.data.formats.generic.files import Loaded, Source, check_limits
from sscl.data.formats.generic.options import GenericOptions
from sscl.errors import FormatError

_SPLIT_RE = re.compile(r"[,\s]+")


def parse_csv_text(text: str, path: str | Path, width: int) -> np.ndarray:
    """Parse a generic CSV sequence.

    Args:
        text: the whole file.
        path: for error messages.
        width: values per person (V * C); every row must hold a positive multiple of it, the
            same on every row.

    Returns:
        (T, n) float64, n = values per row (0 rows -> shape (0, width)).

    Raises:
        FormatError: a row of the wrong length or with a non-number, naming its line.
    """
    lines = text.split("\n")
    rows: list[tuple[int, list[str]]] = []
    for i, raw in enumerate(lines, start=1):
        tokens = [t for t in _SPLIT_RE.split(raw.strip()) if t]
        if tokens:
            rows.append((i, tokens))
    if rows and not all(parses(float, t) for t in rows[0][1]):
        rows = rows[1:]  # header line
    if not rows:
        return np.zeros((0, width), dtype=np.float64)
    n = len(rows[0][1])
    if n % width:
        raise FormatError(
            path,
            f"a row holds {n} values; expected a multiple of V*C = {width} (persons x joints x "
            "channels of the layout)",
            line=rows[0][0],
        )
    out = np.empty((len(rows), n), dtype=np.float64)
    for r, (i, tokens) in enumerate(rows):
        if len(tokens) != n:
            raise FormatError(
                path, f"row holds {len(tokens)} values; expected {n} like the first row", line=i
            )
        try:
            out[r] = np.array(tokens, dtype=np.float64)
        except ValueError:
            raise FormatError(path, "a value is not a number", line=i) from None
    return out


def _values(path: Path, opts: GenericOptions) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read the file as text ({exc})") from exc
    return parse_csv_text(text, path, opts.layout.num_joints * opts.layout.channels)


def scan(path: Path, seq_id: str, opts: GenericOptions) -> Source:
    """Parse the rows once to learn the persons and check the limits.

    Raises:
        FormatError: an unreadable file, a bad row, a limit passed.
    """
    values = _values(path, opts)
    persons = max(1, values.shape[1] // (opts.layout.num_joints * opts.layout.channels))
    check_limits(path, len(values), persons, opts.max_frames, opts.max_persons)
    return Source(path, seq_id, persons, False)


def load(s: Source, opts: GenericOptions) -> Loaded:
    """(T, V, C, M) joints, all valid; no labels, no frame rate."""
    V, C = opts.layout.num_joints, opts.layout.channels
    values = _values(s.path, opts)
    T, M = len(values), max(1, values.shape[1] // (V * C))
    joints = values.reshape(T, M, V, C).transpose(0, 2, 3, 1)
    return Loaded(joints, np.ones((T, V, M), dtype=bool))
