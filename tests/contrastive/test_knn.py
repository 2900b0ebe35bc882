"""The kNN probe on toy features, and corpus embedding with the encoder's mode restored."""

from __future__ import annotations

import pytest
import torch

from sscl.contrastive import embed_clips, knn_predict, knn_top1
from sscl.errors import ConfigError


def _clusters(n_per: int, seed: int, spread: float = 0.1):
    """Three well-separated direction clusters in 8-d (labels 0, 1, 2)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.eye(8)[:3] * 5.0
    feats = torch.cat([c + spread * torch.randn(n_per, 8, generator=gen) for c in centres])
    return feats, torch.arange(3).repeat_interleave(n_per)


@pytest.mark.parametrize("vote", ["weighted", "majority"])
def test_separable_features_give_top1_of_one(vote):
    train, train_y = _clusters(20, seed=0)
    test, test_y = _clusters(7, seed=1)
    assert knn_top1(train, train_y, test, test_y, k=5, vote=vote) == 1.0


def test_random_labels_are_not_learnable():
    train, _ = _clusters(20, seed=0)
    test, test_y = _clusters(7, seed=1)
    shuffled = torch.randint(0, 3, (60,), generator=torch.Generator().manual_seed(2))
    assert knn_top1(train, shuffled, test, test_y, k=5) < 0.8


def test_weighted_vote_prefers_the_close_neighbour():
    # One very close neighbour of class 1 against two far ones of class 0.
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([1, 0, 0])
    test = torch.tensor([[1.0, 0.05]])
    assert knn_predict(train, labels, test, k=3, vote="weighted", temperature=0.1).item() == 1
    assert knn_predict(train, labels, test, k=3, vote="majority").item() == 0


def test_knn_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="vote"):
        knn_predict(torch.ones(2, 2), torch.zeros(2, dtype=torch.int64), torch.ones(1, 2),
                    vote="max")
    with pytest.raises(ConfigError, match="non-empty"):
        knn_predict(torch.ones(0, 2), torch.zeros(0, dtype=torch.int64), torch.ones(1, 2))


def test_embed_clips_runs_in_eval_mode_and_restores_it():
    class Probe(torch.nn.Module):
        def forward(self, x):
            assert not self.training
            return x.mean(dim=(2, 3, 4))

    probe = Probe().train()
    batches = [(torch.ones(2, 3, 4, 5, 1) * i, torch.tensor([i, i])) for i in range(3)]
    feats, labels = embed_clips(probe, batches)
    assert probe.training
    assert feats.shape == (6, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert feats[:, 0].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
