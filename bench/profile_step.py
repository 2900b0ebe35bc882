"""Where the CPU pretraining step spends its time: ``torch.profiler`` over the trainer's module.

The demo setting by default (``--setting paper`` for the paper preset at batch 16; that one is
slow on a CPU): the module ``bench/gpu_run.py`` trains, fed in-memory views, forward + backward +
SGD + the key encoder's EMA, ``--steps`` steps after two warm-up steps, ops grouped by name and
sorted by their own CPU time. The step's data path is not in it (the loader runs in workers and
its wait is 0-1 % of a step, bench/README "Pretraining step").

Run: python bench/profile_step.py [--setting demo|paper] [--steps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the trainer's entry points do

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_run  # noqa: E402

from sscl.contrastive import Pretrainer  # noqa: E402

#: Top-level ops whose calling-thread totals give the wall time of a kind of work.
WALL_GROUPS = (
    ("fused graph convolution (fwd + bwd)", ("sscl::graph_conv", "sscl::graph_conv_backward")),
    ("convolutions, oneDNN (fwd + bwd)", ("aten::convolution", "aten::convolution_backward")),
    ("batch norm forward, fused (statistics; normalise + residual + ReLU)",
     ("sscl_cpu::batch_norm_stats", "sscl_cpu::batch_norm_apply")),
    ("batch norm and ReLU backward, ATen", ("aten::native_batch_norm_backward",
                                            "aten::threshold_backward")),
    ("ATen batch norm forward (input norm, heads)", ("aten::batch_norm",)),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", choices=("demo", "paper"), default="demo")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    setting = gpu_run.SETTINGS[args.setting]
    cfg = gpu_run.config_of(setting, "fp32", args.steps, "cpu")
    torch.manual_seed(0)
    module = Pretrainer(cfg.pretrain, gpu_run.backbone_of(cfg, setting, "ours"))
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.01,
                          momentum=0.9)
    batch = gpu_run.host_pool(cfg, setting, 1, "cpu")[0]
    batch["position"] = torch.arange(len(batch["weight"]))

    def step(i: int) -> None:
        loss, _ = module(batch, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        module.after_optimizer_step(i)

    for i in range(2):
        step(i)
    t = time.perf_counter()
    for i in range(args.steps):  # the wall time of a step, without the profiler
        step(2 + i)
    wall_ms = (time.perf_counter() - t) * 1e3 / args.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(args.steps):
            step(2 + args.steps + i)
    events = prof.key_averages()
    total_ms = sum(e.self_cpu_time_total for e in events) / 1e3 / args.steps
    print(f"{args.setting}: {args.steps} steps, {args.threads} threads, batch "
          f"{len(batch['weight'])}: {wall_ms:.0f} ms a step (wall, unprofiled), "
          f"{total_ms:.0f} ms of op self time a step")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    # Self times add up the threads: the GEMMs the fused graph convolution issues inside its
    # parallel region count once per worker thread, oneDNN's threads not at all. The wall time
    # of an op is its total time on the calling thread.
    by_name = {e.key: e.cpu_time_total / 1e3 / args.steps for e in events}
    print(f"wall time a step (total on the calling thread, of {wall_ms:.0f} ms unprofiled):")
    for label, names in WALL_GROUPS:
        ms = sum(by_name.get(n, 0.0) for n in names)
        print(f"  {label:<68} {ms:7.0f} ms {ms / wall_ms:6.1%}")


if __name__ == "__main__":
    main()
