"""Device-side augmentation as torch ops: per-sample linear maps and counter-hash Gaussian noise.

The work that pays on an accelerator (ARCHITECTURE.md, data flow step 3): rotation/shear as one
batched matmul over every point, and Gaussian noise, run after either engine's iterator on
whatever device the batch lives on. The ops are torch twins of ``sscl.data.augment``'s
``linear_transform`` and ``gaussian_noise`` (tested against their numpy references on the CPU),
so a view augmented here equals the one the workers would have made, up to float32 rounding:
the noise uses the same splitmix64 counter hash (``sscl.data.splitmix64.stream_torch``) and
normal quantile table (``augment.noise_table``).

Typical use after the iterator (parameters from ``augment.params_for(seed, epoch,
batch["position"], cfg)``, i.e. from (seed, epoch, global index) as everywhere else)::

    x = apply_view(batch["query"].cuda(), batch["query_valid"].cuda(), params.query)
"""

from __future__ import annotations

import numpy as np
import torch

from sscl.data.augment.noise_table import NORMAL_TABLE
from sscl.data.splitmix64 import stream_torch


def linear_transform(
    x_NCTVM: torch.Tensor, valid_NTVM: torch.Tensor, mat_NCC: torch.Tensor
) -> torch.Tensor:
    """y = A_n x for every point of sample n (rotation @ shear); invalid points written as 0.

    Args:
        x_NCTVM: (N, C, T, V, M) float tensor.
        valid_NTVM: (N, T, V, M) bool.
        mat_NCC: (N, 3, 3) (or (N, C, C)) maps; a 2-channel layout uses the top-left 2x2 block.

    Returns:
        (N, C, T, V, M) tensor of x's dtype.
    """
    c = x_NCTVM.shape[1]
    a = torch.as_tensor(mat_NCC, device=x_NCTVM.device)[:, :c, :c].to(x_NCTVM.dtype)
    y = torch.einsum("nck,nktvm->nctvm", a, x_NCTVM)
    return torch.where(valid_NTVM[:, None], y, torch.zeros((), dtype=y.dtype, device=y.device))


def _normals(seed_N1: torch.Tensor, points: int, channels: int) -> torch.Tensor:
    """(N, channels, points) float64 standard normals, as ``augment.gaussian_noise`` makes them.

    Normal ``3p + c`` (channel c of point p) is 16-bit field c (bits 16c .. 16c + 15) of
    splitmix64 output p, an index into augment's 65,536-entry table of normal quantiles at bin
    centres (so clipped at +-4.32 sigma).
    """
    dev = seed_N1.device
    table = torch.from_numpy(NORMAL_TABLE).to(dev, torch.float64)
    p = torch.arange(points, device=dev, dtype=torch.int64)[None, :, None]
    z = stream_torch(seed_N1[:, :, None], p)  # (N, points, 1)
    shift = torch.tensor([0, 16, 32], device=dev, dtype=torch.int64)[:channels]
    idx = (z >> shift) & 0xFFFF  # fields below bit 48: the arithmetic shift is harmless
    return table[idx].transpose(1, 2)


def gaussian_noise(x_NCTVM: torch.Tensor, valid_NTVM: torch.Tensor, std_N, seed_N) -> torch.Tensor:
    """Add N(0, std_n^2) noise to valid points, with augment's counter-hash normals.

    Args:
        x_NCTVM: (N, C, T, V, M) float tensor.
        valid_NTVM: (N, T, V, M) bool.
        std_N: (N,) standard deviations (0: unchanged).
        seed_N: (N,) uint64 seeds (numpy array or int64 tensor holding the same bits).

    Returns:
        (N, C, T, V, M) tensor of x's dtype; invalid points 0.
    """
    n, c, t, v, m = x_NCTVM.shape
    dev = x_NCTVM.device
    if isinstance(seed_N, np.ndarray):
        seed_N = torch.from_numpy(np.asarray(seed_N, np.uint64).view(np.int64))
    z_NCTVM = _normals(seed_N.to(dev, torch.int64)[:, None], t * v * m, c).reshape(n, c, t, v, m)
    std = torch.as_tensor(std_N, device=dev, dtype=torch.float64).reshape(n, 1, 1, 1, 1)
    y = (x_NCTVM.to(torch.float64) + std * z_NCTVM).to(x_NCTVM.dtype)
    return torch.where(valid_NTVM[:, None], y, torch.zeros((), dtype=y.dtype, device=dev))


def apply_view(x_NCTVM: torch.Tensor, valid_NTVM: torch.Tensor, view) -> torch.Tensor:
    """The linear map then the noise of one ``augment.ViewParams`` (crop/flip/masks excluded)."""
    y = linear_transform(x_NCTVM, valid_NTVM, torch.from_numpy(np.asarray(view.mat)))
    if np.any(view.noise_std > 0):
        y = gaussian_noise(y, valid_NTVM, view.noise_std, view.noise_seed)
    return y
