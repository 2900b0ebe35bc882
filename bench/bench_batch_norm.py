"""The fused closing ops of a unit against ATen's separate ops, in the same run.

``relu(bn(x) + residual)`` as the backbones' blocks run it (`sscl.kernels.batch_norm`: fused
statistics, one normalise + add + ReLU pass, ATen's backward) against ``F.batch_norm``, ``+`` and
``torch.relu`` (what plain PyTorch runs), at the demo's and the paper's block shapes:

- training, forward + backward (the running averages updated, gradients for x, the affine
  parameters and the residual);
- inference, forward only with the running statistics (what ``sscl predict`` runs).

Target 1.0: the default path must be at least as fast as plain PyTorch on every ISA (issue 20);
run it natively and under the AVX2 cap. The ratio is the median over alternating rounds.
"""

from __future__ import annotations

import os
import statistics

import pytest
import torch
from benchutil import alternating_times

from sscl.kernels import batch_norm as kbn
from sscl.kernels import build

ROUNDS = int(os.environ.get("SSCL_BENCH_ROUNDS", 3)) * 5
SHAPES = {
    "demo blocks 1-4": (64, 16, 100, 20),
    "demo blocks 9-10": (64, 64, 25, 20),
    "paper blocks 1-4": (32, 64, 200, 25),
}
SMOKE_SHAPE = (4, 8, 16, 20)
CLOSINGS = {"bn": (False, False), "bn+relu": (False, True), "bn+res+relu": (True, True)}


@pytest.fixture(scope="module", autouse=True)
def _fused_backend():
    if not build.ensure_loaded("cpu"):
        pytest.skip("the fused CPU extension did not build here")


def _inputs(shape, residual):
    g = torch.Generator().manual_seed(0)
    c = shape[1]
    x = (torch.randn(shape, generator=g) * 2 + 0.5).requires_grad_()
    r = torch.randn(shape, generator=g).requires_grad_() if residual else None
    w = (torch.rand(c, generator=g) + 0.5).requires_grad_()
    b = torch.randn(c, generator=g).requires_grad_()
    gy = torch.randn(shape, generator=g)
    return x, r, w, b, gy


def _compare(steps: dict, smoke: bool, ratios, name: str, shape, what: str) -> None:
    """Time ``steps`` ("ours", "aten") in alternating rounds and record their ratio.

    A few calls of each go first: the first case of a run otherwise pays the thread pool's start
    and the allocator's first touch of these sizes (0.95x in one such run, 1.3-1.4x warm)."""
    for _ in range(3):
        for step in steps.values():
            step()
    times = alternating_times(steps, 1 if smoke else ROUNDS)
    ratio = statistics.median(a / o for o, a in zip(times["ours"], times["aten"]))
    detail = (f"{shape}: ours {statistics.median(times['ours']) * 1e3:.2f} ms, ATen "
              f"{statistics.median(times['aten']) * 1e3:.2f} ms ({what})")
    print(f"\nbatch norm {name}: {ratio:.2f}x ({detail})")
    ratios.add(name, ratio, 1.0, detail)


@pytest.mark.parametrize("closing", list(CLOSINGS))
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_training_closing_vs_separate_ops(shape_name, closing, ratios, request):
    smoke = request.config.getoption("benchmark_disable", False)
    shape = SMOKE_SHAPE if smoke else SHAPES[shape_name]
    residual, relu = CLOSINGS[closing]
    x, r, w, b, gy = _inputs(shape, residual)
    leaves = [t for t in (x, w, b, r) if t is not None]
    rm, rv = torch.zeros(shape[1]), torch.ones(shape[1])

    def step_of(fn):
        def step():
            y = fn(x, w, b, rm, rv, 0.1, 1e-5, r, relu)
            torch.autograd.grad(y, leaves, gy)
        return step

    steps = {"ours": step_of(kbn.batch_norm_train), "aten": step_of(kbn.batch_norm_train_ref)}
    _compare(steps, smoke, ratios, f"{closing} training, {shape_name}", shape, "fwd + bwd")


@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_inference_closing_vs_separate_ops(shape_name, ratios, request):
    from torch import nn

    from sscl.models.layers import BatchNorm2d, batch_norm_act

    smoke = request.config.getoption("benchmark_disable", False)
    shape = SMOKE_SHAPE if smoke else SHAPES[shape_name]
    x, r, *_ = _inputs(shape, True)
    x, r = x.detach(), r.detach()
    ours = BatchNorm2d(shape[1]).eval()
    with torch.no_grad():
        ours.running_var.uniform_(0.5, 1.5)
        ours.running_mean.normal_()
    plain = nn.BatchNorm2d(shape[1]).eval()
    plain.load_state_dict(ours.state_dict())

    def step_of(bn):
        def step():
            with torch.no_grad():
                batch_norm_act(bn, x, r, True)
        return step

    steps = {"ours": step_of(ours), "aten": step_of(plain)}
    _compare(steps, smoke, ratios, f"bn+res+relu inference, {shape_name}", shape, "eval")
