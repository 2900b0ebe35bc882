"""Backbones and the localizer: ST-GCN and AGCN on `sscl.kernels.graph_conv`, U-shaped fusion.

See METHOD.md sections 3-4. Input batches are (N, C, T, V, M); backbones fold the M persons into
the batch and return block features (N * M, C_b, T_b, V); `build_backbone` builds one from the
run's model config. `Localizer` maps a batch to per-frame logits (N, K + 1, T) and is saved and
loaded with its metadata (`save_localizer`, `load_localizer`). `init_weights` re-draws a model's
weights by a named scheme ("torch", "agcn", "skeletonclr"; METHOD.md section 7).
"""

from sscl.models.agcn import AGCN
from sscl.models.build import build_backbone
from sscl.models.fusion import UShapeFusion
from sscl.models.initialization import INIT_SCHEMES, init_weights
from sscl.models.layers import GCNBackbone, pool_joints_persons
from sscl.models.localizer import Localizer, TrainedLocalizer, load_localizer, save_localizer
from sscl.models.stgcn import STGCN

__all__ = [
    "AGCN",
    "INIT_SCHEMES",
    "STGCN",
    "GCNBackbone",
    "Localizer",
    "TrainedLocalizer",
    "UShapeFusion",
    "build_backbone",
    "init_weights",
    "load_localizer",
    "pool_joints_persons",
    "save_localizer",
]
