"""The compiled extreme-view tail of one sample: joint mask, temporal blur, axis mask (in place).

Kernels of the composed view (``kernel_views``); numpy twin: ``mask_ops.mask_blur_ref``.
Semantics: AimCLR's Gaussian blur (kernel 15, sigma in [0.1, 2]) normalised over the valid
taps, and its joint and axis masks.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from sscl.data.augment.jit import JIT
from sscl.data.splitmix64 import uniform_jit


@njit(**JIT)
def joint_mask_sample(out_CTVM, vout_TVM, prob, seed):
    """Zero (and invalidate) joint v in all frames when uniform(seed, v) < prob."""
    if prob <= 0.0:
        return
    for v in range(out_CTVM.shape[2]):
        if uniform_jit(seed, v) < prob:
            out_CTVM[:, :, v, :] = 0.0
            vout_TVM[:, v, :] = False


@njit(**JIT)
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


@njit(**JIT)
def blur_sample(out_CTVM, vout_TVM, sigma, blur):
    """Normalised temporal Gaussian blur over the valid frames, in place, with ``blur.radius``
    taps a side (``blur``: groups.BlurSpec).

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
    radius = blur.radius
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


@njit(**JIT)
def tail_sample(out_CTVM, vout_TVM, tail, blur):
    """The extreme view's tail of one sample in place: joint mask, blur, axis mask, as drawn in
    ``tail`` (groups.SampleTail; each step a no-op at its neutral value), ``blur`` a BlurSpec."""
    joint_mask_sample(out_CTVM, vout_TVM, tail.joint_p, tail.joint_seed)
    blur_sample(out_CTVM, vout_TVM, tail.sigma, blur)
    if 0 <= tail.axis < out_CTVM.shape[0]:
        out_CTVM[tail.axis] = 0.0
