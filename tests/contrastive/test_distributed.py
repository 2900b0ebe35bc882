"""Two gloo processes fill the queues with the keys of one process with the same global batch.

The one-process run uses bn_splits=2, so its batch-norm groups (query side: each rank's items;
key side: the shuffle-BN slices of one shared permutation) are the two ranks' groups. Two SGD
steps with padding and, in the second, nearest-neighbour mining; the rvtclr config adds the
second key batch (other tempo) and the extreme view. Both run in float64 (the worker's docstring
says why float32 could not be compared across ISAs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sscl.contrastive.collectives import encode_keys
from sscl.contrastive.hashing import hash_permutation

WORKER = Path(__file__).resolve().parents[1] / "helpers" / "dist_worker.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(WORKER), str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def assert_same_computation(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """Equal up to float64 rounding: the two runs add the same terms in other orders (rank
    halves, all-reduce), a few thousand operations per element, so their difference stays
    many orders below 1e-12 of the tensor's scale (measured: at most 6e-15); a real mismatch
    (a misplaced key, a wrong BN group) shows at 1e-3 or more."""
    scale = want.abs().max().clamp(min=1e-30)
    err = (got - want).norm() / want.norm().clamp(min=1e-30)
    assert err < 1e-12, f"{what}: relative norm-wise difference {err:.2e}"
    torch.testing.assert_close(got, want, atol=1e-12 * float(scale), rtol=0, msg=what)


@pytest.mark.slow
@pytest.mark.isa
@pytest.mark.parametrize("name", ["skeletonclr", "rvtclr", "skeletonclr_sampled"])
def test_two_ranks_fill_the_queues_like_one_process(runs, name):
    ranks = torch.load(runs / f"{name}_ranks.pt", weights_only=True)
    single = torch.load(runs / f"{name}_single.pt", weights_only=True)
    assert set(ranks) == set(single)
    for key in ("queue.ptr", "queue.filled", "snippet_queue.ptr", "snippet_queue.filled", "calls"):
        assert torch.equal(ranks[key], single[key]), key
    assert int(single["queue.ptr"]) == 10  # two steps of 6 items, one padding each: 10 keys
    assert single["grad1"].dtype == torch.float64
    for key in ("queue.keys_KD", "snippet_queue.keys_KD"):
        assert_same_computation(ranks[key], single[key], key)
    # The loss and the DDP-averaged gradient are those of the global weighted mean.
    for step in range(2):
        assert_same_computation(ranks[f"loss{step}"], single[f"loss{step}"], f"loss{step}")
        assert_same_computation(ranks[f"grad{step}"], single[f"grad{step}"], f"grad{step}")


@pytest.mark.slow
def test_one_bn_group_is_not_what_two_ranks_do(runs):
    # The control: without the emulated grouping the keys differ, so the match above is not
    # vacuous.
    ranks = torch.load(runs / "skeletonclr_ranks.pt", weights_only=True)
    one = torch.load(runs / "skeletonclr_onegroup.pt", weights_only=True)
    assert (ranks["queue.keys_KD"][:10] - one["queue.keys_KD"][:10]).abs().max() > 1e-3


def test_shuffle_bn_groups_follow_the_shared_permutation():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(3)
    x = 1.0 + torch.randn(6, 3)

    def fn(t):
        return {"y": bn(t)}

    key = torch.tensor(7)
    two = encode_keys(fn, x, splits=2, shuffle=True, key=key)["y"]
    perm = hash_permutation(6, key)
    assert sorted(perm.tolist()) == list(range(6)) and perm.tolist() != list(range(6))
    for g in range(2):  # items perm[3g : 3g + 3] were normalised together
        group = perm[3 * g:3 * g + 3]
        torch.testing.assert_close(two[group], bn(x[group]))
    local = encode_keys(fn, x, splits=2, shuffle=False, key=key)["y"]
    torch.testing.assert_close(local[:3], bn(x[:3]))
    assert not torch.allclose(local, two, atol=1e-3)
