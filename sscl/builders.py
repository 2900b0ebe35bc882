"""Config -> objects: the training corpus, backbones, the pretraining module, the code version.

Kept apart from the loop so the trainer, the benchmarks and ``sscl evaluate`` build the same
things from the same config.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from sscl.config import Config, ModelConfig
from sscl.errors import ConfigError


def demo_corpus(progress: bool = False) -> Path:
    """The embedded demo corpus, synthesized once under ``$SSCL_CACHE``."""
    from sscl.data.corpus import cache_dir
    from sscl.data.synthetic import SynthConfig, synthesize

    dest = cache_dir() / "demo" / "synthetic.zarr"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"synthesizing the demo corpus into {dest} (once; cached under $SSCL_CACHE)")
        synthesize(dest, SynthConfig(), seed=0, progress=progress)
    return dest


def corpus_location(corpus: str) -> str:
    """``demo`` -> the demo corpus's path; anything else as given."""
    return str(demo_corpus()) if corpus == "demo" else corpus


def open_training_corpus(corpus: str, split: str | None) -> tuple[str, tuple[int, ...] | None]:
    """(path, sequence indices of ``split`` or None for all).

    Raises:
        CorpusError: the corpus cannot be opened, or no sequence carries ``split``.
    """
    from sscl.data.corpus import open_corpus

    path = corpus_location(corpus)
    if split is None:
        return path, None
    c = open_corpus(path, memory_budget=0)
    return path, tuple(int(i) for i in c.split(split))


def build_backbone(model: ModelConfig, layout, num_persons: int):
    """The backbone of ``model`` for a corpus's layout and persons."""
    from sscl.models import AGCN, STGCN

    common = dict(num_persons=num_persons, width=model.width, input_norm=model.input_norm,
                  init=model.init)
    if model.adjacency is not None:
        common["adjacency"] = model.adjacency
    if model.backbone == "stgcn":
        return STGCN(layout, last_channels=model.last_channels, dropout=model.dropout, **common)
    if model.last_channels is not None:
        raise ConfigError("model.last_channels is an ST-GCN option; AGCN keeps its plan")
    return AGCN(layout, **common)


def build_pretrainer(cfg: Config, layout, num_persons: int):
    """The contrastive pretraining module (query/key encoders, heads, queues)."""
    from sscl.contrastive import Pretrainer

    return Pretrainer(cfg.pretrain, lambda: build_backbone(cfg.model, layout, num_persons))


def code_version() -> str:
    """The package version, plus the git commit when running from a checkout."""
    from sscl import __version__

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return f"{__version__}+{head}" if head else __version__


def seeded_subset(n: int, k: int, seed: int) -> np.ndarray:
    """``k`` of ``range(n)`` drawn without replacement by an explicit generator, sorted."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
