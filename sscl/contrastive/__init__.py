"""Contrastive pretraining: MoCo machinery, SkeletonCLR / AimCLR / RVTCLR bases, snippet branch.

METHOD.md section 2. `Pretrainer(cfg, backbone)` computes one step's loss from a loader batch;
its schema is `sscl.config.ContrastiveConfig`; `KnnProbe` / `knn_top1` are the kNN probe.
Modules: moco (the Pretrainer: encoders, queues, one step's loss), encoder (backbone + heads, EMA
update), memory (key queues), collectives (gathering, shuffle-BN), losses (per-item terms),
tempo (RVTCLR's pairs), eadm (AimCLR's drop), hashing (device-side counter-based draws), knn
(the probe), shortcut (can the snippet task be solved without content?).
"""

from sscl.contrastive.encoder import (
    Encoder,
    check_snippets,
    momentum_update,
    required_window,
    snippet_pool,
)
from sscl.contrastive.knn import KnnProbe, embed_clips, knn_predict, knn_top1
from sscl.contrastive.memory import KeyQueue
from sscl.contrastive.moco import Pretrainer
from sscl.contrastive.shortcut import shortcut_diagnostics

__all__ = [
    "Encoder",
    "KeyQueue",
    "KnnProbe",
    "Pretrainer",
    "check_snippets",
    "embed_clips",
    "knn_predict",
    "knn_top1",
    "momentum_update",
    "required_window",
    "shortcut_diagnostics",
    "snippet_pool",
]
