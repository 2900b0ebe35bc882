"""Compiled kernels of the standalone augmentation ops (one batch loop each).

The wrappers with their numpy twins are in ``crop.py``, ``point_ops.py``, ``mask_ops.py`` and
``streams.py``; those validate shapes and dtypes, these trust them. The crop and the extreme
tail reuse the composed op's per-sample kernels (``kernel_crop``, ``kernel_blur``), so a
standalone op and the composed op compute each step with the same code.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sscl.data.augment.groups import SampleCrop, SamplePoints, SampleTail
from sscl.data.augment.jit import JIT
from sscl.data.augment.kernel_blur import tail_sample
from sscl.data.augment.kernel_crop import crop_sample
from sscl.data.augment.noise_table import normal_jit


@njit(**JIT)
def crop_resize_kernel(table, crop, draws, centring, out, vout):
    """Crop + resize of every window of ``table`` (groups.FrameTable) under ``crop``
    (groups.CropSpec, flip_perm the identity); ``draws`` a groups.SampleCrop of (N,) float64
    arrays; out (N, C, L, V, M), vout (N, L, V, M)."""
    eye = np.eye(3)
    for n in range(table.rowbase.shape[0]):
        draw = SampleCrop(frac=draws.frac[n], pos=draws.pos[n], speed=draws.speed[n])
        points = SamplePoints(
            perm=crop.flip_perm, swap=False, mat=eye, noise_std=0.0, noise_seed=np.uint64(0)
        )
        crop_sample(table, n, crop, draw, points, centring, out[n], vout[n])



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
def flip_swap_kernel(x, valid, perm, draws, out, vout):
    """``draws`` a groups.FlipSwapDraws of (N,) bool arrays."""
    flip = draws.flip
    N, C, T, V, M = x.shape
    for n in range(N):
        swap_m = draws.swap[n] and M == 2
        for t in range(T):
            for v in range(V):
                sv = perm[v] if flip[n] else v
                for m in range(M):
                    vout[n, t, v, m] = valid[n, t, sv, (M - 1 - m) if swap_m else m]
        for c in range(C):
            for t in range(T):
                for v in range(V):
                    sv = perm[v] if flip[n] else v
                    for m in range(M):
                        out[n, c, t, v, m] = x[n, c, t, sv, (M - 1 - m) if swap_m else m]


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


@njit(**JIT)
def mask_blur_kernel(out, vout, tails, blur):
    """In place on copies: joint mask, blur, axis mask (each a no-op at its neutral value);
    ``tails`` a groups.SampleTail of (N,) arrays, ``blur`` a groups.BlurSpec."""
    for n in range(out.shape[0]):
        tail = SampleTail(
            joint_p=tails.joint_p[n],
            joint_seed=tails.joint_seed[n],
            sigma=tails.sigma[n],
            axis=tails.axis[n],
        )
        tail_sample(out[n], vout[n], tail, blur)


@njit(**JIT)
def tempo_kernel(x, valid, factor, out, vout):
    """x, out: (N, C, T, Q) with Q = V M flattened; valid, vout: (N, T, Q)."""
    N, C, T, Q = x.shape
    for n in range(N):
        for t in range(T):
            s = t * factor[n]
            for q in range(Q):
                vout[n, t, q] = s < T and valid[n, s, q]
        for c in range(C):
            for t in range(T):
                s = t * factor[n]
                for q in range(Q):
                    out[n, c, t, q] = x[n, c, s, q] if vout[n, t, q] else 0.0


@njit(**JIT)
def bone_kernel(x, valid, parents, out, vout):
    N, C, T, V, M = x.shape
    for n in range(N):
        for t in range(T):
            for v in range(V):
                for m in range(M):
                    pv = parents[v] if parents[v] >= 0 else v
                    vout[n, t, v, m] = valid[n, t, v, m] and valid[n, t, pv, m]
        for c in range(C):
            for t in range(T):
                for v in range(V):
                    pv = parents[v] if parents[v] >= 0 else v
                    for m in range(M):
                        d = x[n, c, t, v, m] - x[n, c, t, pv, m]
                        out[n, c, t, v, m] = d if vout[n, t, v, m] else 0.0


@njit(**JIT)
def motion_kernel(x, valid, out, vout):
    """x, out: (N, C, T, Q) with Q = V M flattened; valid, vout: (N, T, Q)."""
    N, C, T, Q = x.shape
    for n in range(N):
        for t in range(T):
            for q in range(Q):
                vout[n, t, q] = t + 1 < T and valid[n, t, q] and valid[n, t + 1, q]
        for c in range(C):
            for t in range(T):
                for q in range(Q):
                    d = x[n, c, t + 1, q] - x[n, c, t, q] if vout[n, t, q] else np.float32(0.0)
                    out[n, c, t, q] = d


# numpy versions of the hash, for parameter drawing and the twins
