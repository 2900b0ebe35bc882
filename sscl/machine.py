"""What a run needs from the machine before the loop: processes, threads, precision,
determinism and the seeds of model initialisation.

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
import os

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

from sscl.config import Config
from sscl.errors import ConfigError
from sscl.peers import record_peers


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


def make_accelerator(cfg: Config) -> tuple[Accelerator, str]:
    """The Accelerator for this run (process group with the configured collective timeout)."""
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
    record_peers(acc.device, cfg.run.dist_timeout_s)
    return acc, precision


def set_determinism(deterministic: bool, device: torch.device) -> None:
    if not deterministic:
        return
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def seed_initial_weights(seed: int) -> None:
    """Seed torch's global generator before a model is built: the same initial weights on every
    rank."""
    torch.manual_seed(seed)


def seed_rank_streams(seed: int, rank: int) -> None:
    """Seed torch's global generator after the model is built: dropout and other draws during
    training differ by rank (and are the same for the same seed and rank)."""
    torch.manual_seed(seed * 1000 + rank)


def default_device(name: str | None) -> torch.device:
    """``name`` (a torch device), else CUDA where there is one, else the CPU."""
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
