"""A trained localizer applied to whole sequences: frame probabilities (T, K + 1) per sequence.

Sequences longer than the localizer's ``max_length`` are read as overlapping windows (the
finetuning loader's evaluation plan, with the normalization the localizer was trained with)
whose softmax scores are averaged back per frame by ``sscl.data.sampling.stitch``; no sequence
is ever dropped.
"""

from __future__ import annotations

import numpy as np
import torch

from sscl.data.corpus import Corpus
from sscl.data.loader import make_loader
from sscl.data.sampling import WindowSet, stitch
from sscl.errors import ConfigError
from sscl.inputs import scoring_loader_config
from sscl.models.localizer import TrainedLocalizer


@torch.no_grad()
def sequence_probabilities(trained: TrainedLocalizer, corpus: Corpus,
                           sequences: tuple[int, ...], device: torch.device | str,
                           batch_size: int = 8) -> list[np.ndarray]:
    """Per sequence of ``sequences`` (in that order), (T, K + 1) float64 softmax scores.

    Raises:
        ConfigError: a window got no score (a loader that dropped one).
    """
    meta = trained.meta
    cfg = scoring_loader_config(meta["normalize"], meta["max_length"], meta["overlap"],
                                tuple(sequences), batch_size)
    loader = make_loader(corpus, cfg, engine="torch")
    windows = loader.info.windows
    scores: list[np.ndarray | None] = [None] * len(windows)
    for batch in loader.epoch(0):
        x, mask = batch["x"].to(device), batch["mask"].to(device)
        probs = torch.softmax(trained.model(x, mask).float(), dim=1).cpu().numpy()
        for b in range(x.shape[0]):
            if batch["weight"][b] <= 0:
                continue
            w = int(batch["index"][b])
            scores[w] = probs[b, :, : int(windows.length[w])].T.astype(np.float64)
    missing = [w for w, s in enumerate(scores) if s is None]
    if missing:
        raise ConfigError(f"{len(missing)} evaluation windows got no scores")
    # stitch() indexes sequences 0..S-1: renumber the selected sequences in the given order.
    local = {s: i for i, s in enumerate(sequences)}
    ws = WindowSet(np.array([local[int(s)] for s in windows.seq], np.int64), windows.start,
                   windows.span, windows.length)
    return stitch(scores, ws, np.asarray([corpus.lengths[s] for s in sequences], np.int64))
