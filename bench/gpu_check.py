"""One-call GPU check of `sscl::graph_conv`: parity tests, then fused vs unfused timings.

Runs every `gpu`-marked test (graph_conv parity, the localizer under CUDA autocast, device-side
augmentation), then times forward + backward of the fused CUDA op against the fastest unfused
PyTorch formulation (the same three as bench/bench_graph_conv.py) in float32 and bfloat16 at the
AGCN layer shapes, and prints a table (card, ratio, achieved TFLOP/s). Issue 3's GPU target:
>= 1.5x in fp32 and bf16 at the 64-channel shapes. Last, one whole AGCN training step (the
bench_backbone.py step) fused, and the models' default `graph_conv_auto`, vs the best unfused
model, fp32 and bf16 autocast. Budget: well
under 5 minutes on an H100 (the first call also builds the extension). Needs torch, numpy and
numba only (no zarr, no DALI).

Run:  python bench/gpu_check.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(16, 64, 64, 300), (64, 64, 64, 64), (16, 128, 128, 150), (16, 256, 256, 75)]
V, K = 25, 3


def time_fwd_bwd(fn, args, grad_y, rounds: int = 20) -> float:
    """Median milliseconds of forward + backward, CUDA events, after 3 warm-up calls."""
    for _ in range(3):
        fn(*args).backward(grad_y)
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(*args).backward(grad_y)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch; nothing to check (exit 0).")
        return 0
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_graph_conv import agg_first, conv_first, forward_flops

    from sscl.kernels import backend, graph_conv, graph_conv_ref

    card = torch.cuda.get_device_name()
    print(f"gpu_check on {card}, torch {torch.__version__}, backend {backend('cuda')}")
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "kernels" / "test_graph_conv.py"),
         str(ROOT / "tests" / "models"), str(ROOT / "tests" / "data" / "test_gpu_augment.py")],
        cwd=ROOT,
    )
    impls = {"fused": graph_conv, "einsum_ref": graph_conv_ref, "conv_first": conv_first,
             "agg_first": agg_first}
    print(f"{'dtype':>9} {'N,C->Cout,T':>16} {'fused ms':>9} {'best unfused':>20} "
          f"{'ratio':>6} {'TFLOP/s':>8}")
    worst_64 = float("inf")
    for dtype in (torch.float32, torch.bfloat16):
        for n, c, o, t in SHAPES:
            g = torch.Generator(device="cuda").manual_seed(0)
            x, w, b, a, gy = (
                torch.randn(*s, generator=g, device="cuda", dtype=dtype)
                for s in ((n, c, t, V), (K, o, c), (o,), (K, V, V), (n, o, t, V))
            )
            args = [x.requires_grad_(), (w / c**0.5).requires_grad_(), b.requires_grad_(),
                    (a / V).requires_grad_()]
            ms = {name: time_fwd_bwd(fn, args, gy) for name, fn in impls.items()}
            base = min((k for k in ms if k not in ("fused", "auto")), key=ms.__getitem__)
            ratio = ms[base] / ms["fused"]
            tflops = 3 * forward_flops(n, c, o, t) / (ms["fused"] * 1e-3) / 1e12
            if max(c, o) <= 64:
                worst_64 = min(worst_64, ratio)
            print(f"{str(dtype)[6:]:>9} {f'{n},{c}->{o},{t}':>16} {ms['fused']:9.2f} "
                  f"{base:>11} {ms[base]:7.2f}ms {ratio:6.2f} {tflops:8.2f}")
    print(f"64-channel shapes: worst ratio {worst_64:.2f} (target >= 1.5)")
    backbone_steps()
    print(f"gpu tests {'passed' if tests.returncode == 0 else 'FAILED'}")
    return tests.returncode


def backbone_steps(n: int = 32, t: int = 64) -> None:
    """AGCN forward + backward + SGD step (bench_backbone's), fused vs best unfused, on CUDA."""
    from bench_backbone import BASELINES, _step_fn, _with_impl

    from sscl.kernels import graph_conv, graph_conv_auto
    from sscl.models.agcn import AGCN

    torch.manual_seed(0)
    model = AGCN("ntu25", num_persons=2, width=1.0, graph_conv_impl=graph_conv).cuda()
    x = torch.randn(n, 3, t, 25, 2, device="cuda")
    for dtype in (torch.float32, torch.bfloat16):
        ms = {}
        for name, impl in {"fused": graph_conv, "auto": graph_conv_auto, **BASELINES}.items():
            step = _step_fn(_with_impl(model, impl), x)

            def run(step=step, dtype=dtype):
                with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
                    step()

            for _ in range(3):
                run()
            times = []
            for _ in range(10):
                start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                start.record()
                run()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            ms[name] = statistics.median(times)
        base = min((k for k in ms if k not in ("fused", "auto")), key=ms.__getitem__)
        print(f"AGCN step N={n} T={t} M=2 {str(dtype)[6:]}: fused {ms['fused']:.2f} ms, "
              f"{base} {ms[base]:.2f} ms, ratio {ms[base] / ms['fused']:.2f}, "
              f"models' default (graph_conv_auto) {ms['auto']:.2f} ms = "
              f"{ms[base] / ms['auto']:.2f}x the best unfused, "
              f"{n / ms['fused'] * 1e3:.0f} samples/s; all: "
              + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()))


if __name__ == "__main__":
    sys.exit(main())
