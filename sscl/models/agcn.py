"""2s-AGCN-style backbone (the reference localizer backbone) on the fused graph convolution.

Based on 2s-AGCN (Shi, Zhang, Cheng, Lu, "Two-Stream Adaptive Graph Convolutional Networks for
Skeleton-Based Action Recognition", CVPR 2019) with the block plan of METHOD.md section 3: ten
blocks of 64, 64 (stride 2), 64, 64, 128 (stride 2), 128, 128, 256 (stride 2), 256, 256 channels
(blocks 2-4 at T/2, 5-7 at T/4, 8-10 at T/8), the first without residual, temporal kernel 9, and
the adaptive graph A_k + B_k + C_k: A_k 2s-AGCN's fixed graph stack(I, In, Out) over the layout's
tree directed towards its graph centre (`Layout.adjacency("agcn")`; each subset's columns sum to
1, like C_k's), B_k a learned offset, C_k(x) a per-sample graph from an embedded similarity,
softmax-normalised over source joints. The per-sample (N, K, V, V) graph goes straight to
`graph_conv`.

Reference details (METHOD.md section 7): 2s-AGCN's input batch norm has M * V * C features (one
statistic per person slot); the seed's localizer and its pretraining AGCN switch it off
(`input_norm=False`, `SEED_AGCN_LOCALIZER`). 2s-AGCN initializes with `init="agcn"`; the seed's
pretraining overrides it with `init="skeletonclr"` (`SEED_AGCN_PRETRAIN`).
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from sscl.data.layouts import Layout
from sscl.kernels import graph_conv_auto
from sscl.models.layers import (
    BatchNorm2d,
    GCNBackbone,
    GraphConvFn,
    SpatialGraphConv,
    TemporalConv,
    batch_norm_act,
    input_norm_features,
    make_residual,
    mask_frames,
)

#: (full-width channels, temporal stride) of blocks 1..10 (METHOD.md section 3).
AGCN_PLAN: tuple[tuple[int, int], ...] = (
    (64, 1),
    (64, 2),
    (64, 1),
    (64, 1),
    (128, 2),
    (128, 1),
    (128, 1),
    (256, 2),
    (256, 1),
    (256, 1),
)

#: 2s-AGCN embeds into out_channels / 4 channels for the similarity of C_k.
EMBED_RATIO = 4

#: 2s-AGCN's initial value of every entry of B_k: small, so training starts from A_k + C_k.
B_INIT = 1e-6

#: 2s-AGCN's initial weight of the BN closing the graph unit (``bn_init(self.bn, 1e-6)``).
GRAPH_BN_INIT = 1e-6

#: `AGCN` keyword arguments of the seed's localizer (full width, no input BN, 2s-AGCN init).
SEED_AGCN_LOCALIZER: MappingProxyType[str, Any] = MappingProxyType(
    {"width": 1.0, "input_norm": False, "init": "agcn"}
)

#: `AGCN` keyword arguments of the seed's pretraining encoder (full width, no input BN,
#: conv N(0, 0.02) and BN N(1, 0.02)).
SEED_AGCN_PRETRAIN: MappingProxyType[str, Any] = MappingProxyType(
    {"width": 1.0, "input_norm": False, "init": "skeletonclr"}
)


class AdaptiveGraph(nn.Module):
    """The per-sample adjacency A_k + B_k + C_k(x) of one block.

    C_k(x)[v, w] = softmax over v of sum_{c,t} theta_k(x)[c, t, v] phi_k(x)[c, t, w] / (C_e T),
    with theta_k, phi_k 1x1 convolutions to C_e channels; the softmax over source joints v
    normalises the weights flowing into each target joint w.
    """

    def __init__(self, in_channels: int, A_KVV: Tensor, embed_channels: int) -> None:
        super().__init__()
        K = A_KVV.shape[0]
        self.num_subsets = K
        self.embed_channels = embed_channels
        self.register_buffer("A_KVV", A_KVV.clone())
        self.B_KVV = nn.Parameter(torch.full_like(A_KVV, B_INIT))
        # theta has no bias: it would add a term constant in v to the similarity, which the
        # softmax over v cancels (so the bias could never learn).
        self.theta = nn.Conv2d(in_channels, K * embed_channels, kernel_size=1, bias=False)
        self.phi = nn.Conv2d(in_channels, K * embed_channels, kernel_size=1)

    def forward(self, x_NCTV: Tensor, mask_NT: Tensor | None = None) -> Tensor:
        """Args: x_NCTV (N, C, T, V); mask_NT (N, T) or None. Returns (N, K, V, V)."""
        N, _, T, V = x_NCTV.shape
        K, Ce = self.num_subsets, self.embed_channels
        theta = mask_frames(self.theta(x_NCTV), mask_NT).view(N, K, Ce, T, V)
        phi = mask_frames(self.phi(x_NCTV), mask_NT).view(N, K, Ce, T, V)
        if mask_NT is None:
            frames = torch.full((N,), float(T), device=x_NCTV.device)
        else:
            # Average over real frames only, so padding does not dilute the similarity.
            frames = mask_NT.sum(dim=1).clamp(min=1).to(torch.float32)
        # Scale before the product, not after: under fp16 autocast the raw sum over C_e * T
        # products can overflow fp16's range.
        theta = theta / (Ce * frames).view(N, 1, 1, 1, 1).to(theta.dtype)
        sim_NKVV = torch.einsum("nkctv,nkctw->nkvw", theta, phi)
        # Softmax in at least float32: under autocast the similarity arrives in fp16/bf16.
        C_NKVV = torch.softmax(
            sim_NKVV, dim=2, dtype=torch.promote_types(sim_NKVV.dtype, torch.float32)
        )
        return self.A_KVV + self.B_KVV + C_NKVV

    def init_parameters(self, scheme: str, generator: torch.Generator | None) -> None:
        """B_k starts at `B_INIT`; under "agcn" theta and phi get 2s-AGCN's per-subset fan-out
        std sqrt(2 / C_e) (they merge K convolutions of C_e outputs each)."""
        with torch.no_grad():
            self.B_KVV.fill_(B_INIT)
            if scheme == "agcn":
                std = math.sqrt(2.0 / self.embed_channels)
                for conv in (self.theta, self.phi):
                    nn.init.normal_(conv.weight, 0.0, std, generator=generator)


class AGCNBlock(nn.Module):
    """Adaptive graph conv -> BN (+ 1x1 skip) -> ReLU -> temporal conv + BN, plus the residual,
    then ReLU (2s-AGCN's TCN_GCN_unit)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        A_KVV: Tensor,
        stride: int,
        residual: bool,
        graph_conv_impl: GraphConvFn,
        kernel_size: int = 9,
    ) -> None:
        super().__init__()
        self.graph = AdaptiveGraph(in_channels, A_KVV, max(1, out_channels // EMBED_RATIO))
        self.gcn = SpatialGraphConv(in_channels, out_channels, A_KVV.shape[0], graph_conv_impl)
        self.gcn_bn = BatchNorm2d(out_channels)
        # 2s-AGCN's graph unit carries its own skip (1x1 conv + BN when widths differ), present
        # even in the first block, whose block-level residual is off.
        self.gcn_skip = make_residual(in_channels, out_channels, 1, True)
        self.tcn = TemporalConv(out_channels, out_channels, kernel_size, stride)
        self.residual = make_residual(in_channels, out_channels, stride, residual)

    def forward(self, x_NCTV: Tensor, mask_NT: Tensor | None = None) -> Tensor:
        """Args: x_NCTV (N, C, T, V); mask_NT (N, T) or None. Returns (N, C', ceil(T/s), V)."""
        adjacency_NKVV = self.graph(x_NCTV, mask_NT)
        y = batch_norm_act(self.gcn_bn, self.gcn(x_NCTV, adjacency_NKVV), self.gcn_skip(x_NCTV),
                           relu=True)
        res = self.residual(x_NCTV) if self.residual is not None else None
        return self.tcn(y, mask_NT, residual=res, relu=True)

    def init_parameters(self, scheme: str, generator: torch.Generator | None) -> None:
        """Under "agcn" the graph unit's BN weight starts at `GRAPH_BN_INIT`, so the unit starts
        as its skip path."""
        if scheme == "agcn":
            with torch.no_grad():
                self.gcn_bn.weight.fill_(GRAPH_BN_INIT)


class AGCN(GCNBackbone):
    """Ten-block adaptive-graph backbone (the localizer backbone of METHOD.md section 3).

    Args:
        layout: skeleton layout (object, name such as "ntu25", or JSON path); gives V and A_k.
        in_channels: coordinates per joint; None takes the layout's (3, or 2 for COCO-17).
        num_persons: M person slots per sample, folded into the batch.
        width: channel multiplier (1.0: 64..256; 0.25: 16..64).
        graph_conv_impl: the spatial graph convolution; by default
            `sscl.kernels.graph_conv_auto` (the fused op on the CPU, the faster unfused
            formulation on CUDA), `sscl.kernels.graph_conv` to force the fused op,
            `sscl.kernels.graph_conv_ref` for the einsum oracle.
        input_norm: True (default): 2s-AGCN's input batch norm over M * V * C features,
            statistics over real frames only; False: none (the seed's localizer and pretraining
            encoder); or a grouping of `sscl.models.layers.INPUT_NORMS`.
        init: weight initialization, "torch" (default: PyTorch's), "agcn" (2s-AGCN's) or
            "skeletonclr" (the seed's pretraining); see `sscl.models.initialization`.
        generator: random source of `init`; None uses torch's global generator. With
            init="torch" and no generator the construction-time draws are kept.
        adjacency: the fixed graph A_k (`Layout.adjacency`): "agcn" (default, 2s-AGCN's
            stack(I, In, Out)); "spatial" is the ST-GCN partition it used before.

    Forward: see `GCNBackbone.forward` (input (N, C, T, V, M); block features
    (N * M, C_b, ceil(T / f_b), V) with f = 1, 2, 2, 2, 4, 4, 4, 8, 8, 8).
    """

    def __init__(
        self,
        layout: Layout | str,
        in_channels: int | None = None,
        num_persons: int = 1,
        width: float = 1.0,
        graph_conv_impl: GraphConvFn = graph_conv_auto,
        *,
        input_norm: bool | str = True,
        init: str = "torch",
        generator: torch.Generator | None = None,
        adjacency: str = "agcn",
    ) -> None:
        def block(
            index: int, c_in: int, c_out: int, A_KVV: Tensor, stride: int, residual: bool
        ) -> nn.Module:
            return AGCNBlock(
                c_in, c_out, A_KVV, stride, residual=residual, graph_conv_impl=graph_conv_impl
            )

        super().__init__(layout, in_channels, num_persons, AGCN_PLAN, width, block,
                         adjacency=adjacency, input_norm=input_norm_features(input_norm, "MVC"),
                         init=init, generator=generator)
