"""Generic per-sequence npz/CSV skeleton files + an optional label file -> corpus sequences.

Inputs (this project's own format for data without a dedicated converter):
- SRC: a folder (searched recursively) of `.npz` and `.csv` files, one sequence each; the
  sequence id is the path relative to SRC without the suffix.
  - npz: `joints` (T, V, C) or (T, V, C, M); optional `valid` (T, V) or (T, V, M) bool,
    `labels` (T,) ints in -1..K (-1 unlabelled, K background; needs --classes), `fps` scalar,
    `subject` and `split` scalars (a split such as "test" becomes the split tag "split:test";
    one with a colon, "xsub:test", is kept; several are separated by spaces or commas). Other
    members (e.g. `frame_ids`) are not used and are listed in a warning. Every member's size is
    checked from its header before it is loaded, and nothing is unpickled (sscl.data.formats._npz).
  - CSV: one frame per line, V*C values per person (joint-major: j0 x, j0 y, j0 z, j1 x, ...;
    persons one after the other), separated by commas or whitespace; a first line that is not
    numeric is a header and skipped.
- `--layout NAME|JSON` (required): a layout of sscl.data.layouts or a JSON layout file; V and C
  must match it.
- `--labels FILE`: CSV rows `seq_id,start,end,class` (optional header): frames start..end-1
  (0-based, end exclusive, like a Python slice) take the class, given as an index or as a name
  of --classes. Overlaps: the later row wins. In a sequence with rows, uncovered frames are
  background (K); a sequence without rows keeps its npz `labels`, else is unlabelled (-1). A
  sequence with both rows and npz `labels` is an error (ambiguous).
- `--classes FILE`: one class name per line, or JSON: a list of names or {"classes": [...]}.
  Without it, class indices in --labels define K = max + 1 with names class_0.., and npz
  `labels` are refused (K unknown).
- `--minus-one unlabelled|background`: what -1 in npz `labels` means (default unlabelled: the
  frame is ignored by a localizer; many datasets use -1 for background instead). The label
  counts are printed after converting.
- `--meta FILE`: CSV with a header naming `seq_id` and any of `subject`, `split`, `camera`,
  `setup` (split as for the npz key); its values override the npz ones. A seq_id that names no
  file, or leads outside SRC (`..`, absolute), is an error.
- `--max-frames`, `--max-persons`: limits checked from the headers before loading (defaults
  1,000,000 frames, 16 persons); also a 4 GiB limit per array ($SSCL_MAX_ARRAY_BYTES).
- `--units m|cm|mm` scales into metres; `--up x|-x|y|-y|z|-z` names the source axis pointing up,
  and a proper rotation (no mirroring: the source must be right-handed) takes it to +y:
  z -> (x, z, -y), -z -> (x, -z, y), x -> (-y, x, z), -x -> (y, -x, z), -y -> (x, -y, -z).

Validity: a joint is valid when its `valid` entry (if given) is True, its values are finite and
it is not exactly all zeros (unless --zeros-valid); invalid joints are stored as 0. NaN or
infinity at a joint marked valid (or without `valid`) is an error unless --nan-as-missing.
Sequences with 0 frames are Skipped ("empty sequence"). Folders reached through a symbolic
link are not searched; they are counted in a warning, as are files without `fps` that take
--fps (default 30).
"""

from __future__ import annotations

import argparse
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sscl.data.corpus import CorpusHeader, Sequence, Skipped
from sscl.data.formats._generic_inputs import (
    check_limits,
    read_classes,
    read_meta,
    split_tags,
    warn_unused,
)
from sscl.data.formats._npz import npz_header
from sscl.data.layouts import Layout, get_layout, layout_names
from sscl.errors import FormatError, LayoutError

NAME = "generic"

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
# source up axis -> 3x3 proper rotation R (rows: new x, y, z in terms of old x, y, z)
UP_ROTATIONS: dict[str, np.ndarray] = {
    "y": np.eye(3),
    "-y": np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]], dtype=np.float64),
    "z": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64),
    "-z": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64),
    "x": np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float64),
    "-x": np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], dtype=np.float64),
}
_SPLIT_RE = re.compile(r"[,\s]+")
DEFAULT_FPS = 30.0
MAX_FRAMES = 1_000_000  # ~9 hours at 30 fps
MAX_PERSONS = 16
_USED_KEYS = {"joints", "valid", "labels", "fps", "subject", "split"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the generic converter's options."""
    parser.add_argument(
        "--layout", required=True,
        help="layout name (" + ", ".join(layout_names()) + ") or a JSON layout file",
    )
    parser.add_argument(
        "--labels", default=None, help="CSV of seq_id,start,end,class rows (end exclusive)"
    )
    parser.add_argument(
        "--classes", default=None,
        help='class names: a text file (one per line) or JSON (a list, or {"classes": [...]})',
    )
    parser.add_argument(
        "--fps", type=float, default=None,
        help=f"frame rate of files without an fps entry (default {DEFAULT_FPS:g}, with a warning)",
    )
    parser.add_argument(
        "--minus-one", choices=("unlabelled", "background"), default="unlabelled",
        help="what -1 in npz labels means (default unlabelled)",
    )
    parser.add_argument(
        "--meta", default=None,
        help="CSV with a header: seq_id and any of subject, split, camera, setup",
    )
    parser.add_argument("--max-frames", type=int, default=MAX_FRAMES,
                        help=f"most frames a sequence may have (default {MAX_FRAMES:,})")
    parser.add_argument("--max-persons", type=int, default=MAX_PERSONS,
                        help=f"most persons a sequence may have (default {MAX_PERSONS})")
    parser.add_argument(
        "--units", choices=tuple(UNITS), default="m", help="unit of the coordinates"
    )
    parser.add_argument(
        "--up", choices=tuple(UP_ROTATIONS), default="y", help="source axis that points up"
    )
    parser.add_argument(
        "--persons", type=int, default=None, help="persons M (default: the most in any file)"
    )
    parser.add_argument(
        "--nan-as-missing", action="store_true", help="NaN/inf joints become missing joints"
    )
    parser.add_argument(
        "--zeros-valid",
        action="store_true",
        help="joints exactly at (0, 0, 0) stay valid (e.g. a root-centred skeleton)",
    )


@dataclass(frozen=True)
class _Source:
    path: Path
    seq_id: str
    persons: int
    has_labels: bool
    has_fps: bool = False
    unused: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)  # subject / split / camera / setup from --meta


def parse_csv_text(text: str, path: str | Path, width: int) -> np.ndarray:
    """Parse a generic CSV sequence.

    Args:
        text: the whole file.
        path: for error messages.
        width: values per person (V * C); every row must hold a positive multiple of it, the
            same on every row.

    Returns:
        (T, n) float64, n = values per row (0 rows -> shape (0, width)).

    Raises:
        FormatError: a row of the wrong length or with a non-number, naming its line.
    """
    lines = text.split("\n")
    rows: list[tuple[int, list[str]]] = []
    for i, raw in enumerate(lines, start=1):
        tokens = [t for t in _SPLIT_RE.split(raw.strip()) if t]
        if tokens:
            rows.append((i, tokens))
    if rows and not _numeric(rows[0][1]):
        rows = rows[1:]  # header line
    if not rows:
        return np.zeros((0, width), dtype=np.float64)
    n = len(rows[0][1])
    if n % width:
        raise FormatError(
            path,
            f"a row holds {n} values; expected a multiple of V*C = {width} (persons x joints x "
            "channels of the layout)",
            line=rows[0][0],
        )
    out = np.empty((len(rows), n), dtype=np.float64)
    for r, (i, tokens) in enumerate(rows):
        if len(tokens) != n:
            raise FormatError(
                path, f"row holds {len(tokens)} values; expected {n} like the first row", line=i
            )
        try:
            out[r] = np.array(tokens, dtype=np.float64)
        except ValueError:
            raise FormatError(path, "a value is not a number", line=i) from None
    return out


def _numeric(tokens: list[str]) -> bool:
    try:
        for tok in tokens:
            float(tok)
    except ValueError:
        return False
    return True


def parse_label_rows(text: str, path: str | Path) -> list[tuple[int, str, int, int, str]]:
    """Rows (line, seq_id, start, end, class token) of a label CSV; a non-integer start on the
    first row marks a header.

    Raises:
        FormatError: wrong field count, non-integer start/end, or end <= start, with the line.
    """
    out: list[tuple[int, str, int, int, str]] = []
    for i, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        fields = [f.strip() for f in raw.split(",")]
        if len(fields) != 4:
            raise FormatError(
                path, f"expected 4 fields 'seq_id,start,end,class', got {len(fields)}", line=i
            )
        try:
            start, end = int(fields[1]), int(fields[2])
        except ValueError:
            if not out and i == _first_line(text):
                continue  # header
            raise FormatError(
                path, f"start and end must be integers, got {fields[1]!r}, {fields[2]!r}", line=i
            ) from None
        if start < 0 or end <= start:
            raise FormatError(
                path, f"expected 0 <= start < end (end exclusive), got {start}, {end}", line=i
            )
        if not fields[0] or not fields[3]:
            raise FormatError(path, "seq_id and class must not be empty", line=i)
        out.append((i, fields[0], start, end, fields[3]))
    return out


def _first_line(text: str) -> int:
    for i, raw in enumerate(text.split("\n"), start=1):
        if raw.strip():
            return i
    return 0


def _npz_shape(path: Path, key: str) -> tuple[int, ...] | None:
    """Shape of one npz member from its header, checked, without loading it (None if absent)."""
    head = npz_header(path, key, kinds="biufUS")
    return None if head is None else head[0]


def read(src: Path, **options) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Convert a folder of generic npz/CSV sequences (format in the module docstring).

    Args:
        src: the folder.
        **options: layout (required), labels, classes, fps, units, up, persons,
            nan_as_missing, zeros_valid.

    Returns:
        The header and a generator with one Sequence or Skipped per file.

    Raises:
        FormatError: bad options, label/class files, wrong V or C, joint shapes, labels out of
            range, NaN/inf (lazily for per-file content).
        LayoutError: unknown layout.
    """
    src = Path(src)
    if not src.is_dir():
        raise FormatError(src, "not a folder; expected a folder of .npz/.csv sequences")
    if not options.get("layout"):
        raise LayoutError(
            "--layout is required for the generic converter (a layout name or a JSON layout file)"
        )
    layout: Layout = get_layout(str(options["layout"]))
    V, C = layout.num_joints, layout.channels
    units = options.get("units") or "m"
    up = options.get("up") or "y"
    if units not in UNITS:
        raise FormatError(src, f"--units must be one of {', '.join(UNITS)}, got {units!r}")
    if up not in UP_ROTATIONS:
        raise FormatError(src, f"--up must be one of {', '.join(UP_ROTATIONS)}, got {up!r}")
    if C != 3 and up != "y":
        raise FormatError(src, f"--up {up} needs 3-D joints; layout {layout.name} has {C} channels")
    fps_given = options.get("fps") is not None
    fps = float(options["fps"]) if fps_given else DEFAULT_FPS
    if not (np.isfinite(fps) and fps > 0):
        raise FormatError(src, f"--fps must be a positive number, got {fps}")
    nan_as_missing = bool(options.get("nan_as_missing", False))
    zeros_valid = bool(options.get("zeros_valid", False))
    minus_one = options.get("minus_one") or "unlabelled"
    if minus_one not in ("unlabelled", "background"):
        raise FormatError(src, f"--minus-one must be unlabelled or background, got {minus_one!r}")
    max_frames = int(options.get("max_frames") or MAX_FRAMES)
    max_persons = int(options.get("max_persons") or MAX_PERSONS)

    # the label, class and meta files may live inside SRC; they are not sequences
    option_files = {Path(options[k]).resolve() for k in ("labels", "classes", "meta")
                    if options.get(k)}
    entries = list(src.rglob("*"))
    # rglob does not descend into linked folders: say how many were left out
    linked = sorted(p for p in entries if p.is_symlink() and p.is_dir())
    files = sorted(
        p
        for p in entries
        if p.suffix in (".npz", ".csv") and p.is_file() and p.resolve() not in option_files
    )
    if not files:
        raise FormatError(src, "no .npz or .csv files found"
                          + (f" ({len(linked)} linked folder(s) not searched)" if linked else ""))
    sources: list[_Source] = []
    ids: dict[str, Path] = {}
    for p in files:
        seq_id = p.relative_to(src).with_suffix("").as_posix()
        if seq_id in ids:
            raise FormatError(
                p, f"sequence id {seq_id!r} also comes from {ids[seq_id]}; expected one file per id"
            )
        ids[seq_id] = p
        sources.append(_scan(p, seq_id, V, C, max_frames, max_persons))
    if options.get("meta"):
        by_id = read_meta(Path(options["meta"]), ids, src)
        sources = [_Source(s.path, s.seq_id, s.persons, s.has_labels, s.has_fps, s.unused,
                           by_id.get(s.seq_id, {})) for s in sources]
    warn_unused(src, sources, linked, fps, fps_given)

    class_names: tuple[str, ...] | None = None
    if options.get("classes"):
        class_names = read_classes(Path(options["classes"]))
    rows_by_seq: dict[str, list[tuple[int, int, int, int]]] = {}
    label_path = Path(options["labels"]) if options.get("labels") else None
    if label_path is not None:
        try:
            rows = parse_label_rows(label_path.read_text(encoding="utf-8"), label_path)
        except (OSError, UnicodeDecodeError) as exc:
            raise FormatError(label_path, f"cannot read the label file ({exc})") from exc
        if class_names is None:
            bad = next((r for r in rows if not _is_int(r[4])), None)
            if bad is not None:
                raise FormatError(
                    label_path,
                    f"class {bad[4]!r} is a name; pass --classes to name the classes",
                    line=bad[0],
                )
            class_names = tuple(
                f"class_{k}" for k in range(max((int(r[4]) for r in rows), default=-1) + 1)
            )
        index = {c: k for k, c in enumerate(class_names)}
        for line, seq_id, start, end, cls in rows:
            k = int(cls) if _is_int(cls) else index.get(cls)
            if k is None or not 0 <= k < len(class_names):
                raise FormatError(
                    label_path,
                    f"class {cls!r} is not one of the {len(class_names)} classes "
                    f"(index 0..{len(class_names) - 1} or a --classes name)",
                    line=line,
                )
            if seq_id not in ids:
                raise FormatError(
                    label_path, f"seq_id {seq_id!r} matches no file in {src}", line=line
                )
            rows_by_seq.setdefault(seq_id, []).append((line, start, end, k))
    if class_names is None:
        with_labels = next((s for s in sources if s.has_labels), None)
        if with_labels is not None:
            raise FormatError(
                with_labels.path,
                "holds 'labels' but no --classes was given; K (background) is unknown",
            )
        class_names = ()
    for s in sources:
        if s.has_labels and s.seq_id in rows_by_seq:
            raise FormatError(s.path, f"has both npz 'labels' and rows in {label_path}; keep one")

    persons = int(options.get("persons") or max(s.persons for s in sources))
    if persons > max_persons:
        raise FormatError(src, f"--persons {persons} is over --max-persons {max_persons}")
    too_many = next((s for s in sources if s.persons > persons), None)
    if too_many is not None:
        raise FormatError(
            too_many.path, f"holds {too_many.persons} persons; --persons is {persons}"
        )
    rotation = UP_ROTATIONS[up] * UNITS[units] if C == 3 else np.eye(C) * UNITS[units]
    header = CorpusHeader(
        layout=layout,
        class_names=class_names,
        fps=fps,
        persons=persons,
        source_frame=(
            f"generic files in {units}, up axis {up}; scaled to metres and rotated so up is +y"
        ),
        label_rule=(
            f"label rows of {label_path} cover frames [start, end) (later row wins, uncovered "
            "frames background); "
            if label_path is not None
            else ""
        )
        + ("npz 'labels' taken as given, -1 unlabelled" if minus_one == "unlabelled" else
           "npz 'labels' taken as given, -1 read as background"),
    )

    def generate() -> Iterator[Sequence | Skipped]:
        for s in sources:
            rel = s.path.relative_to(src).as_posix()
            joints, valid, labels, seq_fps, info = _load(s, V, C)
            T = len(joints)
            if T == 0:
                yield Skipped(rel, "empty sequence (0 frames)")
                continue
            finite = np.isfinite(joints).all(axis=2)
            if not nan_as_missing and not finite[valid].all():
                t, v, m = (int(a[0]) for a in np.nonzero(valid & ~finite))
                raise FormatError(
                    s.path,
                    f"NaN or infinity at frame {t}, joint {v}, person {m}; expected finite "
                    "values (or pass --nan-as-missing or --nonfinite mask)",
                )
            valid &= finite
            joints = np.where(valid[:, :, None, :], joints, 0.0)
            if not zeros_valid:
                valid &= (joints != 0.0).any(axis=2)
            joints = np.einsum("ij,tvjm->tvim", rotation, joints)
            if joints.shape[3] < persons:
                pad = persons - joints.shape[3]
                joints = np.concatenate([joints, np.zeros((T, V, C, pad))], axis=3)
                valid = np.concatenate([valid, np.zeros((T, V, pad), dtype=bool)], axis=2)
            if labels is not None:
                bad = (labels < -1) | (labels > len(class_names))
                if bad.any():
                    t = int(np.flatnonzero(bad)[0])
                    raise FormatError(
                        s.path,
                        f"labels[{t}] = {int(labels[t])}; expected -1..{len(class_names)} "
                        f"(-1 unlabelled, {len(class_names)} background)",
                    )
                labels = labels.astype(np.int16)
                if minus_one == "background":
                    labels[labels == -1] = len(class_names)
            if s.seq_id in rows_by_seq:
                labels = np.full(T, len(class_names), dtype=np.int16)
                for line, start, end, k in rows_by_seq[s.seq_id]:
                    if end > T:
                        raise FormatError(
                            label_path,
                            f"row ends at frame {end} but {s.seq_id} has {T} frames",
                            line=line,
                        )
                    labels[start:end] = k
            info.update(s.meta)
            yield Sequence(
                seq_id=s.seq_id,
                joints=np.ascontiguousarray(joints, dtype=np.float32),
                source_file=rel,
                labels=labels,
                valid=valid,
                fps=seq_fps if seq_fps is not None else fps,
                subject=info.get("subject", ""),
                camera=info.get("camera", ""),
                setup=info.get("setup", ""),
                split_tags=split_tags(info.get("split", "")),
            )

    return header, generate()


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def _scan(path: Path, seq_id: str, V: int, C: int, max_frames: int = MAX_FRAMES,
          max_persons: int = MAX_PERSONS) -> _Source:
    """Eager per-file check of every shape, before anything is loaded (npz from the member
    headers; CSV from its rows): joints against the layout and the limits, the other members
    against the joints."""
    if path.suffix == ".npz":
        shape = _npz_shape(path, "joints")
        if shape is None:
            raise FormatError(path, "no 'joints' array; expected joints (T, V, C) or (T, V, C, M)")
        if len(shape) not in (3, 4) or shape[1] != V or shape[2] != C:
            raise FormatError(
                path,
                f"joints has shape {shape}; the layout needs (T, {V}, {C}) or (T, {V}, {C}, M)",
            )
        persons = shape[3] if len(shape) == 4 else 1
        if persons < 1:
            raise FormatError(path, f"joints has shape {shape}; expected at least one person")
        check_limits(path, shape[0], persons, max_frames, max_persons)
        T = shape[0]
        wants = {"valid": ((T, V), (T, V, persons)), "labels": ((T,),), "fps": ((), (1,)),
                 "subject": ((), (1,)), "split": ((), (1,))}
        for key, allowed in wants.items():
            got = _npz_shape(path, key)
            if got is not None and got not in allowed:
                raise FormatError(path, f"{key} has shape {got}; expected "
                                  + " or ".join(str(a) for a in allowed))
        try:
            with zipfile.ZipFile(path) as zf:
                members = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
        except (OSError, zipfile.BadZipFile) as exc:
            raise FormatError(path, f"cannot read the npz ({exc})") from exc
        return _Source(path, seq_id, persons, "labels" in members, "fps" in members,
                       tuple(sorted(set(members) - _USED_KEYS)))
    values = parse_csv_text(_read_text(path), path, V * C)
    persons = max(1, values.shape[1] // (V * C))
    check_limits(path, len(values), persons, max_frames, max_persons)
    return _Source(path, seq_id, persons, False)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read the file as text ({exc})") from exc


def _load(
    s: _Source, V: int, C: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float | None, dict[str, str]]:
    """(T, V, C, M) float64 joints, (T, V, M) bool valid, labels or None, fps or None, and
    {"subject": ..., "split": ...} from the npz."""
    if s.path.suffix == ".csv":
        values = parse_csv_text(_read_text(s.path), s.path, V * C)
        T, M = len(values), max(1, values.shape[1] // (V * C))
        joints = values.reshape(T, M, V, C).transpose(0, 2, 3, 1)
        return joints, np.ones((T, V, M), dtype=bool), None, None, {}
    info: dict[str, str] = {}
    try:
        # _scan checked every member's header (size, dtype, shape) before this load
        with np.load(s.path, allow_pickle=False) as npz:
            joints = np.asarray(npz["joints"], dtype=np.float64)
            valid = np.asarray(npz["valid"]) if "valid" in npz.files else None
            labels = np.asarray(npz["labels"]) if "labels" in npz.files else None
            fps = np.asarray(npz["fps"]) if "fps" in npz.files else None
            for key in ("subject", "split"):
                if key in npz.files:
                    v = np.asarray(npz[key]).reshape(-1)[0]
                    info[key] = v.decode() if isinstance(v, bytes) else str(v)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
        raise FormatError(s.path, f"cannot read the npz ({exc})") from exc
    if joints.ndim == 3:
        joints = joints[..., None]
    T, M = joints.shape[0], joints.shape[3]
    if valid is None:
        valid = np.ones((T, V, M), dtype=bool)
    else:
        if valid.dtype != bool or valid.shape not in ((T, V), (T, V, M)):
            raise FormatError(
                s.path,
                f"valid has shape {valid.shape} dtype {valid.dtype}; expected bool ({T}, {V}) "
                f"or ({T}, {V}, {M})",
            )
        valid = np.array(
            valid.reshape(T, V, -1) if valid.ndim == 3 else np.repeat(valid[..., None], M, axis=2)
        )
    if labels is not None and (labels.shape != (T,) or labels.dtype.kind not in "iu"):
        raise FormatError(
            s.path,
            f"labels has shape {labels.shape} dtype {labels.dtype}; expected integers ({T},)",
        )
    seq_fps = None
    if fps is not None:
        if (
            fps.size != 1
            or fps.dtype.kind not in "iuf"
            or not np.isfinite(float(fps.reshape(-1)[0]))
            or float(fps.reshape(-1)[0]) <= 0
        ):
            raise FormatError(s.path, f"fps must be one positive number, got {fps!r}")
        seq_fps = float(fps.reshape(-1)[0])
    return joints, valid, labels, seq_fps, info
