"""The kNN probe: how well frozen features classify a labelled corpus by their nearest neighbours.

The standard monitor of self-supervised skeleton methods (the weighted kNN of Wu et al.,
"Unsupervised feature learning via non-parametric instance discrimination", CVPR 2018, used by
the SkeletonCLR family): cosine similarity between L2-normalised features, the k most similar
training clips vote for their label, each with weight exp(similarity / t) ("weighted") or one
vote each ("majority"); ties go to the smaller label. Compare the figure with a random-init
encoder's: the gap says whether pretraining learns.
"""

from __future__ import annotations

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
    model: nn.Module, x_NCTVM: Tensor, mask_NT: Tensor, device: torch.device | str,
    batch_size: int = 128,
) -> Tensor:
    """Embeddings of clips by ``model.embed(x, mask)``, in eval mode (its mode is restored).

    Args:
        model: a backbone or a localizer (anything with ``embed(x_NCTVM, mask_NT) -> (N, C)``).
        x_NCTVM: (N, C, T, V, M) clips (on the CPU; moved to ``device`` a batch at a time).
        mask_NT: (N, T) bool real frames.
        device: where ``model`` runs.
        batch_size: clips per forward pass.

    Returns:
        (N, C) float32 features on the CPU.
    """
    was_training = model.training
    model.eval()
    try:
        feats = [model.embed(x_NCTVM[i:i + batch_size].to(device),
                             mask_NT[i:i + batch_size].to(device)).float().cpu()
                 for i in range(0, len(x_NCTVM), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(feats) if feats else torch.zeros(0, 0)


Clips = tuple[Tensor, Tensor, Tensor]  # x_NCTVM, mask_NT, label_N


class KnnProbe:
    """kNN top-1 of a model's embeddings on fixed labelled clips: ``memory`` clips vote, ``query``
    clips are classified (``sscl.inputs.probe_clips`` reads them from a corpus).

    Args:
        memory: (x, mask, labels) of the labelled memory clips.
        query: (x, mask, labels) of the clips to classify.
        k: neighbours.
    """

    def __init__(self, memory: Clips, query: Clips, k: int) -> None:
        self.memory, self.query, self.k = memory, query, k

    def __call__(self, model: nn.Module, device: torch.device | str) -> float:
        """kNN top-1 of ``model.embed`` (see :func:`embed_clips`)."""
        train = embed_clips(model, self.memory[0], self.memory[1], device)
        test = embed_clips(model, self.query[0], self.query[1], device)
        return knn_top1(train, self.memory[2], test, self.query[2], k=self.k)
