"""Tests of sscl.data.sampling: window sets, epoch sharding, resume, stitching, label fractions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscl.data.sampling import (
    EpochPlan,
    finetune_windows,
    label_fraction_subset,
    pretrain_windows,
    stitch,
)
from sscl.errors import ConfigError

plans = st.builds(
    EpochPlan,
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 1000),
    num_items=st.integers(1, 300),
    world_size=st.integers(1, 8),
    batch_size=st.integers(1, 16),
    shuffle=st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(plans)
def test_shards_cover_epoch_once_with_zero_weight_padding(plan: EpochPlan):
    shards = [plan.shard(r) for r in range(plan.world_size)]
    assert {s.num_steps for s in shards} == {plan.num_steps}
    positions = np.concatenate([s.positions for s in shards])
    assert np.array_equal(np.sort(positions), np.arange(plan.padded_size))
    items = np.concatenate([s.items for s in shards])
    weights = np.concatenate([s.weights for s in shards])
    real = items[weights == 1]
    assert np.array_equal(np.sort(real), np.arange(plan.num_items))
    assert set(np.unique(weights)) <= {0.0, 1.0}
    assert (weights == 0).sum() == plan.padded_size - plan.num_items < plan.global_batch


@settings(max_examples=40, deadline=None)
@given(plans, st.integers(1, 4))
def test_same_global_batches_for_one_and_n_processes(plan: EpochPlan, factor: int):
    """W ranks with batch B and one process with batch W*B see the same samples per step."""
    single = EpochPlan(plan.seed, plan.epoch, plan.num_items, 1, plan.global_batch, plan.shuffle)
    many = [plan.shard(r) for r in range(plan.world_size)]
    one = single.shard(0)
    for step in range(plan.num_steps):
        joined = np.concatenate([s.batch(step)[0] for s in many])
        assert np.array_equal(np.sort(joined), np.sort(one.batch(step)[0]))
        joined_items = np.concatenate([s.batch(step)[1] for s in many])
        assert np.array_equal(np.sort(joined_items), np.sort(one.batch(step)[1]))


@settings(max_examples=40, deadline=None)
@given(plans, st.data())
def test_resume_equals_uninterrupted_run(plan: EpochPlan, data):
    step = data.draw(st.integers(0, plan.num_steps))
    rank = data.draw(st.integers(0, plan.world_size - 1))
    full = plan.shard(rank)
    resumed = plan.shard(rank, position=step * plan.global_batch)
    assert resumed.first_step == step
    assert resumed.num_steps == plan.num_steps - step
    for i in range(resumed.num_steps):
        for a, b in zip(resumed.batch(i), full.batch(step + i)):
            assert np.array_equal(a, b)


def test_shuffle_depends_on_seed_and_epoch_only():
    a = EpochPlan(1, 3, 50, 2, 4).items()[0]
    assert np.array_equal(a, EpochPlan(1, 3, 50, 4, 2).items()[0][: a.size])
    assert not np.array_equal(a, EpochPlan(1, 4, 50, 2, 4).items()[0])
    assert not np.array_equal(a, EpochPlan(2, 3, 50, 2, 4).items()[0])
    assert np.array_equal(EpochPlan(1, 3, 50, 2, 4, shuffle=False).order(), np.arange(50))


def test_bad_shard_arguments():
    plan = EpochPlan(0, 0, 10, 2, 3)
    with pytest.raises(ConfigError, match="rank"):
        plan.shard(2)
    with pytest.raises(ConfigError, match="multiple"):
        plan.shard(0, position=5)
    with pytest.raises(ConfigError, match="at least one"):
        EpochPlan(0, 0, 0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 400), min_size=1, max_size=20),
    st.integers(1, 120),
    st.sampled_from(["per_sequence", "dense"]),
    st.integers(1, 100),
    st.integers(0, 2**31),
)
def test_pretrain_windows_stay_inside_their_sequence(lengths, raw, mode, stride, seed):
    lengths = np.array(lengths)
    ws = pretrain_windows(lengths, raw, mode, stride)
    items = np.arange(len(ws))
    starts = ws.resolve_starts(items, items + 7, seed, epoch=2)
    assert np.all(starts >= 0)
    assert np.all(starts + ws.length <= lengths[ws.seq])
    assert np.array_equal(ws.length, np.minimum(lengths[ws.seq], raw))
    assert np.array_equal(starts, ws.resolve_starts(items, items + 7, seed, epoch=2))
    expect = (
        np.where(lengths > raw, -(-lengths // stride), 1)
        if mode == "dense"
        else np.ones_like(lengths)
    )
    assert np.array_equal(np.bincount(ws.seq, minlength=lengths.size), expect)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 5000), min_size=1, max_size=30),
    st.integers(1, 300),
    st.integers(-(2**70), 2**70),
    st.integers(0, 2**40),
    st.integers(0, 2**62),
)
def test_resolve_starts_equals_its_numpy_twin(lengths, raw, seed, epoch, offset):
    ws = pretrain_windows(np.array(lengths), raw, "dense", stride=max(raw // 2, 1))
    items = np.arange(len(ws))[::-1].copy()
    positions = items + offset
    got = ws.resolve_starts(items, positions, seed, epoch)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, ws.resolve_starts_ref(items, positions, seed, epoch))


def test_resolve_starts_rejects_bad_items():
    ws = pretrain_windows(np.array([500, 80]), 50)
    with pytest.raises(IndexError, match="window 2 out of range: the set has 2 windows"):
        ws.resolve_starts(np.array([0, 2]), np.array([0, 1]), 0, 0)
    with pytest.raises(IndexError, match="window -1"):
        ws.resolve_starts(np.array([-1]), np.array([0]), 0, 0)
    with pytest.raises(ValueError, match="must be equal"):
        ws.resolve_starts(np.array([0, 1]), np.array([0]), 0, 0)


def test_dense_windows_are_stratified():
    ws = pretrain_windows(np.array([1000]), 100, "dense", stride=250)
    assert len(ws) == 4
    items = np.arange(4)
    for epoch in range(5):
        starts = ws.resolve_starts(items, items, seed=3, epoch=epoch)
        # Stratum k of the 901 admissible starts is [225k, 225(k+1)).
        assert np.all(starts // 225 == np.minimum(items, 3))


def test_window_starts_vary_with_seed_epoch_and_position():
    ws = pretrain_windows(np.array([500] * 20), 50)
    items = np.arange(20)
    base = ws.resolve_starts(items, items, 0, 0)
    assert len(set(base.tolist())) > 10
    assert not np.array_equal(base, ws.resolve_starts(items, items, 1, 0))
    assert not np.array_equal(base, ws.resolve_starts(items, items, 0, 1))
    assert not np.array_equal(base, ws.resolve_starts(items, items + 20, 0, 0))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 300), min_size=1, max_size=12),
    st.integers(2, 100),
    st.data(),
)
def test_stitch_reproduces_whole_sequence_scores_for_per_frame_model(lengths, max_length, data):
    overlap = data.draw(st.integers(0, max_length - 1))
    lengths = np.array(lengths)
    rng = np.random.default_rng(0)
    whole = [rng.standard_normal((t, 5)) for t in lengths.tolist()]
    ws = finetune_windows(lengths, max_length, overlap)
    assert len(ws.skipped) == 0 and np.all(ws.length <= max_length)
    per_window = [whole[s][a : a + n] for s, a, n in zip(ws.seq, ws.start, ws.length)]
    for got, want in zip(stitch(per_window, ws, lengths), whole):
        assert np.array_equal(got, want)


def test_stitch_averages_overlaps():
    ws = finetune_windows(np.array([7]), 4, overlap=1)
    assert ws.start.tolist() == [0, 3] and ws.length.tolist() == [4, 4]
    scores = [np.zeros((4, 1)), np.ones((4, 1))]
    out = stitch(scores, ws, np.array([7]))[0][:, 0]
    assert out.tolist() == [0, 0, 0, 0.5, 1, 1, 1]


def test_training_cap_policies_are_counted_and_eval_never_drops():
    lengths = np.array([10, 50, 20])
    skip = finetune_windows(lengths, 20, train=True, train_long="skip")
    assert skip.skipped.tolist() == [1] and skip.seq.tolist() == [0, 2]
    crop = finetune_windows(lengths, 20, train=True, train_long="crop")
    assert crop.cropped == 1 and crop.span.tolist() == [1, 31, 1]
    evaluation = finetune_windows(lengths, 20, train=False, train_long="skip")
    assert len(evaluation.skipped) == 0 and set(evaluation.seq.tolist()) == {0, 1, 2}
    with pytest.raises(ConfigError, match="not cover|no window covers"):
        stitch([np.zeros((10, 1)), np.zeros((20, 1))], skip, lengths)


def test_bad_window_arguments():
    with pytest.raises(ConfigError, match="overlap"):
        finetune_windows(np.array([5]), 4, overlap=4)
    with pytest.raises(ConfigError, match="mode"):
        pretrain_windows(np.array([5]), 4, mode="sliding")
    with pytest.raises(ConfigError, match="positive"):
        pretrain_windows(np.array([0, 5]), 4)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 200),
    st.integers(0, 2**31),
    st.lists(st.floats(0.01, 1.0), min_size=2, max_size=5),
)
def test_label_fractions_are_nested_and_deterministic(n, seed, fractions):
    ids = [f"seq{i:04d}" for i in range(n)]
    labelled = np.arange(n) % 3 != 0
    labelled[0] = True
    subsets = [label_fraction_subset(ids, labelled, f, seed) for f in sorted(fractions)]
    for small, big in zip(subsets, subsets[1:]):
        assert set(small.tolist()) <= set(big.tolist())
    for f, sub in zip(sorted(fractions), subsets):
        assert np.all(labelled[sub])
        assert sub.size == max(1, round(f * labelled.sum()))
        assert np.array_equal(sub, label_fraction_subset(ids, labelled, f, seed))


def test_label_fraction_is_stable_under_reordering_and_seeded():
    ids = [f"s{i}" for i in range(100)]
    labelled = np.ones(100, bool)
    sub = label_fraction_subset(ids, labelled, 0.2, 5)
    rev = label_fraction_subset(ids[::-1], labelled, 0.2, 5)
    assert sorted(ids[i] for i in sub) == sorted(ids[::-1][i] for i in rev)
    assert not np.array_equal(sub, label_fraction_subset(ids, labelled, 0.2, 6))
    with pytest.raises(ConfigError, match="fraction"):
        label_fraction_subset(ids, labelled, 0.0, 5)


def test_block_local_shuffle_is_a_permutation_with_bounded_spread():
    rng = np.random.default_rng(0)
    groups = np.sort(rng.integers(0, 40, 2000))
    for mix in (1, 4):
        plan = EpochPlan(seed=3, epoch=1, num_items=2000, batch_size=16, groups=groups, mix=mix)
        order = plan.order()
        assert np.array_equal(np.sort(order), np.arange(2000))
        np.testing.assert_array_equal(order, plan.order())  # deterministic
        g = groups[order]
        if mix == 1:  # whole groups, one after another
            assert (np.diff(g) != 0).sum() == len(np.unique(groups)) - 1
        # any 64 consecutive items come from at most a few more than `mix` groups
        spread = max(len(np.unique(g[i:i + 64])) for i in range(0, 2000 - 64, 16))
        assert spread <= mix + 3
    plain = EpochPlan(seed=3, epoch=1, num_items=2000, batch_size=16).order()
    assert max(len(np.unique(groups[plain][i:i + 64])) for i in range(0, 1936, 16)) > 20
    with pytest.raises(ConfigError, match="one group per item"):
        EpochPlan(seed=0, epoch=0, num_items=10, mix=2)
