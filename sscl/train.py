"""Entry point of the main job.

    accelerate launch sscl/train.py [--config NAME|PATH] [--set a.b=v ...] [--resume auto|PATH]
    python sscl/train.py ...                       (one process, same thing)

With no arguments it runs the embedded demo preset on the demo corpus's training split.

Exit status: 0 when done; 2 after one ``error:`` line (a config, corpus or checkpoint problem, a
full disk or file size limit, a peer rank that died or hung); 143 after SIGTERM, with one
``error:`` line naming a dead peer when a launcher stopped the ranks because one died.
"""

from __future__ import annotations

import os
import sys

# `python sscl/train.py` puts sscl/ itself first on sys.path, where a module named like a
# top-level package would shadow it. Drop that entry: everything is imported as `sscl.*`.
_here = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _here:
    sys.path.pop(0)
# OpenMP threads that finish early sleep instead of spinning (unless the user chose): on a
# machine whose cores other jobs share, spinning threads steal the time slices their peers need
# (the demo step at 2 threads beside one busy process: 32 -> 49 samples/s; idle: 91 either way;
# bench/README.md "Threads under contention"). Set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402

from sscl import machine, presets  # noqa: E402
from sscl.atomic import is_full, write_bytes_atomic  # noqa: E402
from sscl.config import STAGES  # noqa: E402
from sscl.errors import (  # noqa: E402
    DiskWriteError,
    RunDirError,
    SsclError,
    Terminated,
    sigterm_raises,
)
from sscl.peers import collective_failure, terminated_message  # noqa: E402
from sscl.rundir import default_run_dir, stage_dir_problem  # noqa: E402
from sscl.runlog import log, setup_logging  # noqa: E402
from sscl.stages import run_stages, stage_names  # noqa: E402
from sscl.stages.pretraining import resolve_queue_sizes  # noqa: E402
from sscl.version import code_version  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(f"  {name:22s} {desc}" for name, desc in presets.preset_names().items())
    p = argparse.ArgumentParser(
        prog="sscl/train.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Pretrain (snippet-contrastive), finetune and evaluate a skeleton action "
                    "localizer.",
        epilog=f"presets (--config NAME):\n{listing}\n\n"
               "examples:\n"
               "  accelerate launch sscl/train.py                       # the demo\n"
               "  accelerate launch sscl/train.py --config paper_pretrain "
               "--set data.corpus=ntu.zarr\n"
               "  accelerate launch --multi_gpu --num_processes 2 sscl/train.py "
               "--set run.cpu=true\n"
               "  python sscl/train.py --resume auto                    # continue a killed run",
    )
    p.add_argument("--config", default=None, help="preset name or YAML path (default: demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set optim.lr=0.05 (repeatable)")
    p.add_argument("--stage", choices=STAGES, default=None,
                   help="what to run (default: the config's run.stage)")
    p.add_argument("--run-dir", default=None, help="run directory (default: ./runs/<run.name>)")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="continue from the newest checkpoint of the run directory (auto) or a "
                        "checkpoint directory")
    p.add_argument("--overwrite", action="store_true",
                   help="delete an existing run directory and start over")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_raises():
            return run(args)
    except Terminated:
        print(f"error: {terminated_message()}", file=sys.stderr, flush=True)
        return 128 + 15
    except SsclError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if not is_full(e):
            raise
        # A full disk met outside the writes that name their file (TensorBoard, the log).
        print(f"error: {DiskWriteError(e.filename or 'a file of the run', e)}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        message = collective_failure(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.stage is not None:
        overrides.append(f"run.stage={args.stage}")
    cfg = presets.resolve(args.config, overrides)
    if args.print_config:
        print(presets.dumps(cfg), end="")
        return 0
    warnings = machine.launch_warnings()
    acc, precision = machine.make_accelerator(cfg)
    threads = machine.set_threads(cfg.run.threads)
    machine.set_determinism(cfg.run.deterministic, acc.device)
    run_dir = default_run_dir(args.run_dir, cfg.run.name)
    # Refuse an occupied stage folder before any work (every rank checks the same thing).
    for stage in stage_names(cfg):
        problem = stage_dir_problem(run_dir.stage(stage), args.resume, args.overwrite)
        if problem:
            raise RunDirError(problem)
    if acc.is_main_process:
        run_dir.root.mkdir(parents=True, exist_ok=True)
    acc.wait_for_everyone()
    setup_logging(run_dir, acc.is_main_process)
    for w in warnings:
        log.warning("warning: %s", w)
    log.info("sscl %s: stage %s, %d process(es), device %s, precision %s, %d torch thread(s) "
             "per process (run.threads=%s), run directory %s", code_version(), cfg.run.stage,
             acc.num_processes, acc.device, "fp32" if precision == "no" else precision, threads,
             cfg.run.threads, run_dir.root)
    if "pretrain" in stage_names(cfg):
        cfg = resolve_queue_sizes(cfg)  # `auto` becomes a number before config.yaml records it
    if acc.is_main_process:
        write_bytes_atomic(run_dir.config_file, presets.dumps(cfg).encode())
    summary = run_stages(cfg, run_dir, acc, args.resume, args.overwrite)
    if acc.is_main_process:
        for line in summary:
            print(line)
    acc.wait_for_everyone()
    acc.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
