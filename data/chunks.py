"""Chunk-level access to a sharded Zarr v3 array, without zarr's per-call overhead.

Zarr's generic indexing costs 1-4 ms per call here, which dominates reading one training
window. The corpus arrays have a fixed, simple codec chain (``sharding_indexed`` over
``bytes`` + ``blosc``, index at the end with ``bytes`` + ``crc32c``; see the Zarr v3 sharding
spec), so this module reads what it needs directly: each shard's index once, then the byte range
of each inner chunk, decoded with numcodecs' blosc. Decoded chunks live in a byte-bounded LRU
of slots (:class:`SlabCache`): one preallocated slab per array, slot s of every slab holding the
same chunk id, so a window is addressable in place as (slab, slot rows) by the Numba kernels.

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


class ShardedArrayReader:
    """Reads decoded inner chunks of one sharded corpus array.

    Args:
        name: array name inside the group (``joints``, ``valid``, ``labels``).
        meta: the array's metadata as a dict (``zarr.json`` content).
        dtype: the array's numpy dtype.
        fs: an fsspec filesystem, or None for a local directory.
        root: the group's root path (local path or the fs path).
    """

    def __init__(self, name: str, meta: dict, dtype, fs, root: str):
        self.name = name
        self.fs = fs
        self.root = root
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

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        return (self.chunk_frames,) + self.row_shape

    @property
    def chunk_nbytes(self) -> int:
        return int(np.prod(self.chunk_shape)) * self.dtype.itemsize

    def decode_into(self, c: int, arr: np.ndarray) -> None:
        """Decode chunk ``c`` into ``arr`` (shape ``chunk_shape``, C-contiguous)."""
        with self._lock:
            shard, inner = divmod(c, self.chunks_per_shard)
            idx = self._shard_index(shard)
            off, nb = (int(v) for v in idx[inner]) if idx is not None else (_MISSING, _MISSING)
            if off == _MISSING:
                arr[...] = self.fill
            else:
                self._decode_into(shard, off, nb, arr)

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


class SlabCache:
    """LRU of decoded chunks in preallocated slabs, shared by the arrays of one corpus.

    Each array (``joints``, ``valid``) gets one slab of ``num_slots`` chunks; slot s of every
    slab holds the same chunk id, so one lookup serves a window's joints and validity. Chunks
    are loaded on demand and the least recently used one is overwritten when the slots are full;
    the slabs are allocated on first use and never grow, so decoded data never exceeds
    ``max_bytes`` (or one slot, when a slot is larger).

    A slot view stays valid until a later call loads enough other chunks to evict it:
    :meth:`slots` touches every chunk of a request before it loads any missing one, so the
    chunks of one request never evict each other as long as they fit (``len(chunks) <=
    num_slots``). Not for concurrent use from several threads (one cache per process).

    Args:
        readers: {array name: reader}; all must have the same ``chunk_frames``.
        max_bytes: decoded bytes for all slabs together.
    """

    def __init__(self, readers: dict[str, ShardedArrayReader], max_bytes: int):
        frames = {r.chunk_frames for r in readers.values()}
        if len(frames) != 1:
            raise CorpusError(f"corpus arrays have different chunk lengths {sorted(frames)}; "
                              "rewrite the corpus with sscl.data.corpus.write_corpus")
        self.readers = readers
        self.chunk_frames = frames.pop()
        self.slot_nbytes = sum(r.chunk_nbytes for r in readers.values())
        self.max_bytes = int(max_bytes)
        self.num_slots = max(1, self.max_bytes // self.slot_nbytes)
        self.hits = 0
        self.misses = 0
        self._slabs: dict[str, np.ndarray] | None = None
        self._slot_of: OrderedDict[int, int] = OrderedDict()  # chunk -> slot, LRU first

    @property
    def nbytes(self) -> int:
        """Decoded bytes currently held."""
        return len(self._slot_of) * self.slot_nbytes

    def slab(self, name: str) -> np.ndarray:
        """(num_slots, chunk_frames, *row) array of ``name``; row ``slot * chunk_frames + i`` of
        its first-axis-flattened view is frame i of the chunk in ``slot``."""
        if self._slabs is None:
            self._slabs = {
                n: np.empty((self.num_slots,) + r.chunk_shape, r.dtype)
                for n, r in self.readers.items()
            }
            for slab in self._slabs.values():
                # Touch every page now (about 0.3 s per GiB, once per process): otherwise the
                # first pass over the slots pays a page fault per 4 KiB inside the read path.
                slab.fill(0)
        return self._slabs[name]

    def _load(self, c: int) -> int:
        if len(self._slot_of) < self.num_slots:
            slot = len(self._slot_of)
        else:
            _, slot = self._slot_of.popitem(last=False)
        self._slot_of[c] = -1  # not usable until decoded: a failed decode leaves no stale entry
        try:
            for name, reader in self.readers.items():
                reader.decode_into(c, self.slab(name)[slot])
        except BaseException:
            del self._slot_of[c]
            raise
        self._slot_of[c] = slot
        self.misses += 1
        return slot

    def slot(self, c: int) -> int:
        """Slot holding chunk ``c`` (loaded if needed)."""
        slot = self._slot_of.get(c)
        if slot is None:
            return self._load(c)
        self._slot_of.move_to_end(c)
        self.hits += 1
        return slot

    def slots(self, chunks: np.ndarray) -> np.ndarray:
        """Slots of distinct chunk ids ``chunks``, all resident together on return.

        Raises:
            ValueError: more chunks than slots (the caller reads them some other way).
        """
        chunks = [int(c) for c in chunks]
        if len(chunks) > self.num_slots:
            raise ValueError(f"{len(chunks)} chunks requested at once but the cache has "
                             f"{self.num_slots} slots")
        get, touch = self._slot_of.get, self._slot_of.move_to_end
        out = np.empty(len(chunks), np.int64)
        missing = []
        for k, c in enumerate(chunks):  # touch the hits first: loading misses cannot evict them
            slot = get(c)
            if slot is None:
                missing.append(k)
            else:
                touch(c)
                out[k] = slot
        self.hits += len(chunks) - len(missing)
        for k in missing:
            out[k] = self._load(chunks[k])
        return out

    def read_into(self, outs: dict[str, np.ndarray], start: int, stop: int) -> None:
        """Copy frames [start, stop) of each named array into ``outs[name]``."""
        cf = self.chunk_frames
        pos = 0
        for c in range(start // cf, (stop - 1) // cf + 1):
            a = max(start, c * cf) - c * cf
            b = min(stop, (c + 1) * cf) - c * cf
            slot = self.slot(c)
            for name, out in outs.items():
                out[pos:pos + b - a] = self.slab(name)[slot, a:b]
            pos += b - a

    def clear(self) -> None:
        """Forget every chunk (the slabs stay allocated)."""
        self._slot_of.clear()
