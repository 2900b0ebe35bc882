"""Corpus integrity checks: the checked readers of the small arrays, and the schema check.

The writer (sscl.data.writer) records a crc32c of every stored chunk of the frame arrays, of
``offsets``, ``lengths`` and the ``meta`` blob, and each shard file's size (attribute
``checksums``; data/README.md "Integrity"). The shard-level checks live with the chunk reader
(sscl.data.chunks.ShardedArrayReader); this module holds the checks of the small unsharded
arrays and the schema check used by :func:`sscl.data.reader.open_corpus` and by
:func:`sscl.data.validation.validate`, which runs every check on every array and lists all damage
rather than stopping at the first.

Why recorded checksums and not zarr's crc32c codec: data/README.md "Integrity", figures in
bench/README.md "Corpus integrity".
"""

from __future__ import annotations

import json

import numpy as np
import zarr

from sscl.data.chunks import crc32c
from sscl.errors import CorpusError


def read_array(group: zarr.Group, name: str, path: str):
    """``group[name]``; a missing array or a damaged ``zarr.json`` is a CorpusError."""
    try:
        return group[name]
    except KeyError:
        raise CorpusError(f"{path}: missing array {name!r}") from None
    except Exception as e:  # a damaged zarr.json: JSONDecodeError, ValueError, TypeError ...
        raise CorpusError(f"{path}: array {name!r}: its zarr.json is damaged "
                          f"({type(e).__name__}: {e}); convert again") from e


def read_small(arr, name: str, path: str, record: dict | None, dtype) -> np.ndarray:
    """A small unsharded array (offsets, lengths, meta) read whole and checked against its
    recorded crc32c: sequences re-cut by consistently moved offsets and lengths are caught."""
    try:
        data = np.asarray(arr[:], dtype)
    except Exception as e:  # zstd/blosc errors, short files: types vary with the codec
        raise CorpusError(f"{path}: array {name!r} cannot be read ({type(e).__name__}: {e}); "
                          "the file is damaged, convert again") from e
    if record is not None:
        want = record.get(name)
        got = crc32c(data.astype(np.dtype(dtype).newbyteorder("<")).tobytes())
        if got != want:
            raise CorpusError(f"{path}: array {name!r} fails its crc32c (written {want}, read "
                              f"{got}); it was changed after writing (sequences re-cut?), "
                              "restore it or convert again")
    return data


def attributes_crc32c(attrs: dict) -> int:
    """crc32c of the group attributes other than ``checksums`` (canonical JSON: sorted keys,
    no spaces): class names, fps, layout and persons change what every frame means, and no
    chunk checksum covers them."""
    rest = {k: v for k, v in attrs.items() if k != "checksums"}
    return crc32c(json.dumps(rest, sort_keys=True, separators=(",", ":"),
                             allow_nan=False).encode())


def check_attributes(attrs: dict, path: str) -> None:
    """Refuse group attributes changed after writing (when their crc32c was recorded).

    Raises:
        CorpusError: naming the group attributes, with the written and read crc32c.
    """
    want = (attrs.get("checksums") or {}).get("attributes")
    if want is None:
        return  # written before the attributes were recorded
    got = attributes_crc32c(attrs)
    if got != want:
        raise CorpusError(f"{path}: the group attributes (zarr.json: class names, fps, layout, "
                          f"...) fail their crc32c (written {want}, read {got}); they were "
                          "changed after writing, restore the file or convert again")


def check_schema(c, group: zarr.Group) -> None:
    """Shapes against the layout and persons; offsets and lengths contiguous and covering the
    frames (``c``: the Corpus being opened)."""
    V, C, M = c.frame_shape
    F = c.num_frames
    # F is the length of 'labels'; naming it says where the frame counts disagree
    frames = f"F={F} frames of array 'labels'"
    problems = []
    if group["joints"].shape != (F, V, C, M):
        problems.append(f"array 'joints' has shape {group['joints'].shape}; expected (F, V={V}, "
                        f"C={C}, M={M}) from the {frames} and layout {c.layout.name!r}")
    if group["valid"].shape != (F, V, M):
        problems.append(f"array 'valid' has shape {group['valid'].shape}; expected (F, V={V}, "
                        f"M={M}) from the {frames}")
    S = len(c.lengths)
    if len(c.offsets) != S or len(c.meta) != S:
        problems.append(f"{len(c.offsets)} offsets, {S} lengths, {len(c.meta)} metadata records "
                        "in arrays 'offsets', 'lengths', 'meta' (expected equal counts)")
    elif S:
        if (c.lengths <= 0).any():
            problems.append(f"array 'lengths': sequence {int(np.argmax(c.lengths <= 0))} has "
                            "length <= 0")
        ends = c.offsets + c.lengths
        if c.offsets[0] != 0 or (c.offsets[1:] != ends[:-1]).any() or ends[-1] != F:
            problems.append("arrays 'offsets' and 'lengths' are not monotone and contiguous, or "
                            f"do not cover the {frames}")
    elif F:
        problems.append(f"{frames} but no sequences")
    if problems:
        raise CorpusError(f"{c.path}: " + "; ".join(problems))
