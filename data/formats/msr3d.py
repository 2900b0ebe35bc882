"""MSR Action3D skeleton clips (`aAA_sSS_eEE_skeleton3D.txt`) -> corpus sequences.

Source: Li, Zhang, Liu, "Action recognition based on a bag of 3D points", CVPRW 2010; the
`real_world_coordinates/` release. Each file is one trimmed clip (AA action 01..20, SS subject
01..10, EE repetition 01..03): 20 lines per frame (frame-major), `c1 c2 c3 confidence`, metres,
joints in the `msr3d20` order. A line count that is not a multiple of 20 is a `FormatError`.

Axes, measured on all clips: c2 is vertical (up), c3 is depth away from the sensor (~2.6 m), c1
horizontal. While the person faces the sensor (feet ahead of ankles towards it in 97% of frames)
the stated left shoulder lies at smaller c1 than the right one, so (c1, c2, c3) is already a
right-handed frame with the sensor looking along +c3. The converter applies the 180-degree
rotation about the vertical (c1, c2, c3) -> (-c1, c2, -c3): same handedness, and the same frame
as the other Kinect converters here (sensor at the origin looking along -z, person facing +z).

Validity: a joint whose three coordinates are exactly 0 is invalid (1,075 all-zero frames in
the release). The confidence column is NOT used by default: it is 0 for 94-97% of the spine and
hip-centre samples and ~87% of the feet, whose positions are still plausible (foot-ankle and
spine-hip distances vary by 2-3 cm, as for confident joints), so reading 0 as "not tracked" would
erase the centre joint. `--zero-confidence-invalid` applies that reading anyway.

a13_s09_e02 is all zeros in the release: any clip without a single non-zero joint is reported
as `Skipped`, never dropped. Labels: every frame carries the clip's class (AA - 1). Frame rate:
15 fps (Li et al.: depth maps "captured at about 15 frames per second"). Splits: cross-subject
(odd subjects 1,3,5,7,9 train, even test: `xsub:train`/`xsub:test`), and `cvpr12:used` /
`cvpr12:unused` from `files_used_in_cvpr12_paper.txt` when present (the subset of
Vemulapalli et al., CVPR 2014: 557 names; the README's 556 is the file's line count).
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

NAME = "msr3d"

CLASS_NAMES = (
    "high arm wave",
    "horizontal arm wave",
    "hammer",
    "hand catch",
    "forward punch",
    "high throw",
    "draw X",
    "draw tick",
    "draw circle",
    "hand clap",
    "two hand wave",
    "side boxing",
    "bend",
    "forward kick",
    "side kick",
    "jogging",
    "tennis swing",
    "tennis serve",
    "golf swing",
    "pickup and throw",
)
FPS = 15.0
RELEASE = ClipRelease(
    folder="real_world_coordinates", glob="*_skeleton3D.txt",
    pattern=re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_skeleton3D\.txt"),
    shown="aAA_sSS_eEE_skeleton3D.txt", fields="(action, subject, repetition)",
    expected="MSR Action3D real_world_coordinates", action="action", layout="msr3d20",
    columns=4, joints=20,
)
_SUBSET_FILE = "files_used_in_cvpr12_paper.txt"
_ROTATE = np.diag([-1.0, 1.0, -1.0])
SOURCE_FRAME = (
    "MSR Action3D real-world coordinates in metres: c1 horizontal, c2 up, c3 depth away from the "
    "sensor (right-handed as measured from the labelled left/right joints). Converted by "
    "(c1, c2, c3) -> (-c1, c2, -c3), a 180-degree turn about the vertical: right-handed, y up, "
    "sensor at the origin looking along -z, person facing +z."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the MSR Action3D converter's options."""
    add_skip_bad(parser, "garbled or truncated clip files")
    parser.add_argument(
        "--zero-confidence-invalid",
        action="store_true",
        help="mark joints with confidence 0 invalid (off by default: the spine and hip centre "
        "have confidence 0 in ~95%% of frames but plausible positions)",
    )


def read(
    src: Path, *, skip_bad: bool = False, zero_confidence_invalid: bool = False
) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Open an MSR Action3D folder (`msr_action3d/` or its `real_world_coordinates/`).

    Args:
        src: the dataset folder, or one clip file.
        skip_bad: record a malformed clip as `Skipped` (with the error) instead of raising.
        zero_confidence_invalid: joints with confidence 0 are invalid (stored as 0).

    Returns:
        The corpus header and a generator of one `Sequence` (T, 20, 3, 1) float32 per clip,
        with `valid` (T, 20, 1), or a `Skipped` for an all-zero clip.

    Raises:
        FormatError: no skeleton files, a file name off the pattern, or (without `skip_bad`,
            while streaming) a malformed clip.
    """
    subset_path = RELEASE.folder_of(Path(src)) / _SUBSET_FILE
    subset = set(subset_path.read_text().split()) if subset_path.is_file() else None

    def clip(path: Path, rel: str) -> Sequence | Skipped:
        return _clip(path, rel, subset, zero_confidence_invalid)

    return RELEASE.read(src, CLASS_NAMES, FPS, SOURCE_FRAME, clip, skip_bad)


def _clip(
    path: Path, rel: str, subset: set[str] | None, zero_conf_invalid: bool
) -> Sequence | Skipped:
    action, subject, rep = RELEASE.numbers(path, len(CLASS_NAMES))
    frames_TV4 = RELEASE.frames(path)
    valid_TV = np.any(frames_TV4[..., :3] != 0.0, axis=-1)
    if zero_conf_invalid:
        valid_TV &= frames_TV4[..., 3] > 0.0
    if not valid_TV.any():
        return Skipped(
            rel, "all joints of all frames are zero (no skeleton; a13_s09_e02 is a known bad clip)"
        )
    xyz_TV3 = frames_TV4[..., :3] @ _ROTATE.T
    xyz_TV3[~valid_TV] = 0.0
    stem = path.name.removesuffix("_skeleton3D.txt")
    tags = () if subset is None else ("cvpr12:used" if stem in subset else "cvpr12:unused",)
    return clip_sequence(stem, rel, xyz_TV3, action, subject, f"e{rep:02d}", valid_TV, tags)
