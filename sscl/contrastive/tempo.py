"""RVTCLR's relative-tempo clip pairs (Zhu et al., ICCV 2023; the SnipCLR reference's base).

Each item plays at 1x or 2x. From a view of L frames the 1x clip is frames 0 .. L/2 - 1 and the
2x clip is every second frame 0, 2, .., L - 2; both have L // 2 frames. The query and one key
play at the item's tempo, a second key at the other tempo: that key is an extra positive of the
global InfoNCE, the tempo head learns to rank the same-tempo key above it, and (as in the
reference code) the snippet branch matches the query against it and it is the key that enters
the queues.

The reference draws the 2x half of the batch with torch.randperm (global RNG, rank-dependent).
Here an item's tempo is a hash of (seed, epoch, position), its global sample index, so the
choice is the same on any number of processes and after a resume, and needs no state; about
half the items of a batch play at 2x.
"""

from __future__ import annotations

import torch
from torch import Tensor


def tempo_is_2x(position_B: Tensor, epoch: int, seed: int) -> Tensor:
    """Which items play at 2x: bit 16 of a multiplicative hash of (seed, epoch, position).

    Args:
        position_B: (B,) int64 global sample indices (the loader's `position`).
        epoch: the epoch.
        seed: the method's seed.

    Returns:
        (B,) bool.
    """
    # Knuth's multiplicative constant; positions < 2**32 keep the product inside int64.
    h = position_B.to(torch.int64) * 2654435761 + (epoch * 1000003 + seed * 7919) % (1 << 31)
    return ((h >> 16) & 1).bool()


def tempo_clips(x_BCLVM: Tensor, two_x_B: Tensor) -> tuple[Tensor, Tensor]:
    """The item-tempo clip and the other-tempo clip of a view.

    Args:
        x_BCLVM: (B, C, L, V, M) view at 1x.
        two_x_B: (B,) bool, items whose tempo is 2x.

    Returns:
        (own, other), each (B, C, L // 2, V, M): `own` at the item's tempo, `other` at the other.
    """
    half = x_BCLVM.shape[2] // 2
    slow = x_BCLVM[:, :, :half]
    fast = x_BCLVM[:, :, 0:2 * half:2]
    sel = two_x_B.view(-1, 1, 1, 1, 1)
    return torch.where(sel, fast, slow), torch.where(sel, slow, fast)
