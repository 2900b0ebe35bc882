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
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the trainer's entry points do

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_run  # noqa: E402

from sscl.contrastive import Pretrainer  # noqa: E402


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
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(args.steps):
            step(2 + i)
    total_ms = sum(e.self_cpu_time_total for e in prof.key_averages()) / 1e3 / args.steps
    print(f"{args.setting}: {args.steps} steps, {args.threads} threads, batch "
          f"{len(batch['weight'])}, {total_ms:.0f} ms of op self time a step")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
