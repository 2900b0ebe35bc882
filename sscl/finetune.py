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

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sscl import config as config_mod
from sscl.builders import build_backbone, corpus_location
from sscl.config import Config, FinetuneConfig, ModelConfig
from sscl.engine import Job
from sscl.errors import CheckpointError, ConfigError
from sscl.inference import save_localizer
from sscl.runtime import RunDir

log = logging.getLogger("sscl")


@dataclass(frozen=True)
class SplitPlan:
    """Sequence indices of one finetuning run."""

    train: tuple[int, ...]  # labelled sequences trained on (after val and label fraction)
    val: tuple[int, ...]
    test: tuple[int, ...]
    train_pool: int  # training sequences before the label fraction


def sequence_classes(labels: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
                     num_classes: int) -> list[set[int]]:
    """The action classes (0..K-1) present in each sequence."""
    out = []
    for a, n in zip(offsets.tolist(), lengths.tolist()):
        lab = labels[a:a + n]
        out.append({int(c) for c in np.unique(lab[(lab >= 0) & (lab < num_classes)])})
    return out


def plan_splits(corpus, ft: FinetuneConfig, seed: int) -> SplitPlan:
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


class FrameTask(nn.Module):
    """Localizer + per-frame cross-entropy: the finetuning stage's ``Job.module``."""

    def __init__(self, localizer: nn.Module, protocol: str,
                 joint_map: tuple[int, ...] | None = None) -> None:
        super().__init__()
        self.localizer = localizer
        self.frozen = protocol == "linear"
        if self.frozen:
            for p in localizer.backbone.parameters():
                p.requires_grad_(False)
        self.register_buffer("joint_map", None if joint_map is None
                             else torch.tensor(joint_map, dtype=torch.long), persistent=False)

    def train(self, mode: bool = True) -> FrameTask:
        super().train(mode)
        if self.frozen:
            self.localizer.backbone.eval()  # a frozen backbone keeps its BN statistics
        return self

    def map_joints(self, x_NCTVM: Tensor) -> Tensor:
        if self.joint_map is None:
            return x_NCTVM
        idx = self.joint_map.clamp(min=0)
        out = x_NCTVM.index_select(3, idx)
        return out * (self.joint_map >= 0).to(out.dtype).view(1, 1, 1, -1, 1)

    def logits(self, x_NCTVM: Tensor, mask_NT: Tensor) -> Tensor:
        return self.localizer(self.map_joints(x_NCTVM), mask_NT)

    def forward(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        logits_NKT = self.logits(batch["x"], batch["mask"])
        labels_NT = batch["labels"].masked_fill(~batch["mask"], -1)
        labels_NT = labels_NT.masked_fill((batch["weight"] <= 0).unsqueeze(1), -1)
        n = (labels_NT >= 0).sum()
        loss = F.cross_entropy(logits_NKT.float(), labels_NT, ignore_index=-1,
                               reduction="sum") / n.clamp(min=1)
        with torch.no_grad():
            hit = ((logits_NKT.argmax(1) == labels_NT) & (labels_NT >= 0)).sum()
        return loss, {"train/frame_acc": hit.float() / n.clamp(min=1).float()}


def encoder_path(cfg: Config, rd: RunDir) -> Path | None:
    ft = cfg.finetune
    if ft.protocol == "scratch" or ft.encoder is None:
        return None
    if ft.encoder == "auto":
        return rd.root.parent / "pretrain" / "encoder.safetensors"
    return Path(ft.encoder)


def load_encoder(backbone: nn.Module, path: Path) -> None:
    """Pretrained weights into ``backbone`` (strict), with the mismatch named."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(
            f"pretrained encoder {path} does not exist; run the pretrain stage first, set "
            f"finetune.encoder to an encoder.safetensors, or use finetune.protocol=scratch")
    try:
        weights = load_file(str(path))
    except SafetensorError as e:
        raise CheckpointError(f"pretrained encoder {path} is damaged: {e}") from None
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"pretrained encoder {path} does not fit model {type(backbone).__name__} of this "
            f"config (backbone, width, layout must match the pretraining run): {e}") from None


def localizer_meta(model: ModelConfig, ft: FinetuneConfig, *, layout, corpus_layout,
                   num_persons: int, class_names, fps: float, units: str, normalize: str,
                   corpus: str, splits: SplitPlan, encoder: Path | None) -> dict:
    """The inference metadata an exported localizer carries (``localizer.json``; read back by
    ``sscl.inference.load_localizer``): model and head config, the pretraining layout (the
    backbone's) and the finetuning corpus's, joint map, persons, classes, fps, units,
    normalization, windowing, corpus and the sequence indices of each split.

    Args:
        layout, corpus_layout: ``sscl.data.layouts.Layout`` of the backbone and of the corpus.
    """
    return {
        "model": config_mod.to_dict(model), "head": ft.head, "embed_dim": ft.embed_dim,
        "layout": layout.to_dict(), "corpus_layout": corpus_layout.to_dict(),
        "joint_map": list(ft.joint_map) if ft.joint_map is not None else None,
        "num_persons": int(num_persons), "class_names": list(class_names), "fps": float(fps),
        "units": units, "normalize": normalize, "max_length": ft.max_length,
        "overlap": ft.overlap, "corpus": corpus,
        "splits": {"train": list(splits.train), "val": list(splits.val),
                   "test": list(splits.test)},
        "protocol": ft.protocol, "encoder": str(encoder) if encoder else None,
    }


def finetune_job(cfg: Config, rd: RunDir, acc) -> tuple[Job, dict]:
    """The finetuning Job and the inference metadata the exported localizer carries."""
    from sscl.data.corpus import open_corpus
    from sscl.data.loader import make_loader
    from sscl.models import Localizer

    ft = cfg.finetune
    path = corpus_location(ft.corpus or cfg.data.corpus)
    corpus = open_corpus(path, memory_budget=0)
    plan = plan_splits(corpus, ft, cfg.run.seed)
    log.info("finetune %s on %s: %d of %d training sequences labelled (label_fraction %g), %d "
             "validation, %d test", ft.protocol, ft.corpus or cfg.data.corpus, len(plan.train),
             plan.train_pool, ft.label_fraction, len(plan.val), len(plan.test))
    loader_cfg = config_mod.replace(
        cfg.data.loader, task="finetune", seed=cfg.run.seed, batch_size=ft.batch_size,
        num_workers=ft.num_workers, max_length=ft.max_length, overlap=ft.overlap, train=True,
        train_long=ft.train_long, shuffle=True, sequences=plan.train)
    loader = make_loader(path, loader_cfg, rank=acc.process_index, world_size=acc.num_processes,
                         engine=cfg.data.engine)
    info = loader.info
    layout, persons = info.layout, info.num_persons
    enc = encoder_path(cfg, rd)
    if enc is not None and enc.with_suffix(".json").is_file():
        from sscl.data.layouts import Layout

        meta = json.loads(enc.with_suffix(".json").read_text())
        pre_layout = Layout.from_dict(meta["layout"])
        if ft.joint_map is None and pre_layout.joint_names != layout.joint_names:
            raise ConfigError(
                f"the encoder {enc} was pretrained on layout {pre_layout.name!r}, the "
                f"finetuning corpus has {layout.name!r}; give finetune.joint_map (for each "
                f"of the {pre_layout.num_joints} pretraining joints, the index of the "
                f"finetuning joint, -1 for none)")
        layout, persons = pre_layout, int(meta["num_persons"])
    if ft.joint_map is not None:
        if len(ft.joint_map) != layout.num_joints or max(ft.joint_map) >= info.layout.num_joints:
            raise ConfigError(
                f"finetune.joint_map has {len(ft.joint_map)} entries up to {max(ft.joint_map)}; "
                f"expected {layout.num_joints} entries (one per pretraining joint) in "
                f"[-1, {info.layout.num_joints - 1}]")
    if persons != info.num_persons:
        raise ConfigError(f"the encoder expects {persons} person(s), the finetuning corpus has "
                          f"{info.num_persons}")
    torch.manual_seed(cfg.run.seed)
    backbone = build_backbone(cfg.model, layout, persons)
    if enc is not None:
        load_encoder(backbone, enc)
        log.info("backbone initialised from %s", enc)
    localizer = Localizer(backbone, len(info.class_names), head=ft.head, embed_dim=ft.embed_dim)
    torch.manual_seed(cfg.run.seed * 1000 + acc.process_index)
    module = FrameTask(localizer, ft.protocol, ft.joint_map)
    meta = localizer_meta(
        cfg.model, ft, layout=layout, corpus_layout=info.layout, num_persons=persons,
        class_names=info.class_names, fps=info.fps, units=corpus.attrs.get("units", "m"),
        normalize=loader_cfg.normalize, corpus=ft.corpus or cfg.data.corpus, splits=plan,
        encoder=enc)

    def export(core) -> None:
        save_localizer(rd.root, core.localizer, meta)

    return Job("finetune", module, loader, ft.batch_size, ft.optim, ("model", "finetune"),
               None, 0, export), meta
