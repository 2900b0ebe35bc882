"""The field's localization metrics: detection mAP at temporal IoU, frame accuracy, edit, F1@k.

- :func:`mean_average_precision` follows the semantics of the ActivityNet detection evaluator
  (``compute_average_precision_detection``, ActivityNet Challenge's Evaluation repository):
  per class, detections in descending score; each is matched to the unmatched ground-truth
  segment of its class and sequence with the highest IoU, if that IoU is >= the threshold, else
  it is a false positive; AP is the all-point interpolated area under the precision-recall
  curve. Deterministic ties (the evaluator leaves them to an unstable sort): detections of equal
  score keep their input order, and ground-truth segments of equal IoU are tried in input order.
  mAP averages over the classes present in the ground truth (a class with ground truth and no
  detection has AP 0); detections of classes absent from the ground truth are ignored.
- :func:`frame_accuracy`, :func:`edit_score`, :func:`f1_score` follow MS-TCN (Farha & Gall,
  CVPR 2019; its ``eval.py``): accuracy pooled over frames, the edit score as
  ``(1 - Levenshtein(P, Y) / max(|P|, |Y|)) * 100`` on the sequences of segment labels, F1@k
  from segments matched at IoU >= k/100 (each predicted segment is compared with the ground-
  truth segment of highest IoU; it is a true positive only if that one is unmatched), true/false
  positives and misses summed over sequences, x100. Background is MS-TCN's ``bg_class``.
  Unlabelled (-1) frames count in no metric: they are left out of the accuracy, and for edit and
  F1 the prediction at those frames is replaced by -1 too, so that -1 acts as a second
  ``bg_class`` (it ends segments on both sides and is never a segment). Two empty segment
  sequences have edit score 100 (MS-TCN divides 0 by 0 there).

Scales: AP and mAP are fractions in [0, 1] (the ActivityNet evaluator's); accuracy, edit and
F1 are percentages (MS-TCN's).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from sscl.errors import EvaluationError
from sscl.localize.segments import pairwise_iou, runs

TIOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
F1_OVERLAPS = (10, 25, 50)


def interpolated_average_precision(precision_N: np.ndarray, recall_N: np.ndarray) -> float:
    """All-point interpolated AP: area under the monotone envelope of the PR curve.

    Args:
        precision_N, recall_N: (N,) precision and recall after each detection, in rank order.

    Returns:
        AP in [0, 1]; recall not reached counts with precision 0.
    """
    mprec = np.concatenate([[0.0], precision_N, [0.0]])
    mrec = np.concatenate([[0.0], recall_N, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[step] - mrec[step - 1]) * mprec[step]))


def _match_group(
    start_D: np.ndarray, end_D: np.ndarray, gt_start: np.ndarray, gt_end: np.ndarray,
    thresholds: np.ndarray,
) -> np.ndarray:
    """True positives of the detections of one (sequence, class), already in rank order.

    A detection's match depends only on earlier detections of its own sequence and class, so
    each group is matched on its own. Returns (H, D) bool.
    """
    iou_DG = pairwise_iou(start_D, end_D, gt_start, gt_end)
    H, D = len(thresholds), len(start_D)
    tp_HD = np.zeros((H, D), bool)
    locked_HG = np.zeros((H, len(gt_start)), bool)
    rows = np.arange(H)
    for d in range(D):
        free_HG = np.where(locked_HG, -1.0, iou_DG[d][None, :])
        best_H = free_HG.argmax(axis=1)  # first maximum: equal IoUs in ground-truth input order
        hit_H = free_HG[rows, best_H] >= thresholds
        tp_HD[:, d] = hit_H
        locked_HG[rows[hit_H], best_H[hit_H]] = True
    return tp_HD


def mean_average_precision(
    predictions: Iterable[Sequence],
    ground_truth: Iterable[Sequence],
    tiou_thresholds: Sequence[float] = TIOU_THRESHOLDS,
) -> dict:
    """Detection mAP at temporal IoU thresholds (ActivityNet semantics, see the module docstring).

    Args:
        predictions: rows ``(sequence_id, class, start, end, score)``; frames ``[start, end)``;
            sequence ids any hashable.
        ground_truth: rows ``(sequence_id, class, start, end)``.
        tiou_thresholds: IoU thresholds, e.g. ``(0.1, 0.2, 0.3, 0.4, 0.5)``.

    Returns:
        ``{"ap": {tiou: {class: float}}, "mAP": {tiou: float}, "average_mAP": float}``, keyed by
        the thresholds as given (as floats) and by the classes of the ground truth (as ints).

    Raises:
        EvaluationError: no ground-truth segment, no threshold, a threshold outside (0, 1], or a
            segment with ``end <= start``.
    """
    thresholds = [float(h) for h in tiou_thresholds]
    if not thresholds or any(not 0.0 < h <= 1.0 for h in thresholds):
        raise EvaluationError(f"tiou_thresholds={list(tiou_thresholds)}; expected values in (0, 1]")
    gt_by_key: dict = defaultdict(list)
    npos: dict[int, int] = defaultdict(int)
    for row in ground_truth:
        seq, c, a, b = row
        if b <= a:
            raise EvaluationError(f"ground-truth segment {tuple(row)} has end <= start")
        gt_by_key[(seq, int(c))].append((int(a), int(b)))
        npos[int(c)] += 1
    if not npos:
        raise EvaluationError(
            "the ground truth has no segment (all frames background or unlabelled); mAP is "
            "undefined; evaluate a split with labelled action frames"
        )
    det_by_class: dict[int, list] = defaultdict(list)
    for i, row in enumerate(predictions):
        seq, c, a, b, s = row
        if b <= a:
            raise EvaluationError(f"predicted segment {tuple(row)} has end <= start")
        if int(c) in npos:
            det_by_class[int(c)].append((seq, int(a), int(b), float(s), i))

    h_H = np.asarray(thresholds)
    ap: dict[float, dict[int, float]] = {h: {} for h in thresholds}
    for c in sorted(npos):
        dets = det_by_class.get(c, [])
        if not dets:
            for h in thresholds:
                ap[h][c] = 0.0
            continue
        score = np.array([d[3] for d in dets])
        rank = np.argsort(-score, kind="stable")  # ties keep input order
        by_seq: dict = defaultdict(list)
        for r in rank.tolist():
            by_seq[dets[r][0]].append(r)
        tp_HN = np.zeros((len(thresholds), len(dets)), bool)
        for seq, members in by_seq.items():  # members are in rank order
            gts = gt_by_key.get((seq, c))
            if not gts:
                continue
            g = np.asarray(gts, np.int64)
            m = np.asarray(members)
            tp_HN[:, m] = _match_group(
                np.array([dets[r][1] for r in members]), np.array([dets[r][2] for r in members]),
                g[:, 0], g[:, 1], h_H,
            )
        tp_HN = tp_HN[:, rank]
        tp_cum = np.cumsum(tp_HN, axis=1)
        n = np.arange(1, len(dets) + 1)
        for k, h in enumerate(thresholds):
            ap[h][c] = interpolated_average_precision(tp_cum[k] / n, tp_cum[k] / npos[c])
    mean_ap = {h: float(np.mean(list(ap[h].values()))) for h in thresholds}
    return {"ap": ap, "mAP": mean_ap, "average_mAP": float(np.mean(list(mean_ap.values())))}


def frame_accuracy(pred_labels: Sequence[np.ndarray], gt_labels: Sequence[np.ndarray]) -> float:
    """Frame accuracy in percent, pooled over the labelled (``!= -1``) frames of all sequences.

    Args:
        pred_labels: per sequence, (T,) predicted labels in ``0..K``.
        gt_labels: per sequence, (T,) ground-truth labels in ``-1..K``.

    Returns:
        ``100 * correct / labelled``.

    Raises:
        EvaluationError: mismatched lengths, or no labelled frame at all.
    """
    correct = total = 0
    for i, (p, y) in enumerate(zip(pred_labels, gt_labels, strict=True)):
        p, y = np.asarray(p), np.asarray(y)
        if p.shape != y.shape:
            raise EvaluationError(f"sequence {i}: prediction shape {p.shape} != labels {y.shape}")
        keep = y != -1
        correct += int(np.sum(p[keep] == y[keep]))
        total += int(np.sum(keep))
    if total == 0:
        raise EvaluationError("no labelled frame: frame accuracy is undefined")
    return 100.0 * correct / total


def _segments(labels_T: np.ndarray, background: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MS-TCN's ``get_labels_start_end_time`` with bg_class = {background, -1}."""
    value_R, a_R, b_R = runs(np.asarray(labels_T))
    keep = (value_R != background) & (value_R != -1)
    return value_R[keep], a_R[keep], b_R[keep]


def _masked(pred_T: np.ndarray, gt_T: np.ndarray) -> np.ndarray:
    pred_T, gt_T = np.asarray(pred_T), np.asarray(gt_T)
    if pred_T.shape != gt_T.shape:
        raise EvaluationError(f"prediction shape {pred_T.shape} != labels {gt_T.shape}")
    return np.where(gt_T == -1, -1, pred_T)


def levenshtein(p: Sequence[int], y: Sequence[int]) -> int:
    """Edit distance between two label sequences (unit insert/delete/substitute).

    Row-vectorised: within a row, ``D[i, j] = min_k (base[k] + j - k)`` over the insert chain is
    a running minimum of ``base - arange``.
    """
    p, y = np.asarray(p), np.asarray(y)
    n = len(y)
    j = np.arange(n + 1)
    row = j.copy()
    for i in range(1, len(p) + 1):
        base = np.empty(n + 1, np.int64)
        base[0] = i
        base[1:] = np.minimum(row[1:] + 1, row[:-1] + (p[i - 1] != y))
        row = np.minimum.accumulate(base - j) + j
    return int(row[-1])


def edit_score(pred_T: np.ndarray, gt_T: np.ndarray, background: int) -> float:
    """MS-TCN's segmental edit score of one sequence, in percent.

    Args:
        pred_T: (T,) predicted labels in ``0..K``.
        gt_T: (T,) ground-truth labels in ``-1..K``.
        background: ``K``.

    Returns:
        ``(1 - levenshtein(P, Y) / max(|P|, |Y|)) * 100`` over the segment label sequences;
        100 when both are empty.
    """
    p, _, _ = _segments(_masked(pred_T, gt_T), background)
    y, _, _ = _segments(gt_T, background)
    if len(p) == 0 and len(y) == 0:
        return 100.0
    return (1.0 - levenshtein(p, y) / max(len(p), len(y))) * 100.0


def f1_counts(
    pred_T: np.ndarray, gt_T: np.ndarray, background: int, overlap: float
) -> tuple[int, int, int]:
    """MS-TCN's ``f_score`` counts of one sequence at IoU ``overlap`` (a fraction).

    Returns:
        ``(tp, fp, fn)``.
    """
    pl, pa, pb = _segments(_masked(pred_T, gt_T), background)
    yl, ya, yb = _segments(gt_T, background)
    if len(yl) == 0:
        return 0, len(pl), 0
    iou_PG = pairwise_iou(pa, pb, ya, yb) * (pl[:, None] == yl[None, :])
    hits = np.zeros(len(yl), bool)
    tp = fp = 0
    for j in range(len(pl)):
        idx = int(iou_PG[j].argmax())
        if iou_PG[j, idx] >= overlap and not hits[idx]:
            tp += 1
            hits[idx] = True
        else:
            fp += 1
    return tp, fp, int(len(yl) - hits.sum())


def f1_score(
    pred_labels: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    background: int,
    overlaps: Sequence[int] = F1_OVERLAPS,
) -> dict[int, float]:
    """MS-TCN's F1@k over a split, in percent: counts summed over sequences, then F1.

    Args:
        pred_labels: per sequence, (T,) predicted labels in ``0..K``.
        gt_labels: per sequence, (T,) ground-truth labels in ``-1..K``.
        background: ``K``.
        overlaps: the k of F1@k, in percent (IoU >= k / 100).

    Returns:
        ``{k: F1 in percent}``; 0 when there is no true positive.
    """
    out = {}
    for k in overlaps:
        tp = fp = fn = 0
        for p, y in zip(pred_labels, gt_labels, strict=True):
            a, b, c = f1_counts(p, y, background, k / 100.0)
            tp, fp, fn = tp + a, fp + b, fn + c
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[int(k)] = 100.0 * f1
    return out
