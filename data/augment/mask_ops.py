"""Masks, blur and tempo: the extreme view's joint mask + temporal blur + axis mask, and the
standalone tempo change; each a compiled wrapper beside its numpy twin (``<op>_ref``).

AimCLR's Gaussian blur (kernel 15, sigma in [0.1, 2]; normalised here over the valid taps) and
axis mask, a per-joint mask, and RVTCLR's playback tempo (1x/2x).
"""

from __future__ import annotations

import numpy as np

from sscl.data.augment.arrays import as_f64, as_i64, check_x, out_buffer
from sscl.data.augment.groups import BlurSpec, SampleTail
from sscl.data.augment.kernel_ops import mask_blur_kernel, tempo_kernel
from sscl.data.splitmix64 import INV_2_53, stream_np


def mask_blur(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    joint_p_N: np.ndarray,
    joint_seed_N: np.ndarray,
    sigma_N: np.ndarray,
    axis_N: np.ndarray,
    kernel: int = 15,
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Joint mask, then temporal Gaussian blur, then axis mask (the extreme view's tail).

    Joint mask: joint v of sample n is zeroed and invalidated in every frame and person when
    output v of splitmix64 stream joint_seed_N[n] (as a uniform) is below joint_p_N[n].
    Blur: weights exp(-k^2 / (2 sigma^2)), k in [-kernel//2, kernel//2], normalised over the
    in-range valid taps, in float32 (a constant stays constant; invalid points stay 0; sigma 0:
    no blur).
    Axis mask: coordinate axis_N[n] is zeroed for every point (-1: none; joints stay valid).
    Each op alone is this function with the other two at their neutral value (p 0, sigma 0,
    axis -1).

    Args:
        x_NCTVM: (N, C, T, V, M) float32; valid_NTVM: (N, T, V, M) bool.
        joint_p_N, joint_seed_N, sigma_N, axis_N: (N,) per-sample parameters.
        kernel: odd blur length (AimCLR: 15).
        out, out_valid: optional buffers (must not alias the inputs).

    Returns:
        (out, out_valid).
    """
    check_x(x_NCTVM, valid_NTVM)
    out = out_buffer(out, x_NCTVM.shape, np.float32, "out")
    out_valid = out_buffer(out_valid, valid_NTVM.shape, np.bool_, "out_valid")
    np.copyto(out, np.where(valid_NTVM[:, None], x_NCTVM, np.float32(0.0)))  # the blur needs 0s
    out_valid[:] = valid_NTVM
    tails = SampleTail(
        joint_p=as_f64(joint_p_N),
        joint_seed=np.ascontiguousarray(joint_seed_N, np.uint64),
        sigma=as_f64(sigma_N),
        axis=as_i64(axis_N),
    )
    mask_blur_kernel(out, out_valid, tails, BlurSpec(radius=kernel // 2))
    return out, out_valid


def mask_blur_ref(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    joint_p_N: np.ndarray,
    joint_seed_N: np.ndarray,
    sigma_N: np.ndarray,
    axis_N: np.ndarray,
    kernel: int = 15,
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`mask_blur` (vectorised over the batch; a loop over the taps)."""
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


def tempo_change(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    factor_N: np.ndarray,
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Play sample n at factor_N[n] x speed (RVTCLR: 1 or 2): out[t] = x[t * f]; frames whose
    source lies past T are zero and invalid. (In ``two_view`` the tempo widens the crop instead,
    so a 2x view still fills L frames.)

    Returns:
        (out (N, C, T, V, M) float32, out_valid (N, T, V, M) bool).
    """
    check_x(x_NCTVM, valid_NTVM)
    out = out_buffer(out, x_NCTVM.shape, np.float32, "out")
    out_valid = out_buffer(out_valid, valid_NTVM.shape, np.bool_, "out_valid")
    n, c, t = x_NCTVM.shape[:3]
    tempo_kernel(
        x_NCTVM.reshape(n, c, t, -1),
        valid_NTVM.reshape(n, t, -1),
        as_i64(factor_N),
        out.reshape(n, c, t, -1),
        out_valid.reshape(n, t, -1),
    )
    return out, out_valid


def tempo_change_ref(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    factor_N: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`tempo_change`."""
    n, _, t, _, _ = x_NCTVM.shape
    src = np.arange(t)[None, :] * as_i64(factor_N)[:, None]
    inside = src < t
    rows = np.arange(n)[:, None]
    s = np.minimum(src, t - 1)
    val = valid_NTVM[rows, s] & inside[:, :, None, None]
    x = x_NCTVM.transpose(0, 2, 1, 3, 4)[rows, s].transpose(0, 2, 1, 3, 4)
    return np.where(val[:, None], x, np.float32(0.0)), val

