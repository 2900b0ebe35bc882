"""All frames of a raw corpus array as one read-only array over its memory-mapped shard files.

A raw (uncompressed) sharded array stores each shard's inner chunks back to back from byte 0,
so shard s's file IS frames ``[s * shard_frames, (s + 1) * shard_frames)`` in C order. This
module reserves one contiguous address range and maps every shard file into its place
(``mmap`` with ``MAP_FIXED`` over a ``PROT_NONE`` reservation, through libc), so the whole
array is a plain numpy array whose pages come straight from the page cache: no copy, no
per-process cache, shared by every worker reading the same corpus. The kernel loads, keeps and
evicts the pages; the arrays' private memory stays whatever the process allocates itself.

Only where it is exact: Linux, a local store, the ``bytes`` codec alone, every inner chunk
present at ``k * chunk_nbytes`` (zarr omits all-fill chunks; those corpora fall back to the
chunk cache), and shard sizes that are whole pages. :func:`map_frames` returns None otherwise.

Page tables are filled a shard at a time (``madvise(MADV_POPULATE_READ)``, Linux 5.14+) the
first time a batch touches the shard (:meth:`MappedFrames.ensure`): one system call instead of
a page fault per 4-64 KiB, which cost about 220 us a 300-frame NTU window on this VM.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

import numpy as np

from sscl.data.chunks import ShardedArrayReader
from sscl.errors import CorpusError

_PROT_NONE, _PROT_READ = 0, 1
_MAP_SHARED, _MAP_PRIVATE, _MAP_FIXED, _MAP_ANONYMOUS, _MAP_NORESERVE = 0x1, 0x2, 0x10, 0x20, 0x4000
_MAP_FAILED = ctypes.c_void_p(-1).value
_MADV_POPULATE_READ = 22

_libc = None


def _lib():
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long)
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        libc.madvise.restype = ctypes.c_int
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _libc = libc
    return _libc


class _Region:
    """Owns one mapped address range; numpy arrays over it keep it alive through ``.base``."""

    def __init__(self, addr: int, nbytes: int, shape: tuple[int, ...], dtype: np.dtype):
        self.addr, self.nbytes = addr, nbytes
        self.__array_interface__ = {
            "data": (addr, True),  # read-only: the pages are mapped PROT_READ
            "shape": shape,
            "typestr": dtype.str,
            "version": 3,
        }

    def __del__(self):
        if self.addr:
            _lib().munmap(self.addr, self.nbytes)
            self.addr = 0


def _check(ret, what: str, path: str) -> int:
    if ret is None or ret == _MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} failed for {path}: {os.strerror(err)}")
    return ret


class MappedFrames:
    """A mapped array: ``frames`` (read-only numpy array) and :meth:`ensure`.

    Args:
        frames: the (frames, *row) array over the mapping.
        region: its owner (unmaps on release).
        shard_frames: frames per shard.
        lengths: mapped bytes of each shard.
    """

    def __init__(self, frames: np.ndarray, region: _Region, shard_frames: int, lengths: list):
        self.frames = frames
        self._region = region
        self._shard_frames = shard_frames
        self._shard_nbytes = frames.strides[0] * shard_frames
        self._lengths = lengths
        self._done = np.zeros(len(lengths), bool)
        self._populate = True

    def ensure(self, first: np.ndarray, last: np.ndarray) -> None:
        """Fill the page tables of every shard holding frames ``first[i]..last[i]`` (once)."""
        if not self._populate:
            return
        shards = np.concatenate((first // self._shard_frames, last // self._shard_frames))
        todo = shards[~self._done[shards]]
        for s in np.unique(todo).tolist():
            self._done[s] = True
            addr = self._region.addr + s * self._shard_nbytes
            if _lib().madvise(addr, self._lengths[s], _MADV_POPULATE_READ) != 0:
                self._populate = False  # kernel before 5.14: plain page faults then
                return


def map_frames(reader: ShardedArrayReader) -> MappedFrames | None:
    """The array behind ``reader`` as one read-only (frames, *row) mapped array, or None.

    None when mapping would not be exact (see the module docstring); the caller then reads
    through the chunk cache.
    """
    if reader.fs is not None or not reader.raw or not sys.platform.startswith("linux"):
        return None
    chunk_nbytes = reader.chunk_nbytes
    shard_nbytes = chunk_nbytes * reader.chunks_per_shard
    if shard_nbytes % mmap.PAGESIZE or reader.num_chunks == 0:
        return None
    cps = reader.chunks_per_shard
    n_shards = -(-reader.num_chunks // cps)
    lengths = []
    for s in range(n_shards):
        idx = reader._shard_index(s)
        k = min(cps, reader.num_chunks - s * cps)
        if idx is None:
            return None
        want = np.arange(k, dtype=np.uint64) * np.uint64(chunk_nbytes)
        if not (np.array_equal(idx[:k, 0], want) and np.all(idx[:k, 1] == chunk_nbytes)):
            return None
        lengths.append(k * chunk_nbytes)
    libc = _lib()
    total = n_shards * shard_nbytes
    base = _check(libc.mmap(None, total, _PROT_NONE, _MAP_PRIVATE | _MAP_ANONYMOUS |
                            _MAP_NORESERVE, -1, 0), "reserving address space", reader.root)
    region = _Region(base, total, (reader.num_chunks * reader.chunk_frames,) + reader.row_shape,
                     reader.dtype)  # unmaps the whole range when the last array goes
    for s, length in enumerate(lengths):
        # A mapping past the end of its file faults (SIGBUS) on first touch: the reader's index
        # checks already bound every chunk by the file size; this keeps the guarantee local.
        size = os.fstat(reader._fd(s)).st_size
        if size < length:
            raise CorpusError(f"{reader._shard_path(s)}: {size} bytes, shorter than the "
                              f"{length} its index maps (truncated); restore it or convert again")
        addr = libc.mmap(base + s * shard_nbytes, length, _PROT_READ, _MAP_SHARED | _MAP_FIXED,
                         reader._fd(s), 0)
        _check(addr, "mapping a shard", reader._shard_path(s))
        if addr != base + s * shard_nbytes:
            raise OSError(f"{reader._shard_path(s)}: mapped at {addr:#x}, not where asked")
    frames = np.asarray(region)[: reader.shape[0]]
    return MappedFrames(frames, region, reader.shard_frames, lengths)
