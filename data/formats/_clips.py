"""What the trimmed-clip text releases share (KARD, MSR Action3D, Florence3D).

Each release is one text file per clip, named ``a<action>_s<subject>_<take>...``: the action
class (1-based), the subject, and a take (repetition or video id). Every frame of a clip
carries its action class, and the split is cross-subject (odd subjects train, even test). The
per-release facts (file name pattern, columns, axes) stay in the converter modules; this module
finds the clip files (in the release folder, or one clip file: sscl.data.formats._sources) and
builds the header and sequences.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sscl.data.corpus import CorpusHeader, Sequence, Skipped
from sscl.data.formats._skipping import convert_files
from sscl.data.formats._text import frames_from_rows, parse_table, read_bytes
from sscl.data.layouts import get_layout
from sscl.errors import FormatError


@dataclass(frozen=True)
class ClipRelease:
    """How a release names and holds its clip files.

    Attributes:
        folder: the release's own sub-folder, searched when SRC holds it.
        glob: the clip files' glob pattern inside the folder.
        pattern: the full file name; groups action, subject, take (all digits).
        shown: the file name as the user reads it, e.g. ``aAA_sSS_eEE_realworld.txt``.
        fields: what the three numbers are, e.g. ``(activity, subject, repetition)``.
        expected: what SRC should be, e.g. ``the KARD kard_realworld folder``.
        action: the release's word for its classes ("action" or "activity").
        layout: the joint layout of its files.
        columns: numbers on a line (x y z, or x y z confidence).
        joints: lines per frame (one joint a line, frame-major).
    """

    folder: str
    glob: str
    pattern: re.Pattern
    shown: str
    fields: str
    expected: str
    action: str
    layout: str
    columns: int = 3
    joints: int = 15

    def folder_of(self, src: Path) -> Path:
        """Where the clip files are: ``src``, its sub-folder ``folder``, or (``src`` a clip
        file) its folder."""
        if src.is_file():
            return src.parent
        return src / self.folder if (src / self.folder).is_dir() else src

    def files(self, src: Path) -> tuple[Path, list[Path]]:
        """(the root that ``source_file`` names are relative to, the clip files, sorted).

        ``src`` is the release folder, its sub-folder ``folder``, or one clip file.

        Raises:
            FormatError: no clip files, or a file name off the pattern.
        """
        if src.is_file():
            root, files = src.parent, [src]
        else:
            folder = self.folder_of(src)
            root, files = src, sorted(folder.glob(self.glob))
            if not files:
                raise FormatError(folder, f"no {self.shown} files; expected {self.expected}")
        for f in files:
            if not self.pattern.fullmatch(f.name):
                raise FormatError(f, f"file name is not {self.shown} {self.fields}")
        return root, files

    def numbers(self, path: Path, num_classes: int) -> tuple[int, int, int]:
        """(action 1..K, subject, take) from a clip's file name.

        Raises:
            FormatError: an action outside 1..K.
        """
        action, subject, take = (int(g) for g in self.pattern.fullmatch(path.name).groups())
        if not 1 <= action <= num_classes:
            raise FormatError(path, f"{self.action} a{action:02d} outside a01..a{num_classes:02d}")
        return action, subject, take

    def frames(self, path: Path) -> np.ndarray:
        """(T, joints, columns) float64 of one clip file.

        Raises:
            FormatError: an unreadable file, a line off the column count, a non-number, a
                truncated last frame (naming the line).
        """
        rows, row_lines = parse_table(read_bytes(path), path, self.columns)
        return frames_from_rows(rows, row_lines, path, self.joints)

    def read(self, src: Path, class_names: tuple[str, ...], fps: float, source_frame: str,
             clip: Callable[[Path, str], Sequence | Skipped], skip_bad: bool
             ) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
        """The header, and ``clip(path, relative path)`` of every clip file, lazily (with
        ``skip_bad`` a malformed clip becomes a Skipped item).

        Raises:
            FormatError: as :meth:`files`.
        """
        root, files = self.files(Path(src))
        return self.header(class_names, fps, source_frame), convert_files(root, files, clip,
                                                                           skip_bad)

    def header(self, class_names: tuple[str, ...], fps: float, source_frame: str
               ) -> CorpusHeader:
        """The corpus header: one person, every frame labelled with its clip's class."""
        return CorpusHeader(
            layout=get_layout(self.layout),
            class_names=class_names,
            fps=float(fps),
            persons=1,
            source_frame=source_frame,
            label_rule=f"trimmed clips: every frame carries the clip's {self.action} class "
                       "(aAA -> AA-1)",
        )


def clip_sequence(seq_id: str, rel: str, xyz_TV3: np.ndarray, action: int, subject: int,
                  setup: str, valid_TV: np.ndarray | None = None,
                  split_tags: tuple[str, ...] = ()) -> Sequence:
    """One clip as a corpus sequence.

    Args:
        seq_id: the clip's id; rel: its file relative to the release root.
        xyz_TV3: (T, V, 3) metres in the corpus frame.
        action: the 1-based class (every frame gets action - 1).
        subject: the subject number (odd subjects train, even test: the ``xsub`` tag).
        setup: the take, e.g. ``e02``.
        valid_TV: (T, V) bool, or None (a joint is valid unless all zeros).
        split_tags: tags beyond ``xsub``.

    Returns:
        Sequence with joints (T, V, 3, 1) float32, labels (T,) int16.
    """
    xsub = "xsub:train" if subject % 2 else "xsub:test"
    return Sequence(
        seq_id=seq_id,
        joints=xyz_TV3[..., None].astype(np.float32),
        source_file=rel,
        labels=np.full(xyz_TV3.shape[0], action - 1, dtype=np.int16),
        valid=None if valid_TV is None else valid_TV[..., None],
        subject=f"s{subject:02d}",
        setup=setup,
        split_tags=(xsub, *split_tags),
    )
