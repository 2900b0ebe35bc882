"""Frame-index segments: runs, ground-truth segments around -1 and background, IoU, 1-D NMS."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscl.errors import ConfigError
from sscl.localize.segments import (
    label_segments,
    mask_runs,
    nms_1d,
    pairwise_iou,
    runs,
    temporal_iou,
)


def test_runs_hand_case():
    value, start, end = runs(np.array([3, 3, 1, 1, 1, 3]))
    assert value.tolist() == [3, 1, 3]
    assert start.tolist() == [0, 2, 5]
    assert end.tolist() == [2, 5, 6]
    v, a, b = runs(np.zeros(0, int))
    assert len(v) == len(a) == len(b) == 0


def test_label_segments_background_and_unlabelled_break_runs():
    K = 2
    labels = np.array([0, 0, 2, 0, -1, 0, 1, 1, -1, -1, 2])
    # -1 at frame 4 splits the class-0 run; background (2) and -1 are never segments.
    assert label_segments(labels, K) == [(0, 0, 2), (0, 3, 4), (0, 5, 6), (1, 6, 8)]
    assert label_segments(np.full(5, -1), K) == []
    with pytest.raises(ConfigError, match="outside -1..2"):
        label_segments(np.array([0, 3]), K)


@given(st.lists(st.integers(-1, 3), min_size=0, max_size=40))
@settings(max_examples=60, deadline=None)
def test_label_segments_cover_exactly_the_action_frames(labels):
    labels = np.array(labels, dtype=np.int64)
    segs = label_segments(labels, 3)
    painted = np.full(len(labels), -7)
    for c, a, b in segs:
        assert b > a and np.all(labels[a:b] == c)
        assert np.all(painted[a:b] == -7)  # disjoint
        painted[a:b] = c
    action = (labels >= 0) & (labels < 3)
    assert np.array_equal(painted[action], labels[action])
    assert np.all(painted[~action] == -7)
    for (c0, _, b0), (c1, a1, _) in zip(segs, segs[1:]):  # maximal: no equal neighbour touching
        assert not (b0 == a1 and c0 == c1)


@given(
    st.integers(1, 30).flatmap(
        lambda T: st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=1, max_size=4)
    )
)
@settings(max_examples=60, deadline=None)
def test_mask_runs_matches_per_column_runs(columns):
    mask_TK = np.array(columns, dtype=bool).T
    col, start, end = mask_runs(mask_TK)
    expected = []
    for k in range(mask_TK.shape[1]):
        v, a, b = runs(mask_TK[:, k])
        expected += [(k, int(x), int(y)) for x, y in zip(a[v], b[v])]
    assert list(zip(col.tolist(), start.tolist(), end.tolist())) == expected


def test_iou_hand_cases():
    assert temporal_iou((0, 10), (0, 10)) == 1.0
    assert temporal_iou((0, 10), (5, 15)) == 5 / 15
    assert temporal_iou((0, 10), (10, 20)) == 0.0  # touching: no shared frame
    assert temporal_iou((2, 4), (0, 10)) == 2 / 10
    iou = pairwise_iou(np.array([0, 5]), np.array([10, 6]), np.array([0, 20]), np.array([4, 30]))
    assert iou.shape == (2, 2)
    np.testing.assert_allclose(iou, [[0.4, 0.0], [0.0, 0.0]])


@given(st.integers(1, 50), st.integers(0, 60), st.integers(-100, 100))
def test_shifted_segment_loses_iou_as_computed(length, shift, origin):
    """Shifting [a, a+L) by d frames leaves max(L - d, 0) shared frames of L + min(d, L)."""
    got = temporal_iou((origin, origin + length), (origin + shift, origin + shift + length))
    inter = max(length - shift, 0)
    assert got == inter / (2 * length - inter)


def test_nms_iou_against_over_other():
    # A long confident segment and a short one inside it: IoU 3/20 keeps the short one, the
    # reference overlap (intersection / length of the short one) removes it.
    start, end, score = np.array([0, 5]), np.array([20, 8]), np.array([0.9, 0.5])
    assert nms_1d(start, end, score, 0.2, "iou").tolist() == [0, 1]
    assert nms_1d(start, end, score, 0.2, "over_other").tolist() == [0]
    # Reversed confidence: the reference overlap divides by the long one's length (3/20).
    score = np.array([0.5, 0.9])
    assert nms_1d(start, end, score, 0.2, "over_other").tolist() == [1, 0]


def test_nms_suppresses_above_threshold_only_and_breaks_ties_by_input_order():
    start, end = np.array([0, 0, 8, 30]), np.array([10, 10, 18, 40])
    # segment 2 has IoU 2/18 with segment 0; duplicates 0 and 1 tie on score: 0 wins.
    keep = nms_1d(start, end, np.array([0.7, 0.7, 0.6, 0.8]), 0.2)
    assert keep.tolist() == [3, 0, 2]
    # exactly at the threshold is kept: IoU([0,10),[5,15)) = 1/3
    keep = nms_1d(np.array([0, 5]), np.array([10, 15]), np.array([1.0, 0.5]), 1 / 3)
    assert keep.tolist() == [0, 1]
    with pytest.raises(ConfigError, match="unknown"):
        nms_1d(start, end, np.ones(4), 0.2, "giou")
