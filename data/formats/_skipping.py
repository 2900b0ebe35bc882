"""``--skip-bad``, as every converter offers it.

A malformed source item (a ``FormatError``: the file, the line, what was expected) stops the
conversion, or with ``--skip-bad`` becomes a ``Skipped`` item whose reason is that error: nothing
is dropped silently, and ``sscl data info`` counts the reasons.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

from sscl.data.corpus import Sequence, Skipped
from sscl.errors import FormatError

T = TypeVar("T")


def add_skip_bad(parser: argparse.ArgumentParser, items: str) -> None:
    """Add ``--skip-bad``; ``items`` names what is skipped, e.g. "malformed clip files"."""
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help=f"record {items} as skipped (with the error) instead of stopping",
    )


def or_skipped(rel: str, make: Callable[[], T], skip_bad: bool, prefix: str = "") -> T | Skipped:
    """``make()``, or with ``skip_bad`` a ``Skipped(rel, prefix + error)`` when it raises a
    ``FormatError`` (without ``skip_bad`` the error propagates)."""
    try:
        return make()
    except FormatError as exc:
        if not skip_bad:
            raise
        return Skipped(rel, f"{prefix}{exc}")


def convert_files(
    src: Path, files: list[Path], convert: Callable[[Path, str], Sequence | Skipped],
    skip_bad: bool,
) -> Iterator[Sequence | Skipped]:
    """``convert(path, path relative to src)`` for each file, in order, through
    :func:`or_skipped`."""
    for path in files:
        rel = str(path.relative_to(src))
        yield or_skipped(rel, partial(convert, path, rel), skip_bad)
