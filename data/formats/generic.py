"""Generic per-sequence npz/CSV skeleton files + an optional label file -> corpus sequences.

Inputs (this project's own format for data without a dedicated converter):
- SRC: a folder (searched recursively) of `.npz` and `.csv` files, one sequence each; the
  sequence id is the path relative to SRC without the suffix.
  - npz: `joints` (T, V, C) or (T, V, C, M); optional `valid` (T, V) or (T, V, M) bool,
    `labels` (T,) ints in -1..K (-1 unlabelled, K background; needs --classes), `fps` scalar.
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
- `--classes FILE`: one class name per line. Without it, class indices in --labels define
  K = max + 1 with names class_0.., and npz `labels` are refused (K unknown).
- `--units m|cm|mm` scales into metres; `--up x|-x|y|-y|z|-z` names the source axis pointing up,
  and a proper rotation (no mirroring: the source must be right-handed) takes it to +y:
  z -> (x, z, -y), -z -> (x, -z, y), x -> (-y, x, z), -x -> (y, -x, z), -y -> (x, -y, -z).

Validity: a joint is valid when its `valid` entry (if given) is True, its values are finite and
it is not exactly all zeros (unless --zeros-valid); invalid joints are stored as 0. NaN or
infinity at a joint marked valid (or without `valid`) is an error unless --nan-as-missing.
Sequences with 0 frames are Skipped ("empty sequence").
"""

from __future__ import annotations

import argparse
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sscl.data.corpus import CorpusHeader, Sequence, Skipped
from sscl.data.layouts import Layout, get_layout
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the generic converter's options."""
    parser.add_argument(
        "--layout", required=True, help="layout name (e.g. ntu25) or a JSON layout file"
    )
    parser.add_argument(
        "--labels", default=None, help="CSV of seq_id,start,end,class rows (end exclusive)"
    )
    parser.add_argument("--classes", default=None, help="class names, one per line")
    parser.add_argument(
        "--fps", type=float, default=30.0, help="frame rate of files without an fps entry"
    )
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
    """Shape of one npz member from its header, without loading it (None if absent)."""
    try:
        with zipfile.ZipFile(path) as zf:
            name = f"{key}.npy"
            if name not in zf.namelist():
                return None
            with zf.open(name) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, _ = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, _, _ = np.lib.format.read_array_header_2_0(fh)
                return tuple(shape)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise FormatError(path, f"cannot read the npz ({exc})") from exc


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
    fps = float(options.get("fps") or 30.0)
    if not (np.isfinite(fps) and fps > 0):
        raise FormatError(src, f"--fps must be a positive number, got {fps}")
    nan_as_missing = bool(options.get("nan_as_missing", False))
    zeros_valid = bool(options.get("zeros_valid", False))

    # the label and class files may live inside SRC; they are not sequences
    option_files = {Path(options[k]).resolve() for k in ("labels", "classes") if options.get(k)}
    files = sorted(
        p
        for p in src.rglob("*")
        if p.suffix in (".npz", ".csv") and p.is_file() and p.resolve() not in option_files
    )
    if not files:
        raise FormatError(src, "no .npz or .csv files found")
    sources: list[_Source] = []
    ids: dict[str, Path] = {}
    for p in files:
        seq_id = p.relative_to(src).with_suffix("").as_posix()
        if seq_id in ids:
            raise FormatError(
                p, f"sequence id {seq_id!r} also comes from {ids[seq_id]}; expected one file per id"
            )
        ids[seq_id] = p
        sources.append(_scan(p, seq_id, V, C))

    class_names: tuple[str, ...] | None = None
    if options.get("classes"):
        class_names = _read_classes(Path(options["classes"]))
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
        + "npz 'labels' taken as given",
    )

    def generate() -> Iterator[Sequence | Skipped]:
        for s in sources:
            rel = s.path.relative_to(src).as_posix()
            joints, valid, labels, seq_fps = _load(s, V, C)
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
                    "values (or pass --nan-as-missing)",
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
            yield Sequence(
                seq_id=s.seq_id,
                joints=np.ascontiguousarray(joints, dtype=np.float32),
                source_file=rel,
                labels=labels,
                valid=valid,
                fps=seq_fps if seq_fps is not None else fps,
            )

    return header, generate()


def _is_int(token: str) -> bool:
    try:
        int(token)
    except ValueError:
        return False
    return True


def _read_classes(path: Path) -> tuple[str, ...]:
    try:
        names = [
            line.strip() for line in path.read_text(encoding="utf-8").split("\n") if line.strip()
        ]
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read the class list ({exc})") from exc
    if not names:
        raise FormatError(path, "no class names; expected one name per line")
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise FormatError(path, f"class {dup!r} is listed twice")
    return tuple(names)


def _scan(path: Path, seq_id: str, V: int, C: int) -> _Source:
    """Eager per-file check of the joint shape (npz from its header; CSV from its first row)."""
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
        return _Source(path, seq_id, persons, _npz_shape(path, "labels") is not None)
    values = parse_csv_text(_read_text(path), path, V * C)
    return _Source(path, seq_id, max(1, values.shape[1] // (V * C)), False)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read the file as text ({exc})") from exc


def _load(
    s: _Source, V: int, C: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float | None]:
    """(T, V, C, M) float64 joints, (T, V, M) bool valid, labels or None, fps or None."""
    if s.path.suffix == ".csv":
        values = parse_csv_text(_read_text(s.path), s.path, V * C)
        T, M = len(values), max(1, values.shape[1] // (V * C))
        joints = values.reshape(T, M, V, C).transpose(0, 2, 3, 1)
        return joints, np.ones((T, V, M), dtype=bool), None, None
    try:
        with np.load(s.path, allow_pickle=False) as npz:
            joints = np.asarray(npz["joints"], dtype=np.float64)
            valid = np.asarray(npz["valid"]) if "valid" in npz.files else None
            labels = np.asarray(npz["labels"]) if "labels" in npz.files else None
            fps = np.asarray(npz["fps"]) if "fps" in npz.files else None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
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
    return joints, valid, labels, seq_fps
