"""Corpus integrity: the checked readers of the small arrays, and ``validate``.

The writer (sscl.data.corpus) records a crc32c of every stored chunk of the frame arrays, of
``offsets``, ``lengths`` and the ``meta`` blob, and each shard file's size (attribute
``checksums``; data/README.md "Integrity"). The shard-level checks live with the chunk reader
(sscl.data.chunks.ShardedArrayReader); this module holds the checks of the small unsharded
arrays used by :func:`sscl.data.reader.open_corpus`, and :func:`validate`, which runs every
check on every array and lists all damage rather than stopping at the first.

Why recorded checksums and not zarr's crc32c codec: data/README.md "Integrity", figures in
bench/README.md "Corpus integrity".
"""

from __future__ import annotations

import numpy as np
import zarr
from tqdm import tqdm

from sscl.data.chunks import ShardedArrayReader, crc32c
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


def check_schema(c, group: zarr.Group) -> None:
    """Shapes against the layout and persons; offsets and lengths contiguous and covering the
    frames (``c``: the Corpus being opened)."""
    V, C, M = c.frame_shape
    F = c.num_frames
    problems = []
    if group["joints"].shape != (F, V, C, M):
        problems.append(f"joints shape {group['joints'].shape} != (F={F}, V={V}, C={C}, M={M}) "
                        f"from layout {c.layout.name!r}")
    if group["valid"].shape != (F, V, M):
        problems.append(f"valid shape {group['valid'].shape} != (F={F}, V={V}, M={M})")
    S = len(c.lengths)
    if len(c.offsets) != S or len(c.meta) != S:
        problems.append(f"{len(c.offsets)} offsets, {S} lengths, {len(c.meta)} metadata records "
                        "(expected equal counts)")
    elif S:
        if (c.lengths <= 0).any():
            problems.append(f"sequence {int(np.argmax(c.lengths <= 0))} has length <= 0")
        ends = c.offsets + c.lengths
        if c.offsets[0] != 0 or (c.offsets[1:] != ends[:-1]).any() or ends[-1] != F:
            problems.append("offsets are not monotone and contiguous, or do not cover all frames")
    elif F:
        problems.append(f"{F} frames but no sequences")
    if problems:
        raise CorpusError(f"{c.path}: " + "; ".join(problems))


def validate(path_or_corpus, progress: bool = False) -> list[str]:
    """Full content check; returns a list of problems (empty when the corpus is sound).

    Checks everything :func:`open_corpus` checks, then every chunk of every array against its
    recorded crc32c, labels within -1..K, finite values where valid (counted), zeros where
    invalid (counted), unique sequence ids. A corpus without a checksum record (written
    before them) passes the checksum part unchecked: see ``Corpus.has_checksums``.
    """
    from sscl.data.reader import open_corpus

    path = getattr(path_or_corpus, "path", path_or_corpus)
    path = str(path)
    problems = _array_problems(path)
    try:
        c = open_corpus(path, memory_budget=0, map_joints=False, nonfinite="mask")
    except CorpusError as e:
        return problems if any(p in str(e) for p in problems) else problems + [str(e)]
    if problems:
        return problems
    K = len(c.class_names)
    if c.num_frames and (c.labels.min() < -1 or c.labels.max() > K):
        bad = int(np.argmax((c.labels < -1) | (c.labels > K)))
        problems.append(f"frame {bad}: label {int(c.labels[bad])} outside -1..{K}")
    ids = [m["seq_id"] for m in c.meta]
    if len(set(ids)) != len(ids):
        problems.append("duplicate sequence ids")
    rj, rv = c._readers["joints"], c._readers["valid"]
    joints = np.empty(rj.chunk_shape, rj.dtype)
    valid = np.empty(rv.chunk_shape, rv.dtype)
    nonfinite, nonzero, first_nf, first_nz = 0, 0, -1, -1
    cf = rj.chunk_frames
    for k in tqdm(range(rj.num_chunks), desc="validate", unit="chunk", disable=not progress,
                  leave=False):
        try:
            rj.decode_into(k, joints)
            rv.decode_into(k, valid)
        except CorpusError as e:
            problems.append(str(e))
            continue
        n = min(cf, c.num_frames - k * cf)
        vv = np.broadcast_to(valid[:n, :, None, :], joints[:n].shape)
        bad = vv & ~np.isfinite(joints[:n])
        if bad.any():
            nonfinite += int(bad.sum())
            first_nf = first_nf if first_nf >= 0 else k * cf + int(np.argwhere(bad)[0][0])
        bad = ~vv & (joints[:n] != 0)
        if bad.any():
            nonzero += int(bad.sum())
            first_nz = first_nz if first_nz >= 0 else k * cf + int(np.argwhere(bad)[0][0])
    if nonfinite:
        problems.append(f"array 'joints': {nonfinite} NaN/inf coordinate(s) where valid, the "
                        f"first at frame {first_nf}")
    if nonzero:
        problems.append(f"array 'joints': {nonzero} non-zero coordinate(s) where invalid, the "
                        f"first at frame {first_nz}")
    return problems


def _array_problems(path: str) -> list[str]:
    """Every array checked on its own (its shards, indexes and recorded checksums), so that
    ``validate`` lists all damage, not only the first that stops :func:`open_corpus`."""
    from sscl.data.reader import _open_store

    try:
        store, fs, root = _open_store(path)
        group = zarr.open_group(store, mode="r")
        record = group.attrs.asdict().get("checksums")
        record = record if isinstance(record, dict) and isinstance(record.get("arrays"),
                                                                   dict) else None
    except Exception:
        return []  # open_corpus words it
    problems: list[str] = []
    for name in ("joints", "valid", "labels", "offsets", "lengths", "meta"):
        try:
            arr = read_array(group, name, path)
            if name in ("offsets", "lengths", "meta"):
                read_small(arr, name, path, record, np.uint8 if name == "meta" else np.int64)
                continue
            rec = None if record is None else record["arrays"].get(name)
            problems += ShardedArrayReader(name, arr.metadata.to_dict(), arr.dtype, fs, root,
                                           checksums=rec).verify_all()
        except CorpusError as e:
            problems.append(str(e))
    return problems
