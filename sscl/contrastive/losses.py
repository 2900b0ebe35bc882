"""Per-item loss terms of the contrastive methods, as pure functions of embeddings.

Every function returns one value per item (shape (N,)) so the caller can weight items (padding
items have weight 0) before averaging. Logit tensors keep the positive in column 0 and the
queue after it, as in MoCo. Sources:
- InfoNCE with a queue: MoCo (He et al., CVPR 2020); with several positives (nearest-neighbour
  mining), AimCLR's form: -mean over positives of log softmax over [positives, negatives]
  (Guo et al., AAAI 2022).
- D3M: AimCLR's drop-distribution loss: the extreme view's distribution over [positive, queue]
  is pulled towards the normal view's (detached). AimCLR writes it as a cross-entropy; here it is
  the KL divergence, which has the same gradient and is 0 at a perfect match.
- Relative tempo: RVTCLR (Zhu et al., ICCV 2023): the tempo head's similarity to the same-tempo
  key must exceed that to the other-tempo key by a margin (a margin ranking loss, target 1).
- Snippets: METHOD.md section 2 (DenseCL-style argmax matching on backbone features, Wang et al.
  CVPR 2021; negatives from the snippet queue).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from sscl.models.layers import at_least_fp32


def queue_logits(q_ND: Tensor, pos_ND: Tensor, queue_KD: Tensor, temperature: float) -> Tensor:
    """[q . k+, q . queue] / t.

    Args:
        q_ND: (N, D) unit queries.
        pos_ND: (N, D) unit positive keys.
        queue_KD: (K, D) unit negatives.
        temperature: t.

    Returns:
        (N, 1 + K) logits, the positive in column 0.
    """
    l_pos = (q_ND * pos_ND).sum(dim=1, keepdim=True)
    return torch.cat([l_pos, q_ND @ queue_KD.t()], dim=1) / temperature


def info_nce(logits: Tensor, pos_mask: Tensor | None = None) -> Tensor:
    """InfoNCE over the last axis, with optional extra positives.

    Args:
        logits: (..., 1 + K) logits, the positive in column 0.
        pos_mask: None (column 0 is the only positive) or a (..., 1 + K) 0/1 float mask of the
            positives (column 0 included); the loss is -mean over positives of log softmax.

    Returns:
        (...) losses.
    """
    if pos_mask is None:  # no full log-softmax tensor: (N, S, 1 + K) is large for snippets
        return torch.logsumexp(logits, dim=-1) - logits[..., 0]
    log_p = F.log_softmax(logits, dim=-1)
    return -(log_p * pos_mask).sum(dim=-1) / pos_mask.sum(dim=-1)


def mined_positives(
    neg_logits: list[Tensor], topk: int, valid_K: Tensor | None = None
) -> Tensor:
    """Nearest-neighbour mining: the top-k queue entries of each logit row become positives.

    Args:
        neg_logits: list of (..., K) similarities to the queue (e.g. the query's and the extreme
            view's); the union of their top-k is taken, as AimCLR/RVTCLR do.
        topk: k.
        valid_K: (K,) bool, slots holding real keys (initial random keys are never mined);
            None = all.

    Returns:
        (..., 1 + K) float mask: column 0 (the own key) and the mined slots are 1.
    """
    first = neg_logits[0]
    mask = torch.zeros_like(first, dtype=torch.float32)
    for l_neg in neg_logits:
        scores = l_neg.detach()
        if valid_K is not None:
            scores = scores.masked_fill(~valid_K, float("-inf"))
        idx = scores.topk(topk, dim=-1).indices
        mask.scatter_(-1, idx, 1.0)
    if valid_K is not None:  # fewer real keys than k: a -inf pick is no positive
        mask = mask * valid_K.to(mask.dtype)
    ones = torch.ones(first.shape[:-1] + (1,), dtype=mask.dtype, device=mask.device)
    return torch.cat([ones, mask], dim=-1)


def d3m_kl(target_logits: Tensor, logits: Tensor) -> Tensor:
    """KL(softmax(target) || softmax(logits)) per row; the target is detached.

    Args:
        target_logits: (N, 1 + K) the normal view's logits.
        logits: (N, 1 + K) the extreme view's logits against the same positive and queue.

    Returns:
        (N,) divergences (>= 0; 0 when the two distributions agree).
    """
    log_p = F.log_softmax(target_logits.detach(), dim=-1)
    log_q = F.log_softmax(logits, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


def tempo_ranking(
    q_ND: Tensor, same_ND: Tensor, other_ND: Tensor, temperature: float, margin: float
) -> Tensor:
    """RVTCLR's relative-tempo loss: max(0, margin - (q.k_same - q.k_other) / t) per item.

    Args:
        q_ND: (N, D) unit tempo embeddings of the queries.
        same_ND: (N, D) of the keys played at the query's tempo.
        other_ND: (N, D) of the keys played at the other tempo.
        temperature: t (the reference compares logits, i.e. similarities / t).
        margin: the ranking margin (reference: 1.0).

    Returns:
        (N,) losses.
    """
    gap = ((q_ND * same_ND).sum(dim=1) - (q_ND * other_ND).sum(dim=1)) / temperature
    return torch.clamp(margin - gap, min=0.0)


def match_snippets(q_feat_NCS: Tensor, k_feat_NCS: Tensor, cosine: bool = True) -> Tensor:
    """DenseCL matching: for each query snippet i, argmax_j sim(f_i, f'_j).

    Args:
        q_feat_NCS: (N, C, S) backbone snippet features of the query view.
        k_feat_NCS: (N, C, S') of the key view.
        cosine: cosine similarity (DenseCL); False: the raw dot product (the reference code).

    Returns:
        (N, S) int64 indices into the key snippets.
    """
    q, k = at_least_fp32(q_feat_NCS.detach()), at_least_fp32(k_feat_NCS.detach())
    if cosine:
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    return torch.einsum("ncs,nct->nst", q, k).argmax(dim=2)


def snippet_logits(
    q_dense_NDS: Tensor,
    k_dense_NDS: Tensor,
    match_NS: Tensor,
    queue_KD: Tensor,
    temperature: float,
) -> Tensor:
    """[z_i . z'_m(i), z_i . queue] / t for every query snippet i.

    Args:
        q_dense_NDS: (N, D, S) unit dense embeddings of the query.
        k_dense_NDS: (N, D, S') unit dense embeddings of the key.
        match_NS: (N, S) matched key snippet m(i).
        queue_KD: (K, D) snippet-queue negatives (time-averaged keys of past videos).
        temperature: t.

    Returns:
        (N, S, 1 + K) logits, the matched positive in column 0.
    """
    D = k_dense_NDS.shape[1]
    pos_NDS = torch.gather(k_dense_NDS, 2, match_NS.unsqueeze(1).expand(-1, D, -1))
    l_pos = (q_dense_NDS * pos_NDS).sum(dim=1).unsqueeze(2)
    l_neg = torch.einsum("nds,kd->nsk", q_dense_NDS, queue_KD)
    return torch.cat([l_pos, l_neg], dim=2) / temperature


def top1(logits: Tensor) -> Tensor:
    """MoCo's top-1: 1.0 where the positive (column 0) has the top logit. (..., 1+K) -> (...)."""
    return (logits.detach().argmax(dim=-1) == 0).float()


def weighted_mean(values_N: Tensor, weight_N: Tensor) -> Tensor:
    """sum(w v) / sum(w) (0 when every weight is 0)."""
    return (values_N * weight_N).sum() / weight_N.sum().clamp(min=1e-12)
