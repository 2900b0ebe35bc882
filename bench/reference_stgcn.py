"""Reference ST-GCN for the trainer benchmark: the SkeletonCLR lineage's einsum formulation.

The model the self-supervised skeleton papers train (ST-GCN, Yan et al., AAAI 2018, as used by
SkeletonCLR, AimCLR and their successors; written here from that description, not copied):

- data BN over the (V * C) input features of each person, statistics shared across persons
  (``data_bn="shared"``; ``"per_person"`` gives each person slot its own (M * V * C)
  statistics, as 2s-AGCN does, ``"none"`` skips it), persons folded into the batch;
- ten blocks; each: a 1x1 ``Conv2d`` from C to K * C' channels, the graph aggregation
  ``torch.einsum("nkctv,kvw->nctw")`` with the adjacency times a learnable edge importance,
  then BN, ReLU, a (9 x 1) temporal ``Conv2d`` with the block's stride, BN, dropout, plus the
  residual (none in block 1, identity, or a strided 1x1 conv + BN), then ReLU;
- channels 64, 64, 64, 64, 128 (stride 2), 128, 128, 256 (stride 2), 256, 256 scaled by a width
  (the SSL papers' hidden channels 16 are width 0.25) and a last block that may keep its own
  width (AimCLR's 256-d embedding at width 0.25: 16 .. 64 -> 256);
- the embedding is the last block averaged over time, joints and persons.

It exists for ``bench/bench_train.py``: the reference stack's model, run against
``sscl.models.STGCN`` at the same channel plan and the same parameter count. The published
convolutions carry biases that the following batch norm cancels; ``sscl.models.STGCN`` drops
them, so this module does too by default (``bias=True`` restores them: more parameters, the
same function). `ReferenceSTGCN.like` builds the reference matching a given
``sscl.models.STGCN`` (plan, persons, adjacency, data-BN grouping).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from sscl.data.layouts import Layout, get_layout
from sscl.errors import ConfigError, LayoutError

#: (full-width channels, temporal stride) of blocks 1..10 (ST-GCN's plan).
PLAN: tuple[tuple[int, int], ...] = (
    (64, 1), (64, 1), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1),
)

DATA_BN = ("shared", "per_person", "none")


def channel_plan(width: float, last_channels: int | None = None) -> tuple[int, ...]:
    """Output channels of blocks 1..10 at ``width``; ``last_channels`` overrides block 10.

    Args:
        width: channel multiplier (0.25: 16 .. 64, the SSL papers' hidden channels 16).
        last_channels: block 10's channels (AimCLR: 256); None scales it like the others.

    Returns:
        Ten channel counts, each round(c * width) and at least 1.

    Raises:
        ConfigError: width is not positive.
    """
    if not width > 0:
        raise ConfigError(f"width must be a positive channel multiplier (e.g. 0.25), got {width}")
    channels = [max(1, round(c * width)) for c, _ in PLAN]
    if last_channels is not None:
        channels[-1] = last_channels
    return tuple(channels)


class EinsumGraphConv(nn.Module):
    """1x1 conv to K * C' channels, then ``einsum("nkctv,kvw->nctw")`` with the adjacency."""

    def __init__(self, in_channels: int, out_channels: int, num_subsets: int, bias: bool) -> None:
        super().__init__()
        self.num_subsets = num_subsets
        self.conv = nn.Conv2d(in_channels, out_channels * num_subsets, kernel_size=1, bias=bias)

    def forward(self, x_NCTV: Tensor, A_KVV: Tensor) -> Tensor:
        """Args: x_NCTV (N, C, T, V); A_KVV (K, V, V). Returns (N, C', T, V)."""
        y = self.conv(x_NCTV)
        n, kc, t, v = y.shape
        y = y.view(n, self.num_subsets, kc // self.num_subsets, t, v)
        return torch.einsum("nkctv,kvw->nctw", y, A_KVV).contiguous()


class ReferenceBlock(nn.Module):
    """One ST-GCN unit in the published layout: gcn -> (BN, ReLU, tconv, BN, dropout) + res."""

    def __init__(self, in_channels: int, out_channels: int, A_KVV: Tensor, stride: int,
                 residual: bool, dropout: float, bias: bool, kernel_size: int = 9) -> None:
        super().__init__()
        self.register_buffer("A_KVV", A_KVV.clone())
        self.edge_importance = nn.Parameter(torch.ones_like(A_KVV))
        self.gcn = EinsumGraphConv(in_channels, out_channels, A_KVV.shape[0], bias)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, (kernel_size, 1), (stride, 1),
                      ((kernel_size - 1) // 2, 0), bias=bias),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout, inplace=True),
        )
        if not residual:
            self.residual: nn.Module | None = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, (stride, 1), bias=bias),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x_NCTV: Tensor) -> Tensor:
        """Args: x_NCTV (N, C, T, V). Returns (N, C', ceil(T / stride), V)."""
        y = self.tcn(self.gcn(x_NCTV, self.A_KVV * self.edge_importance))
        if self.residual is not None:
            y = y + self.residual(x_NCTV)
        return torch.relu(y)


class ReferenceSTGCN(nn.Module):
    """Ten-block einsum ST-GCN of the SkeletonCLR lineage.

    Args:
        layout: skeleton layout or its name; gives V, C and, unless ``A_KVV`` is given, the
            K = 3 spatial-partition adjacency.
        num_persons: M person slots, folded into the batch.
        channels: output channels of the ten blocks (`channel_plan`).
        strides: temporal strides of the blocks; None: ST-GCN's (stride 2 at blocks 5 and 8).
        in_channels: coordinates per joint; None takes the layout's.
        A_KVV: (K, V, V) adjacency; None: ``layout.adjacency("spatial")``.
        data_bn: "shared" (V * C features, SkeletonCLR), "per_person" (M * V * C) or "none".
        dropout: dropout after the temporal BN of blocks 2..10 (the SSL papers: 0.5).
        bias: give the convolutions biases, as the published code does.

    Forward: (N, C, T, V, M) -> (N * M, C_10, ceil(T / 4), V); `embed` -> (N, C_10).

    Raises:
        ConfigError: channels and strides differ in length, or an unknown ``data_bn``.
        LayoutError: (forward) the input's C, V or M differ from the model's.
    """

    def __init__(
        self,
        layout: Layout | str,
        num_persons: int = 1,
        channels: Sequence[int] | None = None,
        strides: Sequence[int] | None = None,
        in_channels: int | None = None,
        A_KVV: Tensor | None = None,
        data_bn: str = "shared",
        dropout: float = 0.0,
        bias: bool = False,
    ) -> None:
        super().__init__()
        layout = layout if isinstance(layout, Layout) else get_layout(layout)
        channels = tuple(channels) if channels is not None else channel_plan(0.25, 256)
        strides = tuple(strides) if strides is not None else tuple(s for _, s in PLAN)
        if len(channels) != len(strides) or not channels:
            raise ConfigError(
                f"channels {channels} and strides {strides} must be non-empty and equally long")
        if data_bn not in DATA_BN:
            raise ConfigError(f"data_bn must be one of {DATA_BN}, got {data_bn!r}")
        c_in = layout.channels if in_channels is None else in_channels
        V = layout.num_joints
        if A_KVV is None:
            A_KVV = torch.from_numpy(layout.adjacency("spatial"))
        A_KVV = A_KVV.to(torch.float32)
        self.num_persons, self.channels, self.num_joints = num_persons, c_in, V
        self.data_bn_mode = data_bn
        features = {"shared": V * c_in, "per_person": num_persons * V * c_in, "none": 0}[data_bn]
        self.data_bn = nn.BatchNorm1d(features) if features else None
        self.blocks = nn.ModuleList()
        for b, (c_out, stride) in enumerate(zip(channels, strides)):
            self.blocks.append(ReferenceBlock(
                c_in, c_out, A_KVV, stride, residual=b > 0, dropout=dropout if b > 0 else 0.0,
                bias=bias))
            c_in = c_out
        self.out_channels = channels[-1]
        # Cumulative temporal strides after each block (the contrastive Encoder's snippet check).
        factors, f = [], 1
        for stride in strides:
            f *= stride
            factors.append(f)
        self.time_factors = tuple(factors)

    @classmethod
    def like(cls, model: nn.Module, **kwargs) -> ReferenceSTGCN:
        """The reference with ``model``'s plan, persons, adjacency and data-BN grouping.

        Args:
            model: an ``sscl.models.STGCN`` (reads ``layout``, ``num_persons``,
                ``block_channels``, ``block_strides``, the first block's ``A_KVV`` and the size
                of ``input_norm``'s batch norm, where present).
            **kwargs: passed on (``dropout``, ``bias``).
        """
        layout, M = model.layout, model.num_persons
        first = model.blocks[0]
        A_KVV = getattr(first, "A_KVV", None)
        in_channels = first.gcn.weight.shape[-1]
        bn = getattr(getattr(model, "input_norm", None), "bn", None)
        features = getattr(bn, "num_features", 0)
        V = layout.num_joints
        modes = {V * in_channels: "shared", M * V * in_channels: "per_person", 0: "none"}
        if features not in modes:
            raise ConfigError(
                f"model's input batch norm has {features} features; expected V*C = "
                f"{V * in_channels} (shared), M*V*C = {M * V * in_channels} or none")
        return cls(layout, M, model.block_channels, model.block_strides, in_channels,
                   A_KVV=A_KVV, data_bn=modes[features], **kwargs)

    def forward(self, x_NCTVM: Tensor) -> Tensor:
        """Args: x_NCTVM (N, C, T, V, M). Returns (N * M, C_10, T', V); rows n * M + m."""
        N, C, T, V, M = x_NCTVM.shape
        if (C, V, M) != (self.channels, self.num_joints, self.num_persons):
            raise LayoutError(
                f"x has C={C}, V={V}, M={M}; the model was built for C={self.channels}, "
                f"V={self.num_joints}, M={self.num_persons}")
        if self.data_bn_mode == "shared":
            x = x_NCTVM.permute(0, 4, 3, 1, 2).reshape(N * M, V * C, T)
            x = self.data_bn(x)
        elif self.data_bn_mode == "per_person":
            x = self.data_bn(x_NCTVM.permute(0, 4, 3, 1, 2).reshape(N, M * V * C, T))
        else:
            x = x_NCTVM.permute(0, 4, 3, 1, 2)
        x = x.reshape(N, M, V, C, T).permute(0, 1, 3, 4, 2).reshape(N * M, C, T, V)
        for block in self.blocks:
            x = block(x)
        return x

    def embed(self, x_NCTVM: Tensor) -> Tensor:
        """Last block averaged over time, joints and persons: (N, C, T, V, M) -> (N, C_10)."""
        y = self(x_NCTVM)
        NM, C = y.shape[:2]
        return y.mean(dim=(2, 3)).view(NM // self.num_persons, self.num_persons, C).mean(dim=1)
