"""U-shaped multiscale fusion: the localizer's head over backbone blocks 1, 7 and 10.

Based on METHOD.md section 4 (the U-Net++-style 1-D fusion of the SnipCLR localizer). The outputs
of backbone blocks 1, 7 and 10, averaged over joints and persons, are the 1-D maps x00, x10, x20.
With CBR = Conv1d(k=3, pad=1) + BN + ReLU keeping its input width and up = nearest upsampling:

    x01 = CBR(cat[x00, up(x10)])          (192 channels at full width)
    x11 = CBR(cat[x10, up(x20)])          (384)
    x02 = CBR(cat[x00, x01, up(x11)])     (640)
    out = Conv1d 1x1(cat[x00, x01, x02])  (896 -> 512)

then Linear(512 -> K + 1) at every frame. Widths follow from the backbone's block widths, so a
narrower backbone gives a narrower head. The "simple" ablation head is Linear(C_10 -> K + 1) on
block 10 averaged over joints, its logits linearly interpolated back to T.

Upsampling repeats each frame of a map f times, f the ratio of the two maps' temporal strides, and
crops to the target length. When T is a multiple of the strides this is exactly nearest
interpolation to the target length; for other T (a backbone gives ceil(T / f) frames) it keeps
each frame aligned with the input frames its strided convolution was centred on, and it does not
depend on padding, so that in eval mode the logits of a sequence's real frames are the same
whether or not the batch pads it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sscl.errors import ConfigError
from sscl.models.layers import downsample_mask, mask_frames

#: Backbone blocks whose outputs the U-shaped fusion reads (METHOD.md section 4).
FUSION_BLOCKS: tuple[int, int, int] = (1, 7, 10)

HEADS = ("ushape", "simple")


def upsample_frames(x_NCT: Tensor, factor: int, length: int) -> Tensor:
    """Nearest upsampling by an integer factor, cropped to `length` frames.

    Args:
        x_NCT: (N, C, T_in) with T_in * factor >= length.
        factor: frames per input frame.
        length: target number of frames.

    Returns:
        (N, C, length) with out[..., i] = x[..., i // factor].
    """
    assert x_NCT.shape[-1] * factor >= length, (x_NCT.shape, factor, length)
    if factor > 1:
        x_NCT = x_NCT.repeat_interleave(factor, dim=-1)
    return x_NCT[..., :length]


class CBR(nn.Module):
    """Conv1d (kernel 3, padding 1, width kept) -> BN -> ReLU, with padded frames zeroed."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # No conv bias: the BN that follows cancels it.
        self.conv = nn.Conv1d(channels, channels, kernel_size=3, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x_NCT: Tensor, mask_NT: Tensor | None = None) -> Tensor:
        y = F.relu(self.bn(self.conv(mask_frames(x_NCT, mask_NT))))
        return mask_frames(y, mask_NT)


class UShapeFusion(nn.Module):
    """Nested (U-Net++-style) 1-D fusion of three feature maps of decreasing frame rate.

    Args:
        channels: widths (C_0, C_1, C_2) of x00, x10, x20 (64, 128, 256 at full width).
        factors: temporal strides (f_0, f_1, f_2) of x00, x10, x20 relative to the input, each
            dividing the next (1, 4, 8 for AGCN; 1, 2, 4 for ST-GCN).
        embed_dim: output channels of the final 1x1 conv (512).

    Attributes:
        widths: {"x01": C_0 + C_1, "x11": C_1 + C_2, "x02": C_0 + x01 + x11,
            "out_in": C_0 + x01 + x02}: 192, 384, 640, 896 at full width.
    """

    def __init__(
        self, channels: Sequence[int], factors: Sequence[int], embed_dim: int = 512
    ) -> None:
        super().__init__()
        c0, c1, c2 = channels
        f0, f1, f2 = factors
        if f1 % f0 or f2 % f1:
            raise ConfigError(
                f"fusion strides {tuple(factors)} must each divide the next (e.g. (1, 4, 8))"
            )
        self.factors = (f0, f1, f2)
        w01, w11 = c0 + c1, c1 + c2
        w02 = c0 + w01 + w11
        self.widths = {"x01": w01, "x11": w11, "x02": w02, "out_in": c0 + w01 + w02}
        self.cbr01 = CBR(w01)
        self.cbr11 = CBR(w11)
        self.cbr02 = CBR(w02)
        self.out = nn.Conv1d(self.widths["out_in"], embed_dim, kernel_size=1)
        self.embed_dim = embed_dim

    def forward(
        self, x00: Tensor, x10: Tensor, x20: Tensor, mask_NT: Tensor | None = None
    ) -> Tensor:
        """Fuse.

        Args:
            x00: (N, C_0, T_0) finest map.
            x10: (N, C_1, T_1), T_1 = ceil(T_0 * f_0 / f_1).
            x20: (N, C_2, T_2), T_2 = ceil(T_1 * f_1 / f_2).
            mask_NT: (N, T) real-frame mask at input resolution, or None.

        Returns:
            (N, embed_dim, T_0).
        """
        f0, f1, f2 = self.factors
        m0, m1 = downsample_mask(mask_NT, f0), downsample_mask(mask_NT, f1)
        T0, T1 = x00.shape[-1], x10.shape[-1]
        x01 = self.cbr01(torch.cat([x00, upsample_frames(x10, f1 // f0, T0)], dim=1), m0)
        x11 = self.cbr11(torch.cat([x10, upsample_frames(x20, f2 // f1, T1)], dim=1), m1)
        x02 = self.cbr02(torch.cat([x00, x01, upsample_frames(x11, f1 // f0, T0)], dim=1), m0)
        return self.out(torch.cat([x00, x01, x02], dim=1))
