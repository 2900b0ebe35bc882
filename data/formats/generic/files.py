"""The generic importer's input files: finding them, what a scan learns of each, the notes.

SRC is searched recursively for ``.npz`` and ``.csv`` files, one sequence each, whose id is the
path relative to SRC without the suffix (SRC may also be one such file: its id is its name
without the suffix); the side files (labels, classes, meta) are not
sequences even when they live inside SRC. Folders reached through a symbolic link are not
searched (``Path.rglob`` does not follow them); they are counted in the one warning of
:func:`warn_notes`. Reading the files: sscl.data.formats.generic.npz and .csv_files.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sscl.data.formats._sources import single_file
from sscl.errors import FormatError, SsclWarning


@dataclass(frozen=True)
class Source:
    """One input file, scanned (every shape checked) but not loaded.

    Attributes:
        path: the file.
        seq_id: its sequence id.
        persons: persons M it holds.
        has_labels, has_fps: it holds an npz ``labels`` / ``fps`` member.
        unused: npz members the importer does not use.
        meta: subject / split / camera / setup from the --meta file.
    """

    path: Path
    seq_id: str
    persons: int
    has_labels: bool
    has_fps: bool = False
    unused: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Loaded:
    """One input file's content.

    Attributes:
        joints: (T, V, C, M) float64, as stored (source units and axes).
        valid: (T, V, M) bool, the file's own validity (all True without one).
        labels: (T,) integers, or None.
        fps: the file's frame rate, or None.
        info: "subject" / "split" from the npz.
    """

    joints: np.ndarray
    valid: np.ndarray
    labels: np.ndarray | None = None
    fps: float | None = None
    info: dict[str, str] = field(default_factory=dict)


def find_files(src: Path, side_files: tuple[Path, ...]
               ) -> tuple[Path, list[Path], list[Path]]:
    """(the root that sequence ids are relative to, the sequence files under it, sorted, the
    linked folders not searched). ``src`` is a folder, or one sequence file (its folder is the
    root: sscl.data.formats._sources).

    Raises:
        FormatError: no ``.npz`` or ``.csv`` file; a single file of another kind.
    """
    if single_file(src, (".npz", ".csv"), "a .npz or .csv sequence file") is not None:
        return src.parent, [src], []
    if not src.is_dir():
        raise FormatError(src, "not a folder; expected a folder of .npz/.csv sequences")
    skip = {p.resolve() for p in side_files}
    entries = list(src.rglob("*"))
    linked = sorted(p for p in entries if p.is_symlink() and p.is_dir())
    files = sorted(p for p in entries
                   if p.suffix in (".npz", ".csv") and p.is_file() and p.resolve() not in skip)
    if not files:
        raise FormatError(src, "no .npz or .csv files found"
                          + (f" ({len(linked)} linked folder(s) not searched)" if linked else ""))
    return src, files, linked


def scan_all(src: Path, files: list[Path], scan: Callable[[Path, str], Source]) -> list[Source]:
    """``scan(path, seq_id)`` of every file, in order; ids must be unique.

    Raises:
        FormatError: two files with the same id (``a.npz`` and ``a.csv``).
    """
    sources: list[Source] = []
    ids: dict[str, Path] = {}
    for p in files:
        seq_id = p.relative_to(src).with_suffix("").as_posix()
        if seq_id in ids:
            raise FormatError(
                p, f"sequence id {seq_id!r} also comes from {ids[seq_id]}; expected one file per id"
            )
        ids[seq_id] = p
        sources.append(scan(p, seq_id))
    return sources


def check_limits(path: Path, frames: int, persons: int, max_frames: int, max_persons: int
                 ) -> None:
    """Refuse a file over the --max-frames / --max-persons limits (from its header)."""
    if frames > max_frames:
        raise FormatError(path, f"{frames:,} frames, over the limit of {max_frames:,}; pass "
                          "--max-frames to raise it if the file is genuine")
    if persons > max_persons:
        raise FormatError(path, f"{persons:,} persons, over the limit of {max_persons}; pass "
                          "--max-persons to raise it if the file is genuine")


def warn_notes(src: Path, sources: list[Source], linked: list[Path], fps: float,
               fps_given: bool) -> None:
    """One warning listing what was applied or left out silently before: members not used,
    the default frame rate, linked folders not searched."""
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
