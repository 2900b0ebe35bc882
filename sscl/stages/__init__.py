"""The stages of a run, in order, and the summary it ends with.

``run.stage`` (or ``--stage``) selects ``pretrain``, ``finetune``, ``eval`` or ``all`` (the three
in order). Each training stage is a ``Job`` for ``sscl.engine.fit`` (modules ``pretraining`` and
``finetuning``); evaluation scores the finetuned localizer (module ``evaluation``). With
``finetune.scratch_control`` the finetune stage also trains the from-scratch control on the same
labels (stage folder ``finetune-scratch``) and evaluation scores both. With ``--resume`` a
finished stage (its ``done.json``) is skipped and the interrupted one continues from its newest
checkpoint.
"""

from __future__ import annotations

from dataclasses import replace

from accelerate import Accelerator

from sscl.config import Config
from sscl.engine import fit
from sscl.localize.report import map_table
from sscl.rundir import RunDir, StageDir, open_stage
from sscl.runlog import log
from sscl.stages.evaluation import evaluate
from sscl.stages.finetuning import finetune_job
from sscl.stages.pretraining import pretrain_job

ORDER = {"pretrain": ("pretrain",), "finetune": ("finetune",), "eval": ("eval",),
         "all": ("pretrain", "finetune", "eval")}
CONTROL = "finetune-scratch"


def stage_names(cfg: Config) -> tuple[str, ...]:
    """The stage folders ``cfg`` runs, in order (the control right after finetuning)."""
    names = ORDER[cfg.run.stage]
    if cfg.finetune.scratch_control and "finetune" in names:
        i = names.index("finetune") + 1
        names = (*names[:i], CONTROL, *names[i:])
    return names


def control_config(cfg: Config) -> Config:
    """The from-scratch control's config: the run's, with ``finetune.protocol=scratch``."""
    return replace(cfg, finetune=replace(cfg.finetune, protocol="scratch",
                                         scratch_control=False))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def run_stages(cfg: Config, run: RunDir, acc: Accelerator, resume: str | None,
               overwrite: bool = False) -> list[str]:
    """Run the configured stage(s); returns the summary lines (the last begins ``final:``)."""
    lines = [f"run directory: {run.root}", f"  log:          {run.log_file}",
             f"  config:       {run.config_file}"]
    final = []
    for name in stage_names(cfg):
        stage = open_stage(run, name, resume, overwrite, acc.is_main_process)
        acc.wait_for_everyone()
        done = stage.done() if resume is not None else None
        if done is not None:
            log.info("%s: finished earlier (%s), skipped", name, stage.done_file)
        if name == "pretrain":
            done = done or train_stage(cfg, stage, acc, resume, pretrain_job)
            lines.append(f"  pretrain:     {stage.root} (encoder: {stage.encoder_weights.name}; "
                         f"checkpoints: checkpoints/; tensorboard --logdir {stage.events})")
            final.append(f"pretrain step {done['step']}, loss {done['loss']:.4f}, kNN top-1 "
                         f"{_fmt(done['knn_last'])} (random init {_fmt(done['knn_first'])})")
        elif name == "finetune":
            done = done or train_stage(cfg, stage, acc, resume, finetune_job)
            lines.append(f"  finetune:     {stage.root} (localizer: "
                         f"{stage.localizer_weights.name})")
            final.append(f"finetune step {done['step']}, loss {done['loss']:.4f}")
        elif name == CONTROL:
            done = done or train_stage(control_config(cfg), stage, acc, resume, finetune_job)
            lines.append(f"  control:      {stage.root} (from scratch, same labels and schedule)")
        else:
            if acc.is_main_process:
                lines += evaluation_lines(cfg, run, acc, final)
            acc.wait_for_everyone()
    lines.append("final: " + "; ".join(final))
    return lines


def train_stage(cfg: Config, stage: StageDir, acc: Accelerator, resume: str | None,
                make_job) -> dict:
    """Train one stage to its end and mark it done; returns its summary."""
    state = fit(cfg, make_job(cfg, stage, acc), stage, acc, resume)
    knn = {int(k.split("@")[1]): v for k, v in state.knn.items() if k.startswith("knn/")}
    done = {"step": state.step, "loss": state.last_loss, "skipped": state.skipped,
            "knn_first": knn.get(0), "knn_last": knn[max(knn)] if knn else None,
            "checkpoint": str(state.final_checkpoint)}
    if acc.is_main_process:
        stage.mark_done(done)
    return done


def evaluation_lines(cfg: Config, run: RunDir, acc: Accelerator, final: list[str]) -> list[str]:
    """Evaluate the run's localizer (and the control's, beside it in ``finetune-scratch/``);
    the summary's lines, the mAP table with both rows and the trivial baselines."""
    ev = cfg.evaluate
    kw = dict(decoder=ev.decoder, tiou=ev.tiou, timelines=ev.timelines, device=acc.device)
    doc = evaluate(run.finetune.root, run, **kw)
    rows = {"sscl": doc["metrics"]}
    lines = [f"  eval:         {doc['out_dir']} (report.md, report.json, timelines/)"]
    average = f"average mAP {doc['metrics']['average_mAP']:.4f}"
    if cfg.finetune.scratch_control:
        control = evaluate(run.scratch_control.root, RunDir(run.scratch_control.root), **kw)
        rows["scratch"] = control["metrics"]
        lines.append(f"  control eval: {control['out_dir']}")
        average += f" (scratch {control['metrics']['average_mAP']:.4f})"
    final.append(average)
    return [*lines, "", *map_table({**rows, **doc["baselines"]}).splitlines(), ""]
