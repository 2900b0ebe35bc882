"""Detection mAP (ActivityNet semantics) and MS-TCN frame metrics: hand cases, properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscl.errors import EvaluationError
from sscl.localize.metrics import (
    edit_score,
    f1_score,
    frame_accuracy,
    interpolated_average_precision,
    levenshtein,
    mean_average_precision,
)

# ---------------------------------------------------------------------------------------------
# mAP: a hand-computed case
#
# Ground truth, class 0: sequence "a" [0,10) and [20,30); sequence "b" [5,15)  -> npos = 3.
#                class 1: sequence "b" [30,40) (never predicted -> AP 0).
# Predictions of class 0 by descending score:
#   d1 ("a", [0,10), 0.9):  IoU 1 with a[0,10)                    -> TP at every threshold
#   d2 ("a", [1,10), 0.8):  IoU 0.9 with a[0,10), already taken;
#                           IoU 0 with a[20,30)                    -> FP
#   d3 ("b", [10,20), 0.7): IoU 5/15 = 1/3 with b[5,15)            -> TP at 0.3, FP at 0.5
#   d4 ("a", [22,30), 0.6): IoU 8/10 with a[20,30)                 -> TP
# A class-2 prediction has no ground truth of its class and is ignored.
# tIoU 0.5: TP FP FP TP; precision 1, 1/2, 1/3, 1/2; recall 1/3, 1/3, 1/3, 2/3
#   AP = 1/3 * 1 + 1/3 * 1/2 = 0.5
# tIoU 0.3: TP FP TP TP; precision 1, 1/2, 2/3, 3/4; recall 1/3, 1/3, 2/3, 1
#   AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6   (the envelope lifts 2/3 to 3/4)
# mAP over the two ground-truth classes: 0.5/2 = 0.25 at 0.5, 5/12 at 0.3; average 1/3.
# ---------------------------------------------------------------------------------------------
HAND_GT = [("a", 0, 0, 10), ("a", 0, 20, 30), ("b", 0, 5, 15), ("b", 1, 30, 40)]
HAND_PRED = [
    ("a", 0, 22, 30, 0.6),
    ("a", 0, 0, 10, 0.9),
    ("b", 2, 0, 50, 0.99),
    ("b", 0, 10, 20, 0.7),
    ("a", 0, 1, 10, 0.8),
]


def test_map_hand_case():
    out = mean_average_precision(HAND_PRED, HAND_GT, (0.3, 0.5))
    assert out["ap"][0.5] == {0: pytest.approx(0.5), 1: 0.0}
    assert out["ap"][0.3] == {0: pytest.approx(5 / 6), 1: 0.0}
    assert out["mAP"] == {0.3: pytest.approx(5 / 12), 0.5: pytest.approx(0.25)}
    assert out["average_mAP"] == pytest.approx(1 / 3)
    assert list(out["mAP"]) == [0.3, 0.5]  # keyed by the thresholds as given


def test_interpolated_ap_hand_case():
    # precision 1, 0.5, 2/3 at recall 0.5, 0.5, 1 -> 0.5 * 1 + 0.5 * 2/3
    ap = interpolated_average_precision(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0]))
    assert ap == pytest.approx(0.5 + 1 / 3)


def test_ties_in_score_keep_input_order():
    gt = [("s", 0, 0, 10)]
    hit, miss = ("s", 0, 0, 10, 0.5), ("s", 0, 50, 60, 0.5)
    assert mean_average_precision([hit, miss], gt, (0.5,))["average_mAP"] == 1.0
    # the miss first: precision 0 then 1/2 at recall 1 -> AP 0.5
    assert mean_average_precision([miss, hit], gt, (0.5,))["average_mAP"] == 0.5


def test_best_unmatched_ground_truth_is_taken():
    # The detection overlaps g1 at IoU 0.8 and g2 at 0.6; it takes g1, the second detection
    # then finds g1 taken and g2 at IoU 0.6 >= 0.5 -> both true positives.
    gt = [("s", 0, 0, 10), ("s", 0, 4, 14)]
    preds = [("s", 0, 0, 8, 0.9), ("s", 0, 2, 12, 0.8)]
    out = mean_average_precision(preds, gt, (0.5,))
    assert out["ap"][0.5][0] == 1.0


def test_map_errors():
    with pytest.raises(EvaluationError, match="no segment"):
        mean_average_precision([("s", 0, 0, 5, 1.0)], [], (0.5,))
    with pytest.raises(EvaluationError, match="end <= start"):
        mean_average_precision([("s", 0, 5, 5, 1.0)], [("s", 0, 0, 5)], (0.5,))
    with pytest.raises(EvaluationError, match="expected values in"):
        mean_average_precision([], [("s", 0, 0, 5)], (0.0,))


# ---------------------------------------------------------------------------------------------
# An independent oracle: ActivityNet's loop written out literally, and AP as the sum over true
# positives of (1 / npos) * (best precision at this rank or later).
# ---------------------------------------------------------------------------------------------
def _iou(a0, a1, b0, b1):
    inter = max(0, min(a1, b1) - max(a0, b0))
    return inter / ((a1 - a0) + (b1 - b0) - inter)


def map_oracle(preds, gts, thresholds):
    classes = sorted({g[1] for g in gts})
    ap = {h: {} for h in thresholds}
    for c in classes:
        g_c = [g for g in gts if g[1] == c]
        d_c = [(i, p) for i, p in enumerate(preds) if p[1] == c]
        d_c.sort(key=lambda ip: (-ip[1][4], ip[0]))
        for h in thresholds:
            taken = [False] * len(g_c)
            flags = []
            for _, (seq, _, a, b, _) in d_c:
                cands = [(_iou(a, b, g[2], g[3]), j) for j, g in enumerate(g_c) if g[0] == seq]
                cands.sort(key=lambda t: (-t[0], t[1]))
                ok = False
                for iou, j in cands:
                    if iou < h:
                        break
                    if taken[j]:
                        continue
                    taken[j] = ok = True
                    break
                flags.append(ok)
            precision, tp = [], 0
            for n, f in enumerate(flags, 1):
                tp += f
                precision.append(tp / n)
            total = 0.0
            for r, f in enumerate(flags):
                if f:
                    total += max(precision[r:]) / len(g_c)
            ap[h][c] = total
    mean = {h: sum(ap[h].values()) / len(classes) for h in thresholds}
    return ap, mean


segment = st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 30), st.integers(1, 12))


@given(
    gts=st.lists(segment, min_size=1, max_size=8),
    preds=st.lists(
        st.tuples(segment, st.sampled_from([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])), max_size=14
    ),
)
@settings(max_examples=150, deadline=None)
def test_map_matches_the_loop_oracle(gts, preds):
    gt_rows = [(f"s{s}", c, a, a + n) for s, c, a, n in gts]
    pred_rows = [(f"s{s}", c, a, a + n, score) for (s, c, a, n), score in preds]
    ths = (0.1, 0.3, 0.5, 0.7)
    out = mean_average_precision(pred_rows, gt_rows, ths)
    ap, mean = map_oracle(pred_rows, gt_rows, ths)
    for h in ths:
        assert out["ap"][h] == pytest.approx(ap[h], abs=1e-12)
        assert out["mAP"][h] == pytest.approx(mean[h], abs=1e-12)


@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(1, 9)), min_size=1,
             max_size=10),
    st.randoms(use_true_random=False),
)
@settings(max_examples=60, deadline=None)
def test_perfect_prediction_scores_one(rows, rnd):
    # disjoint segments per sequence: sequence s, class c, slot k -> frames [10k, 10k + n)
    gts = [(f"s{s}", c, 10 * k, 10 * k + n) for k, (s, c, n) in enumerate(rows)]
    preds = [(*g, rnd.random()) for g in gts]
    out = mean_average_precision(preds, gts, (0.1, 0.5, 0.9, 1.0))
    assert out["average_mAP"] == 1.0
    assert all(v == 1.0 for per in out["ap"].values() for v in per.values())


@given(st.integers(2, 12))
def test_a_duplicate_is_a_false_positive_and_lowers_ap(n):
    """n perfect detections, plus a copy of the best one ranked second.

    Ranks: TP FP TP ... TP. Precision at the k-th TP (k >= 2) is k / (k + 1), which rises with k,
    so the envelope there is n / (n + 1): AP = (1 + (n - 1) * n / (n + 1)) / n < 1.
    """
    gts = [("s", 0, 10 * k, 10 * k + 5) for k in range(n)]
    preds = [(*g, 1.0 - 0.01 * k) for k, g in enumerate(gts)]
    dup = (*gts[0], 1.0 - 0.005)
    out = mean_average_precision(preds + [dup], gts, (0.5,))
    assert out["ap"][0.5][0] == pytest.approx((1 + (n - 1) * n / (n + 1)) / n)
    assert out["ap"][0.5][0] < 1.0


@given(st.integers(1, 40), st.integers(0, 45))
def test_a_shifted_segment_scores_by_its_iou(length, shift):
    gt = [("s", 0, 100, 100 + length)]
    pred = [("s", 0, 100 + shift, 100 + shift + length, 1.0)]
    inter = max(length - shift, 0)
    iou = inter / (2 * length - inter)
    ths = (0.1, 0.2, 0.3, 0.4, 0.5)
    out = mean_average_precision(pred, gt, ths)
    assert out["mAP"] == {h: (1.0 if iou >= h else 0.0) for h in ths}


@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 20),
                       st.integers(1, 8)), min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 20),
                       st.integers(1, 8)), max_size=10),
    st.randoms(use_true_random=False),
)
@settings(max_examples=60, deadline=None)
def test_input_order_does_not_matter_without_ties(gts, preds, rnd):
    gt_rows = [(s, c, a, a + n) for s, c, a, n in gts]
    pred_rows = [(s, c, a, a + n, 1.0 / (i + 2)) for i, (s, c, a, n) in enumerate(preds)]
    shuffled = list(pred_rows)
    rnd.shuffle(shuffled)
    ths = (0.1, 0.5)
    want = mean_average_precision(pred_rows, gt_rows, ths)
    assert mean_average_precision(shuffled, gt_rows, ths) == want
    # Ground-truth order only decides between segments of equal IoU with one detection.
    tied = any(
        len(ious) != len(set(ious))
        for s, c, a, b, _ in pred_rows
        for ious in [[x for x in (_iou(a, b, g[2], g[3]) for g in gt_rows if g[:2] == (s, c))
                      if x > 0]]
    )
    gt_shuffled = list(gt_rows)
    rnd.shuffle(gt_shuffled)
    if not tied:
        assert mean_average_precision(shuffled, gt_shuffled, ths) == want


# ---------------------------------------------------------------------------------------------
# MS-TCN frame metrics. Background is K = 3.
#   gt:   0 0 0 3 3 1 1 1 1 3       segments Y = [0 [0,3), 1 [5,9)]
#   pred: 0 0 3 3 3 1 2 3 1 3       segments P = [0 [0,2), 1 [5,6), 2 [6,7), 1 [8,9)]
# edit: Levenshtein([0,1,2,1], [0,1]) = 2, max length 4 -> (1 - 2/4) * 100 = 50
# F1: P0 vs Y0 IoU 2/3; P1 vs Y1 IoU 1/4; P2 has no class-2 truth; P3 vs Y1 IoU 1/4.
#   @10, @25: P0 TP, P1 TP (takes Y1), P2 FP, P3 FP (Y1 taken): tp 2, fp 2, fn 0 -> F1 2/3
#   @50:      P0 TP, P1 FP, P2 FP, P3 FP: tp 1, fp 3, fn 1 -> P 1/4, R 1/2 -> F1 1/3
# accuracy: 7 of 10 frames agree.
# ---------------------------------------------------------------------------------------------
GT = np.array([0, 0, 0, 3, 3, 1, 1, 1, 1, 3])
PRED = np.array([0, 0, 3, 3, 3, 1, 2, 3, 1, 3])


def test_ms_tcn_hand_case():
    assert edit_score(PRED, GT, 3) == pytest.approx(50.0)
    assert f1_score([PRED], [GT], 3) == pytest.approx({10: 200 / 3, 25: 200 / 3, 50: 100 / 3})
    assert frame_accuracy([PRED], [GT]) == pytest.approx(70.0)


def test_f1_counts_sum_over_sequences():
    # second sequence: one perfect segment -> totals @50: tp 2, fp 3, fn 1 -> P 2/5, R 2/3
    gt2, pred2 = np.array([3, 2, 2, 3]), np.array([3, 2, 2, 3])
    f1 = f1_score([PRED, pred2], [GT, gt2], 3, (50,))[50]
    assert f1 == pytest.approx(100 * 2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))


def test_unlabelled_frames_count_in_no_metric():
    gt = np.array([0, 0, -1, -1, 0, 0, 3])
    pred = np.array([0, 0, 1, 0, 0, 0, 3])  # whatever is predicted on the -1 frames
    assert frame_accuracy([pred], [gt]) == 100.0
    assert edit_score(pred, gt, 3) == 100.0  # -1 splits both into [0, 0]
    assert f1_score([pred], [gt], 3) == {10: 100.0, 25: 100.0, 50: 100.0}
    assert edit_score(np.full(4, 3), np.array([3, -1, 3, 3]), 3) == 100.0  # both empty
    with pytest.raises(EvaluationError, match="no labelled frame"):
        frame_accuracy([pred], [np.full(7, -1)])


def _levenshtein_oracle(p, y):
    d = [[0] * (len(y) + 1) for _ in range(len(p) + 1)]
    for i in range(len(p) + 1):
        for j in range(len(y) + 1):
            if i == 0 or j == 0:
                d[i][j] = i + j
            else:
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1,
                              d[i - 1][j - 1] + (p[i - 1] != y[j - 1]))
    return d[-1][-1]


@given(st.lists(st.integers(0, 3), max_size=12), st.lists(st.integers(0, 3), max_size=12))
@settings(max_examples=100, deadline=None)
def test_levenshtein_matches_the_plain_dynamic_programme(p, y):
    assert levenshtein(p, y) == _levenshtein_oracle(p, y)
