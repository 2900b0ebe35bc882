"""The kNN probe: top-1 of a k-nearest-neighbour classifier on frozen encoder embeddings.

The standard monitor of skeleton SSL (SkeletonCLR, AimCLR): a queue of mostly random keys says
little about learning, the kNN figure on labelled clips does. Clips are the non-overlapping
windows of ``probe.clip_length`` frames of a labelled corpus (read by the same loader, so with
the same normalization as training), labelled by the class that covers at least half of their
frames (clips without one are left out, and counted). A seeded subset of ``probe.max_clips`` per
split keeps the probe to seconds. Step 0's figure is the random-init encoder's.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import torch

from sscl.builders import corpus_location, seeded_subset
from sscl.config import Config

log = logging.getLogger("sscl")


def clip_labels(labels_BT: np.ndarray, num_classes: int) -> np.ndarray:
    """(B,) class covering >= half of each clip's real frames, or -1 (background, mixed).

    Args:
        labels_BT: (B, T) int frame labels, -1 on padding and unlabelled frames.
        num_classes: K; label K is background and never a clip class.
    """
    out = np.full(labels_BT.shape[0], -1, np.int64)
    for b, row in enumerate(labels_BT):
        real = row[row >= 0]
        if real.size == 0:
            continue
        counts = np.bincount(real, minlength=num_classes + 1)[:num_classes]
        k = int(counts.argmax())
        if counts[k] * 2 >= real.size:
            out[b] = k
    return out


class KnnProbe:
    """Embeds fixed labelled clips with an encoder and scores a kNN classifier on them."""

    def __init__(self, clips: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], k: int):
        self.clips = clips  # split -> (x_NCTVM, mask_NT, label_N)
        self.k = k

    @classmethod
    def from_config(cls, cfg: Config) -> KnnProbe:
        from sscl.data.corpus import open_corpus
        from sscl.data.loader import make_loader

        p = cfg.probe
        path = corpus_location(p.corpus)
        corpus = open_corpus(path, memory_budget=0)
        clips = {}
        for i, split in enumerate((p.train_split, p.test_split)):
            lcfg = replace(cfg.data.loader, task="finetune", seed=cfg.run.seed, batch_size=64,
                           num_workers=0, shuffle=False, max_length=p.clip_length, overlap=0,
                           train=False, sequences=tuple(int(s) for s in corpus.split(split)))
            loader = make_loader(path, lcfg, engine="torch")
            xs, masks, labels = [], [], []
            for batch in loader.epoch(0):
                keep = batch["weight"] > 0
                lab = clip_labels(batch["labels"][keep].numpy(), len(corpus.class_names))
                T = batch["x"].shape[2]
                x = torch.zeros(int(keep.sum()), *batch["x"].shape[1:2], p.clip_length,
                                *batch["x"].shape[3:])
                m = torch.zeros(int(keep.sum()), p.clip_length, dtype=torch.bool)
                x[:, :, :T] = batch["x"][keep]
                m[:, :T] = batch["mask"][keep]
                sel = torch.from_numpy(lab >= 0)
                xs.append(x[sel])
                masks.append(m[sel])
                labels.append(torch.from_numpy(lab[lab >= 0]))
            x, m, y = torch.cat(xs), torch.cat(masks), torch.cat(labels)
            pick = torch.from_numpy(seeded_subset(len(y), p.max_clips, cfg.run.seed + i))
            clips[split] = (x[pick], m[pick], y[pick])
            log.info("kNN probe %s %s: %d clips of %d frames (%d classes)", p.corpus, split,
                     len(pick), p.clip_length, int(torch.unique(y[pick]).numel()))
        return cls(clips, p.k)

    @torch.no_grad()
    def embed(self, backbone: torch.nn.Module, split: str, device: torch.device) -> torch.Tensor:
        x, m, _ = self.clips[split]
        out = []
        for i in range(0, len(x), 128):
            out.append(backbone.embed(x[i:i + 128].to(device), m[i:i + 128].to(device)).float()
                       .cpu())
        return torch.cat(out)

    def __call__(self, backbone: torch.nn.Module, device: torch.device) -> float:
        """kNN top-1 of ``backbone`` (its train/eval mode is restored afterwards)."""
        from sscl.contrastive import knn_top1

        was_training = backbone.training
        backbone.eval()
        try:
            splits = list(self.clips)
            train = self.embed(backbone, splits[0], device)
            test = self.embed(backbone, splits[1], device)
        finally:
            backbone.train(was_training)
        return float(knn_top1(train, self.clips[splits[0]][2], test, self.clips[splits[1]][2],
                              k=self.k))
