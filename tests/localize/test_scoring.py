"""A split's metrics, the decoder choice on validation data, and the trivial baselines."""

from __future__ import annotations

import numpy as np
import pytest

from sscl.errors import ConfigError, EvaluationError
from sscl.localize.postprocess import ARGMAX, REFERENCE, DecoderConfig
from sscl.localize.scoring import (
    evaluate_sequences,
    majority_class,
    select_decoder,
    trivial_baselines,
)

K = 3


def one_hot(labels: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """(T, K+1) probabilities peaked on each frame's label (background for -1)."""
    target = np.where(labels < 0, K, labels)
    probs = np.full((len(labels), K + 1), (1 - peak) / K)
    probs[np.arange(len(labels)), target] = peak
    return probs


def split(rng: np.random.Generator, n: int = 4) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        y = np.full(rng.integers(80, 160), K)
        for a in range(0, len(y) - 20, 30):
            if rng.random() < 0.6:
                y[a + 3:a + 3 + rng.integers(8, 20)] = rng.integers(0, K)
        out.append(y)
    return out


def test_perfect_probabilities_score_one_and_metrics_are_complete():
    labels = split(np.random.default_rng(0))
    out = evaluate_sequences([one_hot(y) for y in labels], labels, ARGMAX)
    assert out["average_mAP"] == 1.0
    assert out["frame_accuracy"] == 100.0 and out["edit"] == 100.0
    assert out["f1"] == {10: 100.0, 25: 100.0, 50: 100.0}
    assert out["num_sequences"] == 4 and out["num_unlabelled_skipped"] == 0
    assert out["num_ground_truth"] == out["num_detections"] > 0
    assert out["decoder"]["name"] == "argmax"


def test_unlabelled_sequences_are_skipped():
    labels = split(np.random.default_rng(1), 3)
    probs = [one_hot(y, 0.6) for y in labels]
    base = evaluate_sequences(probs, labels, REFERENCE, sequence_ids=["a", "b", "c"])
    noisy = np.random.default_rng(2).dirichlet(np.ones(K + 1), size=50)
    out = evaluate_sequences(
        probs + [noisy], labels + [np.full(50, -1)], REFERENCE, sequence_ids=["a", "b", "c", "d"]
    )
    assert out["num_unlabelled_skipped"] == 1
    for key in ("ap", "mAP", "average_mAP", "frame_accuracy", "edit", "f1", "num_detections"):
        assert out[key] == base[key]


def test_shape_errors_name_the_sequence():
    with pytest.raises(EvaluationError, match="'b'"):
        evaluate_sequences(
            [np.ones((5, 4)) / 4, np.ones((6, 4)) / 4], [np.zeros(5), np.zeros(5)],
            sequence_ids=["a", "b"],
        )
    with pytest.raises(EvaluationError, match="unlabelled"):
        evaluate_sequences([np.ones((5, 4)) / 4], [np.full(5, -1)])


def test_select_decoder_picks_the_best_on_validation_and_refuses_test():
    rng = np.random.default_rng(3)
    labels = split(rng, 5)
    # Noisy but right on average: the low-threshold reference decoder fires on noise, the
    # argmax decoder does not.
    probs = []
    for y in labels:
        p = one_hot(y, 0.7) + rng.uniform(0, 0.15, (len(y), K + 1))
        probs.append(p / p.sum(1, keepdims=True))
    best, table = select_decoder(probs, labels, [REFERENCE, ARGMAX])
    assert [c for c, _ in table] == [REFERENCE, ARGMAX]
    assert table[1][1] > table[0][1]
    assert best == ARGMAX
    # equal scores: the earliest candidate wins
    twin = DecoderConfig(name="argmax", min_len=1, nms="over_other")  # nms unused by argmax
    best, table = select_decoder(probs, labels, [twin, ARGMAX])
    assert table[0][1] == table[1][1] and best is twin
    for name in ("test", "Test", "test-xsub"):
        with pytest.raises(ConfigError, match="test split"):
            select_decoder(probs, labels, split=name)


def test_majority_class_ignores_background_and_unlabelled():
    train = [np.array([K, K, K, K, 1, 1, -1, -1, -1]), np.array([2, 1, 2, 2, 2, K])]
    assert majority_class(train, K) == 2  # 4 frames of class 2, 3 of class 1
    train[1][0] = 1
    assert majority_class(train, K) == 1  # 3 and 3: the lower index
    with pytest.raises(EvaluationError, match="no training frame"):
        majority_class([np.array([K, -1])], K)


def test_trivial_baselines_hand_case():
    # one sequence: class 0 on [0,10), background on [10,20); training majority is class 0.
    # majority: one segment [0,20), IoU 10/20 = 0.5 -> AP 1 at every tIoU <= 0.5;
    # frame accuracy 50 %; edit 100 (segments [0] vs [0]); F1@10,25,50 = 100 (IoU 0.5).
    y = np.array([0] * 10 + [K] * 10)
    out = trivial_baselines([y], [y], K)
    bg, major = out["all_background"], out["majority_class"]
    assert bg["average_mAP"] == 0.0 and bg["num_detections"] == 0
    assert bg["frame_accuracy"] == 50.0 and bg["edit"] == 0.0
    assert major["class"] == 0
    assert major["mAP"] == {h: 1.0 for h in (0.1, 0.2, 0.3, 0.4, 0.5)}
    assert major["frame_accuracy"] == 50.0
    assert major["f1"] == {10: 100.0, 25: 100.0, 50: 100.0}
    # with a 0.6 threshold the whole-sequence segment misses
    out = trivial_baselines([y], [y], K, tiou_thresholds=(0.6,))
    assert out["majority_class"]["average_mAP"] == 0.0
