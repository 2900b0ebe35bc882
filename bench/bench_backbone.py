"""One whole AGCN backbone training step: fused graph convolution vs unfused PyTorch.

Issue 3, section 3, "one whole backbone training step": forward + backward + SGD step of the
10-block AGCN backbone (METHOD.md section 3) with `sscl.kernels.graph_conv`, against the same
model (same weights) with an unfused formulation swapped in through `graph_conv_impl`. The
baseline is the fastest, in this run, of three unfused formulations of the same product:
the einsum oracle `graph_conv_ref`, aggregate-first (A, then W) and mix-first (W as a 1x1
conv to K*C', then A, as the ST-GCN / 2s-AGCN code does). Reported: step time, ratio,
samples/s, and the step's achieved GFLOP/s against this machine's fp32 matmul rate measured in
the same run (FLOPs: torch's FlopCounterMode on each unfused model, the smallest of the three,
i.e. the work of the cheaper contraction order).

Shape: N=$SSCL_BENCH_N (8) samples of T=$SSCL_BENCH_T (64) frames, NTU-25, one person, width
$SSCL_BENCH_WIDTH (1.0: 64..256 channels). Short by default. Threads: torch's default (set
OMP_NUM_THREADS); on a shared, oversubscribed machine multithreaded timings swing widely.
"""

from __future__ import annotations

import copy
import os
import statistics

import pytest
import torch
from benchutil import alternating_times, median_time
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sscl.kernels import backend, graph_conv, graph_conv_mix_first, graph_conv_ref
from sscl.models.agcn import AGCN
from sscl.models.layers import BatchNorm2d

N = int(os.environ.get("SSCL_BENCH_N", "8"))
T = int(os.environ.get("SSCL_BENCH_T", "64"))
WIDTH = float(os.environ.get("SSCL_BENCH_WIDTH", "1.0"))
REPEAT = 5


def aggregate_first(x, weight, bias, adjacency):
    """Unfused: aggregate over joints per subset (K-times-larger tensor), then mix channels."""
    adj = "kvw" if adjacency.dim() == 3 else "nkvw"
    xa = torch.einsum(f"nctv,{adj}->nkctw", x, adjacency)
    y = torch.einsum("koc,nkctw->notw", weight, xa)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


BASELINES = {
    "einsum_ref": graph_conv_ref,
    "aggregate_first": aggregate_first,
    "mix_first": graph_conv_mix_first,
}


def _with_impl(model: AGCN, impl) -> AGCN:
    """A copy of `model` (same weights) whose graph convolutions all call `impl`."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if hasattr(module, "graph_conv_impl"):
            module.graph_conv_impl = impl
    return twin


def plain_pytorch(model: nn.Module) -> nn.Module:
    """The same model (a copy, same weights) as plain PyTorch would run it: every graph
    convolution on the einsum oracle `graph_conv_ref`, every batch norm ``nn.BatchNorm2d``'s
    own (the models' `BatchNorm2d` adds no state, so the class swap keeps the state dict)."""
    twin = _with_impl(model, graph_conv_ref)
    for module in twin.modules():
        if type(module) is BatchNorm2d:
            module.__class__ = nn.BatchNorm2d
    return twin


def _step_fn(model: AGCN, x: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        model.embed(x).pow(2).mean().backward()
        opt.step()

    return step


def _step_flops(model: AGCN, x: torch.Tensor) -> int:
    """FLOPs of one training step as torch's FlopCounterMode counts them (matmuls, convs)."""
    counter = FlopCounterMode(display=False)
    with counter:
        _step_fn(model, x)()
    return counter.get_total_flops()


def _matmul_gflops() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    return 2 * 1024**3 / median_time(lambda: torch.mm(a, b), repeat=REPEAT, number=3) / 1e9


def test_bench_backbone_training_step(benchmark, ratios):
    torch.manual_seed(0)
    model = AGCN("ntu25", num_persons=1, width=WIDTH, graph_conv_impl=graph_conv)
    x = torch.randn(N, 3, T, 25, 1, generator=torch.Generator().manual_seed(1))

    if benchmark.disabled:  # --benchmark-disable (CI smoke test): every step runs once
        for impl in BASELINES.values():
            _step_fn(_with_impl(model, impl), x)()
        benchmark(_step_fn(_with_impl(model, graph_conv), x))
        return

    steps = {
        name: _step_fn(_with_impl(model, impl), x)
        for name, impl in {"fused": graph_conv, **BASELINES}.items()
    }
    times = alternating_times(steps, REPEAT)  # the four models interleaved
    fused_s = statistics.median(times.pop("fused"))
    baseline_s = {name: statistics.median(t) for name, t in times.items()}
    best = min(baseline_s, key=baseline_s.get)
    benchmark.pedantic(steps["fused"], rounds=REPEAT, iterations=1)

    step_flops = min(_step_flops(_with_impl(model, impl), x) for impl in BASELINES.values())
    matmul = _matmul_gflops()
    ratio = baseline_s[best] / fused_s
    info = {
        "shape": f"N={N} T={T} V=25 M=1 width={WIDTH}",
        "backend": backend(x.device),
        "fused_ms": 1e3 * fused_s,
        **{f"{name}_ms": 1e3 * s for name, s in baseline_s.items()},
        "baseline": best,
        "ratio": ratio,
        "samples_per_s": N / fused_s,
        "step_gflop": step_flops / 1e9,
        "fused_gflops": step_flops / fused_s / 1e9,
        "matmul_gflops": matmul,
        "fraction_of_matmul": step_flops / fused_s / 1e9 / matmul,
    }
    benchmark.extra_info.update(info)
    ratios.add(
        "AGCN training step (fused vs " + best + ")",
        ratio,
        detail=(
            f"{info['shape']}, {info['backend']}: {info['fused_ms']:.0f} ms vs "
            f"{1e3 * baseline_s[best]:.0f} ms, {info['fused_gflops']:.1f} GFLOP/s "
            f"= {info['fraction_of_matmul']:.2f} x matmul {matmul:.0f} GFLOP/s"
        ),
    )


@pytest.mark.parametrize("name", BASELINES)
def test_bench_backbone_baselines_compute_the_op(name):
    # A baseline that computed something else would make the ratio meaningless.
    g = torch.Generator().manual_seed(2)
    x, w, a = (
        torch.randn(2, 4, 5, 25, generator=g),
        torch.randn(3, 6, 4, generator=g),
        torch.rand(2, 3, 25, 25, generator=g),
    )
    torch.testing.assert_close(BASELINES[name](x, w, None, a), graph_conv_ref(x, w, None, a))
    torch.testing.assert_close(BASELINES[name](x, w, None, a[0]), graph_conv_ref(x, w, None, a[0]))
