"""Florence 3D Actions skeleton clips (`aAA_sS_idN.txt`) -> corpus sequences.

Source: Seidenari et al., "Recognizing actions from depth cameras as weakly aligned multi-part
bag-of-poses", CVPRW 2013; the per-video split of the original single text file
(`florence/aAA_sS_idN.txt`: AA action 01..09, S subject 1..10, N video id). Each file is one
trimmed clip: 15 lines per frame (frame-major), `x y z` OpenNI real-world millimetres, joints in
the `florence15` order of `sscl.data.layouts` (established there from the data; the files do not
state it).

Axes, measured on all 215 clips: y up (joint 0, head, highest), z depth away from the sensor
(~2.7 m). The layout's left shoulder (joint 3) lies at smaller x than the right one (joint 6) in
99.9% of frames, the opposite of KARD's OpenNI files (stated left shoulder at larger x in 99%),
i.e. this release's x axis is mirrored (x to the sensor's left), which makes (x, y, z)
right-handed for a person facing the sensor. (The layout's right wrist is the one raised higher
in 76% / 73% of the "drink" / "answer phone" clips, as for mostly right-handed subjects; KARD's
stated right hand in 100% of its "drink" / "phone call" clips.)
The converter applies (x, y, z) mm -> (-x, y, -z) / 1000 m (a 180-degree turn about the
vertical plus scaling): right-handed, y up, sensor at the origin looking along -z, the person
facing +z, the same frame as the KARD converter gives.

Labels: every frame carries the clip's class (AA - 1), class names from the original readme.
Frame rate: not stated anywhere for this release; 30 fps (Kinect nominal) is assumed and
`--fps` overrides it. Split: cross-subject, odd subjects train, even test (`xsub:train` /
`xsub:test`); subject ids stay in the metadata for leave-one-subject-out.
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
from sscl.errors import ConfigError

NAME = "florence3d"

CLASS_NAMES = (
    "wave",
    "drink from a bottle",
    "answer phone",
    "clap",
    "tight lace",
    "sit down",
    "stand up",
    "read watch",
    "bow",
)
DEFAULT_FPS = 30.0
RELEASE = ClipRelease(
    folder="florence", glob="a*_s*_id*.txt",
    pattern=re.compile(r"a(\d{2})_s(\d{1,2})_id(\d+)\.txt"),
    shown="aAA_sS_idN.txt", fields="(action, subject, video id)",
    expected="the Florence3D florence folder", action="action", layout="florence15",
)
_TRANSFORM = np.diag([-1.0, 1.0, -1.0]) / 1000.0
SOURCE_FRAME = (
    "Florence3D OpenNI real-world coordinates in millimetres: x to the sensor's left (mirrored "
    "relative to KARD), y up, z depth away from the sensor. Converted by (x, y, z) -> "
    "(-x, y, -z) / 1000: metres, right-handed, y up, sensor at the origin looking along -z, "
    "person facing +z."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the Florence3D converter's options."""
    add_skip_bad(parser, "garbled or truncated clip files")
    parser.add_argument(
        "--fps",
        type=float,
        default=DEFAULT_FPS,
        help="frame rate to record (the release does not state it; default %(default)s)",
    )


def read(
    src: Path, *, skip_bad: bool = False, fps: float = DEFAULT_FPS
) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Open a Florence3D folder (`florence3d/` or its `florence/`).

    Args:
        src: the dataset folder, or one clip file.
        skip_bad: record a malformed clip as `Skipped` (with the error) instead of raising.
        fps: the frame rate recorded in the corpus.

    Returns:
        The corpus header and a generator of one `Sequence` (T, 15, 3, 1) float32 per clip.

    Raises:
        ConfigError: fps is not positive.
        FormatError: no clip files, a file name off the pattern, or (without `skip_bad`, while
            streaming) a malformed clip.
    """
    if not fps > 0:
        raise ConfigError(f"florence3d --fps must be > 0, got {fps}")
    return RELEASE.read(src, CLASS_NAMES, fps, SOURCE_FRAME, _clip, skip_bad)


def _clip(path: Path, rel: str) -> Sequence:
    action, subject, video = RELEASE.numbers(path, len(CLASS_NAMES))
    xyz_TV3 = RELEASE.frames(path) @ _TRANSFORM.T
    return clip_sequence(path.stem, rel, xyz_TV3, action, subject, f"id{video}")
