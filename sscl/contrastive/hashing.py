"""Counter-based random numbers computed on the device: SplitMix64's finaliser on int64 tensors.

The method needs a few random draws that must be identical on every rank (the shuffle-BN
permutation) and reproducible after a resume (EADM's drops), keyed by a step counter that lives
in a device buffer. Seeding a `torch.Generator` would need that counter on the host, a device
sync every step; hashing (key, index) on the device needs none. SplitMix64 (Steele, Lea, Flood,
OOPSLA 2014) is ``sscl.data.splitmix64``'s torch implementation (wrapping int64 products,
logical shifts emulated by masking).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sscl.data.splitmix64 import GOLDEN_INT, as_int64, mix64_torch, shr_torch, stream_torch

_GOLDEN = as_int64(GOLDEN_INT)


def hash_keys(n: int, key: Tensor, stream: int = 0) -> Tensor:
    """n pseudo-random int64 values for (key, stream), on key's device.

    Args:
        n: how many.
        key: () int64 tensor (e.g. a step counter buffer).
        stream: an independent sub-stream (python int).
    """
    base = mix64_torch(key.to(torch.int64) * _GOLDEN + stream)
    return stream_torch(base, torch.arange(n, device=key.device, dtype=torch.int64))


def hash_uniform(shape: tuple[int, ...], key: Tensor, stream: int = 0) -> Tensor:
    """Uniform float32 draws in [0, 1) of the given shape, for (key, stream)."""
    n = 1
    for s in shape:
        n *= s
    bits = shr_torch(hash_keys(n, key, stream), 40)  # top 24 bits
    return (bits.to(torch.float32) * (1.0 / (1 << 24))).reshape(shape)


def hash_permutation(n: int, key: Tensor, stream: int = 0) -> Tensor:
    """A pseudo-random permutation of range(n) for (key, stream), on key's device (int64)."""
    return torch.argsort(hash_keys(n, key, stream), stable=True)
