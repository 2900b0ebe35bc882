"""The demo preset's golden loss curve (torchtune's recipe tests, torchtitan's golden losses).

The first 20 pretraining and 20 finetuning losses of ``--config demo`` (on the demo corpus,
synthesized in the test's cache) sit against a stored curve. A change to the model, the loss,
the data, the augmentation or the optimizer that moves them fails here. The negative control
runs the same steps with both learning rates doubled and must fail the same check, so the
tolerance is not so wide that it accepts anything.

Tolerance: each loss within 2 % of the stored one (relative). Rounding differs between CPUs
(ATen's vectorised kernels, oneDNN, the fused graph convolution's ISA variant, Numba's code
generation); across those, measured here by switching each of them (ATEN_CPU_CAPABILITY
default/avx2, SSCL_GRAPH_CONV_MAX_ISA generic/avx2, NUMBA_CPU_NAME generic/haswell), the 40
losses moved by at most MAX_ISA_DRIFT of their value; doubling the learning rates moves them by
several times the tolerance (the control asserts at least 3x).

Regenerate (after a change meant to move the curve, saying why in the commit):
``SSCL_GOLDEN_RECORD=1 python -m pytest tests/configs/test_demo_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers import trainrun as T

GOLDEN = Path(__file__).with_name("golden") / "demo_losses.json"
TOLERANCE = 0.02
STEPS = 20
pytestmark = [pytest.mark.slow, pytest.mark.isa]


def losses(tmp_path: Path, name: str, lr_scale: float = 1.0) -> dict[str, list[float]]:
    """Per-step losses of the first STEPS pretraining and finetuning steps of the demo."""
    run = tmp_path / name
    lr = {"pretrain": 0.1 * lr_scale, "finetune": 0.01 * lr_scale}
    T.run_train(["--config", "demo", "--run-dir", str(run), "--set", "run.stage=pretrain",
                 "--set", f"optim.max_steps={STEPS}", "--set", f"optim.lr={lr['pretrain']}",
                 "--set", "probe.corpus=null", "--set", "run.log_every=1",
                 "--set", "data.loader.num_workers=1"], cwd=tmp_path, timeout=900)
    T.run_train(["--config", "demo", "--run-dir", str(run), "--set", "run.stage=finetune",
                 "--set", f"finetune.optim.max_steps={STEPS}",
                 "--set", f"finetune.optim.lr={lr['finetune']}",
                 "--set", "finetune.scratch_control=false", "--set", "run.log_every=1"],
                cwd=tmp_path, timeout=900)
    out = {}
    for stage in ("pretrain", "finetune"):
        events = EventAccumulator(str(run / stage / "events"))
        events.Reload()
        out[stage] = [e.value for e in events.Scalars("loss/total")]
        assert [e.step for e in events.Scalars("loss/total")] == list(range(1, STEPS + 1))
    return out


def worst_deviation(got: dict[str, list[float]], want: dict[str, list[float]]) -> float:
    """The largest relative difference of a loss from the stored one."""
    return max(abs(g - w) / abs(w) for stage in want for g, w in zip(got[stage], want[stage]))


def test_demo_loss_curve_matches_the_stored_one_and_a_doubled_lr_does_not(tmp_path):
    got = losses(tmp_path, "golden")
    if os.environ.get("SSCL_GOLDEN_RECORD"):
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert worst_deviation(got, want) <= TOLERANCE, (got, want)
    doubled = losses(tmp_path, "doubled_lr", lr_scale=2.0)
    assert worst_deviation(doubled, want) > 3 * TOLERANCE, (doubled, want)
