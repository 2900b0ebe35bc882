"""MSRC-12 Kinect gesture recordings (csv(.xz) + tagstream action points) -> corpus sequences.

Source: Fothergill, Mentis, Kohli, Nowozin, "Instructing people for training gestural interactive
systems", CHI 2012, and the release's description PDF and MATLAB loaders (`load_file.m`,
`load_tagstream.m`, `tagstream_to_y.m`). File names are `P<A>_<B>_<C>_p<D>`: A/B the instruction
modality, C the gesture id (1..12, an optional `A` suffix marks a second instruction variant), D
the person (01..30).

- `<name>.csv[.xz]`: one frame per line, 81 numbers: timestamp in microseconds, then the 20
  `kinect20` joints (Kinect SDK v1 NUI order) as x y z w in metres (w = 1, homogeneous). Frames
  before the skeleton is acquired are all zeros; joints that are exactly (0, 0, 0) are invalid.
- `<name>.tagstream`: header `XQPCTick;Tag`, then `<tick>;<gesture name>` per instance. A tick
  becomes microseconds as in `load_tagstream.m`, `(tick*1000 + 49875/2) / 49875`, evaluated the
  way MATLAB does it (double arithmetic, then rounded to an integer on comparison), which in exact
  integers is `floor(tick*1000 / 49875) + 1`; the tag's frame is the row whose timestamp is
  nearest (first one on a tie, MATLAB's `min`), as in `tagstream_to_y.m`. A tag more than 1 s
  from every frame is a FormatError (it cannot belong to the recording).

The tags are "action points" (the moment a system should fire), not boundaries. They are kept
as point annotations in `Sequence.extra["action_points"]` (0-based frames) and turned into
frame labels by a window rule: frames `[p - before, p + after]` around every action point `p`
(clipped to the sequence) carry the sequence's gesture class, all other frames are background
(class K = 12). Defaults `--window-before 30 --window-after 10` (a 41-frame, ~1.4 s window that
ends shortly after the point, covering the gesture that leads up to it; tags are a median 94
frames apart, so neighbouring windows rarely merge).

Axes: Kinect SDK skeleton space is right-handed, y up, z pointing from the sensor into the room,
x to the sensor's left (the stated right shoulder is at larger x in all frames checked). The
converter applies a 180-degree turn about the vertical, (x, y, z) -> (-x, y, -z): right-handed,
y up, sensor at the origin looking along -z, person facing +z (as the other Kinect converters).

Gesture class: from the file name's C, cross-checked with every tag's `G<n>` prefix. The release
lacks one csv (`P1_2_5_p04`): its tagstream is reported as Skipped; csv and tagstream names are
paired case-insensitively (`P2_1_2A_p12.csv` with `p2_1_2A_p12.tagstream`). Split by person:
odd persons train, even persons test (`xsub:train` / `xsub:test`). Frame rate: 30 Hz (the PDF).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np

from sscl.data.corpus import CorpusHeader, Sequence, Skipped
from sscl.data.formats._skipping import add_skip_bad, or_skipped
from sscl.data.formats._text import parse_table, read_bytes
from sscl.data.layouts import get_layout
from sscl.errors import ConfigError, FormatError

NAME = "msrc12"

# gesture names of load_file.m's tagset, without the "G<n>" prefix
CLASS_NAMES = (
    "lift outstretched arms",
    "duck",
    "push right",
    "goggles",
    "wind it up",
    "shoot",
    "bow",
    "throw",
    "had enough",
    "change weapon",
    "beat both",
    "kick",
)
FPS = 30.0
DEFAULT_BEFORE = 30
DEFAULT_AFTER = 10
MAX_TAG_OFFSET_US = 1_000_000
_NAME_RE = re.compile(r"P(\d+)_(\d+)_(\d+)(A?)_p(\d+)", re.IGNORECASE)
_TAG_RE = re.compile(r"G(\d+)\s")
_ROTATE = np.diag([-1.0, 1.0, -1.0])
SOURCE_FRAME = (
    "Kinect SDK v1 skeleton space in metres: right-handed, y up, z from the sensor into the room, "
    "x to the sensor's left; the homogeneous w column is dropped. Converted by (x, y, z) -> "
    "(-x, y, -z), a 180-degree turn about the vertical: sensor at the origin looking along -z, "
    "person facing +z."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the MSRC-12 converter's options (label window, `--skip-bad`)."""
    parser.add_argument(
        "--window-before",
        type=int,
        default=DEFAULT_BEFORE,
        help="frames before each action point labelled with the gesture (default %(default)s)",
    )
    parser.add_argument(
        "--window-after",
        type=int,
        default=DEFAULT_AFTER,
        help="frames after each action point labelled with the gesture (default %(default)s)",
    )
    add_skip_bad(parser, "garbled or truncated recordings")


def tick_to_us(ticks: np.ndarray) -> np.ndarray:
    """XQPC ticks -> microseconds, exactly as MATLAB evaluates load_tagstream.m's formula.

    MATLAB computes `(tick*1000 + 24937.5) / 49875` in doubles and `tagstream_to_y.m` rounds it
    with `int64()` (half away from zero): `round((1000 t + 24937.5) / 49875)` equals
    `floor((2000 t + 99750) / 99750) = floor(1000 t / 49875) + 1` for integer t >= 0.

    Args:
        ticks: (N,) int64 tick values.

    Returns:
        (N,) int64 microseconds.
    """
    return np.asarray(ticks, dtype=np.int64) * 1000 // 49875 + 1


def action_point_frames(
    timestamps_us: np.ndarray, tag_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest frame of every tag (the first one on a tie, like MATLAB's `min`).

    Args:
        timestamps_us: (T,) int64 frame timestamps, increasing.
        tag_us: (N,) int64 tag times.

    Returns:
        frames: (N,) int64 0-based frame indices; offsets: (N,) int64 |timestamp - tag| in us.
    """
    ts = np.asarray(timestamps_us, dtype=np.int64)
    right = np.clip(np.searchsorted(ts, tag_us, side="left"), 0, len(ts) - 1)
    left = np.clip(right - 1, 0, len(ts) - 1)
    d_left = np.abs(ts[left] - tag_us)
    d_right = np.abs(ts[right] - tag_us)
    frames = np.where(d_left <= d_right, left, right)
    return frames, np.minimum(d_left, d_right)


def window_labels(
    num_frames: int, points: np.ndarray, cls: int, background: int, before: int, after: int
) -> np.ndarray:
    """Frame labels from action points: `[p - before, p + after]` -> cls, the rest background.

    Returns:
        (num_frames,) int16.
    """
    delta = np.zeros(num_frames + 1, dtype=np.int64)
    np.add.at(delta, np.clip(points - before, 0, num_frames), 1)
    np.add.at(delta, np.clip(points + after + 1, 0, num_frames), -1)
    inside = np.cumsum(delta[:-1]) > 0
    return np.where(inside, cls, background).astype(np.int16)


def read_tagstream(path: Path) -> tuple[np.ndarray, list[str]]:
    """Parse a `.tagstream` file.

    Returns:
        ticks: (N,) int64; names: the N tag names.

    Raises:
        FormatError: a missing header, or a line that is not `<integer tick>;<name>`.
    """
    text = read_bytes(path).decode("utf-8", "replace").replace("\r", "")
    lines = text.split("\n")
    if lines[0].lstrip("\ufeff").strip() != "XQPCTick;Tag":
        raise FormatError(path, f"header is {lines[0][:40]!r}; expected 'XQPCTick;Tag'", line=1)
    ticks: list[int] = []
    names: list[str] = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        tick, sep, name = line.partition(";")
        tick = tick.strip()
        if not sep or not tick.isascii() or not tick.isdigit() or not name.strip():
            raise FormatError(
                path, f"line {line[:60]!r} is not '<integer tick>;<gesture name>'", line=i
            )
        ticks.append(int(tick))
        names.append(name.strip())
    return np.array(ticks, dtype=np.int64), names


def read(
    src: Path,
    *,
    window_before: int = DEFAULT_BEFORE,
    window_after: int = DEFAULT_AFTER,
    skip_bad: bool = False,
) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Open an MSRC-12 folder (the release root holding `data/`, or `data/` itself).

    Args:
        src: the dataset folder.
        window_before: frames before an action point labelled with the gesture (>= 0).
        window_after: frames after an action point labelled with the gesture (>= 0).
        skip_bad: record a malformed recording as `Skipped` (with the error) instead of raising.

    Returns:
        The corpus header and a generator, in tagstream name order, of one `Sequence`
        (T, 20, 3, 1) float32 per recording (or `Skipped` where the csv is missing).

    Raises:
        ConfigError: a negative window.
        FormatError: no tagstreams, a file name off the pattern, two csv files whose names differ
            only in case, or (without `skip_bad`, while streaming) a malformed file.
    """
    if window_before < 0 or window_after < 0:
        raise ConfigError(
            "msrc12 --window-before/--window-after must be >= 0, "
            f"got {window_before}/{window_after}"
        )
    src = Path(src)
    folder = src / "data" if (src / "data").is_dir() else src
    tagstreams = sorted(folder.glob("*.tagstream"), key=lambda p: p.name.lower())
    csvs = sorted(folder.glob("*.csv.xz")) + sorted(folder.glob("*.csv"))
    if not tagstreams:
        raise FormatError(folder, "no .tagstream files; expected the MSRC-12 data folder")
    csv_by_key: dict[str, Path] = {}
    for path in csvs + tagstreams:
        if not _NAME_RE.fullmatch(_stem(path)):
            raise FormatError(
                path, "file name is not P<A>_<B>_<C>_p<D> (instruction, gesture, person)"
            )
    for path in csvs:
        key = _stem(path).lower()
        if key in csv_by_key:
            raise FormatError(
                path,
                f"same recording as {csv_by_key[key].name} "
                "(names differ only in case or compression)",
            )
        csv_by_key[key] = path
    tag_keys = {_stem(p).lower() for p in tagstreams}
    orphans = [p for k, p in csv_by_key.items() if k not in tag_keys]
    header = CorpusHeader(
        layout=get_layout("kinect20"),
        class_names=CLASS_NAMES,
        fps=FPS,
        persons=1,
        source_frame=SOURCE_FRAME,
        label_rule=(
            "action points (tagstream, nearest frame) -> frames "
            f"[p-{window_before}, p+{window_after}] carry the recording's gesture class, "
            f"all other frames background ({len(CLASS_NAMES)}); "
            "points kept in extra['action_points']"
        ),
    )
    items = _items(src, tagstreams, csv_by_key, orphans, window_before, window_after, skip_bad)
    return header, items


def _stem(path: Path) -> str:
    return path.name.split(".")[0]


def _items(
    src: Path,
    tagstreams: list[Path],
    csv_by_key: dict[str, Path],
    orphans: list[Path],
    before: int,
    after: int,
    skip_bad: bool,
) -> Iterator[Sequence | Skipped]:
    for tag_path in tagstreams:
        csv = csv_by_key.get(_stem(tag_path).lower())
        if csv is None:
            yield Skipped(
                str(tag_path.relative_to(src)),
                "csv missing: the release has a tagstream but no skeleton file",
            )
            continue
        yield or_skipped(str(csv.relative_to(src)),
                         partial(_recording, src, csv, tag_path, before, after), skip_bad)
    for csv in orphans:
        yield Skipped(
            str(csv.relative_to(src)), "tagstream missing: no action points for this recording"
        )


def _recording(src: Path, csv: Path, tag_path: Path, before: int, after: int) -> Sequence:
    stem = _stem(csv)
    a, b, gid, variant, person = _NAME_RE.fullmatch(stem).groups()
    gesture = int(gid)
    if not 1 <= gesture <= len(CLASS_NAMES):
        raise FormatError(csv, f"gesture id {gesture} outside 1..{len(CLASS_NAMES)}")
    ticks, names = read_tagstream(tag_path)
    for i, name in enumerate(names):
        m = _TAG_RE.match(name + " ")
        if m is None or int(m.group(1)) != gesture:
            raise FormatError(
                tag_path, f"tag {name!r} is not gesture G{gesture} named by the file", line=i + 2
            )
    rows, row_lines = parse_table(read_bytes(csv), csv, 81)
    if rows.shape[0] == 0:
        raise FormatError(csv, "no frames; expected lines of 81 numbers")
    timestamps = rows[:, 0].astype(np.int64)
    backwards = np.flatnonzero(np.diff(timestamps) <= 0)
    if backwards.size:
        i = int(backwards[0]) + 1
        raise FormatError(
            csv,
            f"timestamp {timestamps[i]} does not increase (previous {timestamps[i - 1]})",
            line=int(row_lines[i]),
        )
    points, offsets = action_point_frames(timestamps, tick_to_us(ticks))
    far = np.flatnonzero(offsets > MAX_TAG_OFFSET_US)
    if far.size:
        i = int(far[0])
        raise FormatError(
            tag_path,
            f"tag at {tick_to_us(ticks[i : i + 1])[0]} us is {offsets[i] / 1e6:.2f} s "
            f"from every frame of {csv.name}; expected a tag inside the recording",
            line=i + 2,
        )
    xyzw_TV4 = rows[:, 1:].reshape(-1, 20, 4)
    valid_TV = np.any(xyzw_TV4[..., :3] != 0.0, axis=-1)
    xyz_TV3 = xyzw_TV4[..., :3] @ _ROTATE.T
    xyz_TV3[~valid_TV] = 0.0
    t = xyz_TV3.shape[0]
    return Sequence(
        seq_id=stem,
        joints=xyz_TV3[..., None].astype(np.float32),
        source_file=str(csv.relative_to(src)),
        labels=window_labels(t, points, gesture - 1, len(CLASS_NAMES), before, after),
        valid=valid_TV[..., None],
        subject=f"p{int(person):02d}",
        setup=f"{a}_{b}",
        split_tags=("xsub:train" if int(person) % 2 else "xsub:test",),
        extra={
            "action_points": [int(p) for p in points],
            "gesture": names[0] if names else CLASS_NAMES[gesture - 1],
            "instruction": f"{a}_{b}",
            "gesture_variant": variant.upper(),
            "tagstream": str(tag_path.relative_to(src)),
        },
    )
