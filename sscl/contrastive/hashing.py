"""Counter-based random numbers computed on the device: SplitMix64's finaliser on int64 tensors.

The method needs a few random draws that must be identical on every rank (the shuffle-BN
permutation) and reproducible after a resume (EADM's drops), keyed by a step counter that lives
in a device buffer. Seeding a `torch.Generator` would need that counter on the host, a device
sync every step; hashing (key, index) on the device needs none. SplitMix64 (Steele, Lea, Flood,
OOPSLA 2014) is computed with wrapping int64 products and logical shifts emulated by masking.
"""

from __future__ import annotations

import torch
from torch import Tensor

# SplitMix64's constants as signed int64.
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MUL1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MUL2 = 0x94D049BB133111EB - (1 << 64)


def _shr(x: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def mix64(x: Tensor) -> Tensor:
    """SplitMix64 finaliser, elementwise on an int64 tensor."""
    x = (x ^ _shr(x, 30)) * _MUL1
    x = (x ^ _shr(x, 27)) * _MUL2
    return x ^ _shr(x, 31)


def hash_keys(n: int, key: Tensor, stream: int = 0) -> Tensor:
    """n pseudo-random int64 values for (key, stream), on key's device.

    Args:
        n: how many.
        key: () int64 tensor (e.g. a step counter buffer).
        stream: an independent sub-stream (python int).
    """
    base = mix64(key.to(torch.int64) * _GOLDEN + stream)
    return mix64(base + torch.arange(1, n + 1, device=key.device, dtype=torch.int64) * _GOLDEN)


def hash_uniform(shape: tuple[int, ...], key: Tensor, stream: int = 0) -> Tensor:
    """Uniform float32 draws in [0, 1) of the given shape, for (key, stream)."""
    n = 1
    for s in shape:
        n *= s
    bits = _shr(hash_keys(n, key, stream), 40)  # top 24 bits
    return (bits.to(torch.float32) * (1.0 / (1 << 24))).reshape(shape)


def hash_permutation(n: int, key: Tensor, stream: int = 0) -> Tensor:
    """A pseudo-random permutation of range(n) for (key, stream), on key's device (int64)."""
    return torch.argsort(hash_keys(n, key, stream), stable=True)
