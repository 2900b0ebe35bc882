"""The generic importer's options, typed and checked once (``GenericOptions.parse``).

``sscl data convert generic`` and ``sscl predict --format generic`` hand the converter the
argparse destinations of :func:`sscl.data.formats.generic.add_arguments` as keyword options
(``convert(fmt, src, dest, **options)``); :meth:`GenericOptions.parse` turns them into this
frozen dataclass, refusing unknown names with the list of known ones. Each value is checked on
construction, and an error names the option, its value and what is expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from sscl.data.formats.generic.frames import UNITS, UP_ROTATIONS
from sscl.data.layouts import Layout, get_layout
from sscl.errors import ConfigError, LayoutError

DEFAULT_FPS = 30.0
MAX_FRAMES = 1_000_000  # ~9 hours at 30 fps
MAX_PERSONS = 16
MINUS_ONE = ("unlabelled", "background")


@dataclass(frozen=True)
class GenericOptions:
    """Options of the generic converter (module docstring; the format: sscl.data.formats.generic).

    Attributes:
        layout: the skeleton layout; every file's V and C must match it.
        labels: CSV of ``seq_id,start,end,class`` rows, or None.
        classes: class list (text or JSON), or None.
        meta: CSV of per-sequence subject / split / camera / setup, or None.
        fps: frame rate of files without an ``fps`` member; None: ``DEFAULT_FPS``, with a
            warning.
        minus_one: what -1 in npz ``labels`` means: "unlabelled" or "background".
        max_frames, max_persons: limits checked from the headers before loading.
        units: "m", "cm" or "mm".
        up: the source axis pointing up ("y", "-y", "z", "-z", "x", "-x").
        persons: persons M of the corpus; None: the most in any file.
        nan_as_missing: NaN/inf at a valid joint becomes a missing joint instead of an error.
        zeros_valid: joints exactly at (0, 0, 0) stay valid.
        ignore_labels: npz ``labels`` are not read (nor checked): every frame is unlabelled and
            the sequences that had them say so in ``extra["labels_ignored"]`` (what
            ``sscl predict`` uses: it needs no labels). Excludes ``labels``.
    """

    layout: Layout
    labels: Path | None = None
    classes: Path | None = None
    meta: Path | None = None
    fps: float | None = None
    minus_one: str = "unlabelled"
    max_frames: int = MAX_FRAMES
    max_persons: int = MAX_PERSONS
    units: str = "m"
    up: str = "y"
    persons: int | None = None
    nan_as_missing: bool = False
    zeros_valid: bool = False
    ignore_labels: bool = False

    def __post_init__(self) -> None:
        def bad(option: str, value: object, expected: str) -> ConfigError:
            return ConfigError(f"generic converter: --{option} {value!r}; expected {expected}")

        if self.units not in UNITS:
            raise bad("units", self.units, "one of " + ", ".join(UNITS))
        if self.up not in UP_ROTATIONS:
            raise bad("up", self.up, "one of " + ", ".join(UP_ROTATIONS))
        if self.up != "y" and self.layout.channels != 3:
            raise bad("up", self.up, f"y: layout {self.layout.name} has "
                      f"{self.layout.channels}-D joints")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise bad("fps", self.fps, "a positive number")
        if self.minus_one not in MINUS_ONE:
            raise bad("minus-one", self.minus_one, " or ".join(MINUS_ONE))
        for option, value in (("max-frames", self.max_frames),
                              ("max-persons", self.max_persons)):
            if value < 1:
                raise bad(option, value, "a positive number")
        if self.persons is not None and not 1 <= self.persons <= self.max_persons:
            raise bad("persons", self.persons, f"1..{self.max_persons} (--max-persons)")
        if self.ignore_labels and self.labels is not None:
            raise ConfigError(f"generic converter: --ignore-labels with --labels {self.labels}; "
                              "pass one of them")

    @property
    def default_fps(self) -> float:
        """The frame rate of a file without an ``fps`` member."""
        return DEFAULT_FPS if self.fps is None else self.fps

    @property
    def side_files(self) -> tuple[Path, ...]:
        """The label, class and meta files: they may live inside SRC and are not sequences."""
        return tuple(p for p in (self.labels, self.classes, self.meta) if p is not None)

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> GenericOptions:
        """Build from keyword options (argparse destinations; None or absent: the default).

        Raises:
            ConfigError: an unknown option (naming the known ones) or a bad value.
            LayoutError: no layout, or an unknown one.
        """
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"generic converter: unknown option(s) {', '.join(unknown)}; "
                              f"expected any of {', '.join(known)}")
        if not options.get("layout"):
            raise LayoutError("--layout is required for the generic converter (a layout name "
                              "or a JSON layout file)")

        def path(key: str) -> Path | None:
            return Path(options[key]) if options.get(key) else None

        def number(key: str, kind: type, default: Any) -> Any:
            value = options.get(key)
            if value is None or value == "":
                return default
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise ConfigError(f"generic converter: --{key.replace('_', '-')} {value!r}; "
                                  f"expected a number") from None

        return cls(
            layout=get_layout(str(options["layout"])),
            labels=path("labels"), classes=path("classes"), meta=path("meta"),
            fps=number("fps", float, None),
            minus_one=options.get("minus_one") or "unlabelled",
            # 0 or None: the default, as the command line's defaults have always read
            max_frames=number("max_frames", int, None) or MAX_FRAMES,
            max_persons=number("max_persons", int, None) or MAX_PERSONS,
            units=options.get("units") or "m", up=options.get("up") or "y",
            persons=number("persons", int, None) or None,
            nan_as_missing=bool(options.get("nan_as_missing", False)),
            zeros_valid=bool(options.get("zeros_valid", False)),
            ignore_labels=bool(options.get("ignore_labels", False)),
        )
