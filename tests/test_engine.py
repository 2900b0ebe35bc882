"""The training loop's pieces: the learning-rate schedule (the loop itself runs end to end in
``test_train.py``)."""

from __future__ import annotations

import pytest

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


class _Acc:
    is_main_process = True


def test_the_log_averages_a_window_of_steps_weighted_by_their_real_items(tmp_path):
    """A logged figure is the mean over the steps since the last line, each weighted by its real
    items: an epoch's padded remainder batch weighs what its real items weigh."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sscl.checkpoint import TrainState
    from sscl.engine import StepLog, StepResult
    from sscl.rundir import StageDir

    board = StepLog(StageDir(tmp_path), _Acc(), "test", 0, 4, every=2)
    state = TrainState()
    # The fourth step is an epoch's remainder: 16 real items (the rest padding).
    steps = [(1.0, 0.50, 64.0), (2.0, 0.75, 64.0), (2.0, 0.25, 64.0), (3.0, 1.00, 16.0)]
    with board:
        for loss, top1, items in steps:
            state.step += 1
            board.step(state, StepResult(loss, {"top1_global": top1}, False, 0.0, items, {}),
                       lr=0.1, grad_norm=None, samples=64, seconds=1.0)
    board.close()
    events = EventAccumulator(str(tmp_path / "events"))
    events.Reload()
    top1 = {e.step: e.value for e in events.Scalars("top1_global")}
    loss = {e.step: e.value for e in events.Scalars("loss/total")}
    assert top1[1] == pytest.approx(0.5)  # the first step is logged on its own
    assert top1[2] == pytest.approx(0.75)  # the window restarted after step 1
    # Steps 3 and 4, weighted by real items; the last step alone would say 1.0.
    assert top1[4] == pytest.approx((0.25 * 64 + 1.0 * 16) / 80)
    assert loss[4] == pytest.approx((2.0 * 64 + 3.0 * 16) / 80)
    assert sorted(top1) == [1, 2, 4]
