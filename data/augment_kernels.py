"""Numba kernels of ``sscl.data.augment``: hashing, per-sample steps and batch kernels.

Split from ``augment.py`` (whose docstring gives the semantics, layouts and threading rules):
this module holds the compiled code only. Public wrappers with their numpy twins live in
``augment_ops.py``; configuration, parameters and the composed multi-view op in ``augment.py``.
"""

from __future__ import annotations

import math
import os
import threading
from statistics import NormalDist

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

_PARALLEL_LOCK = threading.Lock()
_JIT = {"cache": True, "nogil": True, "fastmath": False}

# splitmix64 (Steele, Lea, Flood 2014): the k-th output of a stream seeded with s is
# _mix64(s + (k + 1) * GOLDEN), so any draw is addressable by a counter without state.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV_2_53 = 1.0 / 9007199254740992.0
_LOW16 = np.uint64(0xFFFF)

# Normals by table lookup: NORMAL_TABLE holds the standard normal quantiles at the centres of
# 65,536 equal-mass bins, and normal k of stream s is entry (h >> 16 (k % 3)) & 0xFFFF of
# h = splitmix64 output k // 3: one hash gives three 16-bit indices (its top 16 bits are unused),
# so the three channels of point p (normals 3p .. 3p + 2, what _crop_sample asks for) cost one
# hash, no interpolation and no branches (four fields per hash would split half of the triples
# over two hashes: 1.1 vs 0.6 ns per normal measured). Quantisation: draws take 65,536 values
# and are clipped at +-4.32 sigma (the outer bin centres; 1.5e-5 of the mass lies beyond), std
# 0.99999. float32 (256 KiB, L2-resident) measured faster than float64; no libm is involved, so
# the draws are bit-identical in the kernel, the numpy and torch twins and on every platform.
_NORMAL_BINS = 65536
NORMAL_TABLE = np.array(
    [NormalDist().inv_cdf((j + 0.5) / _NORMAL_BINS) for j in range(_NORMAL_BINS)],
    dtype=np.float32,
)


# --------------------------------------------------------------------------- scalar helpers


@njit(**_JIT)
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(**_JIT)
def _table_normal(h, shift):
    """Table entry of the 16-bit field of hash ``h`` at bit ``shift``, as a float64."""
    return np.float64(NORMAL_TABLE[np.int64((h >> np.uint64(shift)) & _LOW16)])


@njit(**_JIT)
def _hash(seed, j):
    return _mix64(seed + (np.uint64(j) + np.uint64(1)) * _GOLDEN)


@njit(**_JIT)
def _uniform(seed, k):
    """Output k of the splitmix64 stream ``seed`` as a float64 in [0, 1)."""
    return np.float64(np.int64(_hash(seed, k) >> np.uint64(11))) * _INV_2_53


@njit(**_JIT)
def _normal(seed, k):
    """Normal k of stream ``seed``: 16-bit field k % 3 of splitmix64 output k // 3 through
    NORMAL_TABLE (clipped at +-4.32 sigma)."""
    j = k // 3
    return _table_normal(_hash(seed, j), 16 * (k - 3 * j))


@njit(**_JIT)
def _normal3(seed, k):
    """Normals k, k+1, k+2 of stream ``seed`` (== _normal of each): one hash when k % 3 == 0
    (a point's three channels), two when the triple straddles outputs."""
    j = k // 3
    r = k - 3 * j
    za = _hash(seed, j)
    if r == 0:
        return _table_normal(za, 0), _table_normal(za, 16), _table_normal(za, 32)
    zb = _hash(seed, j + 1)
    if r == 1:
        return _table_normal(za, 16), _table_normal(za, 32), _table_normal(zb, 0)
    return _table_normal(za, 32), _table_normal(zb, 0), _table_normal(zb, 16)


@njit(**_JIT)
def _crop_window(length, frac, pos, speed, padding_ratio, min_crop):
    """(pad, start, span) of one crop; ``start`` indexes the mirror-padded sequence. ``speed``
    scales the span (``tempo / max(tempos)`` in the composed op)."""
    pad = length // padding_ratio if padding_ratio > 0 else 0
    padded = length + 2 * pad
    c = min(max(math.floor(frac * length), min(min_crop, length), 1), length)
    span = min(max(math.floor(c * speed), 1), padded)
    start = min(math.floor(pos * (padded - span + 1)), padded - span)
    return pad, start, span


@njit(**_JIT)
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
# out-of-order execution to overlap the next frame's misses. Measured: see _crop_sample.
_AHEAD = 6


@njit(**_JIT)
def _prefetch_rows(flat, vflat, r0, r1):
    """Prefetch the cache lines of table rows r0 and r1 (joints and valid flags)."""
    n = flat.shape[1]
    for k in range(0, n, 16):  # 16 float32 per 64-byte line
        _prefetch(flat, r0, k)
        _prefetch(flat, r1, k)
    _prefetch(vflat, r0, 0)
    _prefetch(vflat, r1, 0)




@njit(**_JIT)
def _row(rowbase, lo, shift, mask, r):
    """Storage row of window frame ``r``: ``rowbase[(lo + r) >> shift] + ((lo + r) & mask)``.

    A window is read in place from a frame table (the corpus in RAM, or a slab of cached
    chunks): ``rowbase`` lists the first row of each chunk the window touches, ``lo`` is the
    window's offset in its first chunk, and chunks hold ``1 << shift`` frames. A window copied
    into its own array is the special case ``rowbase = [first row]``, ``lo = 0``, ``shift = 62``.
    """
    g = lo + r
    return rowbase[g >> shift] + (g & mask)


@njit(**_JIT)
def _crop_sample(
    frames,
    vframes,
    rowbase,
    lo,
    shift,
    mask,
    length,
    perm,
    swap,
    mat,
    padding_ratio,
    min_crop,
    frac,
    pos,
    speed,
    noise_std,
    noise_seed,
    centre,
    cj,
    out_CLVM,
    vout_LVM,
):
    """Crop + linear resize + joint permutation + person swap + centring + linear map + noise,
    fused.

    ``frames`` (F, V, C, M) float32 and ``vframes`` (F, V, M) bool are frame tables; window
    frame r lives at row ``_row(rowbase, lo, shift, mask, r)``. Per output frame: the two source
    rows are interpolated whole (contiguous, vectorised), then one pass over the V*M output
    points gathers each point's channels from that row (flip and swap folded into per-sample
    offsets), applies the linear map, zeroes invalid points and stores contiguous rows of
    ``out``. The rows ``_AHEAD`` output frames on are prefetched. Arithmetic is float32 (the
    numpy twin's float64 agrees to ~1e-6 relative).

    Centring (``sscl.data.normalize``; its rotation is folded into ``mat`` by the caller):
    every point has ``centre`` (3,) subtracted, or with ``cj >= 0`` person 0's raw joint ``cj``
    of the source frame where it is valid there (interpolated like the points). With a zero
    centre and ``cj < 0`` the output is bit-identical to no centring.

    Measured against the previous gather (two rows read point by point), one core, the
    composed two-view op on 60 different batches of 64 windows in turn (best of 12 rounds):
    NTU-25x2 synthetic 4.6 -> 3.1 ms a batch, MSRC-12 2.1 -> 1.5 ms; the prefetch alone gave
    4.6 -> 3.6 and 2.1 -> 1.6.
    """
    C, L, V, M = out_CLVM.shape
    Q = V * M
    out = out_CLVM.reshape((C, L, Q))
    vout = vout_LVM.reshape((L, Q))
    if length <= 0:
        out[:] = 0.0
        vout[:] = False
        return
    pad, start, span = _crop_window(length, frac, pos, speed, padding_ratio, min_crop)
    scale = span / L
    three = C == 3
    f32 = np.float32
    a00, a01, a10, a11 = f32(mat[0, 0]), f32(mat[0, 1]), f32(mat[1, 0]), f32(mat[1, 1])
    a02, a12, a20, a21, a22 = f32(0.0), f32(0.0), f32(0.0), f32(0.0), f32(0.0)
    if three:
        a02, a12 = f32(mat[0, 2]), f32(mat[1, 2])
        a20, a21, a22 = f32(mat[2, 0]), f32(mat[2, 1]), f32(mat[2, 2])
    std = f32(noise_std)
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
                    z0, z1, z2 = _normal3(noise_seed, 3 * (ti * Q + q))
                    o0[q] += std * f32(z0)
                    o1[q] += std * f32(z1)
                    if three:
                        out[2, ti, q] += std * f32(z2)


@njit(**_JIT)
def _joint_mask_sample(out_CTVM, vout_TVM, prob, seed):
    """Zero (and invalidate) joint v in all frames when uniform(seed, v) < prob."""
    if prob <= 0.0:
        return
    for v in range(out_CTVM.shape[2]):
        if _uniform(seed, v) < prob:
            out_CTVM[:, :, v, :] = 0.0
            vout_TVM[:, v, :] = False


@njit(**_JIT)
def _taps(acc, flat, base, step, g, radius, lo, hi):
    """acc[j] = sum over k in [lo, hi] (ascending) of g[k + radius] * flat[base + k*step + j].

    With ``flat`` a (T, W) array raveled and ``step = W``, ``acc`` of n * W elements receives
    the convolution of n consecutive frames from frame base // W on, in one long contiguous
    loop per pass (W-element rows, W = V*M = 20 to 50 here, vectorise poorly). After the first
    tap, four taps per pass: one load and store of ``acc`` per four multiply-adds.
    """
    n = acc.shape[0]
    ga, o = g[lo + radius], base + lo * step
    ra = flat[o : o + n]
    for j in range(n):
        acc[j] = ga * ra[j]
    k = lo + 1
    while hi - k >= 3:
        ga, gb = g[k + radius], g[k + 1 + radius]
        gc, gd = g[k + 2 + radius], g[k + 3 + radius]
        o = base + k * step
        ra, rb = flat[o : o + n], flat[o + step : o + step + n]
        rc, rd = flat[o + 2 * step : o + 2 * step + n], flat[o + 3 * step : o + 3 * step + n]
        for j in range(n):
            acc[j] += (ga * ra[j] + gb * rb[j]) + (gc * rc[j] + gd * rd[j])
        k += 4
    while k <= hi:
        ga, o = g[k + radius], base + k * step
        ra = flat[o : o + n]
        for j in range(n):
            acc[j] += ga * ra[j]
        k += 1


@njit(**_JIT)
def _blur_sample(out_CTVM, vout_TVM, sigma, radius):
    """Normalised temporal Gaussian blur over the valid frames, in place.

    out[t] = sum_k g_k x[t+k] / sum_k g_k over the in-range valid taps; invalid points stay 0.
    AimCLR convolves with the unnormalised kernel and zero padding, which scales the signal by
    sum(g) (up to about 5 at sigma 2) and darkens the ends; normalising keeps a constant signal.
    Invalid points must hold 0 on entry (every step before guarantees it), so the numerator
    needs no mask. Each channel is copied between ``radius`` zero frames on each side, so the
    numerator of all T frames is one long contiguous loop per tap (:func:`_taps`). Measured
    per (3, 50, V, M) sample on one core against per-frame tap loops: NTU-25x2 all valid
    11-14 -> 9-13 us, with 2% of points untracked 17-24 -> 11-16 us; MSRC-12 (20 x 1)
    6-8 -> 4-5 us and 10-13 -> 4.5-5.6 us.
    """
    if sigma <= 0.0:
        return
    C, T, V, M = out_CTVM.shape
    Q = V * M
    n = T * Q
    x = out_CTVM.reshape((C, n))
    ok = vout_TVM.reshape(n)
    # float32 throughout (weights rounded from float64): twice the SIMD width of float64, and
    # 15 taps of weights <= 1 lose nothing an augmentation would notice; the twin does the same.
    g = np.empty(2 * radius + 1, np.float32)
    for k in range(-radius, radius + 1):
        g[k + radius] = math.exp(-(k * k) / (2.0 * sigma * sigma))
    one = np.float32(1.0)
    padn = n + 2 * radius * Q
    pad = np.zeros(padn, np.float32)
    inv = np.empty(n, np.float32)
    if ok.all():
        # Every point valid: a frame's denominator is the sum of its in-range taps.
        for t in range(T):
            tot = np.float32(0.0)
            for k in range(max(-radius, -t), min(radius, T - 1 - t) + 1):
                tot += g[k + radius]
            inv[t * Q : (t + 1) * Q] = one / tot
    else:
        # Some points invalid: the denominator (the weight of the in-range valid taps) is per
        # point, shared by the channels. A valid point's own tap is valid, so its denominator
        # is > 0; invalid points get 0.
        mid = pad[radius * Q : radius * Q + n]
        for i in range(n):
            mid[i] = one if ok[i] else np.float32(0.0)
        _taps(inv, pad, radius * Q, Q, g, radius, -radius, radius)
        for i in range(n):
            inv[i] = one / inv[i] if ok[i] else np.float32(0.0)
    for c in range(C):
        xc = x[c]
        pad[radius * Q : radius * Q + n] = xc
        _taps(xc, pad, radius * Q, Q, g, radius, -radius, radius)
        for i in range(n):
            xc[i] *= inv[i]


@njit(**_JIT)
def _view_sample(
    frames,
    vframes,
    rowbase,
    lo,
    shift,
    mask,
    length,
    perm,
    padding_ratio,
    min_crop,
    radius,
    frac,
    pos,
    tempo,
    flip,
    swap,
    mat,
    noise_std,
    noise_seed,
    jm_p,
    jm_seed,
    sigma,
    axis,
    centre,
    cj,
    out_CLVM,
    vout_LVM,
    ident,
):
    _crop_sample(
        frames,
        vframes,
        rowbase,
        lo,
        shift,
        mask,
        length,
        perm if flip else ident,
        swap,
        mat,
        padding_ratio,
        min_crop,
        frac,
        pos,
        tempo,
        noise_std,
        noise_seed,
        centre,
        cj,
        out_CLVM,
        vout_LVM,
    )
    _joint_mask_sample(out_CLVM, vout_LVM, jm_p, jm_seed)
    _blur_sample(out_CLVM, vout_LVM, sigma, radius)
    if 0 <= axis < out_CLVM.shape[0]:
        out_CLVM[axis] = 0.0


@njit(**_JIT)
def _two_view_one(
    n,
    frames,
    vframes,
    rowbase,
    lo,
    shift,
    lengths,
    perm,
    padding_ratio,
    min_crop,
    radius,
    frac,
    pos,
    tempo,
    flip,
    swap,
    mat,
    noise_std,
    noise_seed,
    jm_p,
    jm_seed,
    sigma,
    axis,
    centre,
    cj,
    out,
    vout,
):
    """All views of sample n: the source frames are read while they are hot in cache.
    ``tempo`` holds each view's crop speed; ``centre`` (N, 3) and ``cj`` the centring."""
    ident = np.arange(perm.shape[0])
    mask = (np.int64(1) << shift) - 1
    for r in range(out.shape[0]):
        _view_sample(
            frames,
            vframes,
            rowbase[n],
            lo[n],
            shift,
            mask,
            lengths[n],
            perm,
            padding_ratio,
            min_crop,
            radius,
            frac[r, n],
            pos[r, n],
            tempo[r, n],
            flip[r, n],
            swap[r, n],
            mat[r, n],
            noise_std[r, n],
            noise_seed[r, n],
            jm_p[r, n],
            jm_seed[r, n],
            sigma[r, n],
            axis[r, n],
            centre[n],
            cj,
            out[r, n],
            vout[r, n],
            ident,
        )


# One batch loop compiled twice; the arguments are those of _two_view_one after the index.
@njit(**_JIT)
def _two_view_serial(*args):
    for n in range(args[2].shape[0]):  # args[2]: rowbase, one row per sample
        _two_view_one(n, *args)


@njit(parallel=True, **_JIT)
def _two_view_parallel(*args):
    for n in prange(args[2].shape[0]):
        _two_view_one(n, *args)


# --------------------------------------------------------------------------- standalone kernels


@njit(**_JIT)
def _crop_resize_kernel(raw, valid, lengths, frac, pos, tempo, padding_ratio, min_crop, out, vout):
    ident = np.arange(raw.shape[2])
    eye = np.eye(3)
    zero3 = np.zeros(3)
    base = np.zeros(1, np.int64)
    for n in range(raw.shape[0]):
        _crop_sample(
            raw[n],
            valid[n],
            base,
            0,
            62,
            (np.int64(1) << 62) - 1,
            min(lengths[n], raw.shape[1]),
            ident,
            False,
            eye,
            padding_ratio,
            min_crop,
            frac[n],
            pos[n],
            tempo[n],
            0.0,
            np.uint64(0),
            zero3,
            -1,
            out[n],
            vout[n],
        )


@njit(**_JIT)
def _linear_kernel(x, valid, mat, out):
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


@njit(**_JIT)
def _flip_swap_kernel(x, valid, perm, flip, swap, out, vout):
    N, C, T, V, M = x.shape
    for n in range(N):
        swap_m = swap[n] and M == 2
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


@njit(**_JIT)
def _noise_kernel(x, valid, std, seed, out):
    """x, out: (N, C, P) with P = T V M flattened; valid: (N, P)."""
    N, C, P = x.shape
    for n in range(N):
        for c in range(C):
            for p in range(P):
                if not valid[n, p]:
                    out[n, c, p] = 0.0
                elif std[n] > 0.0:
                    out[n, c, p] = x[n, c, p] + std[n] * _normal(seed[n], 3 * p + c)
                else:
                    out[n, c, p] = x[n, c, p]


@njit(**_JIT)
def _mask_blur_kernel(out, vout, jm_p, jm_seed, sigma, radius, axis):
    """In place on copies: joint mask, blur, axis mask (each a no-op at its neutral value)."""
    for n in range(out.shape[0]):
        _joint_mask_sample(out[n], vout[n], jm_p[n], jm_seed[n])
        _blur_sample(out[n], vout[n], sigma[n], radius)
        if 0 <= axis[n] < out.shape[1]:
            out[n, axis[n]] = 0.0


@njit(**_JIT)
def _tempo_kernel(x, valid, factor, out, vout):
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


@njit(**_JIT)
def _bone_kernel(x, valid, parents, out, vout):
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


@njit(**_JIT)
def _motion_kernel(x, valid, out, vout):
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


def _mix64_np(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _stream(base: np.ndarray, k: np.ndarray) -> np.ndarray:
    """splitmix64 outputs k (broadcast) of the streams seeded with base (uint64 arrays)."""
    with np.errstate(over="ignore"):
        return _mix64_np(base + (k.astype(np.uint64) + np.uint64(1)) * _GOLDEN)


# --------------------------------------------------------------------------- view parameters


@njit(**_JIT)
def _view_params_kernel(
    u, z, extreme, rot, flip_p, lo, hi, shear, swap_p, tempos, noise_prob, noise_std,
    blur_prob, s0, s1, axis_prob, jm_p,
    crop_frac, crop_pos, tempo, flip, swap, mat, nstd, nseed, jmp, jseed, bsig, axis,
):
    """One view's parameters from uniforms u (N, 18) and words z (N, 2): the compiled twin of
    ``augment._view_from_draws_ref`` (same formulas, one pass per sample). The arguments after
    ``flip_p`` are ``augment._kernel_cfg``'s, then the outputs in ``ViewParams`` field order."""
    for n in range(u.shape[0]):
        un = u[n]
        crop_frac[n] = lo + (hi - lo) * un[0]
        crop_pos[n] = un[1]
        tempo[n] = tempos[min(int(un[2] * tempos.shape[0]), tempos.shape[0] - 1)]
        flip[n] = un[3] < flip_p
        swap[n] = un[4] < swap_p
        ax = (2.0 * un[5] - 1.0) * rot[0]
        ay = (2.0 * un[6] - 1.0) * rot[1]
        az = (2.0 * un[7] - 1.0) * rot[2]
        cx, sx = math.cos(ax), math.sin(ax)
        cy, sy = math.cos(ay), math.sin(ay)
        cz, sz = math.cos(az), math.sin(az)
        r = np.empty((3, 3))
        r[0, 0], r[0, 1], r[0, 2] = cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx
        r[1, 0], r[1, 1], r[1, 2] = sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx
        r[2, 0], r[2, 1], r[2, 2] = -sy, cy * sx, cy * cx
        s = np.eye(3)
        s[0, 1] = (2.0 * un[8] - 1.0) * shear
        s[1, 0] = (2.0 * un[9] - 1.0) * shear
        s[2, 0] = (2.0 * un[10] - 1.0) * shear
        s[0, 2] = (2.0 * un[11] - 1.0) * shear
        s[1, 2] = (2.0 * un[12] - 1.0) * shear
        s[2, 1] = (2.0 * un[13] - 1.0) * shear
        for i in range(3):
            for j in range(3):
                mat[n, i, j] = r[i, 0] * s[0, j] + r[i, 1] * s[1, j] + r[i, 2] * s[2, j]
        nseed[n] = z[n, 0]
        jseed[n] = z[n, 1]
        if extreme:
            nstd[n] = noise_std if un[14] < noise_prob else 0.0
            bsig[n] = s0 + (s1 - s0) * un[16] if un[15] < blur_prob else 0.0
            if un[17] < axis_prob:
                axis[n] = min(int(3.0 * un[17] / axis_prob), 2)
            else:
                axis[n] = -1
            jmp[n] = jm_p
        else:
            nstd[n] = 0.0
            bsig[n] = 0.0
            axis[n] = -1
            jmp[n] = 0.0


@njit(**_JIT)
def _batch_params_kernel(
    seed, epoch, idx, slots, extreme, rot, flip_p, lo, hi, shear, swap_p, tempos, noise_prob,
    noise_std, blur_prob, s0, s1, axis_prob, jm_p,
    crop_frac, crop_pos, tempo, flip, swap, mat, nstd, nseed, jmp, jseed, bsig, axis,
):
    """Every view's parameters of a batch, stacked (R, N), in one compiled pass: sample key =
    hash chain of seed, epoch and index; view r reads words ``slots[r] * 20 ..`` of the key's
    stream, mapped by :func:`_view_params_kernel` (``extreme``, ``rot``, ``flip_p`` per view).
    ``augment.params_for_ref`` is the numpy oracle."""
    n_views, n = slots.shape[0], idx.shape[0]
    e = _hash(_hash(seed, 0), epoch)
    keys = np.empty(n, np.uint64)
    for i in range(n):
        keys[i] = _hash(e, idx[i])
    u = np.empty((n, 18))
    z = np.empty((n, 2), np.uint64)
    for r in range(n_views):
        base = slots[r] * 20
        for i in range(n):
            for j in range(18):
                u[i, j] = _uniform(keys[i], base + j)
            z[i, 0] = _hash(keys[i], base + 18)
            z[i, 1] = _hash(keys[i], base + 19)
        _view_params_kernel(
            u, z, extreme[r], rot[r], flip_p[r], lo, hi, shear, swap_p, tempos, noise_prob,
            noise_std, blur_prob, s0, s1, axis_prob, jm_p,
            crop_frac[r], crop_pos[r], tempo[r], flip[r], swap[r], mat[r], nstd[r], nseed[r],
            jmp[r], jseed[r], bsig[r], axis[r],
        )
