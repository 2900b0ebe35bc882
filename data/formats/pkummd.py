"""PKU-MMD (phase 1) skeletons + temporal labels -> corpus sequences (NTU-25, two persons, 30 fps).

Format (the dataset's README, github.com/ECHO960/PKU-MMD, and the README.txt of the release):
- skeleton files: one line per frame of 150 numbers = 2 bodies x 25 joints x (x, y, z),
  "x1,y1,z1,...,x25,y25,z25" per body; when only one person is seen the second body is zeros.
  Kinect v2, recorded at 30 fps; Kinect v2 camera space in metres (right-handed, y up), so the
  positions are stored unchanged. All-zero joints (an absent body) and joints with a NaN or
  infinite coordinate are invalid and stored as 0 (the count of the latter is in `extra`). The
  joint order is Kinect v2's, i.e. NTU-25.
- label files (same names): one line per action instance "action_id,start_frame,end_frame,
  confidence" with action_id 1..51 (class = id - 1) and confidence 1 (slight) or 2 (strong).
- cross-subject.txt / cross-view.txt: a "Training videos:" line followed by a line of
  comma-separated video names, then "Validataion videos:" (sic) and its line of names.

Frame indexing is not stated by the publisher. This reader takes start/end as 0-based frame
indices with both ends inclusive (the reading of public loaders that slice
`frames[start:end + 1]`); `--label-base 1` reads them as 1-based inclusive instead. A segment
whose end is exactly one past the last frame is clipped to the last frame (so files written under
either convention convert); one that reaches further is an error naming the file and line.

Per-frame labels: frames inside a segment take its class; where segments overlap, the segment
that starts later wins (ties: the later line), so every onset is kept; frames outside all
segments are background (K = 51). The raw segments are kept in each sequence's `extra`.

Splits: each split list gives `<tag>:train` to its training videos and `<tag>:test` to its
"Validataion" videos (the held-out set the literature evaluates on); cross-subject.txt -> xsub,
cross-view.txt -> xview, any other list -> its file stem. Metadata: a name XXXX-V gives
setup = XXXX (the video number) and camera = V (L, M or R); the release does not name subjects.
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
from sscl.data.formats._skipping import add_skip_bad, or_skipped
from sscl.data.formats._sources import single_file
from sscl.data.formats._text import comma_rows, parses, tokens_per_line
from sscl.data.layouts import get_layout
from sscl.errors import FormatError

NAME = "pkummd"

NUM_JOINTS = 25
PERSONS = 2
VALUES_PER_FRAME = PERSONS * NUM_JOINTS * 3
FPS = 30.0

# Actions.xlsx of the release: ids 1..51 in this order (class index = id - 1).
CLASS_NAMES: tuple[str, ...] = (
    "bow", "brushing hair", "brushing teeth", "check time (from watch)", "cheer up", "clapping",
    "cross hands in front (say stop)", "drink water", "drop", "eat meal/snack", "falling",
    "giving something to other person", "hand waving", "handshaking", "hopping (one foot jumping)",
    "hugging other person", "jump up", "kicking other person", "kicking something",
    "make a phone call/answer phone", "pat on back of other person", "pickup",
    "playing with phone/tablet", "point finger at the other person",
    "pointing to something with finger", "punching/slapping other person", "pushing other person",
    "put on a hat/cap", "put something inside pocket", "reading", "rub two hands together",
    "salute", "sitting down", "standing up", "take off a hat/cap", "take off glasses",
    "take off jacket", "take out something from pocket", "taking a selfie", "tear up paper",
    "throw", "touch back (backache)", "touch chest (stomachache/heart pain)",
    "touch head (headache)", "touch neck (neckache)", "typing on a keyboard",
    "use a fan (with hand or paper)/feeling warm", "wear jacket", "wear on glasses", "wipe face",
    "writing",
)  # fmt: skip
BACKGROUND = len(CLASS_NAMES)

# folder names: the layout of the brief first, then those of the public release archives
_SKELETON_DIRS = ("skeleton", "PKU_Skeleton_Renew", "Data/PKU_Skeleton_Renew")
_LABEL_DIRS = ("label", "Train_Label_PKU_final", "Label/Train_Label_PKU_final")
_SPLIT_FILES = {"cross-subject.txt": "xsub", "cross-view.txt": "xview"}
_NAME_RE = re.compile(r"(\d+)-([A-Za-z])")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the PKU-MMD converter's options."""
    parser.add_argument(
        "--skeleton-dir",
        help="skeleton folder inside SRC (default: skeleton or PKU_Skeleton_Renew)",
    )
    parser.add_argument(
        "--label-dir", help="label folder inside SRC (default: label or Train_Label_PKU_final)"
    )
    parser.add_argument(
        "--split-file",
        action="append",
        default=None,
        help="PKU-MMD split list (repeatable); cross-subject.txt -> xsub, cross-view.txt -> xview, "
        "others by file stem; default: those two files if found in SRC or SRC/Split",
    )
    parser.add_argument(
        "--label-base",
        type=int,
        choices=(0, 1),
        default=0,
        help="frame index base of label start/end (both inclusive); default 0",
    )
    add_skip_bad(parser, "a file with a malformed skeleton or label line")


def parse_skeleton_text(text: str | bytes, path: str | Path) -> np.ndarray:
    """Parse a PKU-MMD skeleton file.

    Args:
        text: the whole file; values separated by whitespace (commas are accepted too).
        path: the file, for error messages.

    Returns:
        (T, 2, 25, 3) float64 positions, body-major as in the file.

    Raises:
        FormatError: a line without exactly 150 numbers, or a token that is not a number (NaN
            and infinity are numbers here: such joints become invalid), with its line.
    """
    data = text.encode("utf-8", errors="replace") if isinstance(text, str) else text
    data = data.replace(b",", b" ")
    counts = tokens_per_line(data)
    nonblank = np.flatnonzero(counts)
    end = int(nonblank[-1]) + 1 if nonblank.size else 0  # trailing blank lines carry no data
    wrong = np.flatnonzero(counts[:end] != VALUES_PER_FRAME)
    if wrong.size:
        line = int(wrong[0])
        raise FormatError(
            path,
            f"expected {VALUES_PER_FRAME} numbers per frame (2 bodies x 25 joints x xyz), "
            f"got {counts[line]}",
            line=line + 1,
        )
    if end == 0:
        return np.zeros((0, PERSONS, NUM_JOINTS, 3))
    try:
        # C-speed parse of the whole buffer; it raises on the first token that is not a number
        values = np.fromstring(data, dtype=np.float64, sep=" ")
    except ValueError:
        values = None
    if values is None or values.size != end * VALUES_PER_FRAME:
        tokens = data.split()
        k = next((k for k, tok in enumerate(tokens) if not parses(float, tok)), None)
        line = k // VALUES_PER_FRAME + 1 if k is not None else None
        shown = tokens[k].decode(errors="replace") if k is not None else "?"
        raise FormatError(path, f"not a number: {shown!r}", line=line)
    return values.reshape(end, PERSONS, NUM_JOINTS, 3)


@dataclass(frozen=True)
class Segment:
    """One label line: class index 0..50, start/end as written, confidence, 1-based line."""

    cls: int
    start: int
    end: int
    confidence: float
    line: int


def parse_label_text(text: str, path: str | Path) -> list[Segment]:
    """Parse a PKU-MMD label file ("action_id,start_frame,end_frame,confidence" per line).

    Raises:
        FormatError: wrong field count, non-integer fields, action id outside 1..51,
            negative start or end < start, naming the line.
    """
    out: list[Segment] = []
    for i, fields in comma_rows(text, path, "action_id,start_frame,end_frame,confidence"):
        try:
            cls, start, end = (int(f) for f in fields[:3])
            confidence = float(fields[3])
        except ValueError:
            raise FormatError(
                path,
                f"expected integer action_id,start_frame,end_frame and a numeric confidence, "
                f"got {','.join(fields)!r}",
                line=i,
            ) from None
        if not 1 <= cls <= len(CLASS_NAMES):
            raise FormatError(path, f"action_id {cls} outside 1..{len(CLASS_NAMES)}", line=i)
        if start < 0 or end < start:
            raise FormatError(
                path,
                f"expected 0 <= start_frame <= end_frame, got start {start}, end {end}",
                line=i,
            )
        if not np.isfinite(confidence):
            raise FormatError(path, f"confidence must be finite, got {fields[3]!r}", line=i)
        out.append(Segment(cls - 1, start, end, confidence, i))
    return out


def frame_labels(
    segments: list[Segment], num_frames: int, path: str | Path, base: int = 0
) -> tuple[np.ndarray, int]:
    """Per-frame labels of one video from its segments (rule in the module docstring).

    Returns:
        (T,) int16 labels in 0..51 (51 = background) and the number of frames covered by more
        than one segment.

    Raises:
        FormatError: a segment that starts before frame 0 or ends more than one frame past the
            last frame (under the index base), naming the line.
    """
    labels = np.full(num_frames, BACKGROUND, dtype=np.int16)
    cover = np.zeros(num_frames, dtype=np.int32)
    order = sorted(range(len(segments)), key=lambda k: (segments[k].start, k))
    for k in order:
        seg = segments[k]
        first, last = seg.start - base, seg.end - base
        if first < 0:
            raise FormatError(
                path, f"start_frame {seg.start} is before the first frame ({base})", line=seg.line
            )
        if last > num_frames or first >= num_frames:
            raise FormatError(
                path,
                f"segment {seg.start}..{seg.end} goes past the last frame "
                f"({num_frames - 1 + base}) of the {num_frames}-frame skeleton file",
                line=seg.line,
            )
        last = min(last, num_frames - 1)  # one past the end: the other indexing convention
        labels[first : last + 1] = seg.cls
        cover[first : last + 1] += 1
    return labels, int((cover > 1).sum())


def parse_split_text(text: str, path: str | Path) -> tuple[list[str], list[str]]:
    """Training and validation video names of a PKU-MMD split list.

    Raises:
        FormatError: no "Training videos:" heading or no validation heading.
    """
    m_train = re.search(r"Training videos:", text)
    m_val = re.search(r"Valid(?:ataion|ation) videos:", text)
    if m_train is None or m_val is None or m_val.start() < m_train.end():
        raise FormatError(
            path,
            "expected 'Training videos:' followed by 'Validataion videos:' (PKU-MMD split list)",
        )

    def names(chunk: str) -> list[str]:
        return [n.strip() for n in chunk.split(",") if n.strip()]

    return names(text[m_train.end() : m_val.start()]), names(text[m_val.end() :])


def _pick_dir(src: Path, option: str | None, candidates: tuple[str, ...], what: str) -> Path:
    if option:
        path = src / option
        if not path.is_dir():
            raise FormatError(path, f"{what} folder not found")
        return path
    for name in candidates:
        if (src / name).is_dir():
            return src / name
    raise FormatError(
        src, f"no {what} folder; expected one of {', '.join(candidates)} (or pass --{what}-dir)"
    )


def _split_tags(src: Path, option: list[str] | None) -> dict[str, list[str]]:
    files: list[tuple[Path, str]] = []
    if option:
        for f in option:
            p = Path(f)
            files.append((p, _SPLIT_FILES.get(p.name, p.stem)))
    else:
        for folder in (src, src / "Split", src / "split"):
            for fname, tag in _SPLIT_FILES.items():
                if (folder / fname).is_file() and all(t != tag for _, t in files):
                    files.append((folder / fname, tag))
    tags: dict[str, list[str]] = {}
    for path, tag in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise FormatError(path, f"cannot read the split list ({exc})") from exc
        train, val = parse_split_text(text, path)
        # the "validation" list is the held-out set the literature evaluates on
        for name in train:
            tags.setdefault(name, []).append(f"{tag}:train")
        for name in val:
            tags.setdefault(name, []).append(f"{tag}:test")
    return tags


def read(src: Path, **options) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Convert a PKU-MMD folder (skeleton/ + label/ [+ split lists]).

    Args:
        src: the folder, or one skeleton file (converted unlabelled: no label folder).
        **options: skeleton_dir, label_dir (names inside src), split_file (list of paths),
            label_base (0 | 1), skip_bad (bool).

    Returns:
        The header and a generator with one Sequence or Skipped per video name found in either
        folder (sorted): a skeleton without labels converts unlabelled (all -1), a label file
        without skeleton is Skipped.

    Raises:
        FormatError: missing folders, unreadable split lists, or (lazily, without --skip-bad) a
            malformed skeleton/label file or a label past the end of its skeleton.
    """
    src = Path(src)
    one = single_file(src, (".txt", ".skeleton"), "a PKU-MMD skeleton file (.txt)")
    if one is None and not src.is_dir():
        raise FormatError(src, "not a folder; expected a PKU-MMD folder with skeleton/ and label/")
    root = src.parent if one is not None else src
    base = int(options.get("label_base") or 0)
    if base not in (0, 1):
        raise FormatError(src, f"--label-base must be 0 or 1, got {base}")
    skip_bad = bool(options.get("skip_bad", False))
    tags = _split_tags(root, options.get("split_file"))
    if one is not None:
        skeletons, label_files = {one.stem: one}, {}
    else:
        skeletons, label_files = _video_files(src, options)
    names = sorted(set(skeletons) | set(label_files))

    header = CorpusHeader(
        layout=get_layout("ntu25"),
        class_names=CLASS_NAMES,
        fps=FPS,
        persons=PERSONS,
        source_frame=(
            "Kinect v2 camera space, metres, right-handed, y up (as NTU RGB+D); stored unchanged"
        ),
        label_rule=(
            f"label lines 'id,start,end,confidence' cover frames start..end inclusive "
            f"({base}-based); overlaps: the later-starting segment wins; frames outside all "
            "segments are background"
        ),
    )

    def generate() -> Iterator[Sequence | Skipped]:
        for name in names:
            if name not in skeletons:
                yield Skipped(
                    label_files[name].relative_to(root).as_posix(),
                    "label file without a skeleton file",
                )
                continue
            path, label_path = skeletons[name], label_files.get(name)
            rel = path.relative_to(root).as_posix()
            parsed = or_skipped(rel, partial(_parse_video, path, label_path, base), skip_bad,
                                "malformed: ")
            if isinstance(parsed, Skipped):
                yield parsed
                continue
            joints, labels, overlap, segments = parsed
            if len(joints) == 0:
                yield Skipped(rel, "empty skeleton file (0 frames)")
                continue
            yield _to_sequence(
                name, rel, joints, labels, overlap, segments, tags.get(name, []), label_path
            )

    return header, generate()


def _video_files(src: Path, options: dict) -> tuple[dict[str, Path], dict[str, Path]]:
    """(skeleton files, label files) of a PKU-MMD folder, by video name.

    Raises:
        FormatError: no skeleton or label folder, no skeleton file.
    """
    skel_dir = _pick_dir(src, options.get("skeleton_dir"), _SKELETON_DIRS, "skeleton")
    label_dir = _pick_dir(src, options.get("label_dir"), _LABEL_DIRS, "label")
    skeletons = {
        p.stem: p for p in skel_dir.iterdir() if p.suffix in (".txt", ".skeleton") and p.is_file()
    }
    label_files = {
        p.stem: p for p in label_dir.iterdir() if p.suffix in (".txt", ".label") and p.is_file()
    }
    if not skeletons:
        raise FormatError(
            skel_dir,
            "no skeleton files (*.txt); expected PKU-MMD skeleton files such as 0002-L.txt",
        )
    return skeletons, label_files


def _parse_video(path: Path, label_path: Path | None, base: int
                 ) -> tuple[np.ndarray, np.ndarray | None, int, list[Segment]]:
    """(joints, labels or None, overlapping frames, segments) of one video's files."""
    joints = parse_skeleton_text(_read_bytes(path), path)
    if label_path is None:
        return joints, None, 0, []
    segments = parse_label_text(_read_text(label_path), label_path)
    labels, overlap = frame_labels(segments, len(joints), label_path, base)
    return joints, labels, overlap, segments


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FormatError(path, f"cannot read the file ({exc})") from exc


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read the file as text ({exc})") from exc


def _to_sequence(
    name: str,
    rel: str,
    joints: np.ndarray,
    labels: np.ndarray | None,
    overlap: int,
    segments: list[Segment],
    tags: list[str],
    label_path: Path | None,
) -> Sequence:
    # (T, M, V, C) -> (T, V, C, M); a joint is valid when finite and not exactly (0, 0, 0)
    joints_TVCM = np.ascontiguousarray(joints.transpose(0, 2, 3, 1)).astype(np.float32)
    finite = np.isfinite(joints_TVCM).all(axis=2)
    valid = finite & (joints_TVCM != 0.0).any(axis=2)
    joints_TVCM = np.where(valid[:, :, None, :], joints_TVCM, np.float32(0.0))
    m = _NAME_RE.fullmatch(name)
    extra: dict = {
        "segments": [[s.cls, s.start, s.end, s.confidence] for s in segments],
        "overlapping_frames": overlap,
        "nonfinite_joints": int((~finite).sum()),
    }
    if label_path is None:
        extra["labels"] = "none: no label file"
    return Sequence(
        seq_id=name,
        joints=joints_TVCM,
        source_file=rel,
        labels=labels,
        valid=valid,
        camera=m.group(2).upper() if m else "",
        setup=m.group(1) if m else "",
        fps=FPS,
        split_tags=tuple(tags),
        extra=extra,
    )
