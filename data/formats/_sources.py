"""A converter's SRC: a folder of sequence files, or one such file.

The formats that hold one sequence per file (generic ``.npz``/``.csv``, NTU ``.skeleton``,
PKU-MMD skeleton ``.txt``, CMU ``.amc``, and the trimmed-clip releases KARD, MSR Action3D and
Florence3D) accept a single file wherever they accept a folder of them, so that ``sscl predict``
can score one new recording: the file converts as if its folder held only it, and its
``source_file`` is its name. MSRC-12 (a csv and its tagstream) and BABEL (sequences named by
json entries) have no single-file sequence.
"""

from __future__ import annotations

from pathlib import Path

from sscl.errors import FormatError


def single_file(src: Path, suffixes: tuple[str, ...], what: str) -> Path | None:
    """``src`` when it is a file whose name ends in one of ``suffixes`` (as the converter's
    folder search spells them); None when it is not a file (a folder, or nothing: the
    converter words that).

    Args:
        src: the converter's SRC.
        suffixes: the endings of the format's sequence files.
        what: the files as the user knows them, e.g. "an NTU .skeleton file".

    Raises:
        FormatError: a file of another kind, naming what the converter expects.
    """
    if not src.is_file():
        return None
    if not src.name.endswith(suffixes):
        raise FormatError(src, f"not {what}; expected {what} or a folder of them")
    return src
