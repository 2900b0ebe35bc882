"""The training loop on Accelerate: one visible loop (HOUSE_STYLE.md), features where they
happen.

Per optimizer step: ``accumulate`` micro-batches (moved to the device at once: the loader's
tensors are views valid until the next batch), forward under the precision's autocast, backward
(no gradient sync but on the last micro-batch), a non-finite guard agreed by all ranks, gradient
clipping, the optimizer step at the schedule's learning rate, then the key encoder's EMA update.
The learning rate is a pure function of the step (``lr_at``), so nothing about the schedule can
drift on resume.

Checkpoints (``sscl.checkpoint``) are taken at optimizer-step boundaries when ``run.checkpoint_
every_s`` seconds passed (rank 0 decides and broadcasts, so every rank joins the write) or every
``run.checkpoint_every_steps`` steps, and at the end. A resumed run restores weights, key
encoder, queues, optimizer, scaler, RNG states and the loader's (epoch, position), so on the CPU
with ``run.deterministic`` it ends bitwise identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from sscl import checkpoint as ckpt
from sscl import config as config_mod
from sscl.builders import code_version
from sscl.config import Config, OptimConfig
from sscl.errors import CheckpointError, NonFiniteError
from sscl.runtime import RunDir

log = logging.getLogger("sscl")

# Config sections that must match a checkpoint's (anything else may change on resume).
RESUME_FIXED = ("model", "pretrain")
# Loader fields that change samples or their order (the rest: workers, prefetch, memory only).
LOADER_FIXED = ("batch_size", "raw_length", "window_mode", "dense_stride", "augment",
                "extreme", "strong_key", "locality", "shuffle", "normalize", "nonfinite")


@dataclass
class TrainState:
    """Where the run is: the JSON part of every checkpoint."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # global sample index of the next batch in ``epoch``
    skipped: int = 0  # steps skipped by the non-finite guard
    last_loss: float = float("nan")
    knn: dict = field(default_factory=dict)  # "<monitor>@<step>" -> figure
    final_checkpoint: Path | None = None


def lr_at(optim: OptimConfig, step: int, steps_per_epoch: int, total_steps: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based)."""
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


def make_optimizer(optim: OptimConfig, params) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum,
                               weight_decay=optim.weight_decay, nesterov=optim.nesterov)
    cls = torch.optim.Adam if optim.name == "adam" else torch.optim.AdamW
    return cls(params, lr=optim.lr, weight_decay=optim.weight_decay)


def check_resumable(cfg: Config, saved: dict, world_size: int, path: Path,
                    fixed: tuple[str, ...] = RESUME_FIXED) -> None:
    """Refuse a checkpoint of another model, method or sample stream, naming the mismatch.

    May change on resume: ``run.*`` but the seed (directories, threads, precision, checkpoint
    cadence), ``optim.epochs`` / ``optim.max_steps`` (train longer), ``probe.*``, the engine and
    the loader's workers, prefetch and memory settings, and the number of processes as long as
    the global batch (processes x batch size) stays the same.
    """
    now = config_mod.to_dict(cfg)
    then = saved["config"]
    diffs = []
    # Keys that may change on resume inside a fixed section.
    free = {"num_workers", "optim.epochs", "optim.max_steps"}
    for section in fixed:
        a_sec, b_sec = _flat(then.get(section, {})), _flat(now[section])
        for key in sorted((set(a_sec) | set(b_sec)) - free):
            if a_sec.get(key) != b_sec.get(key):
                diffs.append(f"{section}.{key}: checkpoint {a_sec.get(key)!r}, "
                             f"now {b_sec.get(key)!r}")
    if "pretrain" not in fixed:
        _raise_if(diffs, path)
        return
    for key in LOADER_FIXED:
        a, b = then["data"]["loader"].get(key), now["data"]["loader"].get(key)
        if a != b and key != "batch_size":
            diffs.append(f"data.loader.{key}: checkpoint {a!r}, now {b!r}")
    for key in ("corpus", "split"):
        if then["data"].get(key) != now["data"].get(key):
            diffs.append(f"data.{key}: checkpoint {then['data'].get(key)!r}, "
                         f"now {now['data'].get(key)!r}")
    o_then, o_now = then["optim"], now["optim"]
    for key in sorted(set(o_now) - {"epochs", "max_steps"}):
        if o_then.get(key) != o_now.get(key):
            diffs.append(f"optim.{key}: checkpoint {o_then.get(key)!r}, now {o_now.get(key)!r}")
    if then["run"]["seed"] != now["run"]["seed"]:
        diffs.append(f"run.seed: checkpoint {then['run']['seed']}, now {now['run']['seed']}")
    global_then = saved["world_size"] * then["data"]["loader"]["batch_size"]
    global_now = world_size * now["data"]["loader"]["batch_size"]
    if global_then != global_now:
        diffs.append(f"global batch (processes x data.loader.batch_size): checkpoint "
                     f"{saved['world_size']} x {then['data']['loader']['batch_size']}, now "
                     f"{world_size} x {now['data']['loader']['batch_size']}")
    _raise_if(diffs, path)


def _raise_if(diffs: list[str], path: Path) -> None:
    if diffs:
        raise CheckpointError(f"checkpoint {path} does not fit this run: " + "; ".join(diffs))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _agree(flag: bool, device: torch.device, op=dist.ReduceOp.MAX) -> bool:
    """All ranks' ``flag`` combined (any rank true with MAX)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=op)
    return bool(t.item() > 0.5)


def _broadcast_flag(flag: bool, device: torch.device) -> bool:
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item() > 0.5)


def save_checkpoint(acc, rd: RunDir, cfg: Config, model, optimizer, state: TrainState) -> Path:
    """Every rank calls this; rank 0 writes the shared parts and renames into place."""
    tmp = rd.checkpoints / f"step-{state.step:08d}.tmp"
    if acc.is_main_process:
        ckpt.begin(rd.checkpoints, state.step)
    acc.wait_for_everyone()
    try:
        ckpt.write_rank_files(tmp, acc.process_index)
    except Exception:
        ckpt.discard(tmp)
        raise
    acc.wait_for_everyone()
    final = ckpt.step_dir(rd.checkpoints, state.step)
    if acc.is_main_process:
        scaler = getattr(acc, "scaler", None)
        try:
            ckpt.write_main(tmp, acc.unwrap_model(model).state_dict(), optimizer.state_dict(), {
                "step": state.step, "epoch": state.epoch, "position": state.position,
                "skipped": state.skipped, "last_loss": state.last_loss, "knn": state.knn,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "world_size": acc.num_processes, "config": config_mod.to_dict(cfg),
                "code_version": code_version(),
            })
            ckpt.commit(tmp, final, cfg.run.keep_last)
        except Exception:
            ckpt.discard(tmp)  # a full disk: leave no half-written checkpoint behind
            raise
    acc.wait_for_everyone()
    return final


def restore(acc, model, optimizer, loaded: ckpt.Checkpoint, state: TrainState) -> None:
    try:
        acc.unwrap_model(model).load_state_dict(loaded.model, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {loaded.path} holds another model: {e}") from None
    s = loaded.state
    scaler = getattr(acc, "scaler", None)
    try:  # the optimizer, scaler and generator states are data from files: check by use
        if loaded.optimizer is not None:
            optimizer.load_state_dict(loaded.optimizer)
        if scaler is not None and s.get("scaler"):
            scaler.load_state_dict(s["scaler"])
        if loaded.rng is not None:
            ckpt.set_rng_state(*loaded.rng)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {loaded.path}: its optimizer, scaler or generator "
                              f"state does not fit this run: {type(e).__name__}: {e}") from None
    state.step, state.epoch, state.position = s["step"], s["epoch"], s["position"]
    state.skipped, state.last_loss = s["skipped"], s["last_loss"]
    state.knn = s.get("knn", {})


@dataclass
class Job:
    """What one training stage hands the loop.

    Attributes:
        name: ``pretrain`` or ``finetune`` (the progress bar, the log, the stage directory).
        module: ``forward(batch, epoch) -> (loss, metrics)``.
        loader: the rank's loader (``sscl.data.loader.make_loader``).
        batch_size: per-rank batch size of ``loader``.
        optim: optimizer and schedule.
        fixed: config sections a resumed run must share with its checkpoint.
        monitor: called on the main process at step 0, every ``monitor_every`` epochs and at
            the end; returns named figures (kNN top-1, validation accuracy) to log and keep.
        monitor_every: epochs between monitor calls (0: only at the start and the end).
        export: called on the main process with the unwrapped module after the last step.
        after_step: called with the unwrapped module after each optimizer step (the key
            encoder's EMA update in pretraining).
    """

    name: str
    module: torch.nn.Module
    loader: object
    batch_size: int
    optim: OptimConfig
    fixed: tuple[str, ...]
    monitor: object = None
    monitor_every: int = 0
    export: object = None
    after_step: object = None


def fit(cfg: Config, job: Job, rd: RunDir, acc, resume: str | None) -> TrainState:
    """The training loop of every stage; returns the final state (``final_checkpoint`` set)."""
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    device = acc.device
    world = acc.num_processes
    B, loader = job.batch_size, job.loader
    optimizer = make_optimizer(job.optim, job.module.parameters())
    steps_per_epoch = max(1, -(-loader.num_steps(0) // job.optim.accumulate))
    total = job.optim.epochs * steps_per_epoch
    if job.optim.max_steps is not None:
        total = min(total, job.optim.max_steps)

    state = TrainState()
    loaded = None
    if resume is not None:
        if resume == "auto":
            loaded, notes = ckpt.latest(rd.checkpoints, acc.process_index)
            for n in notes:
                log.warning("skipping a damaged checkpoint: %s", n)
            if loaded is None:
                log.info("no checkpoint in %s: starting fresh", rd.checkpoints)
        else:
            loaded = ckpt.load(Path(resume), acc.process_index)
        if loaded is not None:
            ckpt.check_state(loaded.state, loaded.path, ckpt.TRAINING_KEYS)
            check_resumable(cfg, loaded.state, world, loaded.path, job.fixed)
    if acc.is_main_process:
        import shutil

        for stale in ckpt.stale_temporaries(rd.checkpoints):
            log.info("removing an unfinished checkpoint of a killed run: %s", stale)
            shutil.rmtree(stale, ignore_errors=True)
    model, optimizer = acc.prepare(job.module, optimizer)
    if loaded is not None:
        restore(acc, model, optimizer, loaded, state)
        log.info("resumed from %s at step %d (epoch %d, position %d)", loaded.path, state.step,
                 state.epoch, state.position)
    core = acc.unwrap_model(model)
    writer = SummaryWriter(str(rd.events)) if acc.is_main_process else None
    log.info("%s: %d windows, %d steps/epoch x %d process(es), global batch %d, %d steps",
             job.name, len(loader.info.windows), steps_per_epoch, world, world * B, total)

    def run_monitor() -> None:
        if job.monitor is not None and acc.is_main_process:
            for name, value in job.monitor(core).items():
                state.knn[f"{name}@{state.step}"] = value
                writer.add_scalar(name, value, state.step)
                log.info("%s at step %d: %.4f", name, state.step, value)
        acc.wait_for_everyone()

    if state.step == 0:
        run_monitor()  # step 0: the figure of the initial weights
    bar = tqdm(total=total, initial=state.step, disable=not acc.is_main_process,
               dynamic_ncols=True, desc=job.name)
    last_ckpt = time.monotonic()
    consecutive_bad = 0
    t_window, wait_window, samples_window = 0.0, 0.0, 0
    try:  # close the progress bar on an error too: the error message gets a line of its own
        model.train()
        while state.step < total:
            epoch = state.epoch
            batches = loader.epoch(epoch, state.position)
            n_batches = loader.num_steps(epoch)
            done = state.position // (world * B)
            while done < n_batches and state.step < total:
                t0 = time.perf_counter()
                micro = min(job.optim.accumulate, n_batches - done)
                lr = lr_at(job.optim, state.step, steps_per_epoch, total)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                bad, loss_sum, wait, metrics_sum = False, 0.0, 0.0, {}
                for i in range(micro):
                    tw = time.perf_counter()
                    batch = next(batches)
                    # Views of the loader's ring: copy to the device (or a private CPU copy) now.
                    batch = {k: (v.to(device, non_blocking=True) if device.type != "cpu"
                                 else v.clone()) for k, v in batch.items()}
                    wait += time.perf_counter() - tw
                    sync = i == micro - 1
                    with (nullcontext() if sync else acc.no_sync(model)), acc.autocast():
                        loss, metrics = model(batch, epoch)
                    if not torch.isfinite(loss):
                        bad = True
                    else:
                        acc.backward(loss / micro)
                    loss_sum += float(loss.detach()) / micro
                    for k, v in metrics.items():
                        metrics_sum[k] = metrics_sum.get(k, 0.0) + float(v) / micro
                done += micro
                grad_norm = None
                if job.optim.clip_norm is not None and not bad:
                    grad_norm = acc.clip_grad_norm_(model.parameters(), job.optim.clip_norm)
                    bad = not torch.isfinite(torch.as_tensor(grad_norm)).item()
                # Every rank skips together, or the replicas would diverge.
                if _agree(bad, device):
                    optimizer.zero_grad(set_to_none=True)
                    state.skipped += 1
                    consecutive_bad += 1
                    log.warning("step %d: non-finite loss or gradient, step skipped (%d so far)",
                                state.step, state.skipped)
                    if consecutive_bad > cfg.run.max_nonfinite:
                        raise NonFiniteError(
                            f"{consecutive_bad} consecutive steps had a non-finite loss or "
                            f"gradient (run.max_nonfinite={cfg.run.max_nonfinite}); the last "
                            f"good checkpoint is in {rd.checkpoints}. Lower the learning rate, "
                            f"set optim.clip_norm, or check the corpus with `sscl data "
                            f"validate`")
                else:
                    consecutive_bad = 0
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if job.after_step is not None:
                        job.after_step(core)
                state.step += 1
                state.position = done * world * B
                state.last_loss = loss_sum
                dt = time.perf_counter() - t0
                t_window += dt
                wait_window += wait
                samples_window += micro * world * B
                if writer is not None and (state.step % cfg.run.log_every == 0 or state.step == 1):
                    sps = samples_window / max(t_window, 1e-9)
                    share = wait_window / max(t_window, 1e-9)
                    writer.add_scalar("loss/total", loss_sum, state.step)
                    for k, v in metrics_sum.items():
                        writer.add_scalar(k, v, state.step)
                    writer.add_scalar("optim/lr", lr, state.step)
                    writer.add_scalar("speed/samples_per_s", sps, state.step)
                    writer.add_scalar("speed/data_wait_share", share, state.step)
                    writer.add_scalar("optim/skipped_steps", state.skipped, state.step)
                    if grad_norm is not None:
                        writer.add_scalar("optim/grad_norm", float(grad_norm), state.step)
                    bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{lr:.3g}", sps=f"{sps:.0f}",
                                    wait=f"{share:.0%}")
                    log.debug("step %d loss %.4f %s", state.step, loss_sum, json.dumps(metrics_sum))
                    t_window, wait_window, samples_window = 0.0, 0.0, 0
                bar.update(1)
                if done >= n_batches:  # epoch finished: the next step starts the next epoch
                    state.epoch, state.position = epoch + 1, 0
                    if job.monitor_every and state.epoch % job.monitor_every == 0 \
                            and state.step < total:
                        run_monitor()
                due = (time.monotonic() - last_ckpt >= cfg.run.checkpoint_every_s
                       or (cfg.run.checkpoint_every_steps
                           and state.step % cfg.run.checkpoint_every_steps == 0))
                if _broadcast_flag(bool(due), device) and state.step < total:
                    save_checkpoint(acc, rd, cfg, model, optimizer, state)
                    last_ckpt = time.monotonic()
                _kill_hook(state.step, acc.process_index)
    finally:
        bar.close()
    run_monitor()
    state.final_checkpoint = save_checkpoint(acc, rd, cfg, model, optimizer, state)
    if job.export is not None and acc.is_main_process:
        job.export(core)
    acc.wait_for_everyone()
    if writer is not None:
        writer.close()
    return state


def _kill_hook(step: int, rank: int = 0) -> None:
    """``SSCL_KILL_AT_STEP=S``: SIGKILL this process right after step S (tests of resume);
    with ``SSCL_KILL_RANK=R`` only rank R dies (tests of a dead rank); ``SSCL_KILL_SIGNAL=
    SIGSTOP`` stops it instead (a hung rank)."""
    import os
    import signal

    at = os.environ.get("SSCL_KILL_AT_STEP")
    only = os.environ.get("SSCL_KILL_RANK")
    if at is not None and int(at) == step and (only is None or int(only) == rank):
        import sys

        sig = getattr(signal, os.environ.get("SSCL_KILL_SIGNAL", "SIGKILL"))
        print(f"\nSSCL_KILL_AT_STEP: {sig.name} to rank {rank} (pid {os.getpid()}) after step "
              f"{step}",
              file=sys.stderr, flush=True)
        os.kill(os.getpid(), sig)
