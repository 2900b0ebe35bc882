"""ST-GCN backbone on the fused spatial graph convolution.

Based on ST-GCN (Yan, Xiong, Lin, "Spatial Temporal Graph Convolutional Networks for
Skeleton-Based Action Recognition", AAAI 2018) as summarised in METHOD.md section 3: spatial
partition adjacency with K = 3 subsets (root, centripetal, centrifugal) from the skeleton layout,
a learnable edge-importance mask per block, temporal convolution of kernel 9, batch norm, ReLU and
residuals; ten blocks of 64, 64, 64, 64, 128 (stride 2), 128, 128, 256 (stride 2), 256, 256
channels, scaled by a width multiplier (0.25 gives the 16..64 channels used for SSL pretraining).

Reference details (METHOD.md section 7, from ST-GCN's ``net/st_gcn.py`` and AimCLR's configs):
the input batch norm normalises V * C features shared by the persons; dropout follows the
temporal BN in blocks 2-10 only (block 1 never has it), 0.5 in the SSL configurations; AimCLR's
encoder (hidden channels 16) keeps the last block at 256 channels (64 -> 256, a 256-d embedding),
which `last_channels` sets. `AIMCLR_STGCN` collects those settings for a pretraining preset.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from sscl.data.layouts import Layout
from sscl.kernels import graph_conv_auto
from sscl.kernels.batch_norm import add_relu
from sscl.models.layers import (
    BatchNorm2d,
    GCNBackbone,
    GraphConvFn,
    SpatialGraphConv,
    TemporalConv,
    batch_norm_act,
    input_norm_features,
    make_residual,
)

#: (full-width channels, temporal stride) of blocks 1..10.
STGCN_PLAN: tuple[tuple[int, int], ...] = (
    (64, 1),
    (64, 1),
    (64, 1),
    (64, 1),
    (128, 2),
    (128, 1),
    (128, 1),
    (256, 2),
    (256, 1),
    (256, 1),
)

#: Output channels of the last block in AimCLR's SSL encoder (``hidden_dim: 256`` beside
#: ``hidden_channels: 16``): the pretraining embedding width at width 0.25.
SSL_LAST_CHANNELS = 256

#: Keyword arguments of `STGCN` matching AimCLR's pretraining encoder (``hidden_channels: 16``,
#: ``hidden_dim: 256``, ``dropout: 0.5``, ST-GCN's data BN, the ST-GCN code's weights_init and
#: the partition its graph.py computes). A preset (or
#: `STGCN(layout, num_persons=2, **AIMCLR_STGCN)`) picks them up.
AIMCLR_STGCN: MappingProxyType[str, Any] = MappingProxyType(
    {
        "width": 0.25,
        "last_channels": SSL_LAST_CHANNELS,
        "dropout": 0.5,
        "input_norm": True,
        "init": "skeletonclr",
        "adjacency": "stgcn",
    }
)


class STGCNBlock(nn.Module):
    """Graph conv on (A * edge importance) -> BN -> ReLU -> temporal conv + BN -> dropout,
    plus the residual, then ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        A_KVV: Tensor,
        stride: int,
        residual: bool,
        graph_conv_impl: GraphConvFn,
        kernel_size: int = 9,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_buffer("A_KVV", A_KVV.clone())
        # Learnable per-block multiplier of every adjacency entry (ST-GCN's edge importance);
        # starting at 1 leaves the partitioned graph unchanged.
        self.edge_importance = nn.Parameter(torch.ones_like(A_KVV))
        self.gcn = SpatialGraphConv(in_channels, out_channels, A_KVV.shape[0], graph_conv_impl)
        self.gcn_bn = BatchNorm2d(out_channels)
        self.tcn = TemporalConv(out_channels, out_channels, kernel_size, stride)
        self.dropout = nn.Dropout(dropout)
        self.residual = make_residual(in_channels, out_channels, stride, residual)

    def forward(self, x_NCTV: Tensor, mask_NT: Tensor | None = None) -> Tensor:
        """Args: x_NCTV (N, C, T, V); mask_NT (N, T) or None. Returns (N, C', ceil(T/s), V)."""
        y = batch_norm_act(self.gcn_bn, self.gcn(x_NCTV, self.A_KVV * self.edge_importance),
                           relu=True)
        res = self.residual(x_NCTV) if self.residual is not None else None
        if self.dropout.p == 0 or not self.training:
            return self.tcn(y, mask_NT, residual=res, relu=True)  # one pass: BN, + res, ReLU
        y = self.dropout(self.tcn(y, mask_NT))
        return add_relu(y, res, True)

    def init_parameters(self, scheme: str, generator: torch.Generator | None) -> None:
        """Edge importance starts at 1 under every scheme (`sscl.models.initialization`)."""
        with torch.no_grad():
            self.edge_importance.fill_(1.0)


class STGCN(GCNBackbone):
    """Ten-block ST-GCN backbone.

    Args:
        layout: skeleton layout (object, name such as "ntu25", or JSON path); gives V and the
            K = 3 adjacency.
        in_channels: coordinates per joint; None takes the layout's (3, or 2 for COCO-17).
        num_persons: M person slots per sample, folded into the batch.
        width: channel multiplier (1.0: 64..256; 0.25: 16..64).
        dropout: dropout after the temporal BN of blocks 2-10 (block 1 has none, as in ST-GCN);
            0.5 in the SSL configurations.
        graph_conv_impl: the spatial graph convolution; by default
            `sscl.kernels.graph_conv_auto` (the fused op on the CPU, the faster unfused
            formulation on CUDA), `sscl.kernels.graph_conv` to force the fused op,
            `sscl.kernels.graph_conv_ref` for the einsum oracle.
        last_channels: output channels of block 10, the embedding width; None scales 256 by
            `width`. AimCLR's SSL encoder uses `SSL_LAST_CHANNELS` (256) at width 0.25.
        input_norm: True (default): ST-GCN's input batch norm over V * C features, statistics
            shared by the persons and taken over real frames only; False: none; or a grouping
            of `sscl.models.layers.INPUT_NORMS` ("MVC" is 2s-AGCN's per-person one).
        init: weight initialization, "torch" (default: PyTorch's), "skeletonclr" (the ST-GCN
            code's N(0, 0.02), used by SkeletonCLR/AimCLR) or "agcn" (2s-AGCN's Kaiming fan-out;
            ST-GCN has no graph-unit skip, so no BN starts at 1e-6); see
            `sscl.models.initialization`.
        generator: random source of `init`; None uses torch's global generator. With
            init="torch" and no generator the construction-time draws are kept.
        adjacency: the layout's partition (`Layout.adjacency`): "spatial" (default, the ST-GCN
            paper's: true hop distances to the graph centre) or "stgcn" (ST-GCN's published code,
            whose hop distances stop at 1; the matrices SkeletonCLR/AimCLR trained with).

    Forward: see `GCNBackbone.forward` (input (N, C, T, V, M); block features
    (N * M, C_b, ceil(T / f_b), V) with f = 1, 1, 1, 1, 2, 2, 2, 4, 4, 4).
    """

    def __init__(
        self,
        layout: Layout | str,
        in_channels: int | None = None,
        num_persons: int = 1,
        width: float = 1.0,
        dropout: float = 0.0,
        graph_conv_impl: GraphConvFn = graph_conv_auto,
        *,
        last_channels: int | None = None,
        input_norm: bool | str = True,
        init: str = "torch",
        generator: torch.Generator | None = None,
        adjacency: str = "spatial",
    ) -> None:
        def block(
            index: int, c_in: int, c_out: int, A_KVV: Tensor, stride: int, residual: bool
        ) -> nn.Module:
            return STGCNBlock(
                c_in,
                c_out,
                A_KVV,
                stride,
                residual=residual,
                graph_conv_impl=graph_conv_impl,
                dropout=dropout if index > 0 else 0.0,
            )

        super().__init__(layout, in_channels, num_persons, STGCN_PLAN, width, block,
                         adjacency=adjacency, input_norm=input_norm_features(input_norm, "VC"),
                         last_channels=last_channels, init=init, generator=generator)
