"""How far removing the step's non-arithmetic could take it: the step with batch norm and ReLU
for free, against the reference and the ceiling, in memory.

Three steps of `bench_train.py`'s settings on in-memory random views (no data path), timed in
alternating rounds:

- ``ours``: the whole-stack model as it is;
- ``ours, BN and ReLU free``: the same model with every block batch norm (statistics,
  normalisation, running averages, backward) and every block ReLU replaced by nothing (the
  residual adds stay): no fusion of those ops can do better than this;
- ``reference``: the reference model of the same case (einsum ST-GCN, or the plain-PyTorch AGCN).

With the ceiling (``ceiling.py``: the step's convolutions, matmuls and fused graph convolutions
each timed alone) it prints each step's share of the ceiling and its ratio to the reference, so
the question "can the target be reached by removing overhead?" has a measured answer
(bench/README "The step's ceiling").

Run: python bench/overhead_bound.py [--setting demo|paper] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the trainer's entry points do

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ceiling  # noqa: E402
from bench_backbone import plain_pytorch  # noqa: E402
from benchutil import alternating_times  # noqa: E402
from reference_stgcn import ReferenceSTGCN  # noqa: E402

from sscl.config import ContrastiveConfig  # noqa: E402
from sscl.contrastive import Pretrainer  # noqa: E402
from sscl.data.layouts import get_layout  # noqa: E402
from sscl.models import AGCN, STGCN  # noqa: E402
from sscl.models.layers import BatchNorm2d  # noqa: E402

#: (batch, frames, layout, persons, queue, steps a round) of bench_train's two cases.
SETTINGS = {
    "demo": (64, 100, "kinect20", 1, 4096, 2),
    "paper": (16, 200, "ntu25", 2, 32768, 1),
}


def _backbones(setting: str):
    _, _, layout, persons, _, _ = SETTINGS[setting]
    if setting == "demo":
        def ours():
            return STGCN(get_layout(layout), num_persons=persons, width=0.25)

        def ref():
            return ReferenceSTGCN.like(ours())
    else:
        def ours():
            return AGCN(layout, num_persons=persons, width=1.0)

        def ref():
            return plain_pytorch(ours())
    return ours, ref


def _free_bn_relu(self: BatchNorm2d, x, residual, relu):
    return x if residual is None else x + residual


def _step(backbone_fn, batch: dict, queue: int, free: bool = False):
    torch.manual_seed(0)
    method = ContrastiveConfig(method="skeletonclr", queue_size=queue, snippet=True,
                               num_snippets=19)
    model = Pretrainer(method, backbone_fn)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                          momentum=0.9)

    def step():
        fused = BatchNorm2d.fused
        if free:
            BatchNorm2d.fused = _free_bn_relu
        try:
            loss, _ = model(batch, 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.momentum_update()
        finally:
            BatchNorm2d.fused = fused

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", choices=tuple(SETTINGS), default="demo")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    B, T, layout, M, queue, per_round = SETTINGS[args.setting]
    V = get_layout(layout).num_joints
    g = torch.Generator().manual_seed(0)
    batch = {"query": 0.3 * torch.randn(B, 3, T, V, M, generator=g),
             "key": 0.3 * torch.randn(B, 3, T, V, M, generator=g),
             "weight": torch.ones(B), "position": torch.arange(B)}
    ours_fn, ref_fn = _backbones(args.setting)
    steps = {"ours": _step(ours_fn, batch, queue),
             "ours, BN and ReLU free": _step(ours_fn, batch, queue, free=True),
             "reference": _step(ref_fn, batch, queue)}

    def repeated(step):
        return lambda: [step() for _ in range(per_round)]

    times = alternating_times({k: repeated(s) for k, s in steps.items()}, args.rounds)
    ms = {k: statistics.median(v) / per_round * 1e3 for k, v in times.items()}
    groups = ceiling.replay(ceiling.capture(steps["ours"]))
    ceil_ms = sum(groups.values()) * 1e3
    print(f"{args.setting}: batch {B}, T={T}, {args.rounds} rounds of {per_round} step(s), "
          f"{torch.get_num_threads()} threads, in memory")
    print(f"ceiling {ceil_ms:.0f} ms a step ("
          + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in sorted(groups.items()))
          + f") = {ms['reference'] / ceil_ms:.2f}x the reference")
    print(f"{'step':<26}{'ms a step':>10}{'vs reference':>14}{'% of ceiling':>14}")
    for k, v in ms.items():
        print(f"{k:<26}{v:>10.0f}{ms['reference'] / v:>13.2f}x{ceil_ms / v:>13.0%}")


if __name__ == "__main__":
    main()
