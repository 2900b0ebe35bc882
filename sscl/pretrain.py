"""The pretraining stage: loader, contrastive module, kNN monitor and the exported encoder.

The encoder leaves the stage as ``encoder.safetensors`` (the query backbone's weights) beside
``encoder.json`` (backbone config, layout, persons, normalization, corpus): what finetuning
needs, without optimizer state or queues.
"""

from __future__ import annotations

import json

import torch

from sscl import config as config_mod
from sscl.atomic import write_bytes_atomic
from sscl.builders import build_pretrainer, open_training_corpus
from sscl.config import Config
from sscl.engine import Job
from sscl.runtime import RunDir


def pretrain_job(cfg: Config, rd: RunDir, acc) -> Job:
    from sscl.data.loader import make_loader
    from sscl.probe import KnnProbe

    corpus_path, sequences = open_training_corpus(cfg.data.corpus, cfg.data.split)
    loader_cfg = config_mod.replace(
        cfg.data.loader, task="pretrain", seed=cfg.run.seed, sequences=sequences,
        extreme=cfg.data.loader.extreme or cfg.pretrain.uses_extreme)
    loader = make_loader(corpus_path, loader_cfg, rank=acc.process_index,
                         world_size=acc.num_processes, engine=cfg.data.engine)
    info = loader.info
    # The same initial weights on every rank (seeded before the rank offset); dropout streams
    # differ by rank.
    torch.manual_seed(cfg.run.seed)
    module = build_pretrainer(cfg, info.layout, info.num_persons)
    module.check_window(loader_cfg.augment.out_len)  # a too-short view fails here, named
    torch.manual_seed(cfg.run.seed * 1000 + acc.process_index)

    probe = KnnProbe.from_config(cfg) if cfg.probe.corpus and acc.is_main_process else None

    def monitor(core) -> dict[str, float]:
        return {"knn/top1": probe(core.backbone, acc.device)} if probe else {}

    def export(core) -> None:
        from safetensors.torch import save

        weights = {k: v.detach().contiguous().cpu()
                   for k, v in core.backbone.state_dict().items()}
        write_bytes_atomic(rd.root / "encoder.safetensors", save(weights))
        meta = {"model": config_mod.to_dict(cfg.model), "layout": info.layout.to_dict(),
                "num_persons": info.num_persons, "normalize": loader_cfg.normalize,
                "corpus": cfg.data.corpus, "method": cfg.pretrain.method,
                "snippet": cfg.pretrain.snippet}
        write_bytes_atomic(rd.root / "encoder.json", json.dumps(meta, indent=1).encode())

    return Job("pretrain", module, loader, loader_cfg.batch_size, cfg.optim,
               ("model", "pretrain"), monitor if probe else None, cfg.probe.every_epochs,
               export, after_step=lambda core: core.momentum_update())
