"""Contrastive pretraining: MoCo machinery, SkeletonCLR / AimCLR / RVTCLR bases, snippet branch.

METHOD.md section 2. `Pretrainer(cfg, backbone)` computes one step's loss from a loader batch;
`ContrastiveConfig` is its schema; `knn_top1` / `embed_clips` are the kNN probe.
Modules: config (schema), encoder (backbone + heads, EMA update), memory (key queues),
collectives (gathering, shuffle-BN), losses (per-item terms), tempo (RVTCLR's pairs),
eadm (AimCLR's drop), hashing (device-side counter-based draws), knn (probe), pretrainer.
"""

from sscl.contrastive.config import ContrastiveConfig, required_window
from sscl.contrastive.encoder import Encoder, check_snippets, momentum_update, snippet_pool
from sscl.contrastive.knn import embed_clips, knn_predict, knn_top1
from sscl.contrastive.memory import KeyQueue
from sscl.contrastive.pretrainer import Pretrainer

__all__ = [
    "ContrastiveConfig",
    "Encoder",
    "KeyQueue",
    "Pretrainer",
    "check_snippets",
    "embed_clips",
    "knn_predict",
    "knn_top1",
    "momentum_update",
    "required_window",
    "snippet_pool",
]
