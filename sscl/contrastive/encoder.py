"""The query/key encoder: a GCN backbone with the global and snippet heads, and its EMA copy.

Based on SkeletonCLR (Li et al., CVPR 2021; MoCo v2's MLP head on the pooled backbone feature)
and on the snippet branch of METHOD.md section 2 (SnipCLR; DenseCL's dense head, Wang et al.,
CVPR 2021):

- global: last-block map (N*M, C, T', V) averaged over time, joints and persons -> (N, C) ->
  Linear(C, C), ReLU, Linear(C, D) -> L2-normalised (N, D);
- snippets: the same map averaged over joints and persons -> (N, C, T') -> adaptive average
  pooling along time to S snippets -> backbone snippet features f (N, C, S) (used for matching)
  -> Conv1d(C, C, 1), ReLU, Conv1d(C, D, 1) -> each snippet L2-normalised: z (N, D, S); and the
  time-mean of the dense head's output, L2-normalised (N, D), the key's entry in the snippet
  queue (the reference code averages the head output before normalising; so does this);
- RVTCLR's relative-tempo head: a second MLP head on the pooled feature (N, D), normalised.

`momentum_update` makes the key encoder an exact EMA of the query encoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sscl.errors import ConfigError
from sscl.models.layers import at_least_fp32, pool_joints_persons


class MLPHead(nn.Sequential):
    """SkeletonCLR's projection head: Linear(C, C), ReLU, Linear(C, D). (N, C) -> (N, D)."""

    def __init__(self, in_channels: int, out_dim: int) -> None:
        super().__init__(
            nn.Linear(in_channels, in_channels), nn.ReLU(), nn.Linear(in_channels, out_dim)
        )


class DenseHead(nn.Sequential):
    """The snippet head: Conv1d(C, C, 1), ReLU, Conv1d(C, D, 1). (N, C, S) -> (N, D, S)."""

    def __init__(self, in_channels: int, out_dim: int) -> None:
        super().__init__(
            nn.Conv1d(in_channels, in_channels, 1), nn.ReLU(), nn.Conv1d(in_channels, out_dim, 1)
        )


def required_window(num_snippets: int, time_factor: int) -> int:
    """Smallest clip length T whose last-block map has at least `num_snippets` frames.

    A backbone with cumulative stride f maps T frames to T' = ceil(T / f), so T' >= N exactly
    when T >= (N - 1) * f + 1: 73 frames for ST-GCN (f = 4) and 145 for AGCN (f = 8) at N = 19.

    Args:
        num_snippets: N.
        time_factor: the backbone's cumulative temporal stride (`backbone.time_factors[-1]`).

    Returns:
        The minimal T.
    """
    return (num_snippets - 1) * time_factor + 1


def check_snippets(num_frames: int, num_snippets: int, time_factor: int, context: str = "") -> int:
    """Check that a clip of `num_frames` leaves at least `num_snippets` backbone frames.

    Args:
        num_frames: T, the clip length the backbone sees.
        num_snippets: N.
        time_factor: cumulative temporal stride f of the backbone's last block.
        context: extra words for the message (e.g. why the clip is shorter than the window).

    Returns:
        T' = ceil(T / f).

    Raises:
        ConfigError: N > T'; the message names the window length needed.
    """
    t_out = math.ceil(num_frames / time_factor)
    if num_snippets > t_out:
        raise ConfigError(
            f"num_snippets={num_snippets} exceeds the {t_out} frames the backbone leaves of a "
            f"{num_frames}-frame clip (T' = ceil({num_frames} / {time_factor}), its temporal "
            f"stride){context}; use clips of at least "
            f"{required_window(num_snippets, time_factor)} frames or num_snippets <= {t_out}"
        )
    return t_out


def snippet_pool(feat_map: Tensor, num_persons: int, num_snippets: int) -> Tensor:
    """Backbone snippet features: joint- and person-averaged map pooled to S snippets.

    Args:
        feat_map: (N * M, C, T', V) last-block features, T' >= S.
        num_persons: M.
        num_snippets: S.

    Returns:
        (N, C, S) float (adaptive average pooling along time; snippet s averages frames
        floor(s T'/S) .. ceil((s+1) T'/S) - 1).
    """
    return F.adaptive_avg_pool1d(pool_joints_persons(feat_map, num_persons), num_snippets)


class Encoder(nn.Module):
    """Backbone + heads.

    Args:
        backbone: a `GCNBackbone` (or any module with the same contract: forward(x_NCTVM) ->
            (N * M, C, T', V); attributes `out_channels`, `time_factors`, `num_persons`).
        feature_dim: D.
        num_snippets: S; 0 = no snippet branch (no dense head is built).
        tempo_head: build RVTCLR's relative-tempo head.
    """

    def __init__(
        self, backbone: nn.Module, feature_dim: int, num_snippets: int, tempo_head: bool
    ) -> None:
        super().__init__()
        C = backbone.out_channels
        self.backbone = backbone
        self.num_snippets = num_snippets
        self.head = MLPHead(C, feature_dim)
        self.dense_head = DenseHead(C, feature_dim) if num_snippets > 0 else None
        self.tempo_head = MLPHead(C, feature_dim) if tempo_head else None

    @property
    def time_factor(self) -> int:
        return self.backbone.time_factors[-1]

    def forward(
        self,
        x_NCTVM: Tensor,
        snippets: bool = True,
        drop: Callable[[Tensor], Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Embed a batch.

        Args:
            x_NCTVM: (N, C, T, V, M) clips.
            snippets: compute the snippet outputs (when the encoder has a dense head).
            drop: optional map (N*M, C, T', V) -> same shape (EADM); adds "global_drop".

        Returns:
            A dict of float32 tensors: "global" (N, D) unit rows; "pooled" (N, C) the backbone's
            pooled feature; with snippets "snip_feat" (N, C, S), "dense" (N, D, S) unit columns,
            "dense_mean" (N, D) unit rows, "dense_coherence" (N,) = |mean_s h_s| / mean_s |h_s|
            of the dense head's raw outputs h (1: all snippets point one way; near 0: they
            cancel, so the time-mean keys of the snippet queue carry little); with the tempo
            head "tempo" (N, D) unit rows; with `drop` "global_drop" (N, D).

        Raises:
            ConfigError: the clip is too short for S snippets.
        """
        want_snippets = snippets and self.dense_head is not None
        if want_snippets:
            check_snippets(x_NCTVM.shape[2], self.num_snippets, self.time_factor)
        M = self.backbone.num_persons
        feat_map = self.backbone(x_NCTVM)
        pooled_NC = pool_joints_persons(feat_map, M).mean(dim=2)
        out = {"pooled": at_least_fp32(pooled_NC), "global": _unit(self.head(pooled_NC), 1)}
        if self.tempo_head is not None:
            out["tempo"] = _unit(self.tempo_head(pooled_NC), 1)
        if drop is not None:
            dropped_NC = pool_joints_persons(drop(feat_map), M).mean(dim=2)
            out["global_drop"] = _unit(self.head(dropped_NC), 1)
        if want_snippets:
            snip_NCS = snippet_pool(feat_map, M, self.num_snippets)
            dense_NDS = self.dense_head(snip_NCS)
            out["snip_feat"] = at_least_fp32(snip_NCS)
            out["dense"] = _unit(dense_NDS, 1)
            h = at_least_fp32(dense_NDS)
            out["dense_mean"] = F.normalize(h.mean(dim=2), dim=1)
            out["dense_coherence"] = h.mean(dim=2).norm(dim=1) / h.norm(dim=1).mean(dim=1).clamp(
                min=1e-12)
        return out


def _unit(x: Tensor, dim: int) -> Tensor:
    """L2-normalise in at least float32 (embeddings may come out of a bf16/fp16 autocast
    region)."""
    return F.normalize(at_least_fp32(x), dim=dim)


@torch.no_grad()
def momentum_update(key: nn.Module, query: nn.Module, momentum: float) -> None:
    """EMA step of the key encoder: k = m * k + (1 - m) * q on every parameter, buffers copied.

    Computed in float32 as two rounded products and a rounded sum, so it equals the hand
    computation `m * k + (1 - m) * q` in float32 bit for bit; parameters stored in another
    dtype are updated in float32 and cast back.

    Args:
        key: the key encoder (same architecture as `query`).
        query: the query encoder.
        momentum: m in [0, 1).
    """
    for p_k, p_q in zip(key.parameters(), query.parameters(), strict=True):
        k32, q32 = at_least_fp32(p_k.detach()), at_least_fp32(p_q.detach())
        p_k.copy_((k32 * momentum + q32 * (1.0 - momentum)).to(p_k.dtype))
    for b_k, b_q in zip(key.buffers(), query.buffers(), strict=True):
        b_k.copy_(b_q)
