"""The training loop's pieces: the learning-rate schedule (the loop itself runs end to end in
``test_train.py``)."""

from __future__ import annotations

from sscl.config import OptimConfig
from sscl.engine import lr_at


def test_learning_rate_schedules():
    warm = OptimConfig(lr=0.1, warmup_epochs=1, schedule="step", milestones=(2.0, 3.0), gamma=0.1)
    # 10 steps an epoch: linear warm-up over the first 10 steps, then x0.1 at epochs 2 and 3.
    assert [round(lr_at(warm, s, 10, 50), 6) for s in (0, 4, 9, 10, 19, 20, 29, 30, 49)] == [
        0.01, 0.05, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    cos = OptimConfig(lr=0.2, schedule="cosine")
    assert lr_at(cos, 0, 10, 100) == 0.2
    assert abs(lr_at(cos, 50, 10, 100) - 0.1) < 1e-12
    assert lr_at(cos, 100, 10, 100) == 0.0
    assert lr_at(OptimConfig(lr=0.3, schedule="constant"), 77, 10, 100) == 0.3
