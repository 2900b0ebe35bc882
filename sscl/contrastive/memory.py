"""The key queue of MoCo (He et al., CVPR 2020): a ring buffer of past L2-normalised keys.

Keys, write pointer and fill count are registered buffers, so they travel with the module's
state dict into checkpoints. Writes wrap around the end of the buffer, so any number of keys per
step works (the queue size need not be a multiple of the global batch, unlike MoCo's reference
code, which asserts it), and a step that brings more keys than the queue holds keeps the newest.
The queue starts with random unit keys from an explicit generator, as MoCo does; `filled` says
how many slots hold real keys, so neighbour mining can skip the random ones.

Distributed use: hand `enqueue` the keys of ALL ranks concatenated in rank order (the same tensor
on every rank), so every rank's queue stays identical without broadcasting it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class KeyQueue(nn.Module):
    """Ring buffer of `size` unit keys of width `dim`.

    Buffers (all in the state dict):
        keys_KD: (size, dim) float32 keys, L2-normalised.
        ptr: () int64, the slot the next key goes to.
        filled: () int64, slots holding real (enqueued) keys, at most `size`.

    Args:
        size: K, number of keys held.
        dim: D, key width.
        seed: seeds the random initial keys.
    """

    def __init__(self, size: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("keys_KD", F.normalize(torch.randn(size, dim, generator=gen), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.int64))
        self.register_buffer("filled", torch.zeros((), dtype=torch.int64))

    @property
    def size(self) -> int:
        return self.keys_KD.shape[0]

    @torch.no_grad()
    def enqueue(self, keys_ND: Tensor, weight_N: Tensor | None = None,
                advance: bool = True) -> int:
        """Write keys at the pointer, wrapping around; padding items (weight 0) and non-finite
        keys are skipped (one NaN key would poison every later logit).

        Args:
            keys_ND: (N, D) keys, in the order they enter (rank order for gathered keys).
            weight_N: (N,) item weights; items with weight 0 never enter. None = all enter.
            advance: move the pointer past the new keys (a queue). False keeps it where it is,
                so the next call overwrites the same slots: the snippet queue of the reference
                code, whose pointer is never advanced (METHOD.md section 7).

        Returns:
            The number of keys written.
        """
        keep_N = torch.isfinite(keys_ND).all(dim=1)
        if weight_N is not None:
            keep_N &= weight_N > 0
        keys_ND = keys_ND[keep_N]  # a host sync (the count), as MoCo's int(queue_ptr) is
        n = keys_ND.shape[0]
        if n == 0:
            return 0
        K = self.size
        if n > K:  # only the newest K survive a full lap; write just those
            keys_ND = keys_ND[n - K:]
        m = keys_ND.shape[0]
        # Key j of the step goes to slot (ptr + j) % K, as if written one at a time.
        slots = (self.ptr + (n - m) + torch.arange(m, device=self.ptr.device)) % K
        self.keys_KD[slots.to(self.keys_KD.device)] = keys_ND.to(self.keys_KD.dtype)
        if advance:
            self.ptr.copy_((self.ptr + n) % K)
            self.filled.copy_(torch.clamp(self.filled + n, max=K))
        else:
            self.filled.copy_(torch.clamp(torch.maximum(self.filled, self.ptr + m), max=K))
        return n

    def valid_mask(self) -> Tensor:
        """(K,) bool: True where a slot holds an enqueued key (not an initial random one).

        Slots fill from 0 upwards until the first wrap, so the first `filled` slots are real.
        """
        return torch.arange(self.size, device=self.keys_KD.device) < self.filled
