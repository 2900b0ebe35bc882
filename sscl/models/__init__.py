"""Backbones and the localizer: ST-GCN and AGCN on `sscl.kernels.graph_conv`, U-shaped fusion.

See METHOD.md sections 3-4. Input batches are (N, C, T, V, M); backbones fold the M persons into
the batch and return block features (N * M, C_b, T_b, V); `Localizer` maps a batch to per-frame
logits (N, K + 1, T). `init_weights` re-draws a model's weights by a named scheme ("torch",
"agcn", "skeletonclr"; METHOD.md section 7).
"""

from sscl.models.agcn import AGCN
from sscl.models.fusion import Localizer, UShapeFusion
from sscl.models.initialization import INIT_SCHEMES, init_weights
from sscl.models.layers import GCNBackbone, pool_joints_persons
from sscl.models.stgcn import STGCN

__all__ = [
    "AGCN",
    "INIT_SCHEMES",
    "STGCN",
    "GCNBackbone",
    "Localizer",
    "UShapeFusion",
    "init_weights",
    "pool_joints_persons",
]
