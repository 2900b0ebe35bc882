"""Two gloo ranks against one process with the same global batch and BN grouping.

Run as a script by test_distributed.py (torch.multiprocessing.spawn needs the worker importable
by name in the children, which a pytest-imported module is not):

    python tests/helpers/dist_worker.py OUT_DIR

For each config it trains two steps with plain SGD on 2 ranks (local batch 3; gradients averaged
over ranks as DDP does) and on 1 process (batch 6, bn_splits=2: the same BN groups), and writes
OUT_DIR/{config}_{ranks|single}.pt with the losses, the averaged gradients and the final queues,
plus skeletonclr_onegroup.pt: one process with one BN group (a control that must differ).

Everything runs in float64. In float32 the comparison failed on an AVX2 machine although both
computations are the same sums in another order: one ReLU input of the tiny model (block 9, the
extreme view) lay 1.3e-6 from zero, rounding that differed with the reduction order put it on
the other side of the kink, and that one element carried 3 % of the d3m term's gradient (3 items
per BN group, 2 frames: few elements, each a large share). Measured by replaying the same step
with ATen's vectorised kernels on and off. In float64 a flip needs an input within about 1e-15
of zero, so the comparison tests what it means to: the same global computation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sscl.config import ContrastiveConfig
from sscl.contrastive import Pretrainer
from sscl.kernels import graph_conv_ref
from sscl.models import STGCN

WORLD, B_LOCAL, LR = 2, 3, 0.05
CONFIGS = {
    "skeletonclr": dict(method="skeletonclr", queue_size=13, snippet_queue_size=11,
                        num_snippets=2, mine_from_epoch=1),
    "rvtclr": dict(method="rvtclr", queue_size=13, num_snippets=2, extreme_view=True,
                   mine_from_epoch=1),
    # One sampled key snippet per video in the snippet queue: the draw must be the same on two
    # ranks as in one process (a hash of the step and the global item).
    "skeletonclr_sampled": dict(method="skeletonclr", queue_size=13, snippet_queue_size=11,
                                num_snippets=2, mine_from_epoch=1, snippet_negatives="sampled"),
}


def _global_batch(step: int, L: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    B = WORLD * B_LOCAL
    batch = {v: torch.randn(B, 3, L, 15, 1, generator=gen) for v in ("query", "key", "extreme")}
    batch["weight"] = torch.ones(B)
    batch["weight"][-1] = 0.0  # rank 1's last item is padding
    batch["position"] = torch.arange(B, dtype=torch.int64) + step * B
    return batch


def run(name: str, rank: int, world: int, splits: int | None = None) -> dict[str, torch.Tensor]:
    """Two SGD steps of config `name` as `rank` of `world` (world 1 emulates 2 BN groups), in
    float64 (see the module docstring)."""
    torch.set_default_dtype(torch.float64)
    cfg = ContrastiveConfig(bn_splits=WORLD // world if splits is None else splits,
                            **CONFIGS[name])
    torch.manual_seed(0)
    backbone = STGCN("openni15", num_persons=1, width=0.125, graph_conv_impl=graph_conv_ref)
    p = Pretrainer(cfg, backbone).double()
    L = 16 if cfg.method == "rvtclr" else 8
    out: dict[str, torch.Tensor] = {}
    rows = slice(rank * B_LOCAL * WORLD // world, (rank + 1) * B_LOCAL * WORLD // world)
    for step in range(2):
        batch = {k: v[rows].double() if v.is_floating_point() else v[rows]
                 for k, v in _global_batch(step, L).items()}
        p.zero_grad(set_to_none=False)
        loss, _ = p(batch, epoch=step)
        loss.backward()
        grads = torch.cat([t.grad.flatten() for t in p.encoder_q.parameters()])
        loss = loss.detach().clone()
        if world > 1:  # what DDP does with gradients; the loss for the record
            dist.all_reduce(grads)
            dist.all_reduce(loss)
        grads /= world
        out[f"loss{step}"] = loss / world
        out[f"grad{step}"] = grads
        with torch.no_grad():
            offset = 0
            for t in p.encoder_q.parameters():
                t -= LR * grads[offset:offset + t.numel()].view_as(t)
                offset += t.numel()
        p.momentum_update()
    for k, v in p.state_dict().items():
        if "queue" in k or k == "calls":
            out[k] = v.clone()
    return out


def _rank_main(rank: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/store", rank=rank,
                            world_size=WORLD)
    try:
        for name in CONFIGS:
            result = run(name, rank, WORLD)
            if rank == 0:
                torch.save(result, Path(out_dir) / f"{name}_ranks.pt")
    finally:
        dist.destroy_process_group()


def main(out_dir: str) -> None:
    mp.spawn(_rank_main, args=(out_dir,), nprocs=WORLD, join=True)
    torch.set_num_threads(1)
    for name in CONFIGS:
        torch.save(run(name, 0, 1), Path(out_dir) / f"{name}_single.pt")
    # The control: one process with a single BN group, which the ranks must NOT match.
    torch.save(run("skeletonclr", 0, 1, splits=1), Path(out_dir) / "skeletonclr_onegroup.pt")


if __name__ == "__main__":
    main(sys.argv[1])
