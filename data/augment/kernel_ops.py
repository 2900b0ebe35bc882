"""Compiled kernels of the standalone per-point ops (one batch loop each): the linear map and
Gaussian noise.

The wrappers with their numpy twins are in ``point_ops.py``; those validate shapes and dtypes,
these trust them. The composed op does the same two steps inside its crop kernel
(``kernel_crop.crop_sample``), in float32 and with the noise drawn by ``normal3_jit``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sscl.data.augment.jit import JIT
from sscl.data.augment.noise_table import normal_jit


@njit(**JIT)
def linear_kernel(x, valid, mat, out):
    """x, out: (N, C, P) with P = T V M flattened (contiguous inner loops); valid: (N, P)."""
    N, C, P = x.shape
    row = np.empty(P)
    for n in range(N):
        for c in range(C):
            # One input channel at a time over a float64 row: contiguous loops that vectorise.
            row[:] = 0.0
            for k in range(C):
                a = mat[n, c, k]
                for p in range(P):
                    row[p] += a * x[n, k, p]
            for p in range(P):
                out[n, c, p] = row[p] if valid[n, p] else 0.0


@njit(**JIT)
def noise_kernel(x, valid, noise, out):
    """x, out: (N, C, P) with P = T V M flattened; valid: (N, P); ``noise`` a
    groups.NoiseDraws of (N,) arrays."""
    std, seed = noise.std, noise.seed
    N, C, P = x.shape
    for n in range(N):
        for c in range(C):
            for p in range(P):
                if not valid[n, p]:
                    out[n, c, p] = 0.0
                elif std[n] > 0.0:
                    out[n, c, p] = x[n, c, p] + std[n] * normal_jit(seed[n], 3 * p + c)
                else:
                    out[n, c, p] = x[n, c, p]
