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

import ctypes
import glob
import os
import threading
from collections import OrderedDict

import google_crc32c
import numpy as np
from numcodecs import blosc

from sscl.errors import CorpusError

_MISSING = 2**64 - 1  # offset/nbytes of an empty inner chunk (sharding spec)
_BLOSC_HEADER = 16  # c-blosc 1.x frame header
_BLOSC_MEMCPYED = 0x02  # header flag: the payload is stored uncompressed


def _load_crc32c():
    """``crc32c_extend`` of the libcrc32c that google-crc32c ships (SSE4.2 where the CPU has
    it), through ctypes so any buffer is checked in place: the Python binding accepts only
    ``bytes`` and would copy every chunk first. None when it cannot be found."""
    here = os.path.dirname(google_crc32c.__file__)
    for lib in sorted(glob.glob(os.path.join(here + ".libs", "libcrc32c*.so*"))
                      + glob.glob(os.path.join(here, "libcrc32c*.so*"))):
        try:
            f = ctypes.CDLL(lib).crc32c_extend
        except (OSError, AttributeError):
            continue
        f.restype = ctypes.c_uint32
        f.argtypes = (ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t)
        return f
    return None


_crc32c_extend = _load_crc32c()


def crc32c(buf, crc: int = 0) -> int:
    """crc32c of any contiguous buffer (bytes, bytearray, numpy array, memoryview), extending
    ``crc``, without copying it."""
    if _crc32c_extend is None:
        return google_crc32c.extend(crc, bytes(buf))
    a = np.frombuffer(buf, np.uint8) if not isinstance(buf, np.ndarray) else buf
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return int(_crc32c_extend(crc, a.ctypes.data, a.nbytes))


class ShardedArrayReader:
    """Reads decoded inner chunks of one sharded corpus array.

    Args:
        name: array name inside the group (``joints``, ``valid``, ``labels``).
        meta: the array's metadata as a dict (``zarr.json`` content).
        dtype: the array's numpy dtype.
        fs: an fsspec filesystem, or None for a local directory.
        root: the group's root path (local path or the fs path).
        checksums: the array's record written by the corpus writer (:func:`chunk_checksums`):
            ``chunks``, the crc32c of every stored inner chunk (None for one never stored) and
            ``shard_nbytes``, each shard file's size. With it, a missing shard or chunk, a file
            of the wrong size and a chunk whose bytes changed raise CorpusError; each chunk is
            checked the first time this reader decodes it. Without it (corpora written before
            checksums) only the shard index's own crc32c and its bounds are checked.

    Raises:
        CorpusError: on any damage found, naming the array, the shard file and the chunk.
    """

    def __init__(self, name: str, meta: dict, dtype, fs, root: str, checksums: dict | None = None):
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
        self.num_shards = -(-self.num_chunks // self.chunks_per_shard)
        self._index: dict[int, np.ndarray] = {}
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()
        self.checksums = None
        if checksums is not None:
            crcs, sizes = checksums.get("chunks"), checksums.get("shard_nbytes")
            if (not isinstance(crcs, list) or len(crcs) != self.num_chunks
                    or not isinstance(sizes, list) or len(sizes) != self.num_shards):
                raise CorpusError(
                    f"{root}/{name}: the checksum record does not match the array "
                    f"({self.num_chunks} chunks in {self.num_shards} shards); the corpus "
                    "metadata is damaged, convert it again")
            self.checksums = crcs
            self.shard_nbytes = sizes
        self._verified = np.zeros(self.num_chunks, bool)  # chunks whose crc32c was checked

    # -- raw bytes ---------------------------------------------------------------------------

    def _shard_path(self, shard: int) -> str:
        key = self._sep.join(["c", str(shard)] + ([self._key_tail] if self._key_tail else []))
        return f"{self.root}/{self.name}/{key}"

    def _where(self, shard: int, inner: int | None = None) -> str:
        """``array 'joints', shard 0 (PATH)[, chunk 3 = frames 3072..4095]`` for messages."""
        out = f"array {self.name!r}, shard {shard} ({self._shard_path(shard)})"
        if inner is not None:
            c = shard * self.chunks_per_shard + inner
            out += (f", chunk {c} (frames {c * self.chunk_frames}.."
                    f"{min(self.shape[0], (c + 1) * self.chunk_frames) - 1})")
        return out

    def _fd(self, shard: int) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            fd = os.open(self._shard_path(shard), os.O_RDONLY)
            self._fds[shard] = fd
        return fd

    def _read(self, shard: int, start: int, nbytes: int) -> bytes:
        try:
            if self.fs is None:
                raw = os.pread(self._fd(shard), nbytes, start)
            else:
                raw = self.fs.cat_file(self._shard_path(shard), start=start, end=start + nbytes)
        except OSError as e:
            raise CorpusError(f"{self._where(shard)}: cannot read {nbytes} bytes at byte "
                              f"{start} ({e})") from e
        if len(raw) != nbytes:
            raise CorpusError(f"{self._where(shard)}: truncated; expected {nbytes} bytes at byte "
                              f"{start}, got {len(raw)}")
        return raw

    def _file_size(self, shard: int) -> int | None:
        """Size of a shard file in bytes, None when it does not exist."""
        try:
            if self.fs is None:
                return os.fstat(self._fd(shard)).st_size
            return int(self.fs.size(self._shard_path(shard)))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CorpusError(f"{self._where(shard)}: cannot open ({e})") from e

    def _shard_index(self, shard: int) -> np.ndarray | None:
        """The (chunks_per_shard, 2) offset/nbytes index of a shard, checked: its crc32c, every
        offset and size inside the file's data part, and (with a checksum record) the file's
        size and every recorded chunk present. None for a shard that was never written."""
        idx = self._index.get(shard)
        if idx is not None or shard in self._index:
            return idx
        if not 0 <= shard < self.num_shards:
            raise CorpusError(f"{self.root}/{self.name}: shard {shard} outside 0.."
                              f"{self.num_shards - 1}")
        n = self.chunks_per_shard
        size = 16 * n + 4
        fsize = self._file_size(shard)
        first = shard * n
        crcs = None if self.checksums is None else self.checksums[first:first + n]
        if fsize is None:
            if crcs is not None and any(c is not None for c in crcs):
                raise CorpusError(f"{self._where(shard)}: the shard file is missing; it was "
                                  "written with the corpus. Restore it or convert again")
            self._index[shard] = None  # an all-empty shard is not stored
            return None
        if self.checksums is not None and fsize != self.shard_nbytes[shard]:
            raise CorpusError(f"{self._where(shard)}: {fsize} bytes, written as "
                              f"{self.shard_nbytes[shard]} (truncated or overwritten); restore "
                              "it or convert again")
        if fsize < size:
            raise CorpusError(f"{self._where(shard)}: {fsize} bytes, shorter than its "
                              f"{size}-byte index (truncated)")
        raw = self._read(shard, fsize - size, size)
        stored = int.from_bytes(raw[-4:], "little")
        if crc32c(raw[:-4]) != stored:
            raise CorpusError(f"{self._where(shard)}: the shard index fails its crc32c "
                              "(damaged or truncated file); restore it or convert again")
        idx = np.frombuffer(raw[:-4], dtype="<u8").reshape(n, 2)
        present = idx[:, 0] != _MISSING
        ends = idx[:, 0] + idx[:, 1]  # uint64: a wrapped sum is caught by the `ends < off` test
        bad = present & ((idx[:, 1] == _MISSING) | (ends > fsize - size) | (ends < idx[:, 0]))
        if bad.any():
            k = int(np.argmax(bad))
            raise CorpusError(f"{self._where(shard, k)}: index entry offset {int(idx[k, 0])} "
                              f"+ {int(idx[k, 1])} bytes lies outside the file's "
                              f"{fsize - size} data bytes")
        if crcs is not None:
            for k, crc in enumerate(crcs):
                if crc is not None and not present[k]:
                    raise CorpusError(f"{self._where(shard, k)}: the chunk is missing from the "
                                      "shard index, but it was written; restore the file or "
                                      "convert again")
        self._index[shard] = idx
        return idx

    def check_shards(self) -> None:
        """Read and check every shard's index (:meth:`_shard_index`); cheap, done at open."""
        for s in range(self.num_shards):
            self._shard_index(s)

    # -- decoded chunks ----------------------------------------------------------------------

    @property
    def chunk_shape(self) -> tuple[int, ...]:
        return (self.chunk_frames,) + self.row_shape

    @property
    def chunk_nbytes(self) -> int:
        return int(np.prod(self.chunk_shape)) * self.dtype.itemsize

    def decode_into(self, c: int, arr: np.ndarray) -> None:
        """Decode chunk ``c`` into ``arr`` (shape ``chunk_shape``, C-contiguous).

        Raises:
            CorpusError: a missing, truncated, undecodable or (checked on its first decode
                when checksums are recorded) changed chunk, naming array, shard and chunk.
        """
        with self._lock:
            shard, inner = divmod(c, self.chunks_per_shard)
            idx = self._shard_index(shard)
            off, nb = (int(v) for v in idx[inner]) if idx is not None else (_MISSING, _MISSING)
            if off == _MISSING:
                if self.checksums is not None and self.checksums[c] is not None:
                    raise CorpusError(f"{self._where(shard, inner)}: the chunk is missing")
                arr[...] = self.fill
                return
            crc = self._decode_into(shard, inner, off, nb, arr)
            if crc is not None:
                want = self.checksums[c]
                if crc != want:
                    raise CorpusError(
                        f"{self._where(shard, inner)}: the chunk's bytes fail their crc32c "
                        f"(written {want:#010x}, read {crc:#010x}); the file is damaged, "
                        "restore it or convert again")
                self._verified[c] = True

    def _decode_into(self, shard: int, inner: int, off: int, nb: int, arr: np.ndarray
                     ) -> int | None:
        """Read and decode one chunk; returns the crc32c of its stored bytes when the chunk
        is due for its first check, else None."""
        c = shard * self.chunks_per_shard + inner
        check = self.checksums is not None and not self._verified[c]
        dest = memoryview(arr).cast("B")
        if self.raw:  # stored uncompressed: read straight into the cache buffer
            if nb != arr.nbytes:
                raise CorpusError(f"{self._where(shard, inner)}: stored as {nb} bytes, expected "
                                  f"{arr.nbytes}")
            if self.fs is None:
                try:
                    got = os.preadv(self._fd(shard), [dest], off)
                except OSError as e:
                    raise CorpusError(f"{self._where(shard, inner)}: cannot read ({e})") from e
                if got != nb:
                    raise CorpusError(f"{self._where(shard, inner)}: truncated chunk at byte "
                                      f"{off}")
            else:
                dest[:] = self._read(shard, off, nb)
            return crc32c(dest) if check else None
        # A blosc-compressed chunk of incompressible data (float32 coordinates: lz4 1.0x on real
        # mocap) is stored verbatim after its 16-byte header (flag BLOSC_MEMCPYED, 0x02).
        # Such a chunk is read straight into its destination: one copy instead of three
        # (read into bytes, decompress into a new array, copy out).
        if self.fs is None and nb == arr.nbytes + _BLOSC_HEADER:
            head = bytearray(_BLOSC_HEADER)
            try:
                got = os.preadv(self._fd(shard), [head, dest], off)
            except OSError as e:
                raise CorpusError(f"{self._where(shard, inner)}: cannot read ({e})") from e
            if got == nb and head[2] & _BLOSC_MEMCPYED and _blosc_sizes_ok(head, arr.nbytes, nb):
                return crc32c(dest, crc32c(head)) if check else None
        raw = self._read(shard, off, nb)
        crc = crc32c(raw) if check else None
        if crc is not None and crc != self.checksums[c]:
            return crc  # damaged: report the checksum, do not hand blosc damaged bytes
        if len(raw) < _BLOSC_HEADER or not _blosc_sizes_ok(raw[:_BLOSC_HEADER], arr.nbytes, nb):
            raise CorpusError(f"{self._where(shard, inner)}: not a blosc chunk of "
                              f"{arr.nbytes} bytes (damaged header)")
        try:
            blosc.decompress(raw, dest)
        except (RuntimeError, ValueError) as e:
            raise CorpusError(f"{self._where(shard, inner)}: cannot decompress ({e}); the file "
                              "is damaged, restore it or convert again") from e
        return crc

    def verify_all(self) -> list[str]:
        """Decode-free check of every stored chunk against its recorded crc32c (``validate``).

        Returns:
            One problem line per damaged shard or chunk (empty when sound or unrecorded).
        """
        problems: list[str] = []
        for s in range(self.num_shards):
            try:
                idx = self._shard_index(s)
            except CorpusError as e:
                problems.append(str(e))
                continue
            if idx is None or self.checksums is None:
                continue
            for k in range(min(self.chunks_per_shard, self.num_chunks - s *
                               self.chunks_per_shard)):
                c = s * self.chunks_per_shard + k
                if self.checksums[c] is None:
                    continue
                try:
                    crc = crc32c(self._read(s, int(idx[k, 0]), int(idx[k, 1])))
                except CorpusError as e:
                    problems.append(str(e))
                    continue
                if crc != self.checksums[c]:
                    problems.append(f"{self._where(s, k)}: the chunk's bytes fail their crc32c "
                                    f"(written {self.checksums[c]:#010x}, read {crc:#010x})")
                else:
                    self._verified[c] = True
        return problems

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


def _blosc_sizes_ok(head: bytes | bytearray, nbytes: int, stored: int) -> bool:
    """The 16-byte c-blosc header's uncompressed size (bytes 4..7) is ``nbytes`` and its
    compressed size (12..15) is the ``stored`` size: blosc trusts both (a damaged header made it
    allocate 282 TB or overrun)."""
    return (int.from_bytes(head[4:8], "little") == nbytes
            and int.from_bytes(head[12:16], "little") == stored)


def chunk_checksums(reader: ShardedArrayReader) -> dict:
    """The checksum record of a freshly written array: the crc32c of every stored inner
    chunk's bytes (None where no chunk is stored) and each shard file's size.

    The corpus writer stores it in the group attributes (``checksums``); readers built with it
    check every chunk the first time they decode it, and ``validate`` checks them all.
    """
    crcs: list[int | None] = []
    sizes: list[int] = []
    for s in range(reader.num_shards):
        idx = reader._shard_index(s)
        sizes.append(reader._file_size(s) or 0)
        for k in range(min(reader.chunks_per_shard, reader.num_chunks - s *
                           reader.chunks_per_shard)):
            off, nb = (int(v) for v in idx[k]) if idx is not None else (_MISSING, _MISSING)
            crcs.append(None if off == _MISSING else
                        crc32c(reader._read(s, off, nb)))
    return {"chunks": crcs, "shard_nbytes": sizes}


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
        on_load: called as ``on_load(chunk, {name: decoded chunk})`` after each decode (the
            corpus checks non-finite values there); it may fix the chunk in place or raise.
    """

    def __init__(self, readers: dict[str, ShardedArrayReader], max_bytes: int, on_load=None):
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
        self._on_load = on_load
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
            if self._on_load is not None:
                self._on_load(c, {name: self.slab(name)[slot] for name in self.readers})
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


def decode_all(reader: ShardedArrayReader) -> np.ndarray:
    """The whole array behind ``reader`` decoded (and checked) chunk by chunk:
    (frames, *row) of its dtype."""
    out = np.empty((reader.num_chunks * reader.chunk_frames,) + reader.row_shape, reader.dtype)
    step = reader.chunk_frames
    for c in range(reader.num_chunks):
        reader.decode_into(c, out[c * step:(c + 1) * step])
    return out[: reader.shape[0]]
