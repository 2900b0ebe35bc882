"""Fused `sscl::graph_conv` against the fastest unfused PyTorch formulation, forward + backward.

Shapes are the spatial graph convolutions of the 2s-AGCN-style backbone (METHOD.md section 3,
issue 3): V = 25 joints, K = 3 subsets, widths 64/128/256 at T, T/2, T/4, T/8. Baselines, all
measured in the same run and on the same inputs (the fastest one is the reference for the ratio):

- einsum_ref: the oracle `graph_conv_ref`, one three-operand einsum;
- conv_first: a 1x1 conv2d to K*C' channels, then einsum 'nkctv,kvw->nctw' (ST-GCN's code);
- agg_first: einsum 'nctv,kvw->nkctw', then a 1x1 conv2d from K*C channels.

Implementations are timed round-robin (one call of each per round, median over rounds), which
keeps a shared, noisy machine's load drift out of the ratios. Achieved GFLOP/s counts the useful
work, 3x the forward (forward + grad_x + grad_W; grad_A is of the same order as the aggregation
term and not counted), against this machine's fp32 matmul rate (a 1024^3 torch.mm) sampled in
the same rounds.

Ratios and details are printed in the "sscl ratios" summary (bench/conftest.py); the issue's
targets are checked when timing is on.

Every row names the instruction-set variant of the fused kernel that ran (`cpu_isa`), what the
CPU and the build offer, torch's own CPU capability and the path `graph_conv_auto` takes
(`graph_conv_path`); `-s` also prints them once before the first shape.

Run:  pytest bench/bench_graph_conv.py            (CI-sized grid, about a minute)
      SSCL_BENCH_FULL_GRID=1 pytest bench/bench_graph_conv.py   (the full AGCN grid)
      AVX2 on an AVX-512 machine, both sides (the kernel's copy and torch's MKL/oneDNN/ATen):
      SSCL_GRAPH_CONV_MAX_ISA=avx2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 \
          MKL_ENABLE_INSTRUCTIONS=AVX2 pytest bench/bench_graph_conv.py -s
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from benchutil import alternating_times

from sscl.kernels import backend, graph_conv, graph_conv_path, graph_conv_ref
from sscl.kernels.build import cpu_gemm, cpu_isa_details

V, K = 25, 3
CI_SHAPES = [(16, 64, 64, 64), (16, 128, 128, 38), (16, 256, 256, 38)]
FULL_SHAPES = [
    (16, 64, 64, 300), (16, 64, 64, 150), (64, 64, 64, 64), (16, 64, 128, 150),
    (16, 128, 128, 150), (16, 128, 128, 75), (16, 128, 256, 75), (16, 256, 256, 75),
    (64, 256, 256, 38),
]
FULL = os.environ.get("SSCL_BENCH_FULL_GRID", "") not in ("", "0")
SHAPES = FULL_SHAPES if FULL else CI_SHAPES
ROUNDS = int(os.environ.get("SSCL_BENCH_ROUNDS", "7"))


_ISA_ENVS = ("SSCL_GRAPH_CONV_MAX_ISA", "SSCL_GRAPH_CONV_GEMM", "ATEN_CPU_CAPABILITY",
             "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def isa_line() -> str:
    """The kernel variant in use, the CPU's and the build's highest, the tile GEMMs' backend at
    32+ and at 16 channels, torch's capability, the `graph_conv_auto` path and the ISA-limiting
    environment variables that are set."""
    d = cpu_isa_details()
    envs = " ".join(f"{k}={os.environ[k]}" for k in _ISA_ENVS if k in os.environ) or "none"
    return (
        f"kernel isa {d['used']} (cpu {d['cpu']}, compiled {d['compiled']}), tile gemm "
        f"{d['gemm']} (16 channels: {cpu_gemm(16)}), torch cpu "
        f"capability {torch.backends.cpu.get_cpu_capability()}, graph_conv_auto path "
        f"{graph_conv_path('cpu')}, isa env: {envs}"
    )


_printed: list[bool] = []


def target(c: int, o: int) -> float | None:
    """Issue 3's CPU targets: >= 1.5x at the 64-channel shapes, >= 1.2x at the 256-channel ones."""
    if max(c, o) <= 64:
        return 1.5
    if min(c, o) >= 256:
        return 1.2
    return None


def conv_first(x, weight, bias, adjacency):
    k, o, c = weight.shape
    n, _, t, v = x.shape
    z = F.conv2d(x, weight.reshape(k * o, c, 1, 1)).view(n, k, o, t, v)
    return torch.einsum("nkotv,kvw->notw", z, adjacency) + bias.view(1, -1, 1, 1)


def agg_first(x, weight, bias, adjacency):
    k, o, c = weight.shape
    n, _, t, v = x.shape
    xa = torch.einsum("nctv,kvw->nkctw", x, adjacency).reshape(n, k * c, t, v)
    return F.conv2d(xa, weight.permute(1, 0, 2).reshape(o, k * c, 1, 1), bias)


IMPLS: dict[str, Callable] = {
    "fused": graph_conv,
    "einsum_ref": graph_conv_ref,
    "conv_first": conv_first,
    "agg_first": agg_first,
}


def forward_flops(n: int, c: int, o: int, t: int) -> float:
    return 2.0 * K * o * c * n * t * V + 2.0 * K * min(c, o) * n * t * V * V


def make_step(fn: Callable, n: int, c: int, o: int, t: int) -> Callable[[], None]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, t, V, generator=g).requires_grad_()
    w = (torch.randn(K, o, c, generator=g) / c**0.5).requires_grad_()
    b = torch.randn(o, generator=g).requires_grad_()
    a = (torch.rand(K, V, V, generator=g) / V**0.5).requires_grad_()
    gy = torch.randn(n, o, t, V, generator=g)

    def step() -> None:
        for p in (x, w, b, a):
            p.grad = None
        fn(x, w, b, a).backward(gy)

    return step


def test_matmul_rate(benchmark):
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    benchmark.pedantic(torch.mm, args=(a, b), rounds=ROUNDS * 2, iterations=1, warmup_rounds=2)
    if benchmark.stats:  # None under --benchmark-disable (CI's smoke run)
        benchmark.extra_info["gflops"] = round(2 * 1024**3 / benchmark.stats.stats.median / 1e9, 1)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n{}c{}o{}t{}".format(*s))
def test_graph_conv_fwd_bwd(benchmark, ratios, shape):
    n, c, o, t = shape
    isa = isa_line()
    if not _printed:
        print(f"\nbench_graph_conv: {isa}")
        _printed.append(True)
    steps = {name: make_step(fn, n, c, o, t) for name, fn in IMPLS.items()}
    mm_a, mm_b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    # the machine's fp32 matmul rate, sampled in the same rounds as the implementations
    steps["matmul"] = lambda: torch.mm(mm_a, mm_b)
    times = alternating_times(steps, ROUNDS)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    rate = 2 * 1024**3 / med.pop("matmul") / 1e9
    baseline = min((name for name in med if name != "fused"), key=med.__getitem__)
    benchmark.pedantic(steps["fused"], rounds=ROUNDS, iterations=1)
    flops = 3 * forward_flops(n, c, o, t)
    ratio = med[baseline] / med["fused"]
    gflops = flops / med["fused"] / 1e9
    benchmark.extra_info.update(
        {f"{name}_ms": round(1e3 * m, 2) for name, m in med.items()}
        | {"baseline": baseline, "ratio": round(ratio, 3), "fused_gflops": round(gflops, 1),
           "matmul_gflops": round(rate, 1), "threads": torch.get_num_threads(),
           "backend": backend("cpu"), "isa": isa}
    )
    ratios.add(
        f"graph_conv fwd+bwd N={n} C={c}->{o} T={t}",
        ratio,
        target(c, o),
        f"fused {1e3 * med['fused']:.1f} ms vs {baseline} {1e3 * med[baseline]:.1f} ms; "
        f"{gflops:.1f} GFLOP/s = {100 * gflops / rate:.0f}% of the {rate:.0f} GFLOP/s fp32 mm; "
        f"{torch.get_num_threads()} threads, {backend('cpu')}; {isa}",
    )
