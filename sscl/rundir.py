"""Every path of a run directory, known here and nowhere else.

::

    <run>/
      train.log, config.yaml
      pretrain/   checkpoints/step-<S>/, events/, encoder.safetensors + encoder.json, done.json
      finetune/   checkpoints/, events/, localizer.safetensors + localizer.json, done.json
      finetune-scratch/   the same for the from-scratch control (``finetune.scratch_control``),
                          with its own eval/<corpus>-<split>/
      eval/<corpus>-<split>/   report.json, report.md, decoder_choice.json, knn.json, timelines/

A stage folder that already holds a run is refused unless the run is resumed (``--resume``) or
started over (``--overwrite``). A finished stage leaves ``done.json``; a resumed run skips it.
A localizer outside a run's ``finetune/`` (a lone ``localizer.safetensors``, or the control in
``finetune-scratch/``) gets its ``eval/`` beside the file. ``sscl evaluate RUN`` and ``sscl
predict RUN`` use ``RUN/finetune/``.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from sscl.atomic import write_bytes_atomic
from sscl.errors import CheckpointError, RunDirError

STAGE_NAMES = ("pretrain", "finetune", "finetune-scratch", "eval")
LOCALIZER_WEIGHTS = "localizer.safetensors"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """``text`` as one folder- or file-safe name (nothing that could lead out of a folder)."""
    return _UNSAFE.sub("_", text).strip(".") or "_"


def corpus_label(corpus: str) -> str:
    """A folder-safe name of a corpus (``demo``, or a path's stem without ``.zarr``)."""
    stem = Path(corpus.rstrip("/")).name
    stem = stem[:-5] if stem.endswith(".zarr") else stem
    return safe_name(stem) if stem else "corpus"


@dataclass(frozen=True)
class StageDir:
    """One stage's folder: checkpoints, events and what the stage exports."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def done_file(self) -> Path:
        return self.root / "done.json"

    @property
    def encoder_weights(self) -> Path:
        """The pretrained encoder (pretraining exports it)."""
        return self.root / "encoder.safetensors"

    @property
    def localizer_weights(self) -> Path:
        """The trained localizer (finetuning exports it); its metadata is the ``.json`` beside."""
        return self.root / LOCALIZER_WEIGHTS

    def done(self) -> dict | None:
        """The summary a finished stage left, or None."""
        return json.loads(self.done_file.read_text()) if self.done_file.is_file() else None

    def mark_done(self, summary: dict) -> None:
        write_bytes_atomic(self.done_file, json.dumps(summary, indent=1).encode())


@dataclass(frozen=True)
class RunDir:
    """A run's directory."""

    root: Path

    @property
    def log_file(self) -> Path:
        return self.root / "train.log"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    def stage(self, name: str) -> StageDir:
        return StageDir(self.root / name)

    @property
    def pretrain(self) -> StageDir:
        return self.stage("pretrain")

    @property
    def finetune(self) -> StageDir:
        return self.stage("finetune")

    @property
    def scratch_control(self) -> StageDir:
        """The from-scratch control of ``finetune.scratch_control``."""
        return self.stage("finetune-scratch")

    @property
    def eval_root(self) -> Path:
        return self.root / "eval"

    def report_dir(self, corpus: str, split: str) -> Path:
        """The evaluation report folder of a corpus and split tag (one folder-safe name: a
        split given on the command line can never lead out of ``eval/``)."""
        return self.eval_root / f"{corpus_label(corpus)}-{safe_name(split)}"

    def reports(self) -> list[Path]:
        """Every ``eval/*/report.json`` of the run."""
        return sorted(self.eval_root.glob("*/report.json"))


def default_run_dir(run_dir: str | None, name: str) -> RunDir:
    """``--run-dir``, else ``./runs/<run.name>``."""
    return RunDir(Path(run_dir) if run_dir else Path("runs") / name)


def find_localizer(path: str | Path) -> Path:
    """A run directory, its finetune folder or a ``localizer.safetensors`` -> the weights file.

    Raises:
        CheckpointError: none of them holds a localizer.
    """
    p = Path(path)
    for cand in (p, p / LOCALIZER_WEIGHTS, RunDir(p).finetune.localizer_weights):
        if cand.is_file() and cand.suffix == ".safetensors":
            return cand
    raise CheckpointError(
        f"{path}: no trained localizer (expected a run directory with finetune/"
        f"{LOCALIZER_WEIGHTS}, or that file); run the finetune stage first")


def localizer_run(weights: Path) -> RunDir:
    """The run a localizer's weights belong to: the parent of its ``finetune/`` folder, else the
    folder holding the file (its reports go to ``eval/`` there)."""
    weights = Path(weights)
    return RunDir(weights.parent.parent if weights.parent.name == "finetune" else weights.parent)


def stage_dir_problem(stage: StageDir, resume: str | None, overwrite: bool) -> str | None:
    """Why ``stage`` cannot be used now (None: it can)."""
    if stage.root.exists() and any(stage.root.iterdir()) and resume is None and not overwrite:
        return (f"{stage.root} already holds a {stage.name} stage; continue it with --resume "
                f"auto, start it over with --overwrite (deletes it), or choose another --run-dir")
    return None


def open_stage(run: RunDir, name: str, resume: str | None, overwrite: bool, is_main: bool
               ) -> StageDir:
    """The stage's folder, created; an occupied one needs ``--resume`` (kept) or
    ``--overwrite`` (emptied by the main process).

    Raises:
        RunDirError: the folder holds a run and neither was given.
    """
    stage = run.stage(name)
    problem = stage_dir_problem(stage, resume, overwrite)
    if problem:
        raise RunDirError(problem)
    if is_main:
        if stage.root.exists() and any(stage.root.iterdir()) and resume is None:
            shutil.rmtree(stage.root)
        stage.root.mkdir(parents=True, exist_ok=True)
    return stage
