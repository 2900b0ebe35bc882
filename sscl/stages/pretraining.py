"""The pretraining stage: the contrastive module on the training corpus, unlabelled.

Builds the loader (``sscl.inputs``), the ``Pretrainer`` (METHOD.md section 2) on the configured
backbone, the kNN monitor, the snippet branch's shortcut diagnostics, and the export of the
query backbone as ``encoder.safetensors`` + ``encoder.json``. Initial weights are the same on
every rank; dropout streams differ by rank. Queue sizes set to ``auto`` are resolved from the
corpus before the run's config is written (:func:`resolve_queue_sizes`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from accelerate import Accelerator
from torch import nn

from sscl import presets
from sscl.config import AUTO, Config
from sscl.contrastive import KnnProbe, Pretrainer, shortcut_diagnostics
from sscl.contrastive.shortcut import SHORTCUT_WARNING
from sscl.data.loader import build_windows, make_loader
from sscl.engine import Batch, Job
from sscl.inputs import knn_probe, open_corpus_of, pretrain_loader_config, split_indices
from sscl.machine import seed_initial_weights, seed_rank_streams
from sscl.models import build_backbone
from sscl.models.build import save_encoder
from sscl.rundir import StageDir
from sscl.runlog import log, warn_once

# What a checkpoint must share with the run to continue it: the model, the method, the sample
# stream (corpus, split, loader, seed) and the optimizer. Workers, prefetch and memory settings
# change no sample; the per-process batch may change with the process count (the global batch
# is checked); epochs and max_steps may grow.
RESUME_FIXED = ("model", "pretrain", "data.corpus", "data.split", "data.loader", "optim",
                "run.seed")
LOADER_FREE = ("data.loader.num_workers", "data.loader.prefetch", "data.loader.pin_memory",
               "data.loader.memory_budget", "data.loader.map_joints", "data.loader.dali_group",
               "data.loader.batch_size")
RESUME_FREE = (*LOADER_FREE, "optim.epochs", "optim.max_steps")


def pretrain_job(cfg: Config, stage: StageDir, acc: Accelerator) -> Job:
    """The pretraining stage's Job for this rank."""
    corpus = open_corpus_of(cfg.data.corpus)
    loader_cfg = pretrain_loader_config(cfg, split_indices(corpus, cfg.data.split))
    loader = make_loader(corpus, loader_cfg, rank=acc.process_index,
                         world_size=acc.num_processes, engine=cfg.data.engine)
    info = loader.info
    seed_initial_weights(cfg.run.seed)
    module = Pretrainer(cfg.pretrain, build_backbone(cfg.model, info.layout, info.num_persons))
    module.check_window(loader_cfg.augment.out_len)  # a too-short view fails here, named
    seed_rank_streams(cfg.run.seed, acc.process_index)
    probe = knn_probe(cfg) if cfg.probe.corpus and acc.is_main_process else None
    # What finetuning needs, and the encoder's provenance (`sscl compare` describes a run that
    # finetunes this encoder by how it was pretrained).
    meta = {"model": presets.to_dict(cfg.model), "layout": info.layout.to_dict(),
            "num_persons": info.num_persons, "normalize": loader_cfg.normalize,
            "corpus": cfg.data.corpus, "split": cfg.data.split, "method": cfg.pretrain.method,
            "snippet": cfg.pretrain.snippet, "pretrain": presets.to_dict(cfg.pretrain),
            "optim": presets.to_dict(cfg.optim), "seed": cfg.run.seed}

    def export(core: nn.Module) -> None:
        save_encoder(stage.encoder_weights, core.backbone, meta)

    return Job(name="pretrain", module=module, loader=loader, batch_size=loader_cfg.batch_size,
               optim=cfg.optim, resume_fixed=RESUME_FIXED, resume_free=RESUME_FREE,
               monitor=None if probe is None else knn_monitor(probe, acc),
               monitor_every=cfg.probe.every_epochs,
               diagnose=diagnostics if cfg.pretrain.snippet else None,
               diagnose_every=cfg.pretrain.diagnostics_every, export=export)


def diagnostics(core: nn.Module, batch: Batch) -> dict[str, float]:
    """The snippet branch's shortcut diagnostics (``sscl.contrastive.shortcut``) and their cost;
    warns once when the content-free top-1 says position alone solves the snippet task."""
    t0 = time.perf_counter()
    figures = shortcut_diagnostics(core, batch)
    noise = figures.get("diag/snippet_top1_noise", 0.0)
    queue = core.snippet_queue
    # Beating a queue that still holds its initial random keys says nothing; the reference
    # code's static queue holds them for good, so there the figure counts from the start.
    settled = int(queue.filled) == queue.size or core.cfg.snippet_negatives == "reference"
    if settled and noise > SHORTCUT_WARNING:
        negatives = core.cfg.snippet_negatives
        fix = ("Set pretrain.snippet_negatives=sampled (METHOD.md section 8, docs/RESULTS.md)"
               if negatives != "sampled" else
               "Even one sampled snippet per video leaves position a cue here: fewer snippets "
               "(pretrain.num_snippets) or longer windows make positions less distinct")
        warn_once("shortcut", (
            f"the snippet task is solved without content: with both views and the negatives "
            f"made of noise the positive still beats every negative for {noise:.2f} of the "
            f"snippets (over {SHORTCUT_WARNING}); position alone solves it with "
            f"pretrain.snippet_negatives={negatives}. {fix}"))
    figures["diag/seconds"] = time.perf_counter() - t0
    return figures


def distinct_windows(cfg: Config, lengths: np.ndarray, sequences: tuple[int, ...] | None) -> int:
    """Windows of an epoch whose content does not overlap, all ranks together: per sequence,
    its windows, but no more than the raw-length windows that fit in it (overlapping dense
    windows read the same frames twice; ``per_sequence`` reads one window a sequence)."""
    loader_cfg = pretrain_loader_config(cfg, sequences)
    windows = build_windows(lengths, loader_cfg)
    per_seq = np.bincount(windows.seq, minlength=len(lengths))
    fits = -(-np.asarray(lengths, np.int64) // loader_cfg.raw_length)
    return int(np.minimum(per_seq, fits).sum())


def resolve_queue_sizes(cfg: Config) -> Config:
    """``cfg`` with ``auto`` queue sizes replaced by a quarter of the distinct windows of an
    epoch, so that about a quarter of the queries meet a stale copy of their own clip among the
    negatives; a set size that makes more than half of them meet one is logged as a warning."""
    p = cfg.pretrain
    corpus = open_corpus_of(cfg.data.corpus)
    n = distinct_windows(cfg, corpus.lengths, split_indices(corpus, cfg.data.split))
    auto = max(1, n // 4)
    sizes = {"queue_size": p.queue_size, "snippet_queue_size": p.snippet_queue_size}
    resolved = {k: auto if v == AUTO else v for k, v in sizes.items()}
    for key, size in resolved.items():
        if sizes[key] == AUTO:
            log.info("pretrain.%s=auto: %d (a quarter of the %d distinct windows of an epoch)",
                     key, size, n)
        elif isinstance(size, int) and size > n / 2:
            log.warning(
                "warning: pretrain.%s=%d with %d distinct windows an epoch: about %.0f%% of the "
                "queries meet stale copies of their own clip among the negatives (%.1f each); "
                "set pretrain.%s=auto (%d here)", key, size, n, 100 * min(1.0, size / n),
                size / n, key, auto)
    return replace(cfg, pretrain=replace(p, **resolved))


def knn_monitor(probe: KnnProbe, acc: Accelerator) -> Callable[[nn.Module], dict[str, float]]:
    """The monitor of pretraining: kNN top-1 of the query backbone."""

    def monitor(core: nn.Module) -> dict[str, float]:
        return {"knn/top1": probe(core.backbone, acc.device)}

    return monitor

