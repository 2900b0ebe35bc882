"""The compiled crop: one window cropped, resized, permuted, centred, mapped and noised in one pass.

The kernel of ``sscl.data.augment``'s crop (semantics: ``crop.crop_windows`` and the package
docstring). Windows are read in place from a frame table (:class:`groups.FrameTable`); one
sample's draws come as :class:`groups.SampleCrop` and :class:`groups.SamplePoints`, the batch's
settings as :class:`groups.CropSpec` and :class:`groups.Centring`, each read by field name.
``_crop_window`` is the scalar form of ``crop.crop_windows`` (the vectorised twin).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from sscl.data.augment.jit import JIT
from sscl.data.augment.noise_table import normal3_jit


@njit(**JIT)
def _crop_window(length, draw, crop):
    """(pad, start, span) of the crop ``draw`` (SampleCrop) of a window of ``length`` frames
    under ``crop`` (CropSpec); ``start`` indexes the mirror-padded sequence. ``draw.speed``
    scales the span (``tempo / max(tempos)`` in the composed op)."""
    pad = length // crop.padding_ratio if crop.padding_ratio > 0 else 0
    padded = length + 2 * pad
    c = min(max(math.floor(draw.frac * length), min(crop.min_crop, length), 1), length)
    span = min(max(math.floor(c * draw.speed), 1), padded)
    start = min(math.floor(draw.pos * (padded - span + 1)), padded - span)
    return pad, start, span


@njit(**JIT)
def _mirror(q, pad, length):
    """Raw frame of padded index q: AimCLR pads with the edge frames in reverse order."""
    r = q - pad
    if r < 0:
        return -r - 1
    if r >= length:
        return 2 * length - 1 - r
    return r


# --------------------------------------------------------------------------- per-sample steps


@intrinsic
def _prefetch(typingctx, table, row, col):
    """Hint the CPU to fetch ``table[row, col]``'s cache line (LLVM ``prefetch``: read, keep in
    all cache levels). No effect on results, so it has no numpy twin; ``row`` must be in range.
    """
    if not (isinstance(table, types.Array) and table.ndim == 2
            and isinstance(row, types.Integer) and isinstance(col, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1], args[2]],
                                       wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(table, row, col), codegen


# Output frames the crop prefetches ahead: the rows of a random window are cold (a batch's
# windows are scattered over the corpus), and the gather of one frame does too little work for
# out-of-order execution to overlap the next frame's misses. Measured: see crop_sample.
_AHEAD = 6


@njit(**JIT)
def _prefetch_rows(flat, vflat, r0, r1):
    """Prefetch the cache lines of table rows r0 and r1 (joints and valid flags)."""
    n = flat.shape[1]
    for k in range(0, n, 16):  # 16 float32 per 64-byte line
        _prefetch(flat, r0, k)
        _prefetch(flat, r1, k)
    _prefetch(vflat, r0, 0)
    _prefetch(vflat, r1, 0)




@njit(**JIT)
def _row(rowbase, lo, shift, mask, r):
    """Storage row of window frame ``r``: ``rowbase[(lo + r) >> shift] + ((lo + r) & mask)``.

    A window is read in place from a frame table (the corpus in RAM, or a slab of cached
    chunks): ``rowbase`` lists the first row of each chunk the window touches, ``lo`` is the
    window's offset in its first chunk, and chunks hold ``1 << shift`` frames. A window copied
    into its own array is the special case ``rowbase = [first row]``, ``lo = 0``, ``shift = 62``.
    """
    g = lo + r
    return rowbase[g >> shift] + (g & mask)


@njit(**JIT)
def crop_sample(table, n, crop, draw, points, centring, out_CLVM, vout_LVM):
    """Crop + linear resize + joint permutation + person swap + centring + linear map + noise,
    fused.

    Args (groups read by field name, ``groups.py``): ``table`` (FrameTable) and ``n`` the
    window; ``crop`` (CropSpec); ``draw`` (SampleCrop) the crop draw; ``points`` (SamplePoints)
    the permutation, swap, linear map and noise; ``centring`` (Centring); ``out_CLVM``
    (C, L, V, M) float32 and ``vout_LVM`` (L, V, M) bool the sample's outputs. Window frame r
    lives at table row ``_row(rowbase, lo, shift, mask, r)``. Per output frame: the two source
    rows are interpolated whole (contiguous, vectorised), then one pass over the V*M output
    points gathers each point's channels from that row (flip and swap folded into per-sample
    offsets), applies the linear map, zeroes invalid points and stores contiguous rows of
    ``out``. The rows ``_AHEAD`` output frames on are prefetched. Arithmetic is float32 (the
    numpy twin's float64 agrees to ~1e-6 relative).

    Centring (``sscl.data.normalize``; its rotation is folded into ``mat`` by the caller):
    every point has ``centring.centre[n]`` subtracted, or with ``cj = centring.joint >= 0``
    person 0's raw joint ``cj`` of the source frame where it is valid there (interpolated like
    the points). With a zero centre and ``cj < 0`` the output is bit-identical to no centring.

    Measured against the previous gather (two rows read point by point), one core, the
    composed two-view op on 60 different batches of 64 windows in turn (best of 12 rounds):
    NTU-25x2 synthetic 4.6 -> 3.1 ms a batch, MSRC-12 2.1 -> 1.5 ms; the prefetch alone gave
    4.6 -> 3.6 and 2.1 -> 1.6.
    """
    frames, vframes = table.frames, table.valid
    rowbase, lo, shift = table.rowbase[n], table.lo[n], table.shift
    mask = (np.int64(1) << shift) - 1
    length = table.lengths[n]
    perm, swap, mat = points.perm, points.swap, points.mat
    centre, cj = centring.centre[n], centring.joint
    C, L, V, M = out_CLVM.shape
    Q = V * M
    out = out_CLVM.reshape((C, L, Q))
    vout = vout_LVM.reshape((L, Q))
    if length <= 0:
        out[:] = 0.0
        vout[:] = False
        return
    pad, start, span = _crop_window(length, draw, crop)
    scale = span / L
    three = C == 3
    f32 = np.float32
    a00, a01, a10, a11 = f32(mat[0, 0]), f32(mat[0, 1]), f32(mat[1, 0]), f32(mat[1, 1])
    a02, a12, a20, a21, a22 = f32(0.0), f32(0.0), f32(0.0), f32(0.0), f32(0.0)
    if three:
        a02, a12 = f32(mat[0, 2]), f32(mat[1, 2])
        a20, a21, a22 = f32(mat[2, 0]), f32(mat[2, 1]), f32(mat[2, 2])
    std = f32(points.noise_std)
    # The centre: constant, or person 0's joint cj of the source rows (offsets in a raw row).
    ox, oy, oz = f32(centre[0]), f32(centre[1]), f32(centre[2])
    rx, ry, rz = ox, oy, oz
    cb, cv = cj * C * M, cj * M
    pm = np.arange(M)
    if swap and M == 2:
        pm[0], pm[1] = 1, 0
    K = Q * C
    row = np.empty(K, np.float32)
    base = np.empty(Q, np.int64)  # offset of output point q's channel 0 in a raw row
    vbase = np.empty(Q, np.int64)  # its index in a raw valid row
    for v in range(V):
        for m in range(M):
            base[v * M + m] = perm[v] * C * M + pm[m]
            vbase[v * M + m] = perm[v] * M + pm[m]
    flat = frames.reshape((frames.shape[0], Q * C))
    vflat = vframes.reshape((vframes.shape[0], Q))
    for ti in range(-_AHEAD, L):
        tp = ti + _AHEAD
        if tp < L:
            sp = max((tp + 0.5) * scale - 0.5, 0.0)
            p0 = int(sp)
            p1 = p0 + 1 if p0 < span - 1 else p0
            _prefetch_rows(
                flat,
                vflat,
                _row(rowbase, lo, shift, mask, _mirror(start + p0, pad, length)),
                _row(rowbase, lo, shift, mask, _mirror(start + p1, pad, length)),
            )
        if ti < 0:
            continue
        # PyTorch F.interpolate(mode="linear", align_corners=False) source coordinate.
        src = max((ti + 0.5) * scale - 0.5, 0.0)
        i0 = int(src)
        i1 = i0 + 1 if i0 < span - 1 else i0
        w = src - i0
        exact = w == 0.0
        wf = f32(w)
        w0f = f32(1.0 - w)
        r0 = _row(rowbase, lo, shift, mask, _mirror(start + i0, pad, length))
        r1 = _row(rowbase, lo, shift, mask, _mirror(start + i1, pad, length))
        # Interpolate the two raw rows whole (contiguous: vectorised), then gather each
        # output point's channels from that row (flip and swap are in ``base``).
        x0, x1 = flat[r0], flat[r1]
        for k in range(K):
            row[k] = w0f * x0[k] + wf * x1[k]
        v0, v1 = vflat[r0], vflat[r1]
        if cj >= 0:
            c0x, c0y, c0z = rx, ry, rz
            if v0[cv]:
                c0x, c0y = x0[cb], x0[cb + M]
                c0z = x0[cb + 2 * M] if three else f32(0.0)
            c1x, c1y, c1z = rx, ry, rz
            if v1[cv]:
                c1x, c1y = x1[cb], x1[cb + M]
                c1z = x1[cb + 2 * M] if three else f32(0.0)
            ox, oy, oz = w0f * c0x + wf * c1x, w0f * c0y + wf * c1y, w0f * c0z + wf * c1z
        vrow = vout[ti]
        o0, o1 = out[0, ti], out[1, ti]
        if three:
            o2 = out[2, ti]
            for q in range(Q):
                s = vbase[q]
                keep = v0[s] and (exact or v1[s])
                vrow[q] = keep
                b = base[q]
                b0, b1, b2 = row[b] - ox, row[b + M] - oy, row[b + 2 * M] - oz
                o0[q] = a00 * b0 + a01 * b1 + a02 * b2 if keep else f32(0.0)
                o1[q] = a10 * b0 + a11 * b1 + a12 * b2 if keep else f32(0.0)
                o2[q] = a20 * b0 + a21 * b1 + a22 * b2 if keep else f32(0.0)
        else:
            for q in range(Q):
                s = vbase[q]
                keep = v0[s] and (exact or v1[s])
                vrow[q] = keep
                b = base[q]
                b0, b1 = row[b] - ox, row[b + M] - oy
                o0[q] = a00 * b0 + a01 * b1 if keep else f32(0.0)
                o1[q] = a10 * b0 + a11 * b1 if keep else f32(0.0)
        if std > 0.0:
            for q in range(Q):
                if vrow[q]:
                    z0, z1, z2 = normal3_jit(points.noise_seed, 3 * (ti * Q + q))
                    o0[q] += std * f32(z0)
                    o1[q] += std * f32(z1)
                    if three:
                        out[2, ti, q] += std * f32(z2)


