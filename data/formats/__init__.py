"""Raw-format converters and the driver that turns any of them into a corpus.

Each format is one module (``generic``: a subpackage) in this package exposing ``NAME``,
``add_arguments(parser)`` and ``read(src, **options) -> (CorpusHeader, iterable of Sequence |
Skipped)``; ``src`` is a folder, or one sequence file where the format has those
(sscl.data.formats._sources). The driver here
streams that iterable into a :class:`~sscl.data.corpus.CorpusWriter`, records provenance
(converter, version, options, a SHA-256 of the source files) and shows progress.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
from tqdm import tqdm

from sscl.data.corpus import CorpusWriter, Skipped
from sscl.errors import ConfigError

FORMATS = ("ntu", "pkummd", "babel", "cmu", "msrc12", "kard", "msr3d", "florence3d", "generic")


def format_module(name: str) -> ModuleType:
    """The converter module for format ``name``.

    Raises:
        ConfigError: unknown format, with the list of known ones.
    """
    if name not in FORMATS:
        raise ConfigError(f"unknown format {name!r}; expected one of {', '.join(FORMATS)}")
    return importlib.import_module(f"sscl.data.formats.{name}")


def source_checksum(src: str | os.PathLike, progress: bool = False) -> str:
    """SHA-256 over the relative paths and contents of every file under ``src`` (sorted)."""
    src = Path(src)
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    h = hashlib.sha256()
    total = sum(p.stat().st_size for p in files)
    with tqdm(total=total, unit="B", unit_scale=True, desc="checksum", disable=not progress,
              leave=False) as bar:
        for p in files:
            h.update(str(p.relative_to(src) if p != src else p.name).encode() + b"\0")
            with open(p, "rb") as f:
                while block := f.read(1 << 22):
                    h.update(block)
                    bar.update(len(block))
    return h.hexdigest()


@dataclass(frozen=True)
class ConversionReport:
    dest: str
    sequences: int
    frames: int
    skipped: int
    nonfinite_masked: int = 0
    label_counts: dict | None = None  # frames per class name, "background", "unlabelled"

    def __str__(self) -> str:
        out = (f"wrote {self.dest}: {self.sequences} sequences, {self.frames} frames, "
               f"{self.skipped} skipped")
        if self.nonfinite_masked:
            out += f", {self.nonfinite_masked} NaN/inf joints masked as missing"
        if self.label_counts:
            out += "\nlabel frames: " + ", ".join(f"{k} {v}" for k, v in
                                                  self.label_counts.items())
        return out


def convert(
    fmt: str,
    src: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    overwrite: bool = False,
    append: bool = False,
    progress: bool = True,
    nonfinite: str = "refuse",
    **options,
) -> ConversionReport:
    """Convert raw data in format ``fmt`` at ``src`` into a corpus at ``dest``.

    Args:
        fmt: one of FORMATS.
        src: the raw data (folder or file, as the format expects).
        dest: the corpus to write (local path or fsspec URL).
        overwrite: replace an existing corpus (atomically, once the new one is complete).
        append: add to an existing corpus with the same layout, classes and persons.
        progress: show progress bars.
        nonfinite: NaN/inf at a valid joint: "refuse" (an error with their count) or "mask"
            (stored as missing joints, counted in the report).
        **options: format-specific options (see ``sscl data convert FORMAT --help``).

    Raises:
        ConfigError, FormatError, CorpusError, DestinationExistsError: with the file and field.
    """
    mod = format_module(fmt)
    src = Path(src)
    if not src.exists():
        raise ConfigError(f"source {src} does not exist")
    if nonfinite == "mask" and fmt == "generic":
        options.setdefault("nan_as_missing", True)  # its own check would refuse them first
    header, items = mod.read(src, **options)
    header.converter = mod.NAME
    provenance = {
        "converter": mod.NAME,
        "converter_version": header.converter_version,
        "source": str(src.resolve()),
        "source_checksum": "sha256:" + source_checksum(src, progress),
        "options": {k: str(v) for k, v in sorted(options.items())},
    }
    counts = np.zeros(len(header.class_names) + 2, np.int64)  # unlabelled, classes, background
    with CorpusWriter(dest, header, overwrite=overwrite, append=append,
                      provenance=provenance, nonfinite=nonfinite) as w:
        frames = 0
        with tqdm(items, unit="seq", desc=f"convert {fmt}", disable=not progress) as bar:
            for item in bar:
                if isinstance(item, Skipped):
                    w.skip(item)
                else:
                    w.append(item)
                    frames += len(item.joints)
                    if item.labels is None:
                        counts[0] += len(item.joints)
                    else:
                        counts += np.bincount(np.asarray(item.labels, np.int64) + 1,
                                              minlength=len(counts))
                bar.set_postfix(frames=frames, skipped=w.num_skipped, refresh=False)
    names = ["unlabelled", *header.class_names, "background"]
    report = ConversionReport(str(dest), w.num_sequences, frames, w.num_skipped,
                              w.nonfinite_masked, dict(zip(names, counts.tolist())))
    return report
