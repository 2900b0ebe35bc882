"""A split's frame probabilities and labels to every metric; decoder choice; trivial baselines.

- :func:`evaluate_sequences`: decode every sequence, score mAP at the tIoU thresholds, and the
  frame metrics (accuracy, edit, F1@k) of the per-frame argmax. Sequences without a labelled
  frame (all -1) are skipped entirely: they have no ground truth and their detections would
  all be false positives of nothing anyone annotated. Inside an evaluated sequence every
  decoded segment counts, with its IoU in plain frames.
- :func:`select_decoder`: the candidate decoder with the best average mAP on a validation
  split. It refuses a split named ``test*``: choosing post-processing on the test split is
  test-set selection (METHOD.md section 7 notes the reference code's best-epoch-on-test).
- :func:`trivial_baselines`: all-background and majority-class predictions scored the same way,
  for the table the main job prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np

from sscl.errors import ConfigError, EvaluationError
from sscl.localize.metrics import (
    F1_OVERLAPS,
    TIOU_THRESHOLDS,
    edit_score,
    f1_score,
    frame_accuracy,
    mean_average_precision,
)
from sscl.localize.postprocess import ARGMAX, REFERENCE, REFERENCE_CODE_NMS, DecoderConfig, decode
from sscl.localize.segments import Detection, GroundTruth, label_segments

# Candidates of select_decoder: the METHOD.md section 5 decoder with either NMS overlap, the
# same with thresholds where fully supervised softmax outputs are selective (METHOD.md notes
# that 0.03-0.05 pass most frames), and the argmax-run decoder with and without a length floor.
DEFAULT_CANDIDATES = (
    REFERENCE,
    REFERENCE_CODE_NMS,
    DecoderConfig(thresholds=(0.1, 0.2, 0.3, 0.4, 0.5)),
    ARGMAX,
    DecoderConfig(name="argmax", min_len=3),
)


def _checked(
    probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], sequence_ids: Sequence | None
) -> tuple[list[np.ndarray], list[np.ndarray], list, int]:
    """Validate shapes once; returns (probs, labels, ids) of the labelled sequences and K."""
    if len(probs) != len(labels):
        raise EvaluationError(f"{len(probs)} probability arrays but {len(labels)} label arrays")
    ids = list(range(len(probs))) if sequence_ids is None else list(sequence_ids)
    if len(ids) != len(probs):
        raise EvaluationError(f"{len(ids)} sequence ids for {len(probs)} sequences")
    if not probs:
        raise EvaluationError("no sequence to evaluate")
    K = np.shape(probs[0])[-1] - 1
    out_p, out_y, out_id = [], [], []
    for i, (p, y) in enumerate(zip(probs, labels)):
        p, y = np.asarray(p), np.asarray(y)
        if p.ndim != 2 or p.shape[1] != K + 1 or y.shape != (p.shape[0],):
            raise EvaluationError(
                f"sequence {ids[i]!r}: probabilities {p.shape} and labels {y.shape}; expected "
                f"(T, {K + 1}) and (T,)"
            )
        if np.any(y != -1):
            out_p.append(p)
            out_y.append(y)
            out_id.append(ids[i])
    if not out_p:
        raise EvaluationError("every sequence is unlabelled (-1): nothing to evaluate")
    return out_p, out_y, out_id, K


def ground_truth_rows(
    labels: Sequence[np.ndarray], background: int, sequence_ids: Sequence
) -> list[GroundTruth]:
    """Ground-truth segments of a split (maximal runs of one action label per sequence)."""
    return [
        GroundTruth(sid, c, a, b)
        for sid, y in zip(sequence_ids, labels)
        for c, a, b in label_segments(y, background)
    ]


def detection_rows(
    probs: Sequence[np.ndarray], config: DecoderConfig, sequence_ids: Sequence
) -> list[Detection]:
    """Decoded segments of a split as metric rows."""
    return [
        Detection(sid, *seg) for sid, p in zip(sequence_ids, probs) for seg in decode(p, config)
    ]


def evaluate_sequences(
    probs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    decoder: DecoderConfig = REFERENCE,
    *,
    sequence_ids: Sequence | None = None,
    tiou_thresholds: Sequence[float] = TIOU_THRESHOLDS,
    f1_overlaps: Sequence[int] = F1_OVERLAPS,
) -> dict:
    """Every metric of one split.

    Args:
        probs: per sequence, (T, K+1) frame probabilities (background last), real frames only.
        labels: per sequence, (T,) labels in ``-1..K``.
        decoder: the decoder turning probabilities into segments.
        sequence_ids: names of the sequences (default: their positions).
        tiou_thresholds: mAP thresholds.
        f1_overlaps: the k of F1@k, in percent.

    Returns:
        ``{"ap", "mAP", "average_mAP"}`` of :func:`mean_average_precision`, plus
        ``"frame_accuracy"`` and ``"edit"`` (percent; edit is the mean over sequences, as in
        MS-TCN), ``"f1"`` ``{k: percent}``, ``"decoder"`` (the config as a dict),
        ``"num_sequences"`` (evaluated), ``"num_unlabelled_skipped"``,
        ``"num_ground_truth"`` and ``"num_detections"``.

    Raises:
        EvaluationError: mismatched shapes, no labelled sequence, or no ground-truth segment.
    """
    p_list, y_list, ids, K = _checked(probs, labels, sequence_ids)
    gt = ground_truth_rows(y_list, K, ids)
    dets = detection_rows(p_list, decoder, ids)
    out = mean_average_precision(dets, gt, tiou_thresholds)
    pred = [p.argmax(axis=1) for p in p_list]
    out["frame_accuracy"] = frame_accuracy(pred, y_list)
    out["edit"] = float(np.mean([edit_score(p, y, K) for p, y in zip(pred, y_list)]))
    out["f1"] = f1_score(pred, y_list, K, f1_overlaps)
    out["decoder"] = asdict(decoder)
    out["num_sequences"] = len(ids)
    out["num_unlabelled_skipped"] = len(probs) - len(ids)
    out["num_ground_truth"] = len(gt)
    out["num_detections"] = len(dets)
    return out


def select_decoder(
    probs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    candidates: Sequence[DecoderConfig] = DEFAULT_CANDIDATES,
    *,
    split: str = "val",
    tiou_thresholds: Sequence[float] = TIOU_THRESHOLDS,
) -> tuple[DecoderConfig, list[tuple[DecoderConfig, float]]]:
    """The candidate with the best average mAP on a validation split.

    Use a split carved from the training data (or a corpus's own validation split), never the
    split the figures are reported on.

    Args:
        probs: per validation sequence, (T, K+1) frame probabilities.
        labels: per validation sequence, (T,) labels in ``-1..K``.
        candidates: decoders to compare (default :data:`DEFAULT_CANDIDATES`).
        split: the name of the split the arrays come from; names starting with ``test`` are
            refused.
        tiou_thresholds: mAP thresholds averaged into the criterion.

    Returns:
        ``(best, table)``: the best config (ties: the earliest candidate) and every
        ``(candidate, average mAP)`` in candidate order.

    Raises:
        ConfigError: a test split, or no candidate.
        EvaluationError: as :func:`evaluate_sequences`.
    """
    if split.strip().lower().startswith("test"):
        raise ConfigError(
            f"select_decoder(split={split!r}): the decoder must not be chosen on the test split; "
            "pass a validation split carved from the training data"
        )
    if not candidates:
        raise ConfigError("select_decoder needs at least one candidate decoder")
    p_list, y_list, ids, K = _checked(probs, labels, None)
    gt = ground_truth_rows(y_list, K, ids)
    table = [
        (cfg, mean_average_precision(detection_rows(p_list, cfg, ids), gt, tiou_thresholds)[
            "average_mAP"])
        for cfg in candidates
    ]
    best = max(range(len(table)), key=lambda i: (table[i][1], -i))
    return table[best][0], table


def majority_class(train_labels: Sequence[np.ndarray], num_classes: int) -> int:
    """The most frequent action class (0..K-1) over the labelled training frames.

    Background is left out on purpose: predicting it everywhere is the all-background baseline.
    Ties go to the lower class index.

    Raises:
        EvaluationError: no training frame carries an action class.
    """
    counts = np.zeros(num_classes, np.int64)
    for y in train_labels:
        y = np.asarray(y)
        y = y[(y >= 0) & (y < num_classes)]
        counts += np.bincount(y, minlength=num_classes)[:num_classes]
    if counts.sum() == 0:
        raise EvaluationError("no training frame carries an action class; no majority class")
    return int(counts.argmax())


def trivial_baselines(
    train_labels: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    num_classes: int,
    *,
    sequence_ids: Sequence | None = None,
    tiou_thresholds: Sequence[float] = TIOU_THRESHOLDS,
    f1_overlaps: Sequence[int] = F1_OVERLAPS,
) -> dict[str, dict]:
    """All-background and majority-class predictions, scored like a model.

    Each baseline is a one-hot (T, K+1) probability array decoded by the argmax-run decoder: the
    all-background one has no segment (mAP 0); the majority-class one predicts
    :func:`majority_class` of the training labels on every frame, one segment per sequence with
    score 1 (equal scores: input order decides, see ``metrics``).

    Args:
        train_labels: per training sequence, (T,) labels in ``-1..K`` (only counted).
        labels: per evaluated sequence, (T,) labels in ``-1..K``.
        num_classes: K.
        sequence_ids, tiou_thresholds, f1_overlaps: as :func:`evaluate_sequences`.

    Returns:
        ``{"all_background": metrics, "majority_class": metrics}``; the latter carries
        ``"class"``, the predicted class index.
    """
    def constant(c: int) -> list[np.ndarray]:
        out = []
        for y in labels:
            p = np.zeros((len(y), num_classes + 1))
            p[:, c] = 1.0
            out.append(p)
        return out

    kw = dict(sequence_ids=sequence_ids, tiou_thresholds=tiou_thresholds, f1_overlaps=f1_overlaps)
    major = majority_class(train_labels, num_classes)
    result = {
        "all_background": evaluate_sequences(constant(num_classes), labels, ARGMAX, **kw),
        "majority_class": evaluate_sequences(constant(major), labels, ARGMAX, **kw),
    }
    result["majority_class"]["class"] = major
    return result
