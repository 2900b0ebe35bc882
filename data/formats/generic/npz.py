"""Generic ``.npz`` sequences: every member checked from its header, then loaded.

Members: ``joints`` (T, V, C) or (T, V, C, M); optional ``valid`` (T, V) or (T, V, M) bool,
``labels`` (T,) integers (neither checked nor read with ``ignore_labels``), ``fps``, ``subject``
and ``split`` scalars. Others are listed as unused. Sizes, dtypes and shapes are read from the
member headers before anything is loaded, and nothing is unpickled (sscl.data.formats._npz).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from sscl.data.formats._npz import npz_header
from sscl.data.formats.generic.files import Loaded, Source, check_limits
from sscl.data.formats.generic.options import GenericOptions
from sscl.errors import FormatError

USED = {"joints", "valid", "labels", "fps", "subject", "split"}


def _shape(path: Path, key: str) -> tuple[int, ...] | None:
    """Shape of one member from its header, checked, without loading it (None if absent)."""
    head = npz_header(path, key, kinds="biufUS")
    return None if head is None else head[0]


def scan(path: Path, seq_id: str, opts: GenericOptions) -> Source:
    """Check every member's shape from its header: joints against the layout and the limits,
    the others against the joints.

    Raises:
        FormatError: no joints, a shape off the layout or the joints, a limit passed, an
            unreadable file.
    """
    V, C = opts.layout.num_joints, opts.layout.channels
    shape = _shape(path, "joints")
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
    check_limits(path, shape[0], persons, opts.max_frames, opts.max_persons)
    T = shape[0]
    wants = {"valid": ((T, V), (T, V, persons)), "labels": ((T,),), "fps": ((), (1,)),
             "subject": ((), (1,)), "split": ((), (1,))}
    if opts.ignore_labels:
        del wants["labels"]
    for key, allowed in wants.items():
        got = _shape(path, key)
        if got is not None and got not in allowed:
            raise FormatError(path, f"{key} has shape {got}; expected "
                              + " or ".join(str(a) for a in allowed))
    try:
        with zipfile.ZipFile(path) as zf:
            members = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    except (OSError, zipfile.BadZipFile) as exc:
        raise FormatError(path, f"cannot read the npz ({exc})") from exc
    return Source(path, seq_id, persons, "labels" in members, "fps" in members,
                  tuple(sorted(set(members) - USED)))


def load(s: Source, opts: GenericOptions) -> Loaded:
    """The members of a scanned file (:func:`scan` checked every header first).

    Raises:
        FormatError: an unreadable file, a ``valid`` that is not bool, ``labels`` that are not
            integers, an ``fps`` that is not one positive number.
    """
    V = opts.layout.num_joints
    info: dict[str, str] = {}
    try:
        with np.load(s.path, allow_pickle=False) as npz:
            joints = np.asarray(npz["joints"], dtype=np.float64)
            valid = np.asarray(npz["valid"]) if "valid" in npz.files else None
            labels = (np.asarray(npz["labels"]) if "labels" in npz.files
                      and not opts.ignore_labels else None)
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
    return Loaded(joints, valid, labels, _fps(s.path, fps), info)


def _fps(path: Path, fps: np.ndarray | None) -> float | None:
    if fps is None:
        return None
    value = float(fps.reshape(-1)[0]) if fps.size == 1 and fps.dtype.kind in "iuf" else None
    if value is None or not np.isfinite(value) or value <= 0:
        raise FormatError(path, f"fps must be one positive number, got {fps!r}")
    return value
