"""Reading untrusted ``.npz`` inputs: sizes checked from the headers before anything is loaded.

An npz is a zip of ``.npy`` members, each starting with a header that states its shape and
dtype (NumPy's format spec, ``numpy.lib.format``). ``np.load`` allocates what the header
claims before reading a byte, so a damaged or hostile header claiming (10^9, 20, 3) float64
asks for 224 GiB. Here every member is checked first: its dtype is a plain number or bool (no
object arrays: nothing is ever unpickled), the bytes it claims are no more than the member
holds, and no more than a stated limit; only then is it loaded (``allow_pickle=False``).
Also: a path inside a source root that resolves outside it is refused (:func:`inside`).
"""

from __future__ import annotations

import os
import tokenize
import zipfile
from pathlib import Path

import numpy as np

from sscl.errors import FormatError

# Largest member loaded, in bytes: an override for honest large inputs through
# $SSCL_MAX_ARRAY_BYTES (bytes). 4 GiB holds 7 hours of 25 joints x 3 x 2 persons in float64.
MAX_ARRAY_BYTES = 4 << 30


def max_array_bytes() -> int:
    env = os.environ.get("SSCL_MAX_ARRAY_BYTES")
    return int(float(env)) if env else MAX_ARRAY_BYTES


def npz_header(path: Path, key: str, kinds: str = "biuf"
               ) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype of member ``key`` from its header (None when absent), checked.

    Args:
        path: the npz file.
        key: member name without ``.npy``.
        kinds: accepted dtype kinds (numpy ``dtype.kind``; "U"/"S" for text members).

    Raises:
        FormatError: unreadable zip or header; an object (pickled) dtype; a header that claims
            more bytes than the member holds or than :func:`max_array_bytes`.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            name = f"{key}.npy"
            if name not in zf.namelist():
                return None
            info = zf.getinfo(name)
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                header_len = fh.tell()
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, SyntaxError,
            tokenize.TokenError, RecursionError) as exc:
        # numpy parses the header's dict with ast/tokenize: a damaged one is a SyntaxError or
        # a TokenError (an unclosed bracket), not a ValueError
        raise FormatError(path, f"cannot read the npz member {key!r} ({exc})") from exc
    if dtype.hasobject or dtype.kind not in kinds:
        raise FormatError(path, f"member {key!r} has dtype {dtype}; expected numbers or bool "
                          "(object arrays would need unpickling, which is never done)")
    if any(d < 0 for d in shape):
        raise FormatError(path, f"member {key!r} header claims shape {shape}")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    held = info.file_size - header_len
    if claimed > held:
        raise FormatError(path, f"member {key!r} header claims shape {shape} {dtype} "
                          f"({claimed:,} bytes) but the member holds {held:,}: a damaged or "
                          "forged header")
    limit = max_array_bytes()
    if claimed > limit:
        raise FormatError(path, f"member {key!r} has shape {shape} {dtype} ({claimed:,} bytes), "
                          f"over the {limit:,}-byte limit per array; split the sequence or raise "
                          "$SSCL_MAX_ARRAY_BYTES")
    return tuple(int(d) for d in shape), dtype


def inside(root: Path, rel: str | os.PathLike, what: str, where: Path) -> Path:
    """``root / rel`` when it resolves inside ``root`` (symlinks included).

    Raises:
        FormatError: naming ``where`` (the file that named ``rel``), for absolute paths and
            ``..`` or links that lead outside ``root``.
    """
    p = Path(root) / rel
    try:
        p.resolve().relative_to(Path(root).resolve())
    except ValueError:
        raise FormatError(where, f"{what} {str(rel)!r} leads outside {root}; expected a path "
                          "inside it") from None
    return p
