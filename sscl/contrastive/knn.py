"""The kNN probe: how well frozen features classify a labelled corpus by their nearest neighbours.

The standard monitor of self-supervised skeleton methods (the weighted kNN of Wu et al.,
"Unsupervised feature learning via non-parametric instance discrimination", CVPR 2018, used by
the SkeletonCLR family): cosine similarity between L2-normalised features, the k most similar
training clips vote for their label, each with weight exp(similarity / t) ("weighted") or one
vote each ("majority"); ties go to the smaller label. Compare the figure with a random-init
encoder's: the gap says whether pretraining learns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sscl.errors import ConfigError


@torch.no_grad()
def knn_predict(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    k: int = 20,
    vote: str = "weighted",
    temperature: float = 0.1,
    chunk: int = 1024,
) -> Tensor:
    """Labels of `test_feats` by a k-nearest-neighbour vote among `train_feats`.

    Args:
        train_feats: (N, C) features of the labelled clips.
        train_labels: (N,) int64 labels >= 0.
        test_feats: (Q, C) features to classify.
        k: neighbours (clipped to N).
        vote: "weighted" (exp(cos / temperature) per neighbour) or "majority".
        temperature: of the weighted vote.
        chunk: test rows per similarity block (bounds memory at chunk * N).

    Returns:
        (Q,) int64 predicted labels.

    Raises:
        ConfigError: empty training set, unknown vote, or k < 1.
    """
    if vote not in ("weighted", "majority"):
        raise ConfigError(f"knn vote={vote!r}; expected 'weighted' or 'majority'")
    if k < 1 or train_feats.shape[0] == 0:
        raise ConfigError(
            f"knn needs k >= 1 and a non-empty training set, got k={k} and "
            f"{train_feats.shape[0]} training clips"
        )
    k = min(k, train_feats.shape[0])
    train = F.normalize(train_feats.float(), dim=1)
    labels = train_labels.to(torch.int64)
    num_classes = int(labels.max()) + 1
    preds = []
    for start in range(0, test_feats.shape[0], chunk):
        test = F.normalize(test_feats[start:start + chunk].float().to(train.device), dim=1)
        sim, idx = (test @ train.t()).topk(k, dim=1)
        w = torch.exp(sim / temperature) if vote == "weighted" else torch.ones_like(sim)
        scores = torch.zeros(test.shape[0], num_classes, device=train.device)
        scores.scatter_add_(1, labels[idx], w)
        preds.append(scores.argmax(dim=1))  # first maximum: ties go to the smaller label
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)


def knn_top1(
    train_feats: Tensor,
    train_labels: Tensor,
    test_feats: Tensor,
    test_labels: Tensor,
    k: int = 20,
    vote: str = "weighted",
    temperature: float = 0.1,
) -> float:
    """Top-1 accuracy of the kNN vote (see `knn_predict`) on labelled test features.

    Args:
        train_feats, train_labels, test_feats: as `knn_predict`.
        test_labels: (Q,) int64 true labels.
        k, vote, temperature: as `knn_predict`.

    Returns:
        Fraction of test clips whose predicted label is right (0.0 for an empty test set).
    """
    if test_feats.shape[0] == 0:
        return 0.0
    pred = knn_predict(train_feats, train_labels, test_feats, k, vote, temperature)
    return float((pred.cpu() == test_labels.to(torch.int64).cpu()).float().mean())


@torch.no_grad()
def embed_clips(
    encoder: Callable[[Tensor], Tensor],
    batches: Iterable[tuple[Tensor, Tensor]],
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Features of a labelled corpus's clips, encoder in eval mode (restored afterwards).

    Args:
        encoder: x_NCTVM -> (N, C) features, e.g. `pretrainer.backbone.embed` (the pooled
            backbone feature, the usual probe input) or a bare module with that contract.
        batches: iterable of (x_NCTVM (N, C, T, V, M) float, labels (N,) int64).
        device: where to run the encoder; None = leave the batches where they are.

    Returns:
        (features (total, C) float32 on the CPU, labels (total,) int64 on the CPU).
    """
    module = encoder if isinstance(encoder, nn.Module) else getattr(encoder, "__self__", None)
    was_training = module.training if isinstance(module, nn.Module) else None
    if isinstance(module, nn.Module):
        module.eval()
    feats, labels = [], []
    try:
        for x, y in batches:
            if device is not None:
                x = x.to(device, non_blocking=True)
            feats.append(encoder(x).float().cpu())
            labels.append(y.to(torch.int64).cpu())
    finally:
        if isinstance(module, nn.Module) and was_training is not None:
            module.train(was_training)
    if not feats:
        return torch.zeros(0, 0), torch.zeros(0, dtype=torch.int64)
    return torch.cat(feats), torch.cat(labels)
