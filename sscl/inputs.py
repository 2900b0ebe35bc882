"""What a run reads: each corpus opened once, and every loader config built here.

The run config's ``data.loader`` is the base of every ``LoaderConfig`` a run uses; each use
changes only what it must, in one function each, here and nowhere else:

- :func:`pretrain_loader_config`: augmented pretraining views of the training sequences;
- :func:`finetune_loader_config`: labelled training sequences for the localizer;
- :func:`probe_loader_config`: fixed, non-overlapping clips for the kNN probe;
- :func:`scoring_loader_config`: whole sequences (windowed) for scoring a trained localizer.

A corpus is opened once per stage (:func:`open_corpus_of`, metadata only: ``memory_budget=0``)
and the opened ``Corpus`` goes to ``make_loader``; ``demo`` names the embedded demo corpus.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from sscl.config import Config
from sscl.contrastive.knn import Clips, KnnProbe
from sscl.data.corpus import Corpus, open_corpus
from sscl.data.demo import corpus_location
from sscl.data.loader import make_loader
from sscl.data.loader_config import LoaderConfig
from sscl.runlog import log


def open_corpus_of(name: str) -> Corpus:
    """The corpus at ``name`` (a path, URL or ``demo``), metadata only (frames are read by the
    loader's workers)."""
    return open_corpus(corpus_location(name), memory_budget=0)


def split_indices(corpus: Corpus, tag: str | None) -> tuple[int, ...] | None:
    """Sequence indices carrying split ``tag`` (None: every sequence).

    Raises:
        CorpusError: no sequence carries ``tag``.
    """
    return None if tag is None else tuple(int(i) for i in corpus.split(tag))


def pretrain_loader_config(cfg: Config, sequences: tuple[int, ...] | None) -> LoaderConfig:
    """Pretraining views; the extreme view when the method needs it."""
    return replace(cfg.data.loader, task="pretrain", seed=cfg.run.seed, sequences=sequences,
                   extreme=cfg.data.loader.extreme or cfg.pretrain.uses_extreme)


def finetune_loader_config(cfg: Config, sequences: tuple[int, ...]) -> LoaderConfig:
    """Finetuning batches of the labelled training sequences (``finetune.*`` windowing)."""
    ft = cfg.finetune
    return replace(cfg.data.loader, task="finetune", seed=cfg.run.seed, batch_size=ft.batch_size,
                   num_workers=ft.num_workers, max_length=ft.max_length, overlap=ft.overlap,
                   train=True, train_long=ft.train_long, shuffle=True, sequences=sequences)


def probe_loader_config(cfg: Config, sequences: tuple[int, ...]) -> LoaderConfig:
    """The kNN probe's clips: consecutive ``probe.clip_length``-frame windows, in order."""
    return replace(cfg.data.loader, task="finetune", seed=cfg.run.seed, batch_size=64,
                   num_workers=0, shuffle=False, max_length=cfg.probe.clip_length, overlap=0,
                   train=False, sequences=sequences)


def scoring_loader_config(normalize: str, max_length: int, overlap: int,
                          sequences: tuple[int, ...], batch_size: int = 8) -> LoaderConfig:
    """Whole sequences for a trained localizer, read as it was trained to read them (its
    normalization and windows, from its metadata)."""
    return LoaderConfig(task="finetune", batch_size=batch_size, num_workers=0, shuffle=False,
                        train=False, max_length=max_length, overlap=overlap,
                        sequences=tuple(sequences), normalize=normalize)


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


def seeded_subset(n: int, k: int, seed: int) -> np.ndarray:
    """``k`` of ``range(n)`` drawn without replacement by an explicit generator, sorted."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def probe_clips(cfg: Config, corpus: Corpus, split: str, draw: int) -> Clips:
    """The kNN probe's labelled clips of one split (the standard monitor of skeleton SSL,
    SkeletonCLR/AimCLR): the non-overlapping ``probe.clip_length``-frame windows of the split's
    sequences, read by the training loader (same normalization), labelled by the class covering
    at least half of their frames (clips without one are left out), a seeded subset of
    ``probe.max_clips``.

    Args:
        draw: separates the subsets of the splits (0: memory, 1: queries).
    """
    p = cfg.probe
    loader = make_loader(corpus, probe_loader_config(cfg, split_indices(corpus, split)),
                         engine="torch")
    xs, masks, labels = [], [], []
    for batch in loader.epoch(0):
        keep = batch["weight"] > 0
        lab = clip_labels(batch["labels"][keep].numpy(), len(corpus.class_names))
        T = batch["x"].shape[2]
        x = torch.zeros(int(keep.sum()), batch["x"].shape[1], p.clip_length, *batch["x"].shape[3:])
        m = torch.zeros(int(keep.sum()), p.clip_length, dtype=torch.bool)
        x[:, :, :T] = batch["x"][keep]
        m[:, :T] = batch["mask"][keep]
        sel = torch.from_numpy(lab >= 0)
        xs.append(x[sel])
        masks.append(m[sel])
        labels.append(torch.from_numpy(lab[lab >= 0]))
    x, m, y = torch.cat(xs), torch.cat(masks), torch.cat(labels)
    pick = torch.from_numpy(seeded_subset(len(y), p.max_clips, cfg.run.seed + draw))
    log.info("kNN probe %s %s: %d clips of %d frames (%d classes)", p.corpus, split, len(pick),
             p.clip_length, int(torch.unique(y[pick]).numel()))
    return x[pick], m[pick], y[pick]


def knn_probe(cfg: Config) -> KnnProbe:
    """The kNN probe of ``cfg.probe``: memory clips from ``train_split``, queries from
    ``test_split`` of ``probe.corpus``."""
    corpus = open_corpus_of(cfg.probe.corpus)
    return KnnProbe(probe_clips(cfg, corpus, cfg.probe.train_split, 0),
                    probe_clips(cfg, corpus, cfg.probe.test_split, 1), cfg.probe.k)
