"""What a run needs from the machine before the loop: processes, threads, precision, run
directory and log.

- Accelerate (torch.distributed underneath: NCCL on GPUs, gloo on CPUs) starts the process group.
  ``accelerate launch --cpu --num_processes 2`` runs ONE process (Accelerate's simple launcher
  drops the count): :func:`launch_warnings` detects it from the environment that launcher leaves
  (MASTER_ADDR set, no WORLD_SIZE) and names a command that works.
- Threads: a bare ``accelerate launch`` exports OMP_NUM_THREADS=1, so torch would use one core;
  ``run.threads: auto`` gives each process cores / local processes.
- Precision: bf16 autocast pays on GPUs (``auto``: bf16 where the GPU has it, else fp16 with a
  scaler); on CPUs ``auto`` is fp32 (bf16 is emulated on AVX2, a step about 12x slower).
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from sscl.config import Config
from sscl.errors import ConfigError

log = logging.getLogger("sscl")


def launch_warnings() -> list[str]:
    """Problems of the launch itself that would otherwise pass silently."""
    env = os.environ
    out = []
    if (env.get("ACCELERATE_USE_CPU", "").lower() in ("true", "1") and "MASTER_ADDR" in env
            and "WORLD_SIZE" not in env):
        out.append(
            "accelerate launch --cpu with --num_processes > 1 started ONE process (Accelerate's "
            "simple launcher ignores the count). For N processes on a CPU use: accelerate launch "
            "--multi_gpu --num_processes N sscl/train.py --set run.cpu=true   (or: torchrun "
            "--nproc_per_node N sscl/train.py --set run.cpu=true)")
    return out


def choose_precision(requested: str, device: torch.device) -> str:
    """Accelerate's mixed_precision value (``no``, ``bf16``, ``fp16``) for this device."""
    if requested == "fp32":
        return "no"
    if requested in ("bf16", "fp16"):
        if requested == "fp16" and device.type == "cpu":
            raise ConfigError("run.precision=fp16 needs a GPU; on a CPU use fp32 or bf16")
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    # CPUs: fp32. bf16 autocast is emulated without AVX512-BF16/AMX (a step about 12x slower
    # on AVX2), and even where the CPU has it, the unfused graph convolution and temporal convs
    # gain little at these sizes; run.precision=bf16 asks for it explicitly.
    return "no"


def local_world_size() -> int:
    """Processes on this machine (torchrun and accelerate's multi-process launchers set it)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def set_threads(setting: str) -> int:
    """Pin torch's intra-op threads; returns the count."""
    if setting == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        n = max(1, (cores or 1) // max(1, local_world_size()))
    else:
        n = int(setting)
    torch.set_num_threads(n)
    return n


def make_accelerator(cfg: Config):
    """The Accelerator for this run (process group with the configured collective timeout)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    cpu = cfg.run.cpu or not torch.cuda.is_available()
    device = torch.device("cpu") if cpu else torch.device("cuda")
    precision = choose_precision(cfg.run.precision, device)
    handlers = [
        # Queues are identical on every rank (all-gathered keys); broadcasting them and the
        # key encoder's buffers each step would cost 16 MB+ of traffic per step for nothing.
        DistributedDataParallelKwargs(broadcast_buffers=False),
        InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=cfg.run.dist_timeout_s)),
    ]
    acc = Accelerator(cpu=cpu, mixed_precision=precision, kwargs_handlers=handlers,
                      step_scheduler_with_optimizer=False)
    _record_peers(acc.device, cfg.run.dist_timeout_s)
    return acc, precision


# Each rank's (pid, host hash), gathered at start: a survivor can then name a dead peer.
_peers: dict = {}


def _host_hash() -> int:
    return zlib.crc32(socket.gethostname().encode())


def _record_peers(device: torch.device, timeout_s: float) -> None:
    import torch.distributed as dist

    _peers.clear()
    _peers["timeout_s"] = timeout_s
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    mine = torch.tensor([os.getpid(), _host_hash()], dtype=torch.int64, device=device)
    every = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(every, mine)
    _peers["rank"] = dist.get_rank()
    _peers["table"] = [(int(t[0]), int(t[1])) for t in every]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a zombie (killed, not yet reaped by the launcher) is gone too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def _dead_peers() -> tuple[list[int], str]:
    """(dead ranks on this machine, a phrase naming them or the ranks that did not answer)."""
    import time

    me, table = _peers["rank"], _peers["table"]
    here = _host_hash()
    local = [r for r, (_, host) in enumerate(table) if r != me and host == here]
    # A killed peer's sockets close while its process is still exiting: look for up to 2 s.
    for _ in range(40):
        dead = [r for r in local if _gone(table[r][0])]
        if dead or not local:
            break
        time.sleep(0.05)
    others = ", ".join(str(r) for r in range(len(table)) if r != me)
    if dead:
        return dead, (f"rank(s) {', '.join(map(str, dead))} died (process "
                      f"{', '.join(str(table[r][0]) for r in dead)} on this machine is gone)")
    return dead, (f"no rank on this machine died; rank(s) {others} did not answer (one hangs, or "
                  f"runs on another machine and died there: see that machine's log)")


def terminated_message() -> str:
    """What a rank says when SIGTERM stops it (launchers stop every rank when one fails)."""
    if "table" not in _peers:
        return ("stopped by SIGTERM; checkpoints written so far are complete: continue with "
                "--resume auto")
    dead, who = _dead_peers()
    why = (f"the launcher stops every rank when one fails: {who}" if dead
           else "by the launcher or the scheduler")
    return (f"rank {_peers['rank']} was stopped by SIGTERM ({why}). Continue with --resume auto "
            f"from the last checkpoint")


def collective_failure(e: BaseException) -> str | None:
    """The user-facing message of a collective that failed because a peer died or hung (None:
    ``e`` is something else). Names the dead rank(s) when they ran on this machine."""
    if "table" not in _peers or not isinstance(e, RuntimeError):
        return None
    text = str(e)
    import torch.distributed as dist

    low = text.lower()
    if not (isinstance(e, dist.DistError) or any(
            w in low for w in ("gloo", "nccl", "connection reset", "connection closed",
                               "timed out", "timeout", "socket", "broken pipe"))):
        return None
    me = _peers["rank"]
    _, who = _dead_peers()
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return (f"rank {me} lost contact with the other processes: {who}. A collective fails at "
            f"once when a peer's connection closes and after run.dist_timeout_s="
            f"{_peers['timeout_s']:g} s when a peer hangs. Continue with --resume auto from the "
            f"last checkpoint. ({type(e).__name__}: {first[:300]})")


def set_determinism(deterministic: bool, device: torch.device) -> None:
    if not deterministic:
        return
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@dataclass(frozen=True)
class RunDir:
    """A run's directory and its parts."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def log_file(self) -> Path:
        return self.root / "train.log"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"


def prepare_run_dir(path: Path, is_main: bool) -> RunDir:
    """Create the run directory (stage folders are checked by ``sscl.stages.stage_dir``)."""
    path = Path(path)
    if is_main:
        path.mkdir(parents=True, exist_ok=True)
    return RunDir(path)


def setup_logging(run: RunDir, is_main: bool) -> None:
    """Log lines to ``train.log`` (main process) and stderr (main process only)."""
    log.setLevel(logging.INFO)
    log.handlers.clear()
    log.propagate = False
    if not is_main:
        log.addHandler(logging.NullHandler())
        return
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    fh = logging.FileHandler(run.log_file)
    fh.setFormatter(fmt)
    sh = logging.StreamHandler(sys.stderr)
    sh.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(fh)
    log.addHandler(sh)
