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
from sscl.data.formats._clips import ClipRelease, clip_sequence
from sscl.data.formats._skipping import add_skip_bad

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
RELEASE = ClipRelease(
    folder="kard_realworld", glob="*_realworld.txt",
    pattern=re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_realworld\.txt"),
    shown="aAA_sSS_eEE_realworld.txt", fields="(activity, subject, repetition)",
    expected="the KARD kard_realworld folder", action="activity", layout="openni15",
)
# source (x right, y up, z depth) mm -> right-handed y-up metres: flip z, scale
_TRANSFORM = np.diag([1.0, 1.0, -1.0]) / 1000.0
SOURCE_FRAME = (
    "OpenNI real-world coordinates in millimetres: x to the sensor's right, y up, z depth away "
    "from the sensor (left-handed). Converted by (x, y, z) -> (x, y, -z) / 1000: metres, "
    "right-handed, y up, sensor at the origin looking along -z, person facing +z."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the KARD converter's options (`--skip-bad`)."""
    add_skip_bad(parser, "garbled or truncated clip files")


def read(src: Path, *, skip_bad: bool = False) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Open a KARD folder (`kard/` or `kard/kard_realworld/`).

    Args:
        src: the dataset folder, or one clip file.
        skip_bad: record a malformed clip as `Skipped` (with the error) instead of raising.

    Returns:
        The corpus header and a generator of one `Sequence` (T, 15, 3, 1) float32 per clip.

    Raises:
        FormatError: no `*_realworld.txt` files, a file name off the pattern, or (without
            `skip_bad`, while streaming) a malformed clip.
    """
    return RELEASE.read(src, CLASS_NAMES, FPS, SOURCE_FRAME, _clip, skip_bad)


def _clip(path: Path, rel: str) -> Sequence:
    action, subject, rep = RELEASE.numbers(path, len(CLASS_NAMES))
    xyz_TV3 = RELEASE.frames(path) @ _TRANSFORM.T
    return clip_sequence(path.name.removesuffix("_realworld.txt"), rel, xyz_TV3, action, subject,
                         f"e{rep:02d}")
