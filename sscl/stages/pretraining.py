"""The pretraining stage: the contrastive module on the training corpus, unlabelled.

Builds the loader (``sscl.inputs``), the ``Pretrainer`` (METHOD.md section 2) on the configured
backbone, the kNN monitor, and the export of the query backbone as ``encoder.safetensors`` +
``encoder.json``. Initial weights are the same on every rank; dropout streams differ by rank.
"""

from __future__ import annotations

from accelerate import Accelerator
from torch import nn

from sscl import presets
from sscl.config import Config
from sscl.contrastive import KnnProbe, Pretrainer
from sscl.data.loader import make_loader
from sscl.engine import Job
from sscl.inputs import knn_probe, open_corpus_of, pretrain_loader_config, split_indices
from sscl.machine import seed_initial_weights, seed_rank_streams
from sscl.models import build_backbone
from sscl.models.build import save_encoder
from sscl.rundir import StageDir

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
    meta = {"model": presets.to_dict(cfg.model), "layout": info.layout.to_dict(),
            "num_persons": info.num_persons, "normalize": loader_cfg.normalize,
            "corpus": cfg.data.corpus, "method": cfg.pretrain.method,
            "snippet": cfg.pretrain.snippet}

    def export(core: nn.Module) -> None:
        save_encoder(stage.root, core.backbone, meta)

    return Job(name="pretrain", module=module, loader=loader, batch_size=loader_cfg.batch_size,
               optim=cfg.optim, resume_fixed=RESUME_FIXED, resume_free=RESUME_FREE,
               monitor=None if probe is None else knn_monitor(probe, acc),
               monitor_every=cfg.probe.every_epochs, export=export)


def knn_monitor(probe: KnnProbe, acc: Accelerator):
    """The monitor of pretraining: kNN top-1 of the query backbone."""

    def monitor(core: nn.Module) -> dict[str, float]:
        return {"knn/top1": probe(core.backbone, acc.device)}

    return monitor
