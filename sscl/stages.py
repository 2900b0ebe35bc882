"""The stages of the main job and the summary a run ends with.

A run directory holds one folder per stage: ``pretrain/`` (checkpoints, events,
``encoder.safetensors``), ``finetune/`` (checkpoints, events, ``localizer.safetensors``) and
``eval/<corpus>-<split>/`` (reports, timelines), beside the run's ``train.log`` and
``config.yaml``. A finished stage leaves ``done.json``; ``--resume auto`` skips finished stages
and continues the interrupted one from its newest checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from sscl.atomic import write_bytes_atomic
from sscl.config import Config
from sscl.errors import RunDirError
from sscl.runtime import RunDir

log = logging.getLogger("sscl")

ORDER = {"pretrain": ("pretrain",), "finetune": ("finetune",), "eval": ("eval",),
         "all": ("pretrain", "finetune", "eval")}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def stage_dir_problem(path: Path, stage: str, resume: str | None, overwrite: bool
                      ) -> str | None:
    """Why ``path`` cannot be used for ``stage`` now (None: it can)."""
    if path.exists() and any(path.iterdir()) and resume is None and not overwrite:
        return (f"{path} already holds a {stage} stage; continue it with --resume auto, start "
                f"it over with --overwrite (deletes it), or choose another --run-dir")
    return None


def stage_dir(rd: RunDir, stage: str, resume: str | None, overwrite: bool, is_main: bool
              ) -> RunDir:
    """The stage's folder; an existing one needs ``--resume`` or ``--overwrite``."""
    path = rd.root / stage
    problem = stage_dir_problem(path, stage, resume, overwrite)
    if problem:
        raise RunDirError(problem)
    if path.exists() and any(path.iterdir()) and resume is None and is_main:
        shutil.rmtree(path)
    if is_main:
        path.mkdir(parents=True, exist_ok=True)
    return RunDir(path)


def _done(sd: RunDir) -> dict | None:
    f = sd.root / "done.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _mark_done(sd: RunDir, summary: dict, is_main: bool) -> None:
    if is_main:
        write_bytes_atomic(sd.root / "done.json", json.dumps(summary, indent=1).encode())


def run_stages(cfg: Config, rd: RunDir, acc, resume: str | None, overwrite: bool = False
               ) -> list[str]:
    """Run the configured stage(s); returns the summary lines (the last begins ``final:``)."""
    from sscl.engine import fit

    lines = [f"run directory: {rd.root}", f"  log:          {rd.log_file}",
             f"  config:       {rd.config_file}"]
    final = []
    for stage in ORDER[cfg.run.stage]:
        sd = stage_dir(rd, stage, resume, overwrite, acc.is_main_process)
        acc.wait_for_everyone()
        done = _done(sd) if resume is not None else None
        if done is not None:
            log.info("%s: finished earlier (%s), skipped", stage, sd.root / "done.json")
        if stage == "pretrain":
            if done is None:
                from sscl.pretrain import pretrain_job

                state = fit(cfg, pretrain_job(cfg, sd, acc), sd, acc, resume)
                knn = {int(k.split("@")[1]): v for k, v in state.knn.items()
                       if k.startswith("knn/")}
                done = {"step": state.step, "loss": state.last_loss,
                        "knn_first": knn.get(0), "knn_last": knn[max(knn)] if knn else None,
                        "skipped": state.skipped, "checkpoint": str(state.final_checkpoint)}
                _mark_done(sd, done, acc.is_main_process)
            lines += [f"  pretrain:     {sd.root} (encoder: encoder.safetensors; checkpoints: "
                      f"checkpoints/; tensorboard --logdir {sd.events})"]
            final.append(f"pretrain step {done['step']}, loss {done['loss']:.4f}, kNN top-1 "
                         f"{_fmt(done['knn_last'])} (random init {_fmt(done['knn_first'])})")
        elif stage == "finetune":
            if done is None:
                from sscl.finetune import finetune_job

                job, _ = finetune_job(cfg, sd, acc)
                state = fit(cfg, job, sd, acc, resume)
                done = {"step": state.step, "loss": state.last_loss, "skipped": state.skipped,
                        "checkpoint": str(state.final_checkpoint)}
                _mark_done(sd, done, acc.is_main_process)
            lines += [f"  finetune:     {sd.root} (localizer: localizer.safetensors)"]
            final.append(f"finetune step {done['step']}, loss {done['loss']:.4f}")
        else:
            if acc.is_main_process:
                from sscl.evaluation import evaluate, summary_table

                ev = cfg.evaluate
                doc = evaluate(rd.root / "finetune", sd.root, decoder=ev.decoder,
                               tiou=ev.tiou, timelines=ev.timelines, device=acc.device)
                lines += [f"  eval:         {doc['out_dir']} (report.md, report.json, "
                          f"timelines/)", "", *summary_table(doc), ""]
                final.append(f"average mAP {doc['metrics']['average_mAP']:.4f}")
            acc.wait_for_everyone()
    lines.append("final: " + "; ".join(final))
    return lines


def resolve_dir(run_dir: str | None, cfg: Config) -> Path:
    return Path(run_dir) if run_dir else Path("runs") / cfg.run.name
