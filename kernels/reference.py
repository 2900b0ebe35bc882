"""Pure-PyTorch oracle of the spatial graph convolution, `graph_conv_ref`.

The operation is the spatial graph convolution of ST-GCN (Yan et al., AAAI 2018) and 2s-AGCN
(Shi et al., CVPR 2019), METHOD.md section 3:

    y[n, o, t, w] = sum_k sum_c sum_v W[k, o, c] x[n, c, t, v] A[k, v, w] + bias[o]

with A[n, k, v, w] instead of A[k, v, w] for per-sample (data-dependent) graphs. This module is
the correctness oracle of the fused op in `graph_conv.py` (flash-attention's `attention_ref`
pattern): a single einsum, no tiling, no custom kernels. It is never a speed baseline.
"""

from __future__ import annotations

import torch
from torch import Tensor


def graph_conv_ref(
    x: Tensor, weight: Tensor, bias: Tensor | None, adjacency: Tensor
) -> Tensor:
    """Spatial graph convolution as one einsum (the oracle).

    Args:
        x: (N, C, T, V) input features.
        weight: (K, C', C) channel-mixing matrix per adjacency subset.
        bias: (C',) or None.
        adjacency: (K, V, V) shared graph, or (N, K, V, V) one graph per sample.

    Returns:
        (N, C', T, V) output in the promoted dtype of the inputs.
    """
    if adjacency.dim() == 3:
        y = torch.einsum("koc,nctv,kvw->notw", weight, x, adjacency)
    else:
        y = torch.einsum("koc,nctv,nkvw->notw", weight, x, adjacency)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y


def graph_conv_mix_first(
    x: Tensor, weight: Tensor, bias: Tensor | None, adjacency: Tensor
) -> Tensor:
    """Unfused formulation of ST-GCN / 2s-AGCN code: a 1x1 convolution to K*C' channels (the
    K-times-larger intermediate), then aggregation over joints per subset.

    Same arguments and result as :func:`graph_conv_ref`. On CUDA this runs as cuDNN/cuBLAS
    calls (tensor cores, TF32 as torch's settings allow) and is what `graph_conv_auto` uses
    there (see `sscl.kernels.graph_conv.graph_conv_auto`); on the CPU it is a speed baseline.
    """
    n, _, t, v = x.shape
    k, c_out, c = weight.shape
    xw = torch.nn.functional.conv2d(x, weight.reshape(k * c_out, c, 1, 1))
    xw = xw.view(n, k, c_out, t, v)
    adj = "kvw" if adjacency.dim() == 3 else "nkvw"
    y = torch.einsum(f"nkotv,{adj}->notw", xw, adjacency)
    return y if bias is None else y + bias.view(1, -1, 1, 1)
