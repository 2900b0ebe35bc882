"""Per-point ops: the linear map (rotation @ shear) and Gaussian noise, each a compiled wrapper
beside its numpy twin (``<op>_ref``), and the numpy twin of the left/right flip with person swap
(compiled only inside the composed op's crop, ``kernel_crop.crop_sample``).

AimCLR's shear and rotation and its Gaussian noise (std 0.01 at probability 0.5); the noise is
a counter hash of (seed, point) (``noise_table``), so every engine draws the same normals.
"""

from __future__ import annotations

import numpy as np

from sscl.data.augment.arrays import as_f64, as_i64, check_points, out_buffer
from sscl.data.augment.groups import NoiseDraws, check_group
from sscl.data.augment.kernel_ops import linear_kernel, noise_kernel
from sscl.data.augment.noise_table import normals_ref


def linear_transform(
    x_NCTVM: np.ndarray, valid_NTVM: np.ndarray, mat_NCC: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample linear map of every point, y = A x (rotation, shear, or their product).

    Args:
        x_NCTVM: (N, C, T, V, M) float32.
        valid_NTVM: (N, T, V, M) bool; invalid points are written as 0.
        mat_NCC: (N, 3, 3) matrices (the top-left C x C block is used).
        out: optional (N, C, T, V, M) float32 buffer (must not alias x).

    Returns:
        (N, C, T, V, M) float32.
    """
    check_points(x_NCTVM, valid_NTVM, "x", "NCTVM")
    out = out_buffer(out, x_NCTVM.shape, np.float32, "out")
    n, c = x_NCTVM.shape[:2]
    linear_kernel(
        x_NCTVM.reshape(n, c, -1), valid_NTVM.reshape(n, -1), as_f64(mat_NCC), out.reshape(n, c, -1)
    )
    return out


def linear_transform_ref(
    x_NCTVM: np.ndarray, valid_NTVM: np.ndarray, mat_NCC: np.ndarray
) -> np.ndarray:
    """Numpy twin of :func:`linear_transform` (same summation order)."""
    c_n = x_NCTVM.shape[1]
    a = as_f64(mat_NCC)[:, :c_n, :c_n, None, None, None]
    x = x_NCTVM.astype(np.float64)
    y = np.zeros(x.shape)
    for k in range(c_n):
        y = y + a[:, :, k] * x[:, k][:, None]
    return np.where(valid_NTVM[:, None], y, 0.0).astype(np.float32)


def flip_swap_ref(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    perm_V: np.ndarray,
    flip_N: np.ndarray,
    swap_N: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Left/right flip (joint v takes joint perm[v], ``Layout.flip_permutation()``) where flip_N,
    and person swap (0 <-> 1, M == 2 only; a no-op for M == 1) where swap_N: the composed op's
    gather (``kernel_crop.crop_sample``) as a step of its oracle (``compose.two_view_ref``).

    Args:
        x_NCTVM: (N, C, T, V, M) float32; valid_NTVM: (N, T, V, M) bool.
        perm_V: (V,) int joint permutation; flip_N, swap_N: (N,) bool.

    Returns:
        (x, valid) flipped and swapped.
    """
    f = np.asarray(flip_N, bool)
    x = np.where(f[:, None, None, None, None], x_NCTVM[:, :, :, as_i64(perm_V)], x_NCTVM)
    val = np.where(f[:, None, None, None], valid_NTVM[:, :, as_i64(perm_V)], valid_NTVM)
    if x.shape[-1] == 2:
        s = np.asarray(swap_N, bool)
        x = np.where(s[:, None, None, None, None], x[..., ::-1], x)
        val = np.where(s[:, None, None, None], val[..., ::-1], val)
    return np.ascontiguousarray(x), np.ascontiguousarray(val)


def gaussian_noise(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    std_N: np.ndarray,
    seed_N: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Add N(0, std^2) noise to valid points; invalid points are written as 0.

    The normals are made in the kernel from a counter hash: channel c of point p = (t V + v) M + m
    of sample n gets normal 3p + c of stream seed_N[n]: 16-bit field c of splitmix64 output p
    indexes a 65,536-entry table of normal quantiles at bin centres (so draws are clipped at
    +-4.32 sigma), and the noise is a pure function of (seed, point), the same in every engine
    and bit-identical in the numpy twin. Cost: one 64-bit hash per point and three table loads;
    bench/bench_augment.py compares it with drawing the normals from ``np.random.Generator`` as
    the AimCLR feeder does.

    Args:
        x_NCTVM: (N, C, T, V, M) float32; valid_NTVM: (N, T, V, M) bool.
        std_N: (N,) noise std (0: copy); seed_N: (N,) uint64.
        out: optional buffer (must not alias x).

    Returns:
        (N, C, T, V, M) float32.
    """
    check_points(x_NCTVM, valid_NTVM, "x", "NCTVM")
    out = out_buffer(out, x_NCTVM.shape, np.float32, "out")
    n, c = x_NCTVM.shape[:2]
    noise = NoiseDraws(std=as_f64(std_N),
                       seed=np.ascontiguousarray(seed_N, np.uint64))
    check_group(noise, {"N": n})
    noise_kernel(x_NCTVM.reshape(n, c, -1), valid_NTVM.reshape(n, -1), noise,
                 out.reshape(n, c, -1))
    return out


def gaussian_noise_ref(
    x_NCTVM: np.ndarray, valid_NTVM: np.ndarray, std_N: np.ndarray, seed_N: np.ndarray
) -> np.ndarray:
    """Numpy twin of :func:`gaussian_noise` (the same counter-hash normals, vectorised)."""
    n, c, t, v, m = x_NCTVM.shape
    z = normals_ref(seed_N, t * v * m)[:, :c].reshape(n, c, t, v, m)
    std = as_f64(std_N)[:, None, None, None, None]
    y = np.where(std > 0.0, x_NCTVM.astype(np.float64) + std * z, x_NCTVM.astype(np.float64))
    return np.where(valid_NTVM[:, None], y, 0.0).astype(np.float32)

