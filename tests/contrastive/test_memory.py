"""The key queue: wrap-around writes, padding and non-finite keys kept out, state in buffers."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from sscl.contrastive import KeyQueue


def _keys(start: int, n: int, dim: int = 4) -> torch.Tensor:
    """Key j carries the value start + j in every component (easy to find in the queue)."""
    return (torch.arange(start, start + n, dtype=torch.float32) + 1).unsqueeze(1).repeat(1, dim)


def _oracle(size: int, dim: int, steps: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """One key at a time into a Python ring buffer."""
    buf, ptr = KeyQueue(size, dim).keys_KD.clone(), 0
    for keys in steps:
        for key in keys:
            buf[ptr] = key
            ptr = (ptr + 1) % size
    return buf, ptr


def test_pointer_wraps_when_queue_is_not_a_multiple_of_the_batch():
    q = KeyQueue(size=5, dim=4)
    steps = [_keys(0, 3), _keys(3, 3), _keys(6, 3)]
    ptrs = []
    for keys in steps:
        assert q.enqueue(keys) == 3
        ptrs.append(int(q.ptr))
    assert ptrs == [3, 1, 4]
    want, want_ptr = _oracle(5, 4, steps)
    assert torch.equal(q.keys_KD, want) and int(q.ptr) == want_ptr
    # Slots 0..4 now hold keys 5, 6, 7, 8, 4 (key j has value j + 1).
    assert q.keys_KD[:, 0].tolist() == [6.0, 7.0, 8.0, 9.0, 5.0]
    assert int(q.filled) == 5


def test_more_keys_than_slots_keep_the_newest_like_single_writes():
    q = KeyQueue(size=4, dim=4)
    steps = [_keys(0, 3), _keys(3, 9)]
    for keys in steps:
        q.enqueue(keys)
    want, want_ptr = _oracle(4, 4, steps)
    assert torch.equal(q.keys_KD, want) and int(q.ptr) == want_ptr
    assert sorted(q.keys_KD[:, 0].tolist()) == [9.0, 10.0, 11.0, 12.0]


def test_padding_items_never_enter():
    q = KeyQueue(size=8, dim=4)
    keys = _keys(0, 5)
    keys[1] = -7.0  # padding items carry a marker value
    keys[4] = -7.0
    assert q.enqueue(keys, torch.tensor([1.0, 0.0, 1.0, 0.5, 0.0])) == 3
    assert int(q.ptr) == 3 and int(q.filled) == 3
    assert q.keys_KD[:3, 0].tolist() == [1.0, 3.0, 4.0]
    assert not torch.any(q.keys_KD == -7.0)
    assert q.valid_mask().tolist() == [True] * 3 + [False] * 5


def test_non_finite_keys_never_enter():
    q = KeyQueue(size=4, dim=4)
    keys = _keys(0, 3)
    keys[1, 2] = float("nan")
    assert q.enqueue(keys) == 2
    assert torch.isfinite(q.keys_KD).all()


def test_queue_state_is_in_the_state_dict_and_restores():
    q = KeyQueue(size=6, dim=4, seed=1)
    q.enqueue(_keys(0, 4))
    state = q.state_dict()
    assert set(state) == {"keys_KD", "ptr", "filled"}
    r = KeyQueue(size=6, dim=4, seed=2)
    r.load_state_dict(state)
    assert torch.equal(r.keys_KD, q.keys_KD) and int(r.ptr) == 4 and int(r.filled) == 4
    # The initial keys are unit vectors from the seed.
    fresh = KeyQueue(size=6, dim=4, seed=1)
    assert torch.allclose(fresh.keys_KD.norm(dim=1), torch.ones(6))
    assert torch.equal(fresh.keys_KD, KeyQueue(size=6, dim=4, seed=1).keys_KD)


def test_a_queue_that_does_not_advance_rewrites_the_same_slots():
    # The reference code's snippet queue: the last step's keys in the first slots, the initial
    # random keys everywhere else, for the whole run.
    q = KeyQueue(6, 4, seed=1)
    initial = q.keys_KD.clone()
    first = F.normalize(torch.randn(3, 4), dim=1)
    second = F.normalize(torch.randn(2, 4), dim=1)
    assert q.enqueue(first, advance=False) == 3
    assert int(q.ptr) == 0 and int(q.filled) == 3
    assert q.enqueue(second, advance=False) == 2
    assert torch.equal(q.keys_KD[:2], second) and torch.equal(q.keys_KD[2], first[2])
    assert torch.equal(q.keys_KD[3:], initial[3:])
    assert int(q.ptr) == 0 and int(q.filled) == 3
