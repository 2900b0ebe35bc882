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
