"""Each runtime's splitmix64 (``sscl.data.splitmix64``) against published reference outputs.

The vector: the first outputs of Vigna's reference ``splitmix64.c``
(https://prng.di.unimi.it/splitmix64.c) for the seed 1477776061723855037, as listed in the
``reference`` test of the rand_xoshiro crate,
https://github.com/rust-random/rngs/blob/master/rand_xoshiro/src/splitmix64.rs ("These values
were produced with the reference implementation"). Output k (0-based) of that generator is
``mix64(seed + (k + 1) * GOLDEN)``, the stream every runtime here computes.
"""

from __future__ import annotations

import numpy as np
import torch

from sscl.data import splitmix64 as S

SEED = 1477776061723855037
EXPECTED = [1985237415132408290, 2979275885539914483, 13511426838097143398,
            8488337342461049707, 15141737807933549159]
K = np.arange(len(EXPECTED))


def test_numpy():
    assert S.stream_np(np.uint64(SEED), K).tolist() == EXPECTED
    z = (np.uint64(SEED) + (K.astype(np.uint64) + np.uint64(1)) * S.GOLDEN)
    assert S.mix64_np(z).tolist() == EXPECTED


def test_compiled():
    assert [int(S.stream_jit(np.uint64(SEED), k)) for k in range(len(EXPECTED))] == EXPECTED
    # uniform_jit is the top 53 bits of the same outputs.
    want = [(e >> 11) * 2.0**-53 for e in EXPECTED]
    assert [S.uniform_jit(np.uint64(SEED), k) for k in range(len(EXPECTED))] == want


def test_python_int():
    got = [S.mix64_int((SEED + (k + 1) * S.GOLDEN_INT) & S.MASK64) for k in range(len(EXPECTED))]
    assert got == EXPECTED


def test_torch():
    got = S.stream_torch(torch.tensor(S.as_int64(SEED)), torch.from_numpy(K))
    assert [v % 2**64 for v in got.tolist()] == EXPECTED
