"""The kNN probe on toy features, and corpus embedding with the encoder's mode restored."""

from __future__ import annotations

import pytest
import torch

from sscl.contrastive import KnnProbe, embed_clips, knn_predict, knn_top1
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
    class Model(torch.nn.Module):
        def embed(self, x, mask):
            assert not self.training
            return (x.sum(dim=(3, 4)) * mask.unsqueeze(1)).sum(dim=2)

    model = Model().train()
    x = torch.arange(5.0).view(5, 1, 1, 1, 1).expand(5, 3, 4, 2, 1)
    mask = torch.ones(5, 4, dtype=torch.bool)
    mask[:, 2:] = False
    feats = embed_clips(model, x, mask, "cpu", batch_size=2)
    assert model.training
    assert feats.shape == (5, 3) and feats[:, 0].tolist() == [0.0, 4.0, 8.0, 12.0, 16.0]


def test_knn_probe_scores_the_query_clips_against_the_memory():
    class Model(torch.nn.Module):
        def embed(self, x, mask):
            return x.mean(dim=(2, 3, 4))

    train, train_y = _clusters(20, seed=0)
    test, test_y = _clusters(7, seed=1)

    def clips(f, y):
        return f.view(len(f), 8, 1, 1, 1), torch.ones(len(f), 1, dtype=torch.bool), y

    probe = KnnProbe(clips(train, train_y), clips(test, test_y), k=5)
    assert probe(Model(), "cpu") == 1.0
    wrong = KnnProbe(clips(train, (train_y + 1) % 3), clips(test, test_y), k=5)
    assert wrong(Model(), "cpu") == 0.0
