"""Temporal segments in frames: runs of a per-frame array, temporal IoU and 1-D NMS.

Conventions used by the whole of ``sscl.localize`` (issue 11 section 2):

- A segment is ``[start, end)`` in frame indices: ``start`` inclusive, ``end`` exclusive, so its
  length is ``end - start`` frames.
- Temporal IoU is ``|intersection| / |union|`` counted in frames (the ActivityNet evaluator's
  formula on integer times).
- Per-frame labels are ``-1`` (unlabelled or padding), ``0..K-1`` (action classes) and ``K``
  (background). A ground-truth segment is a maximal run of one action label. A ``-1`` frame ends
  a run like a background frame does: a ground-truth segment never spans an unlabelled frame,
  and neither ``-1`` nor ``K`` is a segment class.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sscl.errors import ConfigError


class ScoredSegment(NamedTuple):
    """A decoded segment of one sequence: action ``label`` over frames ``[start, end)``."""

    label: int
    start: int
    end: int
    score: float


class Detection(NamedTuple):
    """A scored segment of one sequence of a split (the metric's prediction row)."""

    sequence_id: object
    label: int
    start: int
    end: int
    score: float


class GroundTruth(NamedTuple):
    """A ground-truth segment of one sequence of a split (the metric's ground-truth row)."""

    sequence_id: object
    label: int
    start: int
    end: int


def runs(values_T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of equal values of a 1-D array.

    Args:
        values_T: (T,) integer (or boolean) array.

    Returns:
        ``(value_R, start_R, end_R)``: the value of each run and its frames ``[start, end)``, in
        time order; empty arrays for ``T == 0``.
    """
    values_T = np.asarray(values_T)
    if values_T.ndim != 1:
        raise ConfigError(f"runs needs a 1-D array, got shape {values_T.shape}")
    if values_T.size == 0:
        empty = np.zeros(0, np.int64)
        return values_T[:0], empty, empty
    change = np.flatnonzero(values_T[1:] != values_T[:-1]) + 1
    start_R = np.concatenate([[0], change]).astype(np.int64)
    end_R = np.concatenate([change, [values_T.size]]).astype(np.int64)
    return values_T[start_R], start_R, end_R


def mask_runs(mask_TK: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of True in every column of a boolean (T, K) array at once.

    Args:
        mask_TK: (T, K) boolean.

    Returns:
        ``(column_R, start_R, end_R)`` int64: the column of each run and its frames
        ``[start, end)``, sorted by column then time.
    """
    mask_TK = np.asarray(mask_TK, dtype=bool)
    T, K = mask_TK.shape
    padded_KT = np.zeros((K, T + 2), np.int8)
    padded_KT[:, 1:-1] = mask_TK.T
    edges_KT = np.diff(padded_KT, axis=1)
    # Row-major nonzero orders by column then time, so the i-th rising edge of a column pairs
    # with its i-th falling edge.
    col_E, t_E = np.nonzero(edges_KT)
    rising_E = edges_KT[col_E, t_E] == 1
    return (
        col_E[rising_E].astype(np.int64),
        t_E[rising_E].astype(np.int64),
        t_E[~rising_E].astype(np.int64),
    )


def label_segments(labels_T: np.ndarray, background: int) -> list[tuple[int, int, int]]:
    """Ground-truth segments of one sequence: the maximal runs of one action label.

    Args:
        labels_T: (T,) integers in ``-1..background``.
        background: the background index ``K``.

    Returns:
        ``[(label, start, end), ...]`` in time order; background and ``-1`` runs are left out
        (a ``-1`` frame ends a run, see the module docstring).

    Raises:
        ConfigError: a label outside ``-1..background``.
    """
    labels_T = np.asarray(labels_T)
    if labels_T.size and (labels_T.min() < -1 or labels_T.max() > background):
        bad = int(np.flatnonzero((labels_T < -1) | (labels_T > background))[0])
        raise ConfigError(
            f"label {int(labels_T[bad])} at frame {bad} is outside -1..{background} "
            f"(-1 unlabelled, {background} background); pass the class count K as background"
        )
    value_R, start_R, end_R = runs(labels_T)
    keep = (value_R >= 0) & (value_R != background)
    return [
        (int(v), int(a), int(b)) for v, a, b in zip(value_R[keep], start_R[keep], end_R[keep])
    ]


def pairwise_iou(
    start_A: np.ndarray, end_A: np.ndarray, start_B: np.ndarray, end_B: np.ndarray
) -> np.ndarray:
    """Temporal IoU of every segment of A against every segment of B, in frames.

    Args:
        start_A, end_A: (A,) frame bounds ``[start, end)``.
        start_B, end_B: (B,) frame bounds.

    Returns:
        (A, B) float64 IoU in [0, 1]; 0 for disjoint or touching segments.
    """
    start_A, end_A = np.asarray(start_A)[:, None], np.asarray(end_A)[:, None]
    start_B, end_B = np.asarray(start_B)[None, :], np.asarray(end_B)[None, :]
    inter_AB = np.clip(np.minimum(end_A, end_B) - np.maximum(start_A, start_B), 0, None)
    union_AB = (end_A - start_A) + (end_B - start_B) - inter_AB
    return inter_AB / np.maximum(union_AB, 1)


def temporal_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Temporal IoU of two segments ``(start, end)`` in frames (see :func:`pairwise_iou`)."""
    return float(pairwise_iou([a[0]], [a[1]], [b[0]], [b[1]])[0, 0])


NMS_OVERLAPS = ("iou", "over_other")


def nms_1d(
    start_N: np.ndarray,
    end_N: np.ndarray,
    score_N: np.ndarray,
    threshold: float,
    overlap: str = "iou",
) -> np.ndarray:
    """Greedy 1-D non-maximum suppression of the segments of one class.

    Segments are taken by descending score (ties: input order); each kept segment removes every
    remaining one whose overlap with it is above ``threshold``.

    Args:
        start_N, end_N: (N,) frame bounds ``[start, end)``.
        score_N: (N,) scores.
        threshold: overlaps strictly above it are suppressed.
        overlap: ``"iou"`` (temporal IoU), or ``"over_other"``: intersection divided by the
            length of the segment tested for removal (the reference code's NMS, METHOD.md
            section 7).

    Returns:
        (M,) int64 indices of the kept segments, by descending score.
    """
    if overlap not in NMS_OVERLAPS:
        raise ConfigError(f"nms overlap {overlap!r} unknown; expected one of {NMS_OVERLAPS}")
    start_N = np.asarray(start_N, np.int64)
    end_N = np.asarray(end_N, np.int64)
    order = np.argsort(-np.asarray(score_N, np.float64), kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        inter = np.clip(
            np.minimum(end_N[i], end_N[rest]) - np.maximum(start_N[i], start_N[rest]), 0, None
        )
        length_rest = end_N[rest] - start_N[rest]
        if overlap == "iou":
            denom = (end_N[i] - start_N[i]) + length_rest - inter
        else:
            denom = length_rest
        order = rest[inter / np.maximum(denom, 1) <= threshold]
    return np.asarray(keep, np.int64)
