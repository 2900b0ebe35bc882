"""The snippet branch's shortcut diagnostics: what they measure, and that measuring changes
nothing of the run (batch-norm statistics, the global generator, the queues)."""

from __future__ import annotations

import pytest
import torch

from sscl.config import ContrastiveConfig
from sscl.contrastive import Pretrainer, shortcut_diagnostics
from sscl.contrastive.shortcut import frozen_batch_stats, index_share, noise_negatives, snippet_top1
from sscl.kernels import graph_conv_ref
from sscl.models import STGCN


def test_index_share_is_the_variance_explained_by_the_snippet_index():
    gen = torch.Generator().manual_seed(0)
    by_index = torch.randn(1, 8, 5, generator=gen).expand(30, 8, 5)  # position only
    assert index_share(by_index) == pytest.approx(1.0)
    by_item = torch.randn(30, 8, 1, generator=gen).expand(30, 8, 5)  # content only
    assert index_share(by_item) == pytest.approx(0.0, abs=1e-12)
    mixed = by_index + by_item  # independent parts: shares add up to 1
    assert 0.0 < index_share(mixed) < 1.0
    e = mixed.double()
    total = (e - e.mean(dim=(0, 2), keepdim=True)).square().sum(dim=1).mean()
    between = (e.mean(dim=0, keepdim=True) - e.mean(dim=(0, 2), keepdim=True)).square().sum(
        dim=1).mean()
    assert index_share(mixed) == pytest.approx(float(between / total))


def test_noise_negatives_score_a_position_code_high_against_means_and_low_against_samples():
    """Embeddings that carry only a snippet's position (plus a little content to break ties): the
    positive (same position) beats every time-mean negative, but against every snippet of the
    other items it ties with one of each, so it wins about 1/N of the time."""
    gen = torch.Generator().manual_seed(0)
    N, D, S = 64, 16, 8
    position = torch.eye(D)[:S].T.unsqueeze(0)  # (1, D, S): snippet s -> unit vector e_s

    def keys():
        dense = position + 0.01 * torch.randn(N, D, S, generator=gen)
        dense = torch.nn.functional.normalize(dense, dim=1)
        mean = torch.nn.functional.normalize(dense.mean(dim=2), dim=1)
        return {"dense": dense, "dense_mean": mean}

    q, k = keys(), keys()
    match = torch.arange(S).expand(N, S)
    for mode, low, high in (("mean", 0.99, 1.0), ("sampled", 0.0, 0.05)):
        neg, owner = noise_negatives(k, mode)
        assert neg.shape == ((N * S, D) if mode == "sampled" else (N, D))
        assert torch.equal(owner.bincount(), torch.full((N,), S if mode == "sampled" else 1))
        assert low <= snippet_top1(q["dense"], k["dense"], match, neg, 0.1, owner) <= high, mode
    # Negatives cut from the queries themselves: each query meets its own exact copy, which must
    # be left out of its row (else it beats the positive every time).
    neg, owner = noise_negatives(q, "sampled")
    assert snippet_top1(q["dense"], k["dense"], match, neg, 0.1) == 0.0
    assert 0.0 < snippet_top1(q["dense"], k["dense"], match, neg, 0.1, owner) <= 0.05


def test_frozen_batch_stats_normalise_with_the_batch_but_keep_the_running_ones():
    bn = torch.nn.BatchNorm1d(3).train()
    bn(torch.randn(8, 3) * 4 + 2)
    saved = {k: v.clone() for k, v in bn.state_dict().items()}
    x = torch.randn(8, 3) * 3 - 1
    with frozen_batch_stats(bn):
        y = bn(x)
    assert all(torch.equal(v, bn.state_dict()[k]) for k, v in saved.items())
    assert bn.momentum == 0.1
    torch.testing.assert_close(y.mean(dim=0), torch.zeros(3), atol=1e-5, rtol=0)


def _pretrainer(**kw) -> Pretrainer:
    torch.manual_seed(0)
    backbone = STGCN("openni15", num_persons=1, width=0.125, graph_conv_impl=graph_conv_ref)
    return Pretrainer(ContrastiveConfig(queue_size=16, num_snippets=3, **kw), backbone)


def _batch(seed: int, B: int = 6) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {v: torch.randn(B, 3, 12, 15, 1, generator=gen) for v in ("query", "key")}
    out["weight"] = torch.ones(B)
    out["weight"][-1] = 0.0
    return out


def test_diagnostics_are_fractions_and_change_nothing():
    p = _pretrainer()
    p(_batch(0), epoch=0)
    state = {k: v.clone() for k, v in p.state_dict().items()}
    rng = torch.get_rng_state()
    figures = shortcut_diagnostics(p, _batch(1))
    assert set(figures) == {"diag/snippet_top1", "diag/snippet_top1_other_video",
                            "diag/snippet_top1_noise", "diag/snippet_index_share",
                            "diag/snippet_index_share_backbone"}
    assert all(0.0 <= v <= 1.0 for v in figures.values())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, p.state_dict()[k]) for k, v in state.items())
    assert p.training
    # Deterministic: the noise views come from a generator keyed by the step counter.
    assert shortcut_diagnostics(p, _batch(1)) == figures


def test_no_diagnostics_without_the_snippet_branch_or_with_one_item():
    assert shortcut_diagnostics(_pretrainer(snippet=False), _batch(0)) == {}
    one = _batch(0, B=2)
    assert shortcut_diagnostics(_pretrainer(), one) == {}  # one real item: no other video
