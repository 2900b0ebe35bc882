"""Generic per-sequence npz/CSV skeleton files + an optional label file -> corpus sequences.

Inputs (this project's own format for data without a dedicated converter):
- SRC: a folder (searched recursively) of `.npz` and `.csv` files, one sequence each; the
  sequence id is the path relative to SRC without the suffix. SRC may also be a single such
  file (its id: its name without the suffix).
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
- `--ignore-labels`: npz `labels` are neither checked nor read; every frame is unlabelled and
  each sequence that had them records `extra["labels_ignored"]` (`sscl predict` sets it when
  given neither --classes nor --labels: prediction needs no labels). Excludes --labels.
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

Modules of this package, one concern each: ``options`` (GenericOptions, checked once),
``files`` (finding the inputs, the notes warning), ``npz`` and ``csv_files`` (reading each kind),
``labels`` (the class list, the --labels rows, frame labels), ``meta`` (the --meta file, split
tags), ``frames`` (validity, unit and axis transform).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from sscl.data.corpus import CorpusHeader, Sequence, Skipped
from sscl.data.formats.generic import csv_files, npz
from sscl.data.formats.generic.files import Source, find_files, scan_all, warn_notes
from sscl.data.formats.generic.frames import (
    UNITS,
    UP_ROTATIONS,
    to_corpus_frame,
    transform,
    valid_joints,
)
from sscl.data.formats.generic.labels import LabelRows, classes_and_rows, frame_labels, label_rule
from sscl.data.formats.generic.meta import read_meta, split_tags
from sscl.data.formats.generic.options import (
    DEFAULT_FPS,
    MAX_FRAMES,
    MAX_PERSONS,
    MINUS_ONE,
    GenericOptions,
)
from sscl.data.layouts import layout_names
from sscl.errors import FormatError

NAME = "generic"
_READERS = {".npz": npz, ".csv": csv_files}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the generic converter's options (the fields of GenericOptions)."""
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
        "--minus-one", choices=MINUS_ONE, default="unlabelled",
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
    parser.add_argument(
        "--ignore-labels",
        action="store_true",
        help="do not read npz labels: every frame unlabelled (sscl predict's default without "
        "--classes or --labels: prediction needs no labels)",
    )


def read(src: Path, **options) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Convert a folder of generic npz/CSV sequences (format in the module docstring).

    Args:
        src: the folder, or one ``.npz``/``.csv`` sequence file.
        **options: the fields of :class:`GenericOptions` (layout is required).

    Returns:
        The header and a generator with one Sequence or Skipped per file.

    Raises:
        ConfigError: an unknown option or a bad option value.
        FormatError: bad label/class/meta files, wrong V or C, joint shapes, labels out of
            range, NaN/inf (lazily for per-file content).
        LayoutError: no layout, or an unknown one.
    """
    src = Path(src)
    opts = GenericOptions.parse(options)
    root, files, linked = find_files(src, opts.side_files)
    sources = scan_all(root, files, lambda p, seq_id: _READERS[p.suffix].scan(p, seq_id, opts))
    if opts.meta is not None:
        by_id = read_meta(opts.meta, {s.seq_id for s in sources}, root)
        sources = [replace(s, meta=by_id.get(s.seq_id, {})) for s in sources]
    warn_notes(src, sources, linked, opts.default_fps, opts.fps is not None)
    class_names, rows = classes_and_rows(opts, sources, root)
    persons = opts.persons or max(s.persons for s in sources)
    too_many = next((s for s in sources if s.persons > persons), None)
    if too_many is not None:
        raise FormatError(too_many.path, f"holds {too_many.persons} persons; --persons is "
                          f"{persons}")
    header = CorpusHeader(
        layout=opts.layout,
        class_names=class_names,
        fps=opts.default_fps,
        persons=persons,
        source_frame=(f"generic files in {opts.units}, up axis {opts.up}; scaled to metres and "
                      "rotated so up is +y"),
        label_rule=label_rule(opts, rows),
    )
    return header, _sequences(root, sources, opts, class_names, rows, persons)


def _sequences(root: Path, sources: list[Source], opts: GenericOptions,
               class_names: tuple[str, ...], rows: LabelRows | None, persons: int
               ) -> Iterator[Sequence | Skipped]:
    matrix = transform(opts.units, opts.up, opts.layout.channels)
    for s in sources:
        rel = s.path.relative_to(root).as_posix()
        got = _READERS[s.path.suffix].load(s, opts)
        T = len(got.joints)
        if T == 0:
            yield Skipped(rel, "empty sequence (0 frames)")
            continue
        joints, valid = valid_joints(got.joints, got.valid, s.path,
                                     nan_as_missing=opts.nan_as_missing,
                                     zeros_valid=opts.zeros_valid)
        joints, valid = to_corpus_frame(joints, valid, matrix, persons)
        labels = frame_labels(s, got.labels, T, len(class_names), opts, rows)
        info = {**got.info, **s.meta}
        yield Sequence(
            seq_id=s.seq_id,
            joints=np.ascontiguousarray(joints, dtype=np.float32),
            source_file=rel,
            labels=labels,
            valid=valid,
            fps=got.fps if got.fps is not None else opts.default_fps,
            subject=info.get("subject", ""),
            camera=info.get("camera", ""),
            setup=info.get("setup", ""),
            split_tags=split_tags(info.get("split", "")),
            extra={"labels_ignored": True} if s.has_labels and opts.ignore_labels else {},
        )
