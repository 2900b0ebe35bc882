"""Shortcut diagnostics of the snippet branch: can its task be solved without looking at content?

METHOD.md section 8: with a queue of time-mean keys, the snippet task can be solved from a
snippet's position alone (the zero temporal padding of the backbone marks the ends of a clip).
These checks run on a few items of a training batch, without gradient, with the batch-norm
statistics and the global random state left as they were:

- ``snippet_top1``: the task as trained: the matched key snippet beats every queue entry;
- ``snippet_top1_other_video``: the same with the positive taken from another video's key (the
  batch rolled by one): content-free, so a high value means position solves the task;
- ``snippet_top1_noise``: both views replaced by Gaussian noise of the batch's scale:
  content-free as well (measured on KARD: 0.48 after 60 steps with time-mean negatives, 0.014
  with one sampled snippet per video);
- ``snippet_index_share`` / ``snippet_index_share_backbone``: the share of the variance of the
  dense embeddings (of the backbone's snippet features) explained by snippet index, between-
  index variance over total variance: 0 when position says nothing, 1 when it says everything.

Position is not the only content-free cue. The positive comes from the current key encoder, the
queue from older ones: with a low key momentum the positive is simply fresher than every queue
entry. On a 40-sequence synthetic corpus after 60 steps (queue 512, batch 16) the sampled arm's
noise / other-video figures were 0.10 / 0.14 at momentum 0.999 and 0.74 / 0.46 with a ramp
starting at 0.99; they fall as the momentum ramps up. Read the figures beside
``pretrain.momentum_start``.
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

    def snippet_top1(qo: dict[str, Tensor], ko: dict[str, Tensor]) -> float:
        match = match_snippets(qo["snip_feat"], ko["snip_feat"], cosine=cosine)
        logits = snippet_logits(qo["dense"], ko["dense"], match, queue_KD, cfg.temperature)
        return float(top1(logits).mean())

    other = {name: v.roll(1, dims=0) for name, v in k.items()}
    return {
        "diag/snippet_top1": snippet_top1(q, k),
        "diag/snippet_top1_other_video": snippet_top1(q, other),
        "diag/snippet_top1_noise": snippet_top1(noise_q, noise_k),
        "diag/snippet_index_share": index_share(q["dense"]),
        "diag/snippet_index_share_backbone": index_share(q["snip_feat"]),
    }
