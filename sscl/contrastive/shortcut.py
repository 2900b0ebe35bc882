"""Shortcut diagnostics of the snippet branch: can its task be solved without looking at content?

METHOD.md section 8: with a queue of time-mean keys, the snippet task can be solved from a
snippet's position alone (the zero temporal padding of the backbone marks the ends of a clip).
These checks run on a few items of a training batch, without gradient, with the batch-norm
statistics and the global random state left as they were:

- ``snippet_top1``: the task as trained: the matched key snippet beats every queue entry;
- ``snippet_top1_other_video``: the same with the positive taken from another video's key (the
  batch rolled by one): content-free, so a high value means position solves the task;
- ``snippet_top1_noise``: both views replaced by Gaussian noise of the batch's scale, and the
  negatives made of the other items' noise keys the way the queue is: their time means, or
  (``sampled``) every snippet of each, the sampled queue's expectation over its random picks.
  Content-free, and free of the two confounds of scoring noise against the real queue (noise
  embeddings resemble each other more than real ones; the queue's keys come from older key
  encoders). With N items, chance is 1/N (time means) or 1/(1 + (N-1)S) (sampled, S snippets);
  a pure position code scores 1 against time means and 1/N against sampled snippets, where one
  snippet of each other item shares the positive's position.
- ``snippet_index_share`` / ``snippet_index_share_backbone``: the share of the variance of the
  dense embeddings (of the backbone's snippet features) explained by snippet index, between-
  index variance over total variance: 0 when position says nothing, 1 when it says everything.

Position is not the only content-free cue. The real positive comes from the current key encoder,
the queue from older ones: with a low key momentum the positive is simply fresher than every
queue entry, which lifts the other-video figure (not the noise one, whose negatives are as fresh
as its positive). On a 40-sequence synthetic corpus after 60 steps (queue 512, batch 16) the
sampled arm's other-video figure was 0.14 at momentum 0.999 and 0.46 with a ramp starting at
0.99 (noise figure: 0.03 and 0.06); it falls as the momentum ramps up. Read it beside
``pretrain.momentum_start``. The warning of the pretraining stage watches the noise figure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from torch import Tensor, nn

from .losses import match_snippets, snippet_logits, top1

# A content-free top-1 above this says the snippet task is being solved by position.
SHORTCUT_WARNING = 0.3


@contextlib.contextmanager
def frozen_batch_stats(module: nn.Module) -> Iterator[None]:
    """Batch norm keeps normalising with batch statistics but updates no running statistic."""
    saved = []
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            tracked = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
            saved.append((m, m.momentum, tracked))
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def index_share(emb_NCS: Tensor) -> float:
    """Share of the variance of ``emb_NCS`` (N items, C channels, S snippets) explained by the
    snippet index s: sum_s ||mean_n e_ns - mean||^2 / mean_n sum_s ||e_ns - mean||^2."""
    e = emb_NCS.double()
    grand = e.mean(dim=(0, 2), keepdim=True)
    total = (e - grand).square().sum(dim=1).mean()
    between = (e.mean(dim=0, keepdim=True) - grand).square().sum(dim=1).mean()
    return float(between / total.clamp(min=1e-30))


def noise_negatives(keys: dict[str, Tensor], snippet_negatives: str) -> tuple[Tensor, Tensor]:
    """(K, D) negatives made of ``keys`` (noise keys of N items) as the queue would hold them,
    and (K,) the item each came from: time means, or every snippet for ``sampled``."""
    dense_NDS = keys["dense"]
    N, D, S = dense_NDS.shape
    items = torch.arange(N, device=dense_NDS.device)
    if snippet_negatives == "sampled":
        return dense_NDS.permute(0, 2, 1).reshape(N * S, D), items.repeat_interleave(S)
    return keys["dense_mean"], items


def snippet_top1(q_dense_NDS: Tensor, k_dense_NDS: Tensor, match_NS: Tensor,
                 negatives_KD: Tensor, temperature: float, owner_K: Tensor | None = None
                 ) -> float:
    """Share of query snippets whose matched positive beats every negative; with ``owner_K``
    (the item each negative came from), an item's own negatives are left out of its row."""
    logits = snippet_logits(q_dense_NDS, k_dense_NDS, match_NS, negatives_KD, temperature)
    if owner_K is not None:
        items = torch.arange(logits.shape[0], device=logits.device)
        own_N1K = (owner_K.unsqueeze(0) == items.unsqueeze(1)).unsqueeze(1)
        logits[:, :, 1:] = logits[:, :, 1:].masked_fill(own_N1K, float("-inf"))
    return float(top1(logits).mean())


@torch.no_grad()
def shortcut_diagnostics(model: nn.Module, batch: Mapping[str, Tensor], max_items: int = 32
                         ) -> dict[str, float]:
    """The checks of this module on up to ``max_items`` real items of ``batch``.

    Args:
        model: a ``sscl.contrastive.Pretrainer`` with the snippet branch.
        batch: a pretraining batch ("query", "key", "weight").

    Returns:
        Figures named ``diag/<check>`` (empty without the snippet branch or with fewer than two
        real items).
    """
    cfg = model.cfg
    real = batch["weight"] > 0
    x_q, x_k = batch["query"][real][:max_items], batch["key"][real][:max_items]
    if model.snippet_queue is None or x_q.shape[0] < 2:
        return {}
    if cfg.method == "rvtclr":  # the model plays half of each view (the 1x clip)
        half = x_q.shape[2] // 2
        x_q, x_k = x_q[:, :, :half], x_k[:, :, :half]
    cosine = cfg.snippet_match == "cosine"
    queue_KD = model.snippet_queue.keys_KD
    devices = [x_q.device] if x_q.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), frozen_batch_stats(model):
        q = model.encoder_q(x_q, snippets=True)
        k = model.encoder_k(x_k, snippets=True)
        gen = torch.Generator(device=x_q.device).manual_seed(int(model.calls))
        scale = x_q.float().std()
        noise_q = model.encoder_q(torch.randn(x_q.shape, generator=gen, device=x_q.device)
                                  .to(x_q.dtype) * scale, snippets=True)
        noise_k = model.encoder_k(torch.randn(x_k.shape, generator=gen, device=x_k.device)
                                  .to(x_k.dtype) * scale, snippets=True)
    noise_KD, owner_K = noise_negatives(noise_k, cfg.snippet_negatives)

    def score(qo: dict[str, Tensor], ko: dict[str, Tensor], negatives_KD: Tensor,
              owner_K: Tensor | None = None) -> float:
        match = match_snippets(qo["snip_feat"], ko["snip_feat"], cosine=cosine)
        return snippet_top1(qo["dense"], ko["dense"], match, negatives_KD, cfg.temperature,
                            owner_K)

    other = {name: v.roll(1, dims=0) for name, v in k.items()}
    return {
        "diag/snippet_top1": score(q, k, queue_KD),
        "diag/snippet_top1_other_video": score(q, other, queue_KD),
        "diag/snippet_top1_noise": score(noise_q, noise_k, noise_KD, owner_K),
        "diag/snippet_index_share": index_share(q["dense"]),
        "diag/snippet_index_share_backbone": index_share(q["snip_feat"]),
    }
