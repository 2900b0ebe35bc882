"""Building blocks shared by the GCN backbones.

Holds the width rule, the input normalisation that folds persons into the batch, the spatial
graph convolution module (a thin owner of the weight that calls `sscl.kernels.graph_conv`), the
temporal convolution unit, and `GCNBackbone`, the base class that runs a stack of blocks and
hands back the features of chosen blocks. Based on ST-GCN (Yan et al., AAAI 2018) and 2s-AGCN
(Shi et al., CVPR 2019) as summarised in METHOD.md section 3.

Padding masks. Batches of variable-length sequences are zero-padded at the end; every module here
takes an optional `mask_NT` (True = real frame). Padded frames are zeroed before every operation
that mixes frames (temporal convolutions, the data-dependent graph of AGCN), so in eval mode the
features of the real frames do not depend on how much padding follows them. In training mode the
input batch norm takes its statistics over real frames only (`MaskedBatchNorm1d`); the batch norms
inside the blocks still see the padded frames (as zeros before each temporal convolution).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from sscl.data.layouts import Layout, get_layout
from sscl.errors import ConfigError, LayoutError
from sscl.kernels.batch_norm import (
    add_relu,
    batch_norm_train,
    fast_path_applies,
    residual_applies,
)
from sscl.models.initialization import check_scheme, init_weights

#: Signature of the spatial graph convolution: (x (N,C,T,V), weight (K,C',C), bias (C',) or None,
#: adjacency (K,V,V) or (N,K,V,V)) -> (N,C',T,V). `sscl.kernels.graph_conv` or its `_ref` oracle.
GraphConvFn = Callable[[Tensor, Tensor, "Tensor | None", Tensor], Tensor]


def at_least_fp32(x: Tensor) -> Tensor:
    """``x`` in float32 when it is in a half-precision type (out of an autocast region), else
    unchanged: float32 stays float32 and float64 (tests, gradient checks) stays float64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def scale_width(channels: int, width: float) -> int:
    """Channel count of a block after the width multiplier (at least 1).

    Args:
        channels: the full-width channel count (e.g. 64).
        width: the multiplier (1.0 full width, 0.25 the SSL pretraining width 16..64).

    Returns:
        round(channels * width), at least 1.

    Raises:
        ConfigError: width is not positive.
    """
    if not width > 0:
        raise ConfigError(f"width must be a positive channel multiplier (e.g. 0.25), got {width}")
    return max(1, round(channels * width))


def resolve_layout(layout: Layout | str) -> Layout:
    """A `Layout` from a layout object, a layout name or a layout JSON path."""
    return layout if isinstance(layout, Layout) else get_layout(layout)


def mask_frames(x: Tensor, mask_NT: Tensor | None) -> Tensor:
    """Zero the padded frames of a (N, C, T, V) or (N, C, T) tensor; identity without a mask."""
    if mask_NT is None:
        return x
    shape = (mask_NT.shape[0], 1, mask_NT.shape[1]) + (1,) * (x.dim() - 3)
    return x * mask_NT.view(shape).to(x.dtype)


def downsample_mask(mask_NT: Tensor | None, stride: int) -> Tensor | None:
    """The padding mask after a temporal stride.

    A stride-s convolution with kernel 9 and padding 4 maps T frames to ceil(T / s) and output
    frame j is centred on input frame s * j, so a sequence of L real frames keeps ceil(L / s) real
    frames: exactly the frames `mask[:, ::s]` keeps.
    """
    if mask_NT is None or stride == 1:
        return mask_NT
    return mask_NT[:, ::stride]


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """`nn.BatchNorm1d` over (N, F, T) whose training statistics skip padded frames.

    With a mask in training mode, the batch mean and (biased) variance of each feature are taken
    over the real frames of the batch only, and the running estimates are updated from them as
    `nn.BatchNorm1d` does (momentum, unbiased variance). Without a mask, or in eval mode, it is
    `nn.BatchNorm1d`. Padded frames are normalised with the same statistics; callers zero them.
    The state dict is that of `nn.BatchNorm1d`, so reference `data_bn` weights load as they are.
    """

    def forward(self, x_NFT: Tensor, mask_NT: Tensor | None = None) -> Tensor:
        """Args: x_NFT (N, F, T); mask_NT (N, T) bool or None. Returns (N, F, T)."""
        if mask_NT is None or not self.training:
            return super().forward(x_NFT)
        x = x_NFT.float()  # statistics in float32 (as batch norm does under autocast)
        w_N1T = mask_NT.to(torch.float32).unsqueeze(1)
        count = w_N1T.sum().clamp(min=1.0)
        mean_F = (x * w_N1T).sum(dim=(0, 2)) / count
        var_F = ((x - mean_F[:, None]).square() * w_N1T).sum(dim=(0, 2)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased_F = var_F * count / (count - 1.0).clamp(min=1.0)
                self.running_mean.lerp_(mean_F.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased_F.to(self.running_var.dtype), momentum)
        y = (x - mean_F[:, None]) * torch.rsqrt(var_F[:, None] + self.eps)
        if self.affine:
            y = y * self.weight[:, None] + self.bias[:, None]
        return y.to(x_NFT.dtype)


#: Feature groupings of the input batch norm: "MVC" one statistic per person slot, joint and
#: coordinate (2s-AGCN's data_bn); "VC" per joint and coordinate, shared by the persons (ST-GCN's,
#: AimCLR's); "none" no batch norm (the seed's localizer and its pretraining AGCN).
INPUT_NORMS = ("MVC", "VC", "none")


def input_norm_features(input_norm: bool | str, reference: str) -> str:
    """The `InputNorm` grouping a backbone's ``input_norm`` argument asks for.

    Args:
        input_norm: True (the backbone's reference grouping), False ("none"), or a grouping name
            from `INPUT_NORMS`.
        reference: the backbone's reference grouping ("VC" ST-GCN, "MVC" 2s-AGCN).

    Raises:
        ConfigError: anything else.
    """
    if input_norm is True:
        return reference
    if input_norm is False:
        return "none"
    if isinstance(input_norm, str) and input_norm in INPUT_NORMS:
        return input_norm
    raise ConfigError(
        f"input_norm {input_norm!r}: expected True (the backbone's reference grouping, "
        f"{reference}), False, or one of {', '.join(INPUT_NORMS)}"
    )


class InputNorm(nn.Module):
    """Optional input batch norm ("data BN"), then persons folded into the batch.

    Args:
        channels: C coordinates per joint.
        num_joints: V.
        num_persons: M person slots.
        features: "MVC" (2s-AGCN: BatchNorm1d over M*V*C features, batch N), "VC" (ST-GCN:
            BatchNorm1d over V*C features, batch N*M, statistics shared by the persons) or "none"
            (fold only). Features are ordered as in the references (person, joint, coordinate),
            so their data_bn weights load unchanged.
    """

    def __init__(
        self, channels: int, num_joints: int, num_persons: int, features: str = "MVC"
    ) -> None:
        super().__init__()
        if features not in INPUT_NORMS:
            raise ConfigError(
                f"input norm features {features!r}: expected one of {', '.join(INPUT_NORMS)}"
            )
        self.channels = channels
        self.num_joints = num_joints
        self.num_persons = num_persons
        self.features = features
        self.bn: MaskedBatchNorm1d | None = None
        if features == "MVC":
            self.bn = MaskedBatchNorm1d(num_persons * num_joints * channels)
        elif features == "VC":
            self.bn = MaskedBatchNorm1d(num_joints * channels)

    def forward(self, x_NCTVM: Tensor, mask_NT: Tensor | None = None) -> Tensor:
        """Normalise and fold persons.

        Args:
            x_NCTVM: (N, C, T, V, M) float skeleton batch.
            mask_NT: (N, T) bool, True on real frames, or None; in training mode the statistics
                are taken over real frames only.

        Returns:
            (N * M, C, T, V); rows n * M + m hold person m of sample n.

        Raises:
            LayoutError: the input's C, V or M differ from the model's.
        """
        if x_NCTVM.dim() != 5:
            raise LayoutError(
                f"x must be (N, C, T, V, M), got a {x_NCTVM.dim()}-d tensor of shape "
                f"{tuple(x_NCTVM.shape)}"
            )
        N, C, T, V, M = x_NCTVM.shape
        if (C, V, M) != (self.channels, self.num_joints, self.num_persons):
            raise LayoutError(
                f"x has C={C}, V={V}, M={M} (shape {tuple(x_NCTVM.shape)}) but the model was "
                f"built for C={self.channels}, V={self.num_joints}, M={self.num_persons}; build "
                "the backbone with the corpus's layout and persons"
            )
        if self.bn is None:
            return x_NCTVM.permute(0, 4, 1, 2, 3).reshape(N * M, C, T, V)
        if self.features == "MVC":
            x = self.bn(x_NCTVM.permute(0, 4, 3, 1, 2).reshape(N, M * V * C, T), mask_NT)
        else:
            if mask_NT is not None:
                mask_NT = mask_NT.repeat_interleave(M, dim=0)
            x = self.bn(x_NCTVM.permute(0, 4, 3, 1, 2).reshape(N * M, V * C, T), mask_NT)
        return x.reshape(N, M, V, C, T).permute(0, 1, 3, 4, 2).reshape(N * M, C, T, V)


class SpatialGraphConv(nn.Module):
    """Owner of the (K, C', C) channel-mixing weight of one spatial graph convolution.

    The computation is `graph_conv_impl(x, weight, None, adjacency)`; the adjacency is handed in at
    call time because each backbone builds it differently (edge importance, adaptive graph). There
    is no bias: a batch norm always follows, which would cancel it (and its gradient).
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_subsets: int, graph_conv_impl: GraphConvFn
    ) -> None:
        super().__init__()
        self.graph_conv_impl = graph_conv_impl
        self.weight = nn.Parameter(torch.empty(num_subsets, out_channels, in_channels))
        self.init_parameters("torch", None)

    def init_parameters(self, scheme: str, generator: torch.Generator | None) -> None:
        """Draw the (K, C', C) weight by scheme (`sscl.models.initialization`)."""
        K, C_out, C_in = self.weight.shape
        with torch.no_grad():
            if scheme == "torch":
                # The uniform(+-1/sqrt(fan_in)) default of the 1x1 Conv2d(C, K*C') this replaces.
                bound = 1.0 / math.sqrt(C_in)
                nn.init.uniform_(self.weight, -bound, bound, generator=generator)
            elif scheme == "agcn":
                # 2s-AGCN's conv_branch_init of each subset's Conv2d(C, C'): fan-out C' per subset.
                std = math.sqrt(2.0 / (C_out * C_in * K))
                nn.init.normal_(self.weight, 0.0, std, generator=generator)
            else:
                nn.init.normal_(self.weight, 0.0, 0.02, generator=generator)

    def forward(self, x_NCTV: Tensor, adjacency: Tensor) -> Tensor:
        """Args: x_NCTV (N, C, T, V); adjacency (K, V, V) or (N, K, V, V). Returns (N, C', T, V)."""
        return self.graph_conv_impl(x_NCTV, self.weight, None, adjacency)


class BatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose CPU training forward takes its statistics in one read of the input.

    Same parameters, buffers, state dict and results as `nn.BatchNorm2d` (to float rounding);
    in training mode on contiguous float32/float64 CPU input of at least
    `sscl.kernels.batch_norm.MIN_ELEMENTS` elements it runs `batch_norm_train` (about 3x faster at
    the demo's shapes, bench/README "Batch norm"), in eval mode without gradients the same
    normalise pass with the running statistics, everywhere else `nn.BatchNorm2d.forward`.
    `batch_norm_act` runs it with the block's residual add and ReLU in the same pass.
    """

    def forward(self, x: Tensor) -> Tensor:
        return self.fused(x, None, False)

    def fused(self, x: Tensor, residual: Tensor | None, relu: bool) -> Tensor:
        """``relu(self(x) + residual)`` (no add for None, no ReLU unless ``relu``)."""
        if (not self.training and self.running_mean is not None and self.running_var is not None
                and not _needs_grad(x, residual, self.weight, self.bias)
                and fast_path_applies(x) and residual_applies(x, residual)):
            # Inference (`sscl predict`, evaluation): the running statistics, one pass.
            return torch.ops.sscl_cpu.batch_norm_apply(
                x, self.running_mean, torch.rsqrt(self.running_var + self.eps), self.weight,
                self.bias, residual, relu)
        if not (self.training and self.track_running_stats and self.momentum is not None
                and fast_path_applies(x) and residual_applies(x, residual)):
            return add_relu(super().forward(x), residual, relu)
        self._check_input_dim(x)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
        return batch_norm_train(x, self.weight, self.bias, self.running_mean, self.running_var,
                                self.momentum, self.eps, residual, relu)


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def batch_norm_act(
    bn: nn.BatchNorm2d, x: Tensor, residual: Tensor | None = None, relu: bool = False
) -> Tensor:
    """``relu(bn(x) + residual)``, the closing ops of a graph or temporal unit.

    One fused pass for the models' `BatchNorm2d` (`BatchNorm2d.fused`); the separate ops for any
    other batch norm (``bench_backbone.plain_pytorch`` swaps the class to ``nn.BatchNorm2d``).
    """
    if isinstance(bn, BatchNorm2d):
        return bn.fused(x, residual, relu)
    return add_relu(bn(x), residual, relu)


class TemporalConv(nn.Module):
    """Conv (kernel x 1) along time with stride, then batch norm (no bias: the BN cancels it)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 9, stride: int = 1
    ) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=(kernel_size, 1),
            stride=(stride, 1),
            padding=((kernel_size - 1) // 2, 0),
            bias=False,
        )
        self.bn = BatchNorm2d(out_channels)

    def forward(
        self,
        x_NCTV: Tensor,
        mask_NT: Tensor | None = None,
        residual: Tensor | None = None,
        relu: bool = False,
    ) -> Tensor:
        """Args: x_NCTV (N, C, T, V); mask_NT (N, T) or None; residual (N, C', ceil(T/stride), V)
        added after the batch norm, or None; relu: ReLU last. Returns (N, C', ceil(T/stride), V).
        """
        # Padded frames must read as zeros here, as the conv's own zero padding does at the end of
        # an unpadded sequence.
        return batch_norm_act(self.bn, self.conv(mask_frames(x_NCTV, mask_NT)), residual, relu)


class PointwiseResidual(nn.Module):
    """Residual path when the shape changes: 1x1 conv (with the block's stride) + batch norm."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size=1, stride=(stride, 1), bias=False
        )
        self.bn = BatchNorm2d(out_channels)

    def forward(self, x_NCTV: Tensor) -> Tensor:
        return self.bn(self.conv(x_NCTV))


def make_residual(
    in_channels: int, out_channels: int, stride: int, enabled: bool
) -> nn.Module | None:
    """None (no residual), identity (same shape) or a `PointwiseResidual` (shape changes)."""
    if not enabled:
        return None
    if in_channels == out_channels and stride == 1:
        return nn.Identity()
    return PointwiseResidual(in_channels, out_channels, stride)


def pool_joints_persons(feat_NCTV: Tensor, num_persons: int) -> Tensor:
    """Average block features over joints and persons.

    Args:
        feat_NCTV: (N * M, C, T, V) features as returned by a backbone.
        num_persons: M.

    Returns:
        (N, C, T).
    """
    NM, C, T, _ = feat_NCTV.shape
    return feat_NCTV.mean(dim=3).view(NM // num_persons, num_persons, C, T).mean(dim=1)


class GCNBackbone(nn.Module):
    """A stack of graph-convolution blocks on a normalised, person-folded skeleton batch.

    Subclasses pass their channel/stride plan and a block factory
    ``make_block(index, c_in, c_out, A_KVV, stride, residual)`` (index 0-based); each block maps
    ``(x_NCTV, mask_NT) -> x_NCTV`` at its stride. The first block has no residual (its input is
    raw coordinates), as in ST-GCN and 2s-AGCN.

    Args:
        layout: skeleton layout (object, name or JSON path).
        in_channels: coordinates per joint; None takes the layout's.
        num_persons: M person slots, folded into the batch.
        plan: (full-width channels, stride) of each block.
        width: channel multiplier of every block but the last when `last_channels` is given.
        make_block: the block factory.
        adjacency: the layout's adjacency strategy (`Layout.adjacency`) given to every block.
        input_norm: input batch-norm features, one of `INPUT_NORMS` ("MVC", "VC", "none").
        last_channels: output channels of the last block (the embedding width); None scales the
            plan's by `width`.
        init: weight initialization scheme (`sscl.models.initialization`); "torch" keeps the
            construction-time draws.
        generator: random source of `init`; None uses torch's global generator.

    Attributes:
        layout: the skeleton layout (V joints, adjacency).
        num_persons: M, folded into the batch.
        block_channels: output channels of blocks 1..10.
        block_strides: temporal stride of blocks 1..10.
        time_factors: cumulative stride after blocks 1..10 (block b outputs ceil(T / factor)).
        out_channels: channels of the last block (the embedding width).
    """

    block_channels: tuple[int, ...]
    block_strides: tuple[int, ...]

    def __init__(
        self,
        layout: Layout | str,
        in_channels: int | None,
        num_persons: int,
        plan: tuple[tuple[int, int], ...],
        width: float,
        make_block: Callable[[int, int, int, Tensor, int, bool], nn.Module],
        adjacency: str = "spatial",
        input_norm: str = "MVC",
        last_channels: int | None = None,
        init: str = "torch",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_scheme(init)
        layout = resolve_layout(layout)
        in_channels = layout.channels if in_channels is None else in_channels
        if num_persons < 1:
            raise ConfigError(f"num_persons must be >= 1, got {num_persons}")
        if last_channels is not None and not (
            isinstance(last_channels, int) and last_channels >= 1
        ):
            raise ConfigError(
                f"last_channels must be a positive channel count (e.g. 256) or None, "
                f"got {last_channels!r}"
            )
        self.layout = layout
        self.num_persons = num_persons
        self.adjacency = adjacency
        self.input_norm = InputNorm(in_channels, layout.num_joints, num_persons, input_norm)
        self.blocks = nn.ModuleList()
        try:
            A_KVV = torch.from_numpy(layout.adjacency(adjacency))
        except LayoutError as e:
            raise ConfigError(f"backbone adjacency: {e}") from None
        channels = [scale_width(c, width) for c, _ in plan]
        if last_channels is not None:
            channels[-1] = last_channels
        self.block_channels = tuple(channels)
        self.block_strides = tuple(s for _, s in plan)
        c_in = in_channels
        for b, (c_out, stride) in enumerate(zip(self.block_channels, self.block_strides)):
            self.blocks.append(make_block(b, c_in, c_out, A_KVV, stride, b > 0))
            c_in = c_out
        if init != "torch" or generator is not None:
            init_weights(self, init, generator)

    @property
    def time_factors(self) -> tuple[int, ...]:
        factors, f = [], 1
        for s in self.block_strides:
            f *= s
            factors.append(f)
        return tuple(factors)

    @property
    def out_channels(self) -> int:
        return self.block_channels[-1]

    def forward(
        self,
        x_NCTVM: Tensor,
        return_blocks: Sequence[int] | None = None,
        mask_NT: Tensor | None = None,
    ) -> Tensor | list[Tensor]:
        """Run the blocks.

        Args:
            x_NCTVM: (N, C, T, V, M) skeleton batch, any T >= 1.
            return_blocks: 1-based block numbers whose outputs to return, e.g. (1, 7, 10); None
                returns only the last block's output.
            mask_NT: (N, T) bool, True on real frames of zero-padded sequences; None = all real.

        Returns:
            Without `return_blocks`: the last block's features (N * M, C_10, ceil(T / f_10), V).
            With it: a list, in the order asked, of block b's features
            (N * M, C_b, ceil(T / f_b), V) with f_b = `time_factors[b - 1]`; padded frames are
            zero. Rows n * M + m hold person m of sample n; `pool_joints_persons` averages them to
            (N, C_b, T_b).

        Raises:
            ConfigError: no block or a block number outside 1..len(blocks), or a mask of the
                wrong shape.
        """
        wanted = (len(self.blocks),) if return_blocks is None else tuple(return_blocks)
        if not wanted:
            raise ConfigError("return_blocks is empty; name at least one block, e.g. (1, 7, 10)")
        for b in wanted:
            if not 1 <= b <= len(self.blocks):
                raise ConfigError(
                    f"return_blocks has block {b}; blocks are numbered 1..{len(self.blocks)}"
                )
        if mask_NT is not None:
            N, T = x_NCTVM.shape[0], x_NCTVM.shape[2]
            if mask_NT.shape != (N, T):
                raise ConfigError(
                    f"mask_NT must be (N={N}, T={T}) to match x, got {tuple(mask_NT.shape)}"
                )
            mask_NT = mask_NT.to(torch.bool)
        x = self.input_norm(x_NCTVM, mask_NT)
        if mask_NT is not None:
            # One mask row per folded person.
            mask_NT = mask_NT.repeat_interleave(self.num_persons, dim=0)
        x = mask_frames(x, mask_NT)
        outputs: dict[int, Tensor] = {}
        for b, block in enumerate(self.blocks, start=1):
            x = block(x, mask_NT)
            mask_NT = downsample_mask(mask_NT, self.block_strides[b - 1])
            x = mask_frames(x, mask_NT)
            if b in wanted:
                outputs[b] = x
            if b == max(wanted):
                break
        if return_blocks is None:
            return outputs[len(self.blocks)]
        return [outputs[b] for b in wanted]

    def embed(self, x_NCTVM: Tensor, mask_NT: Tensor | None = None) -> Tensor:
        """Pooled embedding: last block averaged over real frames, joints and persons.

        Args:
            x_NCTVM: (N, C, T, V, M) skeleton batch.
            mask_NT: (N, T) bool real-frame mask, or None.

        Returns:
            (N, out_channels).
        """
        feat_NCT = pool_joints_persons(self(x_NCTVM, mask_NT=mask_NT), self.num_persons)
        if mask_NT is None:
            return feat_NCT.mean(dim=2)
        mask = downsample_mask(mask_NT.to(torch.bool), self.time_factors[-1]).to(feat_NCT.dtype)
        # Padded frames are already zero; divide by the number of real frames only.
        return feat_NCT.sum(dim=2) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
