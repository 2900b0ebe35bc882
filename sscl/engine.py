"""The training loop of every stage, on Accelerate: ``fit`` is one loop on one screen.

Per optimizer step: ``accumulate`` micro-batches (each copied off the loader's ring at once: its
tensors are views valid until the next batch), forward under the precision's autocast, backward
(gradients synchronised on the last micro-batch only), a non-finite guard all ranks agree on,
gradient clipping, the optimizer step at the schedule's learning rate (a pure function of the
step: nothing can drift on resume), then the module's own ``after_optimizer_step`` (the key
encoder's EMA update in pretraining). Checkpoints (``sscl.checkpoint``) are taken at step
boundaries when ``run.checkpoint_every_s`` passed (rank 0 decides, every rank joins) or every
``run.checkpoint_every_steps`` steps, and at the end.

The loop knows no stage: a ``Job`` brings the module, the loader, the optimizer settings, what a
checkpoint must share with the run to be resumed, and plain callbacks for the monitor (kNN,
diagnostics) and the export.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from accelerate import Accelerator
from torch import Tensor, nn
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from sscl import checkpoint
from sscl.checkpoint import TrainState
from sscl.config import Config, OptimConfig
from sscl.errors import NonFiniteError
from sscl.rundir import StageDir
from sscl.runlog import log

Batch = dict[str, Tensor]


class TrainModule(Protocol):
    """What a stage trains: an ``nn.Module`` computing its loss from a loader batch."""

    def __call__(self, batch: Batch, epoch: int) -> tuple[Tensor, dict[str, Tensor]]: ...

    def after_optimizer_step(self, step: int) -> None:
        """Called on the unwrapped module after optimizer step ``step`` (0-based) was taken."""


class Loader(Protocol):
    """The rank's input pipeline (``sscl.data.loader.make_loader``)."""

    def num_steps(self, epoch: int) -> int: ...

    def epoch(self, epoch: int, position: int = 0) -> Iterator[Batch]: ...


@dataclass(frozen=True, kw_only=True)
class Job:
    """What one training stage hands the loop.

    Attributes:
        name: the progress bar's and the log's name of the stage.
        module: the ``nn.Module`` that computes the loss (a ``TrainModule``).
        loader: the rank's loader.
        batch_size: its per-rank batch size.
        optim: optimizer and schedule.
        resume_fixed: dotted config keys a checkpoint must share with the run to be resumed.
        resume_free: keys under ``resume_fixed`` that may change on resume.
        monitor: on the main process, with the unwrapped module: named figures to log and keep
            (kNN top-1, diagnostics). Called at step 0, every ``monitor_every`` epochs and at
            the end.
        monitor_every: epochs between monitor calls (0: only at the start and the end).
        diagnose: on the main process, with the unwrapped module and the step's last batch:
            named figures for TensorBoard (the snippet branch's shortcut checks).
        diagnose_every: optimizer steps between ``diagnose`` calls (0: never).
        export: on the main process, with the unwrapped module, after the last step.
    """

    name: str
    module: nn.Module
    loader: Loader
    batch_size: int
    optim: OptimConfig
    resume_fixed: tuple[str, ...]
    resume_free: tuple[str, ...] = ()
    monitor: Callable[[nn.Module], dict[str, float]] | None = None
    monitor_every: int = 0
    diagnose: Callable[[nn.Module, Batch], dict[str, float]] | None = None
    diagnose_every: int = 0
    export: Callable[[nn.Module], None] | None = None


def fit(cfg: Config, job: Job, stage: StageDir, acc: Accelerator, resume: str | None
        ) -> TrainState:
    """Train ``job`` to its last step; returns the final state (``final_checkpoint`` set)."""
    world, B = acc.num_processes, job.batch_size
    steps_per_epoch = max(1, -(-job.loader.num_steps(0) // job.optim.accumulate))
    total = job.optim.epochs * steps_per_epoch
    if job.optim.max_steps is not None:
        total = min(total, job.optim.max_steps)
    optimizer = make_optimizer(job.optim, job.module.parameters())
    loaded = find_checkpoint(cfg, job, stage, acc, resume)
    if acc.is_main_process:
        for stale in checkpoint.remove_stale_temporaries(stage):
            log.info("removing an unfinished checkpoint of a killed run: %s", stale)
    model, optimizer = acc.prepare(job.module, optimizer)
    state = TrainState()
    if loaded is not None:
        checkpoint.restore(acc, model, optimizer, loaded, state)
        log.info("resumed from %s at step %d (epoch %d, position %d)", loaded.path, state.step,
                 state.epoch, state.position)
    core = acc.unwrap_model(model)
    log.info("%s: %d steps/epoch x %d process(es), global batch %d, %d steps", job.name,
             steps_per_epoch, world, world * B, total)
    board = StepLog(stage, acc, job.name, state.step, total, cfg.run.log_every)
    guard = NonFiniteGuard(cfg.run.max_nonfinite, stage)
    clock = CheckpointClock(cfg.run.checkpoint_every_s, cfg.run.checkpoint_every_steps)
    if state.step == 0:
        run_monitor(job, core, state, board, acc)  # the figure of the initial weights
    model.train()
    with board:
        while state.step < total:
            epoch, n_batches = state.epoch, job.loader.num_steps(state.epoch)
            batches = job.loader.epoch(epoch, state.position)
            done = state.position // (world * B)
            while done < n_batches and state.step < total:
                t0 = time.perf_counter()
                lr = set_learning_rate(optimizer, job.optim, state.step, steps_per_epoch, total)
                micro = min(job.optim.accumulate, n_batches - done)
                out = forward_backward(acc, model, batches, micro, epoch)
                grad_norm, bad = None, out.bad
                if job.optim.clip_norm is not None and not bad:
                    grad_norm = float(acc.clip_grad_norm_(model.parameters(), job.optim.clip_norm))
                    bad = not math.isfinite(grad_norm)
                if guard.skip(bad, acc.device, state):  # every rank skips together
                    optimizer.zero_grad(set_to_none=True)
                else:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    core.after_optimizer_step(state.step)
                done += micro
                state.step, state.position, state.last_loss = (state.step + 1, done * world * B,
                                                               out.loss)
                board.step(state, out, lr, grad_norm, micro * world * B, time.perf_counter() - t0)
                if job.diagnose and state.step % job.diagnose_every == 0 and acc.is_main_process:
                    board.scalars(job.diagnose(core, out.batch), state.step)
                if done >= n_batches:  # the epoch is over: the next step starts the next one
                    state.epoch, state.position = epoch + 1, 0
                    if job.monitor_every and state.epoch % job.monitor_every == 0 \
                            and state.step < total:
                        run_monitor(job, core, state, board, acc)
                if clock.due(state.step, acc.device) and state.step < total:
                    checkpoint.save(acc, stage, cfg, model, optimizer, state, B)
                    clock.reset()
                kill_hook(state.step, acc.process_index)
    run_monitor(job, core, state, board, acc)
    state.final_checkpoint = checkpoint.save(acc, stage, cfg, model, optimizer, state, B)
    if job.export is not None and acc.is_main_process:
        job.export(core)
    acc.wait_for_everyone()
    board.close()
    return state


# ---------------------------------------------------------------- what the loop calls


def make_optimizer(optim: OptimConfig, params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of ``optim`` over the parameters that require gradients."""
    params = [p for p in params if p.requires_grad]
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum,
                               weight_decay=optim.weight_decay, nesterov=optim.nesterov)
    cls = torch.optim.Adam if optim.name == "adam" else torch.optim.AdamW
    return cls(params, lr=optim.lr, weight_decay=optim.weight_decay)


def lr_at(optim: OptimConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based): warm-up, then the schedule."""
    epoch_f = step / steps_per_epoch
    warm = optim.warmup_epochs * steps_per_epoch
    if warm > 0 and step < warm:
        return optim.lr * (step + 1) / warm
    if optim.schedule == "step":
        return optim.lr * optim.gamma ** sum(epoch_f >= m for m in optim.milestones)
    if optim.schedule == "cosine":
        progress = (step - warm) / max(1.0, total_steps - warm)
        return optim.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return optim.lr


def set_learning_rate(optimizer: torch.optim.Optimizer, optim: OptimConfig, step: int,
                      steps_per_epoch: int, total_steps: int) -> float:
    lr = lr_at(optim, step, steps_per_epoch, total_steps)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def find_checkpoint(cfg: Config, job: Job, stage: StageDir, acc: Accelerator,
                    resume: str | None) -> checkpoint.Checkpoint | None:
    """The checkpoint ``--resume`` names (``auto``: the newest loadable one), checked against
    the run; None to start fresh.

    Raises:
        CheckpointError: a named checkpoint that cannot be loaded or does not fit the run.
    """
    if resume is None:
        return None
    if resume == "auto":
        loaded, notes = checkpoint.latest(stage.checkpoints, acc.process_index)
        for note in notes:
            log.warning("skipping a damaged checkpoint: %s", note)
        if loaded is None:
            log.info("no checkpoint in %s: starting fresh", stage.checkpoints)
            return None
    else:
        loaded = checkpoint.load(Path(resume), acc.process_index)
    checkpoint.check_state(loaded.state, loaded.path, checkpoint.TRAINING_KEYS)
    checkpoint.check_resumable(cfg, loaded.state, acc.num_processes, job.batch_size, loaded.path,
                               job.resume_fixed, job.resume_free)
    return loaded


@dataclass
class StepResult:
    """What the forward and backward passes of one optimizer step leave."""

    loss: float  # mean over the micro-batches
    metrics: dict[str, float]  # means over the micro-batches
    bad: bool  # a loss was non-finite
    wait: float  # seconds spent waiting for data
    items: float  # real (weight > 0) items of this rank
    batch: Batch  # the last micro-batch


def forward_backward(acc: Accelerator, model: nn.Module, batches: Iterator[Batch], micro: int,
                     epoch: int) -> StepResult:
    """Forward and backward of ``micro`` micro-batches (gradients synchronised on the last)."""
    bad, loss_sum, wait, items, metrics_sum = False, 0.0, 0.0, 0.0, {}
    for i in range(micro):
        t0 = time.perf_counter()
        batch = next(batches)
        # Views of the loader's ring: a device copy (or a private CPU copy) before the next one.
        batch = {k: v.to(acc.device, non_blocking=True) if acc.device.type != "cpu" else v.clone()
                 for k, v in batch.items()}
        wait += time.perf_counter() - t0
        weight = batch.get("weight")
        items += float((weight > 0).sum()) if weight is not None else len(batch[next(iter(batch))])
        sync = i == micro - 1
        with (nullcontext() if sync else acc.no_sync(model)), acc.autocast():
            loss, metrics = model(batch, epoch)
        if torch.isfinite(loss):
            acc.backward(loss / micro)
        else:
            bad = True
        loss_sum += float(loss.detach()) / micro
        for k, v in metrics.items():
            metrics_sum[k] = metrics_sum.get(k, 0.0) + float(v) / micro
    return StepResult(loss_sum, metrics_sum, bad, wait, items, batch)


def agree(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0.5)


def rank0_says(flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item() > 0.5)


class NonFiniteGuard:
    """Skips a step whose loss or gradient is non-finite on any rank; too many in a row end
    the run (``run.max_nonfinite``)."""

    def __init__(self, max_in_a_row: int, stage: StageDir) -> None:
        self.max_in_a_row, self.stage, self.in_a_row = max_in_a_row, stage, 0

    def skip(self, bad: bool, device: torch.device, state: TrainState) -> bool:
        """Whether this step is skipped (counted in ``state.skipped``).

        Raises:
            NonFiniteError: more than ``max_in_a_row`` consecutive skips.
        """
        if not agree(bad, device):
            self.in_a_row = 0
            return False
        self.in_a_row += 1
        state.skipped += 1
        log.warning("step %d: non-finite loss or gradient, step skipped (%d so far)",
                    state.step, state.skipped)
        if self.in_a_row > self.max_in_a_row:
            raise NonFiniteError(
                f"{self.in_a_row} consecutive steps had a non-finite loss or gradient "
                f"(run.max_nonfinite={self.max_in_a_row}); the last good checkpoint is in "
                f"{self.stage.checkpoints}. Lower the learning rate, set optim.clip_norm, or "
                f"check the corpus with `sscl data validate`")
        return True


class CheckpointClock:
    """When the next checkpoint is due: ``every_s`` seconds since the last (rank 0's clock
    decides for all) or every ``every_steps`` steps."""

    def __init__(self, every_s: float, every_steps: int) -> None:
        self.every_s, self.every_steps = every_s, every_steps
        self.reset()

    def reset(self) -> None:
        self.last = time.monotonic()

    def due(self, step: int, device: torch.device) -> bool:
        due = time.monotonic() - self.last >= self.every_s or (
            self.every_steps and step % self.every_steps == 0)
        return rank0_says(bool(due), device)


class StepLog:
    """The progress bar and TensorBoard (main process). Every ``every`` steps it logs the means
    over the steps since the last line, each step weighted by its real items: loss and metrics
    (a single step's figure would land on an epoch's small padded remainder batch as often as on
    a full one); and samples/s and the share of time spent waiting for data."""

    def __init__(self, stage: StageDir, acc: Accelerator, name: str, start: int, total: int,
                 every: int) -> None:
        self.every = every
        self.writer = SummaryWriter(str(stage.events)) if acc.is_main_process else None
        self.bar = tqdm(total=total, initial=start, disable=not acc.is_main_process,
                        dynamic_ncols=True, desc=name)
        self.seconds = self.wait = self.items = 0.0
        self.samples = 0
        self.sums: dict[str, float] = {}

    def __enter__(self) -> StepLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()  # on an error too: the error message gets a line of its own

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def step(self, state: TrainState, out: StepResult, lr: float, grad_norm: float | None,
             samples: int, seconds: float) -> None:
        self.seconds, self.wait, self.samples = (self.seconds + seconds, self.wait + out.wait,
                                                 self.samples + samples)
        self.items += out.items
        for name, value in {"loss/total": out.loss, **out.metrics}.items():
            self.sums[name] = self.sums.get(name, 0.0) + value * out.items
        self.bar.update(1)
        if self.writer is None or not (state.step % self.every == 0 or state.step == 1):
            return
        sps, share = self.samples / max(self.seconds, 1e-9), self.wait / max(self.seconds, 1e-9)
        means = {name: total / max(self.items, 1e-9) for name, total in self.sums.items()}
        self.scalars({**means, "optim/lr": lr, "speed/samples_per_s": sps,
                      "speed/data_wait_share": share, "optim/skipped_steps": state.skipped},
                     state.step)
        if grad_norm is not None:
            self.scalars({"optim/grad_norm": grad_norm}, state.step)
        self.bar.set_postfix(loss=f"{means['loss/total']:.3f}", lr=f"{lr:.3g}",
                             sps=f"{sps:.0f}", wait=f"{share:.0%}")
        log.debug("step %d %s", state.step, json.dumps(means))
        self.seconds = self.wait = self.items = 0.0
        self.samples = 0
        self.sums = {}

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def run_monitor(job: Job, core: nn.Module, state: TrainState, board: StepLog,
                acc: Accelerator) -> None:
    """The job's monitor on the main process: figures logged, kept in the state, on the board."""
    if job.monitor is not None and acc.is_main_process:
        figures = job.monitor(core)
        for name, value in figures.items():
            state.knn[f"{name}@{state.step}"] = value
            log.info("%s at step %d: %.4f", name, state.step, value)
        board.scalars(figures, state.step)
    acc.wait_for_everyone()


def kill_hook(step: int, rank: int) -> None:
    """Fault injection for the tests of resume and of dead ranks: ``SSCL_KILL_AT_STEP=S`` sends
    SIGKILL to this process right after step S; ``SSCL_KILL_RANK=R`` limits it to rank R;
    ``SSCL_KILL_SIGNAL=SIGSTOP`` (or SIGTERM) sends that signal instead."""
    at = os.environ.get("SSCL_KILL_AT_STEP")
    only = os.environ.get("SSCL_KILL_RANK")
    if at is None or int(at) != step or (only is not None and int(only) != rank):
        return
    sig = getattr(signal, os.environ.get("SSCL_KILL_SIGNAL", "SIGKILL"))
    print(f"\nSSCL_KILL_AT_STEP: {sig.name} to rank {rank} (pid {os.getpid()}) after step {step}",
          file=sys.stderr, flush=True)
    os.kill(os.getpid(), sig)
