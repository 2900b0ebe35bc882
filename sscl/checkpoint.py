"""Checkpoints: the format, the atomic write every rank joins, restore and the resume checks.

Safetensors and JSON only, written atomically, the last k kept. A checkpoint is a directory
``<stage>/checkpoints/step-<S>/`` holding

- ``model.safetensors``: every tensor of the training module's state dict (query and key
  encoders, heads, both queues and their pointers, BN statistics);
- ``optimizer.safetensors`` + the optimizer's non-tensor state in ``state.json``;
- ``rng-rank<r>.safetensors``: each rank's torch (CPU and CUDA) generator state;
- ``state.json``: step, epoch, position, scaler, skipped steps, processes and per-process batch,
  the resolved config, the code version, and the non-tensor parts of the optimizer and of the
  numpy/python generators.

Nothing is ever unpickled: tensors come back through safetensors, everything else through
JSON. Writes go into ``step-<S>.tmp/`` (each file written, flushed and fsynced), then the
directory is renamed into place and its parent fsynced: a checkpoint under its final name is
complete, whatever moment the process died at. A full disk, quota or file size limit is one
``DiskWriteError`` naming the file; the trainer then removes the temporary directory.
``SSCL_FAULT=<point>`` kills the process with SIGKILL at a named point of the write
(``after_weights``, ``after_optimizer``, ``before_rename``) so tests can show
that the previous checkpoint survives.

A resumed run restores weights, key encoder, queues, optimizer, scaler, generator states and the
loader's (epoch, position): on the CPU with ``run.deterministic`` it ends bitwise identical to an
uninterrupted run. :func:`check_resumable` refuses a checkpoint whose model, method or sample
stream differs from the run's, naming every mismatching key.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from sscl import presets
from sscl.atomic import cpu_tensors, disk_errors, fsync_dir
from sscl.config import Config
from sscl.errors import CheckpointError, ConfigError
from sscl.rundir import StageDir
from sscl.version import code_version

FORMAT = 1
FAULT_POINTS = ("after_weights", "after_optimizer", "before_rename")


_fault_seen: dict[str, int] = {}


def fault(point: str) -> None:
    """Die here (SIGKILL) if ``SSCL_FAULT`` names this point: the fault-injection hook.

    ``SSCL_FAULT_SKIP=n`` lets the first n passes through the point go by (so a run can keep
    an earlier checkpoint and die inside a later one).
    """
    if os.environ.get("SSCL_FAULT") != point:
        return
    seen = _fault_seen.get(point, 0)
    _fault_seen[point] = seen + 1
    if seen >= int(os.environ.get("SSCL_FAULT_SKIP", "0")):
        os.kill(os.getpid(), signal.SIGKILL)


KEPT = ("this checkpoint was discarded; earlier ones are intact and `--resume auto` continues "
        "from the newest")


def _write(path: Path, data: bytes) -> None:
    """One file of a checkpoint being written (inside its temporary directory).

    Raises:
        DiskWriteError: a full disk, quota or file size limit, naming the file.
    """
    with disk_errors(path, KEPT), open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------- optimizer <-> safetensors/JSON


def optimizer_to_parts(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (safetensors) and JSON."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state["state"].items():
        for k, v in per_param.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_parts(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    for idx, d in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(d)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """This process's generator states: torch (tensors) and numpy/python (JSON)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    return tensors, {
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "python": [py[0], list(py[1]), py[2]],
    }


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    v, state, g = meta["python"]
    random.setstate((v, tuple(state), g))


# ---------------------------------------------------------------- the checkpoint directory


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint (everything on the CPU).

    Attributes:
        path: its directory.
        model: the training module's state dict.
        optimizer: an ``optimizer.load_state_dict`` argument.
        state: the JSON state (step, epoch, position, config, ...).
        rng: (tensors, meta) of this rank, or None when the checkpoint has no file for it.
    """

    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict | None
    state: dict
    rng: tuple[dict[str, torch.Tensor], dict] | None


def step_dir(root: Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def write_rank_files(tmp: Path, rank: int) -> None:
    """Each rank's own part (its generator states) into the checkpoint being written."""
    tensors, meta = rng_state()
    _write(tmp / f"rng-rank{rank}.safetensors",
           st_save(tensors, metadata={"meta": json.dumps(meta)}))


def begin(root: Path, step: int) -> Path:
    """The temporary directory of the checkpoint of ``step`` (created; shared by all ranks)."""
    tmp = Path(root) / f"step-{step:08d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    with disk_errors(tmp, KEPT):
        tmp.mkdir(parents=True)
    return tmp


def discard(tmp: Path) -> None:
    """Remove an unfinished checkpoint directory (after a failed write)."""
    shutil.rmtree(tmp, ignore_errors=True)


def write_main(tmp: Path, model_state: dict[str, torch.Tensor], optimizer_state: dict | None,
               state: dict) -> None:
    """The main process's part: weights, optimizer, JSON state."""
    _write(tmp / "model.safetensors", st_save(cpu_tensors(model_state)))
    fault("after_weights")
    state = dict(state, format=FORMAT, time=time.time())
    if optimizer_state is not None:
        opt_tensors, opt_meta = optimizer_to_parts(optimizer_state)
        _write(tmp / "optimizer.safetensors", st_save(opt_tensors))
        state["optimizer"] = opt_meta
    fault("after_optimizer")
    _write(tmp / "state.json", json.dumps(state, indent=1).encode())


def commit(tmp: Path, final: Path, keep_last: int) -> None:
    """Rename the finished temporary directory into place; drop checkpoints beyond k."""
    fsync_dir(tmp)
    fault("before_rename")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    for old in list_checkpoints(final.parent)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temporary directories excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        name = p.name
        if p.is_dir() and name.startswith("step-") and name[5:].isdigit():
            out.append(p)
    return sorted(out, key=lambda p: int(p.name[5:]))


def stale_temporaries(root: Path) -> list[Path]:
    root = Path(root)
    return sorted(p for p in root.glob("step-*.tmp")) if root.is_dir() else []


def load(path: Path, rank: int = 0) -> Checkpoint:
    """Load a checkpoint directory (no unpickling).

    Raises:
        CheckpointError: a missing or damaged file, named.
    """
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(
                f"checkpoint {path} has format {got!r}; this sscl reads {FORMAT}")
        check_state(state, path)
        model = st_load((path / "model.safetensors").read_bytes())
        opt = None
        if "optimizer" in state:
            opt = optimizer_from_parts(
                st_load((path / "optimizer.safetensors").read_bytes()), state["optimizer"])
        rng = None
        rng_file = path / f"rng-rank{rank}.safetensors"
        if rng_file.exists():
            with safe_open(str(rng_file), framework="pt") as f:
                meta = json.loads(f.metadata()["meta"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
            rng = (tensors, meta)
    except CheckpointError:
        raise
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint {path} is incomplete: {e.filename} is missing") from None
    except (json.JSONDecodeError, SafetensorError, UnicodeDecodeError, KeyError, ValueError,
            TypeError, AttributeError, OverflowError, RecursionError) as e:
        raise CheckpointError(f"checkpoint {path} is damaged: {type(e).__name__}: {e}") from None
    return Checkpoint(path, model, opt, state, rng)


# Counters of a checkpoint's state.json: integers in [0, 2**53) (JSON's exact integers).
_COUNTERS = ("step", "epoch", "position", "skipped", "world_size", "batch_size")
# What the trainer needs to continue from a checkpoint.
TRAINING_KEYS = (*_COUNTERS, "last_loss", "config")


def check_state(state: dict, path: Path, required: tuple[str, ...] = ("step",)) -> None:
    """Check a loaded ``state.json`` before anything uses it (it is data from a file: wrong
    types, absurd numbers or an unknown config key must be a named error, not a traceback);
    replaces ``state["config"]`` by the complete config it describes.

    Raises:
        CheckpointError: the first wrong entry, named.
    """
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path}: state.json {what}; the file is damaged or "
                               f"not an sscl checkpoint (delete it; --resume auto then takes "
                               f"the one before)")

    missing = [k for k in required if k not in state]
    if missing:
        raise bad(f"lacks {', '.join(missing)}")
    for key in _COUNTERS:
        if key not in state:
            continue
        v = state[key]
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**53:
            raise bad(f"{key} = {str(v)[:80]!r} is not a count in [0, 2**53)")
    for key in ("world_size", "batch_size"):
        if state.get(key) == 0:
            raise bad(f"{key} = 0")
    loss = state.get("last_loss")
    if loss is not None and (not isinstance(loss, (int, float)) or isinstance(loss, bool)):
        raise bad(f"last_loss = {str(loss)[:80]!r} is not a number")
    knn = state.get("knn", {})
    if not isinstance(knn, dict) or not all(
            isinstance(k, str) and "@" in k and k.rsplit("@", 1)[1].isdigit()
            and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in knn.items()):
        raise bad("knn is not a mapping of '<name>@<step>' to numbers")
    if state.get("scaler") is not None and not isinstance(state["scaler"], dict):
        raise bad("scaler is neither null nor a mapping")
    if "optimizer" in state:
        opt = state["optimizer"]
        if not (isinstance(opt, dict) and isinstance(opt.get("param_groups"), list)
                and all(isinstance(g, dict) for g in opt["param_groups"])
                and isinstance(opt.get("scalars"), dict)
                and all(isinstance(k, str) and k.isdigit() and isinstance(v, dict)
                        for k, v in opt["scalars"].items())):
            raise bad("optimizer is not {param_groups: [mappings], scalars: {index: mapping}}")
    if "config" not in state:
        return
    if not isinstance(state["config"], dict):
        raise bad("config is not a mapping")
    try:
        state["config"] = presets.to_dict(presets.from_dict(state["config"]))
    except ConfigError as e:
        raise bad(f"config does not describe a run: {e}") from None


def latest(root: Path, rank: int = 0) -> tuple[Checkpoint | None, list[str]]:
    """The newest loadable checkpoint under ``root`` and a note per damaged newer one."""
    notes = []
    for p in reversed(list_checkpoints(root)):
        try:
            return load(p, rank), notes
        except CheckpointError as e:
            notes.append(str(e))
    return None, notes


# ---------------------------------------------------------------- the trainer's side


@dataclass
class TrainState:
    """Where a training stage is: the counters of every checkpoint's ``state.json``."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # global sample index of the next batch in ``epoch``
    skipped: int = 0  # steps skipped by the non-finite guard
    last_loss: float = float("nan")
    knn: dict = field(default_factory=dict)  # "<monitor>@<step>" -> figure
    final_checkpoint: Path | None = None


def save(acc: Accelerator, stage: StageDir, cfg: Config, model: torch.nn.Module,
         optimizer: torch.optim.Optimizer, state: TrainState, batch_size: int) -> Path:
    """Write a checkpoint of ``state``; every rank calls this (collective).

    Each rank writes its generator states into the shared temporary directory; rank 0 writes
    weights, optimizer and ``state.json`` and renames the directory into place. A failed write
    removes the temporary directory and raises (``DiskWriteError`` names the file).

    Args:
        batch_size: the per-rank batch size (a resume checks processes x batch size).

    Returns:
        The checkpoint directory.
    """
    tmp = stage.checkpoints / f"step-{state.step:08d}.tmp"
    if acc.is_main_process:
        begin(stage.checkpoints, state.step)
    acc.wait_for_everyone()
    try:
        write_rank_files(tmp, acc.process_index)
    except Exception:
        discard(tmp)
        raise
    acc.wait_for_everyone()
    final = step_dir(stage.checkpoints, state.step)
    if acc.is_main_process:
        scaler = getattr(acc, "scaler", None)
        try:
            write_main(tmp, acc.unwrap_model(model).state_dict(), optimizer.state_dict(), {
                "step": state.step, "epoch": state.epoch, "position": state.position,
                "skipped": state.skipped, "last_loss": state.last_loss, "knn": state.knn,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "world_size": acc.num_processes, "batch_size": batch_size,
                "config": presets.to_dict(cfg), "code_version": code_version(),
            })
            commit(tmp, final, cfg.run.keep_last)
        except Exception:
            discard(tmp)  # a full disk: leave no half-written checkpoint behind
            raise
    acc.wait_for_everyone()
    return final


def remove_stale_temporaries(stage: StageDir) -> list[Path]:
    """Delete the unfinished checkpoint directories a killed run left; returns them."""
    stale = stale_temporaries(stage.checkpoints)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def restore(acc: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            loaded: Checkpoint, state: TrainState) -> None:
    """Weights, optimizer, scaler, generators and counters of ``loaded`` into the run.

    Raises:
        CheckpointError: a part that does not fit this run, named.
    """
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
            set_rng_state(*loaded.rng)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {loaded.path}: its optimizer, scaler or generator "
                              f"state does not fit this run: {type(e).__name__}: {e}") from None
    state.step, state.epoch, state.position = s["step"], s["epoch"], s["position"]
    state.skipped, state.last_loss = s["skipped"], s["last_loss"]
    state.knn = s.get("knn", {})


def _matches(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def check_resumable(cfg: Config, saved: dict, world_size: int, batch_size: int, path: Path,
                    fixed: tuple[str, ...], free: tuple[str, ...] = ()) -> None:
    """Refuse a checkpoint of another model, method or sample stream, naming every mismatch.

    Args:
        saved: the checkpoint's ``state.json`` (``check_state`` completed its config).
        world_size, batch_size: processes and per-rank batch of this run; their product must be
            the checkpoint's (the global batch decides the samples of a step).
        fixed: dotted config keys (or sections) that must match, e.g. ``("model", "pretrain",
            "data.loader", "run.seed")``.
        free: keys under ``fixed`` that may change (workers, epochs, ...).

    Raises:
        CheckpointError: the mismatching keys, both values.
    """
    then, now = presets.flatten(saved["config"]), presets.flatten(presets.to_dict(cfg))
    diffs = [f"{key}: checkpoint {then.get(key)!r}, now {now.get(key)!r}"
             for key in sorted(set(then) | set(now))
             if _matches(key, fixed) and not _matches(key, free) and then.get(key) != now.get(key)]
    saved_batch = saved["batch_size"]
    if saved["world_size"] * saved_batch != world_size * batch_size:
        diffs.append(f"global batch (processes x per-process batch): checkpoint "
                     f"{saved['world_size']} x {saved_batch}, now {world_size} x {batch_size}")
    if diffs:
        raise CheckpointError(f"checkpoint {path} does not fit this run: " + "; ".join(diffs))
