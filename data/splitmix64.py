"""splitmix64, the counter-based hash behind every seeded draw: one implementation per runtime.

splitmix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014;
Vigna's reference ``splitmix64.c``, https://prng.di.unimi.it/splitmix64.c) advances a 64-bit
state by ``GOLDEN`` and returns the finaliser ``mix64`` of it, so output ``k`` (0-based) of the
stream seeded with ``s`` is ``mix64(s + (k + 1) * GOLDEN)`` (mod 2**64): any draw is addressable
by a counter, without state. The project keys draws by (seed, epoch, sample index) this way
(``sscl.data.sampling``, ``sscl.data.augment``, ``sscl.contrastive.hashing``).

Runtimes, each defined here once and imported everywhere else:

- compiled (Numba, inlined into the augmentation and sampling kernels): :func:`mix64_jit`,
  :func:`stream_jit`, :func:`uniform_jit`;
- numpy (uint64 arrays, broadcasting; the kernels' twins): :func:`mix64_np`, :func:`stream_np`;
- Python ints (one key per batch, no array overhead): :func:`mix64_int`;
- torch (int64 tensors on any device; two's-complement wrap-around gives the uint64 bits and
  right shifts are masked to be logical): :func:`mix64_torch`, :func:`stream_torch`.

``tests/data/test_splitmix64.py`` checks each against the published reference outputs.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit

GOLDEN_INT = 0x9E3779B97F4A7C15
MUL1_INT = 0xBF58476D1CE4E5B9
MUL2_INT = 0x94D049BB133111EB
MASK64 = (1 << 64) - 1

GOLDEN = np.uint64(GOLDEN_INT)
_MUL1 = np.uint64(MUL1_INT)
_MUL2 = np.uint64(MUL2_INT)
#: 2**-53: the top 53 bits of an output as a float64 in [0, 1).
INV_2_53 = 1.0 / 9007199254740992.0

_JIT = {"cache": True, "nogil": True, "fastmath": False}


# --------------------------------------------------------------------------- compiled


@njit(**_JIT)
def mix64_jit(z):
    """The splitmix64 finaliser of one uint64."""
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


@njit(**_JIT)
def stream_jit(seed, k):
    """Output ``k`` (0-based) of the stream seeded with ``seed`` (uint64)."""
    return mix64_jit(seed + (np.uint64(k) + np.uint64(1)) * GOLDEN)


@njit(**_JIT)
def uniform_jit(seed, k):
    """Output ``k`` of stream ``seed`` as a float64 in [0, 1) (its top 53 bits)."""
    return np.float64(np.int64(stream_jit(seed, k) >> np.uint64(11))) * INV_2_53


# --------------------------------------------------------------------------- numpy


def mix64_np(z: np.ndarray) -> np.ndarray:
    """The finaliser on a uint64 array (wraps modulo 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * _MUL1
    z = (z ^ (z >> np.uint64(27))) * _MUL2
    return z ^ (z >> np.uint64(31))


def stream_np(seed: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Outputs ``k`` (integer array, broadcast) of the streams seeded with ``seed`` (uint64)."""
    with np.errstate(over="ignore"):
        return mix64_np(seed + (np.asarray(k).astype(np.uint64) + np.uint64(1)) * GOLDEN)


# --------------------------------------------------------------------------- Python int


def mix64_int(z: int) -> int:
    """The finaliser of one Python int in [0, 2**64)."""
    z = ((z ^ (z >> 30)) * MUL1_INT) & MASK64
    z = ((z ^ (z >> 27)) * MUL2_INT) & MASK64
    return z ^ (z >> 31)


# --------------------------------------------------------------------------- torch


def as_int64(u: int) -> int:
    """The int64 holding the bits of the uint64 ``u``."""
    return u - (1 << 64) if u >= 1 << 63 else u


def shr_torch(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def mix64_torch(x: torch.Tensor) -> torch.Tensor:
    """The finaliser, elementwise on an int64 tensor holding uint64 bits."""
    x = (x ^ shr_torch(x, 30)) * as_int64(MUL1_INT)
    x = (x ^ shr_torch(x, 27)) * as_int64(MUL2_INT)
    return x ^ shr_torch(x, 31)


def stream_torch(seed: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Outputs ``k`` (int64 tensor, broadcast) of the streams seeded with ``seed`` (int64 bits)."""
    return mix64_torch(seed + (k + 1) * as_int64(GOLDEN_INT))
