"""A seeded, untrained localizer exported exactly as the finetune stage exports one."""

from __future__ import annotations

from pathlib import Path

import torch

from sscl.config import FinetuneConfig, ModelConfig
from sscl.data.corpus import open_corpus
from sscl.models import STGCN, Localizer
from sscl.models.localizer import localizer_meta, save_localizer
from sscl.rundir import StageDir


def make_localizer(directory: Path, corpus: Path, seed: int = 0) -> Path:
    """Export a seeded, untrained localizer for ``corpus`` the way the finetune stage does."""
    c = open_corpus(corpus, memory_budget=0)
    model = ModelConfig(width=0.125)
    # Windows of 64 frames with overlap on 120-200 frame sequences: scores are stitched.
    ft = FinetuneConfig(protocol="scratch", embed_dim=32, max_length=64, overlap=16)
    torch.manual_seed(seed)
    localizer = Localizer(STGCN(c.layout, num_persons=c.persons, width=model.width),
                          len(c.class_names), head=ft.head, embed_dim=ft.embed_dim)
    meta = localizer_meta(
        model, ft, layout=c.layout, corpus_layout=c.layout, num_persons=c.persons,
        class_names=c.class_names, fps=c.fps, units=c.attrs.get("units", "m"),
        normalize="first", corpus=str(corpus),
        splits={"train": (0, 1, 3), "val": (4,), "test": (2, 5)}, encoder=None)
    return save_localizer(StageDir(directory).localizer_weights, localizer, meta)
