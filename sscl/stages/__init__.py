"""The stages of a run, in order, and the summary it ends with.

``run.stage`` (or ``--stage``) selects ``pretrain``, ``finetune``, ``eval`` or ``all`` (the three
in order). Each training stage is a ``Job`` for ``sscl.engine.fit`` (modules ``pretraining`` and
``finetuning``); evaluation scores the finetuned localizer (module ``evaluation``). With
``--resume`` a finished stage (its ``done.json``) is skipped and the interrupted one continues
from its newest checkpoint.
"""

from __future__ import annotations

from accelerate import Accelerator

from sscl.config import Config
from sscl.engine import fit
from sscl.rundir import RunDir, StageDir, open_stage
from sscl.runlog import log
from sscl.stages.evaluation import evaluate, summary_table
from sscl.stages.finetuning import finetune_job
from sscl.stages.pretraining import pretrain_job

ORDER = {"pretrain": ("pretrain",), "finetune": ("finetune",), "eval": ("eval",),
         "all": ("pretrain", "finetune", "eval")}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def run_stages(cfg: Config, run: RunDir, acc: Accelerator, resume: str | None,
               overwrite: bool = False) -> list[str]:
    """Run the configured stage(s); returns the summary lines (the last begins ``final:``)."""
    lines = [f"run directory: {run.root}", f"  log:          {run.log_file}",
             f"  config:       {run.config_file}"]
    final = []
    for name in ORDER[cfg.run.stage]:
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
        else:
            if acc.is_main_process:
                ev = cfg.evaluate
                doc = evaluate(run.finetune.root, run, decoder=ev.decoder, tiou=ev.tiou,
                               timelines=ev.timelines, device=acc.device)
                lines += [f"  eval:         {doc['out_dir']} (report.md, report.json, "
                          f"timelines/)", "", *summary_table(doc), ""]
                final.append(f"average mAP {doc['metrics']['average_mAP']:.4f}")
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
