"""The extreme view's tail (joint mask + temporal blur + axis mask) as numpy: the twin of the
compiled ``kernel_blur.tail_sample``.

AimCLR's Gaussian blur (kernel 15, sigma in [0.1, 2]; normalised here over the valid taps) and
axis mask, and a per-joint mask.
"""

from __future__ import annotations

import numpy as np

from sscl.data.augment.arrays import as_f64, as_i64
from sscl.data.splitmix64 import INV_2_53, stream_np


def mask_blur_ref(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    joint_p_N: np.ndarray,
    joint_seed_N: np.ndarray,
    sigma_N: np.ndarray,
    axis_N: np.ndarray,
    kernel: int = 15,
) -> tuple[np.ndarray, np.ndarray]:
    """Joint mask, then temporal Gaussian blur, then axis mask: the numpy twin of the compiled
    tail (``kernel_blur.tail_sample``) as a step of the composed op's oracle
    (``compose.two_view_ref``); vectorised over the batch, a loop over the taps.

    Joint mask: joint v of sample n is zeroed and invalidated in every frame and person when
    output v of splitmix64 stream joint_seed_N[n] (as a uniform) is below joint_p_N[n].
    Blur: weights exp(-k^2 / (2 sigma^2)), k in [-kernel//2, kernel//2], normalised over the
    in-range valid taps, in float32 (a constant stays constant; invalid points stay 0; sigma 0:
    no blur).
    Axis mask: coordinate axis_N[n] is zeroed for every point (-1: none; joints stay valid).
    Each op alone is this function with the other two at their neutral value (p 0, sigma 0,
    axis -1).

    Args:
        x_NCTVM: (N, C, T, V, M) float32; valid_NTVM: (N, T, V, M) bool (values under invalid
            points are ignored).
        joint_p_N, joint_seed_N, sigma_N, axis_N: (N,) per-sample parameters.
        kernel: odd blur length (AimCLR: 15).

    Returns:
        (x, valid) after the three steps.
    """
    _, c, t, v, _ = x_NCTVM.shape
    u = (
        stream_np(np.asarray(joint_seed_N, np.uint64)[:, None], np.arange(v)[None, :])
        >> np.uint64(11)
    ).astype(np.float64) * INV_2_53
    masked = u < as_f64(joint_p_N)[:, None]
    val = valid_NTVM & ~masked[:, None, :, None]
    x = np.where(val[:, None], x_NCTVM, np.float32(0.0))

    r = kernel // 2
    sigma = as_f64(sigma_N)
    on = sigma > 0.0
    taps = np.arange(-r, r + 1)
    safe = np.where(on, sigma, 1.0)
    g = np.exp(-(taps * taps)[None, :] / (2.0 * safe * safe)[:, None]).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (r, r), (0, 0), (0, 0)))
    vp = np.pad(val, ((0, 0), (r, r), (0, 0), (0, 0)))
    num = np.zeros(x.shape, np.float32)
    den = np.zeros(val.shape, np.float32)
    for j, k in enumerate(taps):
        vk = vp[:, r + k : r + k + t]
        gk = g[:, j, None, None, None]
        num = num + gk[:, None] * xp[:, :, r + k : r + k + t] * vk[:, None]
        den = den + gk * vk
    one, zero = np.float32(1.0), np.float32(0.0)
    blurred = np.where(val[:, None], num / np.where(val, den, one)[:, None], zero)
    y = np.where(on[:, None, None, None, None], blurred, x)

    axis = as_i64(axis_N)
    hit = (axis[:, None] == np.arange(c)[None, :])[:, :, None, None, None]
    return np.where(hit, np.float32(0.0), y), val
