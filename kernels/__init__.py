"""Fused custom ops of sscl. Importing this package registers `torch.ops.sscl.graph_conv`.

`graph_conv` is the fused spatial graph convolution (C++/OpenMP on CPU, CUDA on GPU, built on
first use), `graph_conv_ref` its einsum oracle, `backend(device)` says which one runs.
`graph_conv_auto` (the models' default) picks the fastest measured implementation per device:
the fused op on the CPU, the unfused `graph_conv_mix_first` on CUDA (see its docstring).
"""

from sscl.kernels.build import backend
from sscl.kernels.graph_conv import GraphConvInputError, graph_conv, graph_conv_auto
from sscl.kernels.reference import graph_conv_mix_first, graph_conv_ref

__all__ = [
    "GraphConvInputError",
    "backend",
    "graph_conv",
    "graph_conv_auto",
    "graph_conv_mix_first",
    "graph_conv_ref",
]
