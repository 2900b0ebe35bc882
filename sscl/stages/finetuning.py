"""The finetuning stage: the localizer on frame labels (METHOD.md section 4).

Protocols (``finetune.protocol``): ``full`` (pretrained backbone, everything trained),
``linear`` (pretrained backbone frozen, in eval mode so its BN statistics stay too; the fusion
and the frame head train) and ``scratch`` (random initialisation, the control). Semi-supervised
runs use a seeded ``label_fraction`` of the labelled training sequences in which every class
keeps at least one sequence; ``val_fraction`` of them is held out first for validation (the
decoder is chosen there, never on the test split). Transfer: ``finetune.corpus`` differs from
the pretraining corpus, with the same layout or a stated ``joint_map``.

Loss: per-frame cross-entropy over K classes + background; padded frames, unlabelled frames
(-1) and wrap-around padding items (weight 0) are ignored. Long training sequences follow
``train_long`` (default ``crop``: one random window of ``max_length`` frames per epoch).

The stage leaves ``localizer.safetensors`` + ``localizer.json`` (layout, fps, units,
normalization, class names, model and head config, windowing): everything inference needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import Tensor, nn

from sscl.config import Config, FinetuneConfig
from sscl.data.corpus import Corpus
from sscl.data.layouts import Layout
from sscl.data.loader import make_loader
from sscl.engine import Job
from sscl.errors import ConfigError
from sscl.inputs import finetune_loader_config, open_corpus_of
from sscl.machine import seed_initial_weights, seed_rank_streams
from sscl.models import build_backbone
from sscl.models.build import encoder_meta, load_encoder
from sscl.models.localizer import Localizer, localizer_meta, save_localizer
from sscl.rundir import RunDir, StageDir
from sscl.runlog import log

# What a checkpoint must share with the run to continue it (workers and epochs may change).
RESUME_FIXED = ("model", "finetune", "data.corpus", "data.loader", "run.seed")
RESUME_FREE = ("finetune.num_workers", "finetune.optim.epochs", "finetune.optim.max_steps",
               "data.loader.num_workers", "data.loader.prefetch", "data.loader.pin_memory",
               "data.loader.memory_budget", "data.loader.map_joints", "data.loader.dali_group",
               "data.loader.batch_size")


@dataclass(frozen=True)
class SplitPlan:
    """Sequence indices of one finetuning run."""

    train: tuple[int, ...]  # labelled sequences trained on (after val and label fraction)
    val: tuple[int, ...]
    test: tuple[int, ...]
    train_pool: int  # training sequences before the label fraction

    def as_dict(self) -> dict[str, tuple[int, ...]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def sequence_classes(labels: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                     num_classes: int) -> list[set[int]]:
    """The action classes (0..K-1) present in each sequence."""
    out = []
    for a, n in zip(offsets.tolist(), lengths.tolist()):
        lab = labels[a:a + n]
        out.append({int(c) for c in np.unique(lab[(lab >= 0) & (lab < num_classes)])})
    return out


def plan_splits(corpus: Corpus, ft: FinetuneConfig, seed: int) -> SplitPlan:
    """Validation hold-out, then a label fraction that keeps every class (seeded).

    Raises:
        ConfigError: a split tag no sequence carries, or no training sequence left.
    """
    pool = np.asarray(corpus.split(ft.train_split), np.int64)
    test = tuple(int(i) for i in corpus.split(ft.test_split))
    K = len(corpus.class_names)
    classes = sequence_classes(corpus.labels, corpus.offsets, corpus.lengths, K)
    rng = np.random.default_rng([seed, 0x5E1EC7])
    order = pool[rng.permutation(len(pool))]
    n_val = int(round(ft.val_fraction * len(order)))
    val, rest = order[:n_val], order[n_val:]
    if len(rest) == 0:
        raise ConfigError(f"finetune.val_fraction={ft.val_fraction} leaves no training sequence "
                          f"of {len(pool)} in {ft.train_split!r}")
    want = max(1, int(np.ceil(ft.label_fraction * len(rest))))
    chosen: list[int] = []
    covered: set[int] = set()
    # First one sequence per class (in the seeded order), then fill up to the fraction.
    for s in rest.tolist():
        if classes[s] - covered:
            chosen.append(s)
            covered |= classes[s]
    for s in rest.tolist():
        if len(chosen) >= want:
            break
        if s not in chosen:
            chosen.append(s)
    return SplitPlan(tuple(sorted(chosen)), tuple(sorted(int(v) for v in val)), test, len(rest))


class FrameLoss(nn.Module):
    """The finetuning stage's training module: the localizer and its per-frame cross-entropy."""

    def __init__(self, localizer: Localizer) -> None:
        super().__init__()
        self.localizer = localizer

    def forward(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        logits_NKT = self.localizer(batch["x"], batch["mask"])
        labels_NT = batch["labels"].masked_fill(~batch["mask"], -1)
        labels_NT = labels_NT.masked_fill((batch["weight"] <= 0).unsqueeze(1), -1)
        n = (labels_NT >= 0).sum()
        loss = F.cross_entropy(logits_NKT.float(), labels_NT, ignore_index=-1,
                               reduction="sum") / n.clamp(min=1)
        with torch.no_grad():
            hit = ((logits_NKT.argmax(1) == labels_NT) & (labels_NT >= 0)).sum()
        return loss, {"train/frame_acc": hit.float() / n.clamp(min=1).float()}

    def after_optimizer_step(self, step: int) -> None:
        """Nothing to do after a step (the trainer's hook)."""


def encoder_path(cfg: Config, run: RunDir) -> Path | None:
    """The pretrained encoder the backbone starts from (None: from scratch)."""
    ft = cfg.finetune
    if ft.protocol == "scratch" or ft.encoder is None:
        return None
    if ft.encoder == "auto":
        return run.pretrain.encoder_weights
    return Path(ft.encoder)


def finetune_job(cfg: Config, stage: StageDir, acc: Accelerator) -> Job:
    """The finetuning stage's Job for this rank."""
    ft = cfg.finetune
    corpus_name = ft.corpus or cfg.data.corpus
    corpus = open_corpus_of(corpus_name)
    plan = plan_splits(corpus, ft, cfg.run.seed)
    log.info("finetune %s on %s: %d of %d training sequences labelled (label_fraction %g), %d "
             "validation, %d test", ft.protocol, corpus_name, len(plan.train), plan.train_pool,
             ft.label_fraction, len(plan.val), len(plan.test))
    loader_cfg = finetune_loader_config(cfg, plan.train)
    loader = make_loader(corpus, loader_cfg, rank=acc.process_index,
                         world_size=acc.num_processes, engine=cfg.data.engine)
    info = loader.info
    enc = encoder_path(cfg, RunDir(stage.root.parent))
    layout, persons = backbone_input(enc, ft, info.layout, info.num_persons)
    seed_initial_weights(cfg.run.seed)
    backbone = build_backbone(cfg.model, layout, persons)
    if enc is not None:
        load_encoder(backbone, enc)
        log.info("backbone initialised from %s", enc)
    localizer = Localizer(backbone, len(info.class_names), head=ft.head, embed_dim=ft.embed_dim,
                          joint_map=ft.joint_map)
    if ft.protocol == "linear":
        localizer.freeze_backbone()
    seed_rank_streams(cfg.run.seed, acc.process_index)
    meta = localizer_meta(
        cfg.model, ft, layout=layout, corpus_layout=info.layout, num_persons=persons,
        class_names=info.class_names, fps=info.fps, units=corpus.attrs.get("units", "m"),
        normalize=loader_cfg.normalize, corpus=corpus_name, splits=plan.as_dict(), encoder=enc)

    def export(core: nn.Module) -> None:
        save_localizer(stage.localizer_weights, core.localizer, meta)

    return Job(name="finetune", module=FrameLoss(localizer), loader=loader,
               batch_size=ft.batch_size, optim=ft.optim, resume_fixed=RESUME_FIXED,
               resume_free=RESUME_FREE, export=export)


def backbone_input(encoder: Path | None, ft: FinetuneConfig, corpus_layout: Layout,
                   corpus_persons: int) -> tuple[Layout, int]:
    """The backbone's layout and persons: the pretraining corpus's (from ``encoder.json``) when
    starting from an encoder, else the finetuning corpus's; checked against the joint map.

    Raises:
        ConfigError: a layout change without a joint map, a joint map of the wrong size, or
            another person count.
    """
    layout, persons = corpus_layout, corpus_persons
    meta = encoder_meta(encoder) if encoder is not None else None
    if meta is not None:
        pre_layout = Layout.from_dict(meta["layout"])
        if ft.joint_map is None and pre_layout.joint_names != corpus_layout.joint_names:
            raise ConfigError(
                f"the encoder {encoder} was pretrained on layout {pre_layout.name!r}, the "
                f"finetuning corpus has {corpus_layout.name!r}; give finetune.joint_map (for each "
                f"of the {pre_layout.num_joints} pretraining joints, the index of the "
                f"finetuning joint, -1 for none)")
        layout, persons = pre_layout, int(meta["num_persons"])
    if ft.joint_map is not None and (len(ft.joint_map) != layout.num_joints
                                     or max(ft.joint_map) >= corpus_layout.num_joints):
        raise ConfigError(
            f"finetune.joint_map has {len(ft.joint_map)} entries up to {max(ft.joint_map)}; "
            f"expected {layout.num_joints} entries (one per pretraining joint) in "
            f"[-1, {corpus_layout.num_joints - 1}]")
    if persons != corpus_persons:
        raise ConfigError(f"the encoder expects {persons} person(s), the finetuning corpus has "
                          f"{corpus_persons}")
    return layout, persons
