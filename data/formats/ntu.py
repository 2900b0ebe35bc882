"""NTU RGB+D 60/120 `.skeleton` files -> corpus sequences (NTU-25, two persons, 30 fps).

Format (the dataset's own reader, Matlab/read_skeleton_file.m in github.com/shahroudy/NTURGB-D):
line 1 holds the frame count; every frame holds a body count, then per body one line of ten
values (bodyID = Kinect tracking id (uint64), clipedEdges, handLeftConfidence, handLeftState,
handRightConfidence, handRightState, isRestricted, leanX, leanY, trackingState), a line with the
joint count (25), and one line per joint of twelve values (x y z depthX depthY colorX colorY
orientationW orientationX orientationY orientationZ trackingState). File names are
SsssCcccPpppRrrrAaaa: setup, camera, performer, replication, action (class = A - 1).

Coordinates are Kinect v2 camera space in metres: origin at the depth sensor, +y up, +z out of
the sensor towards the scene, +x to the sensor's left. Microsoft's Kinect v2 documentation
("Coordinate mapping") calls this frame right-handed, and it has y up, so positions are stored
unchanged.

Persons: bodies are identified by their tracking id. Each body's activity is the sum over x, y, z
of the variance of its joint coordinates over all its frames and joints (the rule the dataset's
authors state in the README FAQ, "How did you choose the main actor"); the two most active bodies
fill person slots 0 and 1 (ties: the body seen first), other bodies are dropped and counted in
the sequence's `extra`. Frames where a kept body is absent are zeros with valid False. Joints
whose trackingState is 0 (not tracked) are invalid and stored as 0 unless --keep-untracked;
joints with a NaN or infinite coordinate (the released files hold some) are invalid too, and
counted in `extra`.
(The 2s-AGCN preprocessing instead takes the m-th body listed in each frame as person m and
ranks by summed standard deviation; grouping by tracking id keeps a person in one slot when the
sensor lists the bodies in a different order.)

Splits (`split_tags`): NTU60 samples get xsub (the 20 training performers of the NTU RGB+D
paper) and xview (cameras 2 and 3 train); in an NTU120 corpus every sample also gets xsub120 (53
training performers) and xset (even setup ids train). Labels: trimmed clips, so every frame
carries the clip's class.

Samples in the published missing-skeleton list (535 names for NTU120, whose S001-S017 part is
the 302 of NTU60; embedded in `_ntu_tables`) are Skipped without being read.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from sscl.data.corpus import CorpusHeader, Sequence, Skipped
from sscl.data.formats import _ntu_tables as tables
from sscl.data.formats._skipping import add_skip_bad, or_skipped
from sscl.data.formats._sources import single_file
from sscl.data.formats._text import parses, tokens_per_line
from sscl.data.layouts import get_layout
from sscl.errors import FormatError

NAME = "ntu"

NUM_JOINTS = 25
PERSONS = 2
FPS = 30.0
_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
_NAME_SEARCH_RE = re.compile(r"\bS\d{3}C\d{3}P\d{3}R\d{3}A\d{3}\b")
# NTU RGB+D 60 is the part of NTU120 with setups S001..S017 and actions A1..A60.
_NTU60_MAX_SETUP = 17
_NTU60_MAX_ACTION = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the NTU converter's options."""
    parser.add_argument(
        "--missing-list",
        default="builtin",
        help="samples to skip: 'builtin' (the published NTU120 list of 535, which contains the "
        "302 of NTU60), 'none', or a file such as NTU_RGBD_samples_with_missing_skeletons.txt "
        "(every SsssCcccPpppRrrrAaaa name in it is skipped)",
    )
    parser.add_argument(
        "--dataset",
        choices=("auto", "ntu60", "ntu120"),
        default="auto",
        help="class list and split protocols; auto = ntu120 if any file is outside NTU60 "
        "(setup > 17 or action > 60)",
    )
    parser.add_argument(
        "--keep-untracked",
        action="store_true",
        help="keep joints whose trackingState is 0 (not tracked) as valid instead of zeroing them",
    )
    add_skip_bad(parser, "a malformed file")


@dataclass(frozen=True)
class SampleName:
    """The fields of an SsssCcccPpppRrrrAaaa file name (1-based, as written)."""

    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    @property
    def in_ntu60(self) -> bool:
        return self.setup <= _NTU60_MAX_SETUP and self.action <= _NTU60_MAX_ACTION


def parse_sample_name(stem: str) -> SampleName | None:
    """Fields of an NTU sample name, or None if `stem` is not SsssCcccPpppRrrrAaaa."""
    m = _NAME_RE.fullmatch(stem)
    if m is None:
        return None
    s, c, p, r, a = (int(g) for g in m.groups())
    return SampleName(s, c, p, r, a)


@dataclass
class BodyTrack:
    """All frames of one tracked body.

    Attributes:
        body_id: Kinect tracking id.
        frames: (n,) int64 frame indices where the body is listed.
        xyz: (n, 25, 3) float64 camera-space positions in metres.
        state: (n, 25) int8 joint trackingState (0 not tracked, 1 inferred, 2 tracked).
    """

    body_id: int
    frames: np.ndarray
    xyz: np.ndarray
    state: np.ndarray

    @property
    def activity(self) -> float:
        """Sum over x, y, z of the variance over all frames and joints (NTU README FAQ 7);
        non-finite joints are left out."""
        flat = self.xyz.reshape(-1, 3)
        flat = flat[np.isfinite(flat).all(axis=1)]
        return float(flat.var(axis=0).sum()) if len(flat) else 0.0


@dataclass
class ParsedSkeleton:
    """Content of one .skeleton file: the frame count and every body, in order of appearance."""

    num_frames: int
    bodies: list[BodyTrack]


# bytes.split() separators; a line ends at LF (a CR before it is whitespace, so CRLF files parse)
# characters a number written by the Kinect tools can hold, "NaN" and "Infinity" included (the
# released files hold NaN entries, github.com/shahroudy/NTURGB-D/issues/9); anything else is garbage
_NUMBER_CHARS = b"0123456789eE+-.aAfFiInNtTyY \t\n\r\x0b\x0c"
_NOT_NUMBER_CHAR = re.compile(rb"[^0-9eE+\-.aAfFiInNtTyY\s]")
# token offsets within a joint line: x, y, z and trackingState
_JOINT_FIELDS = np.array([0, 1, 2, 11])


def parse_skeleton_text(text: str | bytes, path: str | Path) -> ParsedSkeleton:
    """Parse the content of one .skeleton file.

    The structure (counts per frame and body, values per line) is walked line by line; only the
    fields the corpus keeps (bodyID, the counts, x, y, z, trackingState) are converted to
    numbers, since converting the other eight of every joint line's twelve would triple the
    cost. The other fields are checked to consist of number characters (digits, sign, point,
    exponent), so garbage anywhere is an error, but a malformed number there such as "1.2.3"
    is not detected.

    Args:
        text: the whole file.
        path: the file, for error messages.

    Returns:
        The frame count and the bodies keyed by tracking id (a body listed twice in one frame
        becomes a second track).

    Raises:
        FormatError: naming the 1-based line of the first deviation from the format.
    """
    data = text.encode("utf-8", errors="replace") if isinstance(text, str) else text
    counts = tokens_per_line(data)
    tokens = data.split()
    first_token = np.concatenate(([0], np.cumsum(counts)))
    nonblank = np.flatnonzero(counts)
    end = int(nonblank[-1]) + 1 if nonblank.size else 0  # trailing blank lines carry no data
    # bytes.translate deletes the allowed characters at C speed; the regex only locates a fault
    bad_char = _NOT_NUMBER_CHAR.search(data) if data.translate(None, _NUMBER_CHARS) else None
    if bad_char is not None:
        line = data.count(b"\n", 0, bad_char.start()) + 1
        raise FormatError(path, f"not a number: {_line_text(data, line)!r}", line=line)
    pos = 0

    def one_int(what: str, lo: int) -> int:
        nonlocal pos
        if pos >= end:
            raise FormatError(path, f"file ends early: expected {what}", line=pos + 1)
        if counts[pos] != 1:
            raise FormatError(
                path, f"expected {what} (one integer), got {counts[pos]} values", line=pos + 1
            )
        tok = tokens[first_token[pos]]
        pos += 1
        try:
            value = int(tok)
        except ValueError:
            raise FormatError(
                path, f"expected {what} (an integer), got {tok.decode()!r}", line=pos
            ) from None
        if value < lo:
            raise FormatError(path, f"expected {what} >= {lo}, got {value}", line=pos)
        return value

    num_frames = one_int("the frame count", 0)
    blocks: list[int] = []  # first line (0-based) of each body's joint block
    keys: list[tuple[int, int]] = []  # (bodyID, occurrence in its frame) of each block
    block_frame: list[int] = []
    for f in range(num_frames):
        n_bodies = one_int(f"the body count of frame {f + 1}", 0)
        seen_here: dict[int, int] = {}
        for b in range(n_bodies):
            if pos >= end:
                raise FormatError(
                    path,
                    f"file ends early: expected the info line of body {b + 1} in frame {f + 1}",
                    line=pos + 1,
                )
            if counts[pos] != 10:
                raise FormatError(
                    path,
                    f"body info line must hold 10 values (bodyID ... trackingState), "
                    f"got {counts[pos]}",
                    line=pos + 1,
                )
            try:
                body_id = int(tokens[first_token[pos]])
            except ValueError:
                raise FormatError(
                    path, "bodyID (the first value) must be an integer", line=pos + 1
                ) from None
            pos += 1
            n_joints = one_int("the joint count", 0)
            if n_joints != NUM_JOINTS:
                raise FormatError(
                    path, f"expected {NUM_JOINTS} joints per body, got {n_joints}", line=pos
                )
            if pos + NUM_JOINTS > end:
                raise FormatError(
                    path, f"file ends early: expected {NUM_JOINTS} joint lines", line=end + 1
                )
            wrong = np.flatnonzero(counts[pos : pos + NUM_JOINTS] != 12)
            if wrong.size:
                line = pos + int(wrong[0])
                raise FormatError(
                    path,
                    f"joint line must hold 12 values (x y z ... trackingState), got {counts[line]}",
                    line=line + 1,
                )
            occurrence = seen_here.get(body_id, 0)
            seen_here[body_id] = occurrence + 1
            blocks.append(pos)
            keys.append((body_id, occurrence))
            block_frame.append(f)
            pos += NUM_JOINTS
    if pos < end:
        raise FormatError(
            path, f"unexpected content after the last of {num_frames} frames", line=pos + 1
        )
    if not blocks:
        return ParsedSkeleton(num_frames, [])

    # (B, 25, 4) token indices of x, y, z, trackingState of every joint line
    lines_BJ = np.asarray(blocks)[:, None] + np.arange(NUM_JOINTS)[None, :]
    index = first_token[lines_BJ][..., None] + _JOINT_FIELDS
    picked = [tokens[i] for i in index.ravel().tolist()]
    try:
        values = np.array(picked, dtype=np.float64).reshape(len(blocks), NUM_JOINTS, 4)
    except ValueError:
        k = next(k for k, tok in enumerate(picked) if not parses(float, tok))
        line = int(lines_BJ.ravel()[k // 4]) + 1
        raise FormatError(path, f"not a number: {picked[k].decode()!r}", line=line) from None
    xyz, state = values[..., :3], values[..., 3]
    bad = ~np.isin(state, (0.0, 1.0, 2.0))
    if bad.any():
        line = int(lines_BJ[bad][0]) + 1
        raise FormatError(
            path, f"joint trackingState must be 0, 1 or 2, got {state[bad][0]:g}", line=line
        )

    members: dict[tuple[int, int], list[int]] = {}
    for k, key in enumerate(keys):
        members.setdefault(key, []).append(k)
    frames_B = np.asarray(block_frame, dtype=np.int64)
    state_B = state.astype(np.int8)
    return ParsedSkeleton(
        num_frames,
        [BodyTrack(key[0], frames_B[ks], xyz[ks], state_B[ks]) for key, ks in members.items()],
    )


def _line_text(data: bytes, line: int) -> str:
    return data.split(b"\n")[line - 1].strip().decode("utf-8", errors="replace")[:80]


def select_bodies(bodies: list[BodyTrack], persons: int = PERSONS) -> list[BodyTrack]:
    """The `persons` most active bodies, most active first (ties: first seen first)."""
    order = sorted(range(len(bodies)), key=lambda i: (-bodies[i].activity, i))
    return [bodies[i] for i in order[:persons]]


def parse_missing_list(text: str, path: str | Path) -> frozenset[str]:
    """Sample names in a missing-skeleton list (free text around them is ignored).

    Raises:
        FormatError: the file names no SsssCcccPpppRrrrAaaa sample.
    """
    names = frozenset(_NAME_SEARCH_RE.findall(text))
    if not names:
        raise FormatError(
            path, "no sample names (SsssCcccPpppRrrrAaaa) found; expected a missing-skeleton list"
        )
    return names


def _missing_set(option: str | Path | None) -> frozenset[str]:
    if option is None or str(option) == "builtin":
        return frozenset(tables.NTU120_MISSING_SKELETONS)
    if str(option) == "none":
        return frozenset()
    path = Path(option)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FormatError(path, f"cannot read the missing-skeleton list ({exc})") from exc
    return parse_missing_list(text, path)


def _parse_file(path: Path) -> ParsedSkeleton:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(path, f"cannot read the file ({exc})") from exc
    return parse_skeleton_text(data, path)


def split_tags(name: SampleName, dataset: str) -> tuple[str, ...]:
    """Benchmark membership: xsub/xview for NTU60 samples, plus xsub120/xset in an NTU120 corpus."""
    tags: list[str] = []
    if name.in_ntu60:
        tags.append(
            "xsub:" + ("train" if name.performer in tables.NTU60_XSUB_TRAIN_PERFORMERS else "test")
        )
        tags.append(
            "xview:" + ("train" if name.camera in tables.NTU60_XVIEW_TRAIN_CAMERAS else "test")
        )
    if dataset == "ntu120":
        tags.append(
            "xsub120:"
            + ("train" if name.performer in tables.NTU120_XSUB_TRAIN_PERFORMERS else "test")
        )
        # NTU120 cross-setup: even setup ids train, odd test
        tags.append("xset:" + ("train" if name.setup % 2 == 0 else "test"))
    return tuple(tags)


def to_sequence(
    parsed: ParsedSkeleton,
    name: SampleName,
    stem: str,
    source_file: str,
    dataset: str,
    keep_untracked: bool = False,
) -> Sequence:
    """Build the corpus sequence of one parsed file with at least one body.

    Returns:
        Sequence with joints (T, 25, 3, 2) float32, valid (T, 25, 2) bool, labels (T,) = A - 1.
    """
    T = parsed.num_frames
    kept = select_bodies(parsed.bodies)
    joints = np.zeros((T, NUM_JOINTS, 3, PERSONS), dtype=np.float32)
    valid = np.zeros((T, NUM_JOINTS, PERSONS), dtype=bool)
    nonfinite = 0
    for m, body in enumerate(kept):
        ok = np.ones(body.state.shape, dtype=bool) if keep_untracked else body.state != 0
        ok &= (body.xyz != 0.0).any(axis=-1)
        finite = np.isfinite(body.xyz).all(axis=-1)
        nonfinite += int((~finite).sum())
        ok &= finite
        xyz = np.where(ok[..., None], body.xyz, 0.0)
        joints[body.frames, :, :, m] = xyz
        valid[body.frames, :, m] = ok
    present = np.zeros(T, dtype=bool)
    for body in parsed.bodies:
        present[body.frames] = True
    labels = np.full(T, name.action - 1, dtype=np.int16)
    return Sequence(
        seq_id=stem,
        joints=joints,
        source_file=source_file,
        labels=labels,
        valid=valid,
        subject=f"P{name.performer:03d}",
        camera=f"C{name.camera:03d}",
        setup=f"S{name.setup:03d}",
        fps=FPS,
        split_tags=split_tags(name, dataset),
        extra={
            "replication": name.replication,
            "action": name.action,
            "bodies_seen": len(parsed.bodies),
            "bodies_dropped": max(0, len(parsed.bodies) - PERSONS),
            "kept_body_ids": [str(b.body_id) for b in kept],
            "frames_without_body": int(T - present.sum()),
            "nonfinite_joints": nonfinite,
        },
    )


def read(src: Path, **options) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Convert a folder (searched recursively) of NTU .skeleton files.

    Args:
        src: folder holding the .skeleton files (searched recursively), or one .skeleton file.
        **options: missing_list ('builtin' | 'none' | path), dataset ('auto' | 'ntu60' |
            'ntu120'), keep_untracked (bool), skip_bad (bool).

    Returns:
        The corpus header and a generator of one Sequence or Skipped per file, sorted by path.

    Raises:
        FormatError: no .skeleton files, a file name that is not SsssCcccPpppRrrrAaaa, a
            duplicate sample, an NTU120 file with --dataset ntu60, or (lazily, without
            --skip-bad) a malformed file.
    """
    src = Path(src)
    one = single_file(src, (".skeleton",), "an NTU .skeleton file")
    if one is None and not src.is_dir():
        raise FormatError(src, "not a folder; expected a folder of NTU .skeleton files")
    root = src.parent if one is not None else src
    missing = _missing_set(options.get("missing_list"))
    dataset = options.get("dataset") or "auto"
    keep_untracked = bool(options.get("keep_untracked", False))
    skip_bad = bool(options.get("skip_bad", False))

    files = [one] if one is not None else sorted(src.rglob("*.skeleton"))
    if not files:
        raise FormatError(src, "no .skeleton files found; expected NTU RGB+D skeleton files")
    names: list[SampleName] = []
    seen: dict[str, Path] = {}
    for f in files:
        name = parse_sample_name(f.stem)
        if name is None:
            raise FormatError(
                f, "file name is not SsssCcccPpppRrrrAaaa.skeleton (e.g. S001C002P003R002A013)"
            )
        if f.stem in seen:
            raise FormatError(
                f, f"sample {f.stem} also at {seen[f.stem]}; expected each sample once"
            )
        seen[f.stem] = f
        names.append(name)
    all_ntu60 = all(n.in_ntu60 for n in names)
    if dataset == "auto":
        dataset = "ntu60" if all_ntu60 else "ntu120"
    elif dataset == "ntu60" and not all_ntu60:
        bad = next(f for f, n in zip(files, names, strict=True) if not n.in_ntu60)
        raise FormatError(
            bad, "sample is outside NTU RGB+D 60 (setup > 17 or action > 60); use --dataset ntu120"
        )
    elif dataset not in ("ntu60", "ntu120"):
        raise FormatError(src, f"--dataset must be auto, ntu60 or ntu120, got {dataset!r}")

    class_names = tables.NTU60_CLASS_NAMES if dataset == "ntu60" else tables.NTU120_CLASS_NAMES
    header = CorpusHeader(
        layout=get_layout("ntu25"),
        class_names=class_names,
        fps=FPS,
        persons=PERSONS,
        source_frame=(
            "Kinect v2 camera space, metres: +x to the sensor's left, +y up, +z from the sensor "
            "into the scene (right-handed, y up); stored unchanged"
        ),
        label_rule="trimmed clips: every frame carries the clip's class (action A - 1)",
    )

    def generate() -> Iterator[Sequence | Skipped]:
        for f, name in zip(files, names, strict=True):
            rel = f.relative_to(root).as_posix()
            if f.stem in missing:
                yield Skipped(rel, "in the published missing-skeleton list")
                continue
            parsed = or_skipped(rel, partial(_parse_file, f), skip_bad, "malformed: ")
            if isinstance(parsed, Skipped):
                yield parsed
                continue
            if parsed.num_frames == 0:
                yield Skipped(rel, "zero frames (frame count 0)")
            elif not parsed.bodies:
                yield Skipped(rel, f"no body in any of its {parsed.num_frames} frames")
            else:
                yield to_sequence(parsed, name, f.stem, rel, dataset, keep_untracked)

    return header, generate()
