"""KARD (Kinect Activity Recognition Dataset) real-world skeleton clips -> corpus sequences.

Source: Gaglio, Lo Re, Morana, "Human Activity Recognition Process Using 3-D Posture Data",
IEEE THMS 2014; skeleton-only release `kard_realworld/aAA_sSS_eEE_realworld.txt` (AA activity
01..18, SS subject 01..10, EE repetition 01..03). Each file is one trimmed clip: 15 lines per
frame (frame-major), `x y z` OpenNI real-world coordinates in millimetres, joints in the
`openni15` order (head, neck, right shoulder/elbow/hand, left shoulder/elbow/hand, torso, right
hip/knee/foot, left hip/knee/foot).

Axes, measured on all 540 clips: y is up (head above feet in every frame), z is the depth away
from the sensor (~2.7 m), and the stated left shoulder lies at larger x than the right one in 99%
of frames while the person faces the sensor, so x points to the sensor's right and the source
frame is left-handed (x right, y up, z forward). The converter maps (x, y, z) mm ->
(x, y, -z) / 1000 m: right-handed, y up, sensor at the origin looking along -z, the person facing
+z with the left side at +x (the anatomy of a right-handed frame; see tests).

Labels: trimmed clips, every frame carries the clip's class (AA - 1). Frame rate: 30 fps, assumed
(the Kinect v1 / OpenNI nominal rate; the files carry no timestamps). Split: cross-subject, odd
subjects train, even subjects test (`xsub:train` / `xsub:test`), MSR Action3D's protocol applied
here; subject ids stay in the metadata for leave-one-subject-out.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sscl.data.corpus import CorpusHeader, Sequence, Skipped
from sscl.data.formats._text import convert_files, frames_from_rows, parse_table, read_bytes
from sscl.data.layouts import get_layout
from sscl.errors import FormatError

NAME = "kard"

CLASS_NAMES = (
    "horizontal arm wave",
    "high arm wave",
    "two hand wave",
    "catch cap",
    "high throw",
    "draw X",
    "draw tick",
    "toss paper",
    "forward kick",
    "side kick",
    "take umbrella",
    "bend",
    "hand clap",
    "walk",
    "phone call",
    "drink",
    "sit down",
    "stand up",
)
FPS = 30.0
_FILE_RE = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_realworld\.txt")
# source (x right, y up, z depth) mm -> right-handed y-up metres: flip z, scale
_TRANSFORM = np.diag([1.0, 1.0, -1.0]) / 1000.0
SOURCE_FRAME = (
    "OpenNI real-world coordinates in millimetres: x to the sensor's right, y up, z depth away "
    "from the sensor (left-handed). Converted by (x, y, z) -> (x, y, -z) / 1000: metres, "
    "right-handed, y up, sensor at the origin looking along -z, person facing +z."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the KARD converter's options (`--skip-bad`)."""
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="record garbled or truncated clip files as skipped instead of aborting",
    )


def read(src: Path, *, skip_bad: bool = False) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Open a KARD folder (`kard/` or `kard/kard_realworld/`).

    Args:
        src: the dataset folder.
        skip_bad: record a malformed clip as `Skipped` (with the error) instead of raising.

    Returns:
        The corpus header and a generator of one `Sequence` (T, 15, 3, 1) float32 per clip.

    Raises:
        FormatError: no `*_realworld.txt` files, a file name off the pattern, or (without
            `skip_bad`, while streaming) a malformed clip.
    """
    src = Path(src)
    folder = src / "kard_realworld" if (src / "kard_realworld").is_dir() else src
    files = sorted(folder.glob("*_realworld.txt"))
    if not files:
        raise FormatError(
            folder, "no aAA_sSS_eEE_realworld.txt files; expected the KARD kard_realworld folder"
        )
    for f in files:
        if not _FILE_RE.fullmatch(f.name):
            raise FormatError(
                f, "file name is not aAA_sSS_eEE_realworld.txt (activity, subject, repetition)"
            )
    header = CorpusHeader(
        layout=get_layout("openni15"),
        class_names=CLASS_NAMES,
        fps=FPS,
        persons=1,
        source_frame=SOURCE_FRAME,
        label_rule="trimmed clips: every frame carries the clip's activity class (aAA -> AA-1)",
    )
    return header, convert_files(src, files, _clip, skip_bad)


def _clip(path: Path, rel: str) -> Sequence:
    action, subject, rep = (int(g) for g in _FILE_RE.fullmatch(path.name).groups())
    if not 1 <= action <= len(CLASS_NAMES):
        raise FormatError(path, f"activity a{action:02d} outside a01..a{len(CLASS_NAMES):02d}")
    rows, row_lines = parse_table(read_bytes(path), path, 3)
    xyz_TV3 = frames_from_rows(rows, row_lines, path, 15) @ _TRANSFORM.T
    t = xyz_TV3.shape[0]
    return Sequence(
        seq_id=path.name.removesuffix("_realworld.txt"),
        joints=xyz_TV3[..., None].astype(np.float32),
        source_file=rel,
        labels=np.full(t, action - 1, dtype=np.int16),
        subject=f"s{subject:02d}",
        setup=f"e{rep:02d}",
        split_tags=("xsub:train" if subject % 2 else "xsub:test",),
    )
