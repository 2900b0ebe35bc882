"""Chunk-level access to a sharded Zarr v3 array, without zarr's per-call overhead.

Zarr's generic indexing costs 1-4 ms per call here, which dominates reading one training
window. The corpus arrays have a fixed, simple codec chain (``sharding_indexed`` over
``bytes`` + ``blosc``, index at the end with ``bytes`` + ``crc32c``; see the Zarr v3 sharding
spec), so this module reads what it needs directly: each shard's index once, then the byte range
of each inner chunk, decoded with numcodecs' blosc. Decoded chunks live in a byte-bounded LRU
cache shared by the arrays of one corpus.

Local stores are read with ``os.pread`` on cached file descriptors; anything else (memory://,
zip, object stores) through fsspec's ``cat_file``/``cat_ranges``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np
from numcodecs import blosc

from sscl.errors import CorpusError

_MISSING = 2**64 - 1  # offset/nbytes of an empty inner chunk (sharding spec)
_BLOSC_HEADER = 16  # c-blosc 1.x frame header
_BLOSC_MEMCPYED = 0x02  # header flag: the payload is stored uncompressed


class ChunkCache:
    """Byte-bounded LRU cache of decoded chunks, keyed by (array name, chunk id)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._d: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._free: list[np.ndarray] = []  # evicted buffers, reused to avoid fresh page faults
        self._lock = threading.Lock()

    def buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A writable array to decode into: a recycled evicted chunk when one fits."""
        with self._lock:
            for k, arr in enumerate(self._free):
                if arr.shape == shape and arr.dtype == dtype:
                    arr = self._free.pop(k)
                    arr.flags.writeable = True
                    return arr
        return np.empty(shape, dtype)

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        # Lock-free hit path: OrderedDict.get and move_to_end are single C calls under the GIL
        # (a key evicted in between just raises KeyError, a miss); only put/evict need the lock.
        arr = self._d.get(key)
        if arr is None:
            self.misses += 1
            return None
        try:
            self._d.move_to_end(key)
        except KeyError:
            return arr
        self.hits += 1
        return arr

    def put(self, key: tuple[str, int], arr: np.ndarray) -> None:
        with self._lock:
            if key in self._d:
                return
            self._d[key] = arr
            self.nbytes += arr.nbytes
            while self.nbytes > self.max_bytes and len(self._d) > 1:
                _, old = self._d.popitem(last=False)
                self.nbytes -= old.nbytes
                if len(self._free) < 4 and old.base is None:
                    self._free.append(old)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._free.clear()
            self.nbytes = 0


class ShardedArrayReader:
    """Reads decoded inner chunks of one sharded corpus array.

    Args:
        name: array name inside the group (``joints``, ``valid``, ``labels``).
        meta: the array's metadata as a dict (``zarr.json`` content).
        dtype: the array's numpy dtype.
        fs: an fsspec filesystem, or None for a local directory.
        root: the group's root path (local path or the fs path).
        cache: the decoded-chunk cache.
    """

    def __init__(self, name: str, meta: dict, dtype, fs, root: str, cache: ChunkCache):
        self.name = name
        self.fs = fs
        self.root = root
        self.cache = cache
        self.shape = tuple(meta["shape"])
        self.dtype = np.dtype(dtype).newbyteorder("<")
        codecs = meta["codecs"]
        if len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed":
            raise CorpusError(f"{root}/{name}: expected a sharded array, got codecs {codecs}")
        cfg = codecs[0]["configuration"]
        inner = [c["name"] for c in cfg["codecs"]]
        index = [c["name"] for c in cfg["index_codecs"]]
        if inner not in (["bytes"], ["bytes", "blosc"]) or index != ["bytes", "crc32c"] or cfg.get(
            "index_location", "end"
        ) != "end":
            raise CorpusError(
                f"{root}/{name}: unsupported codec chain {inner} / index {index}; corpora are "
                "written as sharding(bytes[, blosc]) with an end index"
            )
        self.raw = inner == ["bytes"]
        self.chunk_frames = int(cfg["chunk_shape"][0])
        self.shard_frames = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        self.chunks_per_shard = self.shard_frames // self.chunk_frames
        self.row_shape = self.shape[1:]
        self.fill = meta.get("fill_value", 0)
        self.num_chunks = -(-self.shape[0] // self.chunk_frames)
        sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
        self._key_tail = sep.join(["0"] * len(self.row_shape))
        self._sep = sep
        self._index: dict[int, np.ndarray] = {}
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    # -- raw bytes ---------------------------------------------------------------------------

    def _shard_path(self, shard: int) -> str:
        key = self._sep.join(["c", str(shard)] + ([self._key_tail] if self._key_tail else []))
        return f"{self.root}/{self.name}/{key}"

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            fd = os.open(self._shard_path(shard), os.O_RDONLY)
            self._fds[shard] = fd
        return fd

    def _read(self, shard: int, start: int, nbytes: int) -> bytes:
        if self.fs is None:
            return os.pread(self._fd(shard), nbytes, start)
        return self.fs.cat_file(self._shard_path(shard), start=start, end=start + nbytes)

    def _shard_index(self, shard: int) -> np.ndarray | None:
        idx = self._index.get(shard)
        if idx is not None or shard in self._index:
            return idx
        n = self.chunks_per_shard
        size = 16 * n + 4
        try:
            if self.fs is None:
                fsize = os.fstat(self._fd(shard)).st_size
                raw = os.pread(self._fd(shard), size, fsize - size)
            else:
                raw = self.fs.cat_file(self._shard_path(shard), start=-size)
        except FileNotFoundError:
            self._index[shard] = None  # an all-empty shard is not stored
            return None
        if len(raw) != size:
            raise CorpusError(f"{self._shard_path(shard)}: truncated shard index")
        idx = np.frombuffer(raw[:-4], dtype="<u8").reshape(n, 2)
        self._index[shard] = idx
        return idx

    # -- decoded chunks ----------------------------------------------------------------------

    def chunk(self, c: int) -> np.ndarray:
        """Decoded chunk ``c`` as (chunk_frames, *row_shape), read-only; cached."""
        key = (self.name, c)
        arr = self.cache.get(key)
        if arr is not None:
            return arr
        with self._lock:
            shard, inner = divmod(c, self.chunks_per_shard)
            idx = self._shard_index(shard)
            off, nb = (int(v) for v in idx[inner]) if idx is not None else (_MISSING, _MISSING)
            shape = (self.chunk_frames,) + self.row_shape
            if off == _MISSING:
                arr = np.full(shape, self.fill, dtype=self.dtype)
            else:
                arr = self.cache.buffer(shape, self.dtype)
                self._decode_into(shard, off, nb, arr)
        arr.flags.writeable = False
        self.cache.put(key, arr)
        return arr

    def _decode_into(self, shard: int, off: int, nb: int, arr: np.ndarray) -> None:
        dest = memoryview(arr).cast("B")
        if self.raw:  # stored uncompressed: read straight into the cache buffer
            if self.fs is None:
                got = os.preadv(self._fd(shard), [dest], off)
            else:
                raw = self._read(shard, off, nb)
                got = len(raw)
                if got == arr.nbytes:
                    dest[:] = raw
            if got != arr.nbytes:
                raise CorpusError(f"{self._shard_path(shard)}: truncated chunk at byte {off}")
            return
        # A blosc-compressed chunk of incompressible data (float32 coordinates: lz4 1.0x on real
        # mocap) is stored verbatim after its 16-byte header (flag BLOSC_MEMCPYED, 0x02).
        # Such a chunk is read straight into its destination: one copy instead of three
        # (read into bytes, decompress into a new array, copy out).
        if self.fs is None and nb == arr.nbytes + _BLOSC_HEADER:
            head = bytearray(_BLOSC_HEADER)
            got = os.preadv(self._fd(shard), [head, dest], off)
            if got == nb and head[2] & _BLOSC_MEMCPYED:
                return
        raw = self._read(shard, off, nb)
        blosc.decompress(raw, dest)

    def read_into(self, out: np.ndarray, start: int, stop: int) -> None:
        """Copy frames [start, stop) into ``out`` (length stop - start)."""
        cf = self.chunk_frames
        c0, c1 = start // cf, (stop - 1) // cf
        pos = 0
        for c in range(c0, c1 + 1):
            a = max(start, c * cf) - c * cf
            b = min(stop, (c + 1) * cf) - c * cf
            out[pos:pos + b - a] = self.chunk(c)[a:b]
            pos += b - a

    def raw_chunk_bytes(self, c: int) -> bytes:
        """Encoded bytes of chunk ``c`` (benchmarks measure the bare decode cost with these)."""
        shard, inner = divmod(c, self.chunks_per_shard)
        idx = self._shard_index(shard)
        off, nb = (int(v) for v in idx[inner])
        return self._read(shard, off, nb)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
