"""``validate``: the full content check of a corpus, listing all damage.

:func:`sscl.data.reader.open_corpus` stops at the first problem it finds when opening (schema,
small arrays, shard files and indexes; sscl.data.integrity). ``validate`` checks every array on
its own first (its shards, indexes and recorded checksums: sscl.data.chunks), then opens the
corpus and reads every chunk once: labels within -1..K, finite values where valid, zeros where
invalid, unique sequence ids (data/README.md "Integrity").
"""

from __future__ import annotations

import numpy as np
import zarr
from tqdm import tqdm

from sscl.data.chunks import ShardedArrayReader
from sscl.data.integrity import read_array, read_small
from sscl.data.reader import open_corpus
from sscl.data.store import open_store
from sscl.errors import CorpusError


def validate(path_or_corpus, progress: bool = False) -> list[str]:
    """Full content check; returns a list of problems (empty when the corpus is sound).

    Checks everything :func:`open_corpus` checks, then every chunk of every array against its
    recorded crc32c, labels within -1..K, finite values where valid (counted), zeros where
    invalid (counted), unique sequence ids. A corpus without a checksum record (written
    before them) passes the checksum part unchecked: see ``Corpus.has_checksums``.
    """
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
    try:
        store, fs, root = open_store(path)
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
