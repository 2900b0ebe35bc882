"""Gaussian noise by table lookup: the normal quantile table and its compiled and numpy readers.

NORMAL_TABLE holds the standard normal quantiles at the centres of 65,536 equal-mass bins, and
normal k of stream s is entry ``(h >> 16 (k % 3)) & 0xFFFF`` of h = splitmix64 output k // 3
(``sscl.data.splitmix64``): one hash gives three 16-bit indices (its top 16 bits are unused), so
the three channels of point p (normals 3p .. 3p + 2, what the crop kernel asks for) cost one
hash, no interpolation and no branches (four fields per hash would split half of the triples
over two hashes: 1.1 vs 0.6 ns per normal measured). Quantisation: draws take 65,536 values and
are clipped at +-4.32 sigma (the outer bin centres; 1.5e-5 of the mass lies beyond), std
0.99999. float32 (256 KiB, L2-resident) measured faster than float64; no libm is involved, so
the draws are bit-identical in the kernel, the numpy and torch twins and on every platform.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
from numba import njit

from sscl.data.augment.jit import JIT
from sscl.data.splitmix64 import stream_jit, stream_np

_NORMAL_BINS = 65536
_LOW16 = np.uint64(0xFFFF)
NORMAL_TABLE = np.array(
    [NormalDist().inv_cdf((j + 0.5) / _NORMAL_BINS) for j in range(_NORMAL_BINS)],
    dtype=np.float32,
)


@njit(**JIT)
def _table_normal(h, shift):
    """Table entry of the 16-bit field of hash ``h`` at bit ``shift``, as a float64."""
    return np.float64(NORMAL_TABLE[np.int64((h >> np.uint64(shift)) & _LOW16)])


@njit(**JIT)
def normal_jit(seed, k):
    """Normal k of stream ``seed``: 16-bit field k % 3 of splitmix64 output k // 3 through
    NORMAL_TABLE (clipped at +-4.32 sigma)."""
    j = k // 3
    return _table_normal(stream_jit(seed, j), 16 * (k - 3 * j))


@njit(**JIT)
def normal3_jit(seed, k):
    """Normals k, k+1, k+2 of stream ``seed`` (== normal_jit of each): one hash when k % 3 == 0
    (a point's three channels), two when the triple straddles outputs."""
    j = k // 3
    r = k - 3 * j
    za = stream_jit(seed, j)
    if r == 0:
        return _table_normal(za, 0), _table_normal(za, 16), _table_normal(za, 32)
    zb = stream_jit(seed, j + 1)
    if r == 1:
        return _table_normal(za, 16), _table_normal(za, 32), _table_normal(zb, 0)
    return _table_normal(za, 32), _table_normal(zb, 0), _table_normal(zb, 16)


def normals_ref(seed_N: np.ndarray, points: int) -> np.ndarray:
    """Numpy twin: (N, 3, points) float64 normals, normal 3p + c (channel c of point p) is
    NORMAL_TABLE[(splitmix64 output p >> 16 c) & 0xFFFF] of stream seed_N[n]."""
    z = stream_np(np.asarray(seed_N, np.uint64)[:, None, None], np.arange(points)[None, :, None])
    shift = np.array([0, 16, 32], np.uint64)
    idx = ((z >> shift) & _LOW16).astype(np.intp)  # (N, points, 3): fields c of outputs p
    return NORMAL_TABLE[idx].astype(np.float64).transpose(0, 2, 1)
