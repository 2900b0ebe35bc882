"""Loss terms of the contrastive methods on hand-made embeddings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from sscl.contrastive.losses import (
    d3m_kl,
    info_nce,
    match_snippets,
    mined_positives,
    queue_logits,
    snippet_logits,
    tempo_ranking,
    top1,
    weighted_mean,
)

T = 0.07


def _unit(*shape: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_info_nce_perfect_positive_beats_random_key():
    q = _unit(8, 16, seed=0)
    queue = _unit(64, 16, seed=1)
    random_key = _unit(8, 16, seed=2)
    perfect = info_nce(queue_logits(q, q, queue, T))
    rand = info_nce(queue_logits(q, random_key, queue, T))
    assert torch.all(perfect < rand)
    assert top1(queue_logits(q, q, queue, T)).tolist() == [1.0] * 8


def test_info_nce_matches_hand_computation():
    # One query, positive similarity 1, two negatives with similarity 0 and -1.
    q = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    got = info_nce(queue_logits(q, pos, queue, 0.5))
    z = math.exp(2.0) + math.exp(0.0) + math.exp(-2.0)
    assert got.item() == pytest.approx(-math.log(math.exp(2.0) / z), rel=1e-6)
    # Mined second positive (the first queue slot): the mean of the two -log p.
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    got2 = info_nce(queue_logits(q, pos, queue, 0.5), mask)
    want2 = -(math.log(math.exp(2.0) / z) + math.log(1.0 / z)) / 2
    assert got2.item() == pytest.approx(want2, rel=1e-6)


def test_mined_positives_takes_topk_union_of_real_slots_only():
    l_neg_q = torch.tensor([[0.9, 0.1, 0.8, 0.0]])
    l_neg_e = torch.tensor([[0.0, 0.7, 0.1, 0.95]])
    mask = mined_positives([l_neg_q, l_neg_e], topk=1)
    assert mask.tolist() == [[1.0, 1.0, 0.0, 0.0, 1.0]]
    # Slot 3 holds an initial random key: never mined; the extreme view's pick moves to slot 1.
    valid = torch.tensor([True, True, True, False])
    mask = mined_positives([l_neg_q, l_neg_e], topk=1, valid_K=valid)
    assert mask.tolist() == [[1.0, 1.0, 1.0, 0.0, 0.0]]
    # Fewer real slots than k: only real ones become positives.
    mask = mined_positives([l_neg_q], topk=3, valid_K=torch.tensor([False, True, False, False]))
    assert mask.tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0]]


def test_d3m_is_kl_of_hand_distributions():
    target = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    extreme = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.5]], requires_grad=True)
    got = d3m_kl(target, extreme)
    p = np.exp(target.numpy()) / np.exp(target.numpy()).sum(1, keepdims=True)
    e = extreme.detach().numpy()
    q = np.exp(e) / np.exp(e).sum(1, keepdims=True)
    want = (p * (np.log(p) - np.log(q))).sum(1)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-6)
    assert got[1].item() == pytest.approx(0.0, abs=1e-7)  # same distribution: no loss
    # Same gradient as AimCLR's cross-entropy form -sum p log softmax(extreme).
    got.sum().backward()
    np.testing.assert_allclose(extreme.grad.numpy(), q - p, atol=1e-6)


def test_tempo_ranking_hand_cases():
    q = torch.tensor([[1.0, 0.0]])
    same, other = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    # Same-tempo key clearly closer: gap 1 / 0.07 > margin 1, no loss.
    assert tempo_ranking(q, same, other, T, 1.0).item() == 0.0
    # Swapped: loss = margin + 1 / T.
    assert tempo_ranking(q, other, same, T, 1.0).item() == pytest.approx(1.0 + 1.0 / T, rel=1e-6)
    # Equal similarities: exactly the margin.
    assert tempo_ranking(q, same, same, T, 0.5).item() == pytest.approx(0.5)


def test_matching_recovers_a_known_permutation():
    gen = torch.Generator().manual_seed(3)
    N, C, S = 3, 12, 7
    q_feat = torch.randn(N, C, S, generator=gen)
    perm = torch.stack([torch.randperm(S, generator=gen) for _ in range(N)])  # (N, S)
    # Key snippet perm[n, i] is query snippet i, rescaled and slightly perturbed.
    k_feat = torch.empty_like(q_feat)
    for n in range(N):
        k_feat[n][:, perm[n]] = 3.0 * q_feat[n] + 0.01 * torch.randn(C, S, generator=gen)
    assert torch.equal(match_snippets(q_feat, k_feat), perm)


def test_snippet_loss_lower_for_matched_key_than_random_key():
    gen = torch.Generator().manual_seed(4)
    N, D, S = 2, 16, 5
    q_dense = F.normalize(torch.randn(N, D, S, generator=gen), dim=1)
    perm = torch.tensor([[4, 2, 0, 1, 3], [1, 0, 3, 4, 2]])
    k_dense = torch.empty_like(q_dense)
    for n in range(N):
        k_dense[n][:, perm[n]] = q_dense[n]
    queue = F.normalize(torch.randn(32, D, generator=gen), dim=1)
    matched = snippet_logits(q_dense, k_dense, perm, queue, T)
    assert matched.shape == (N, S, 33)
    assert torch.allclose(matched[..., 0], torch.full((N, S), 1.0 / T))
    random_key = F.normalize(torch.randn(N, D, S, generator=gen), dim=1)
    rand = snippet_logits(q_dense, random_key, perm, queue, T)
    assert torch.all(info_nce(matched).mean(1) < info_nce(rand).mean(1))


def test_weighted_mean_ignores_zero_weights():
    v = torch.tensor([1.0, 3.0, 100.0])
    assert weighted_mean(v, torch.tensor([1.0, 1.0, 0.0])).item() == 2.0
    assert weighted_mean(v, torch.zeros(3)).item() == 0.0
