"""Fused custom ops of sscl. Importing this package registers `torch.ops.sscl.graph_conv`.

`graph_conv` is the fused spatial graph convolution (C++/OpenMP on CPU, CUDA on GPU, built on
first use), `graph_conv_ref` its einsum oracle, `backend(device)` says which one runs and
`cpu_isa()` which instruction-set variant of the CPU kernel. `graph_conv_auto` (the models'
default) runs what `graph_conv_path(device)` names, a fixed per-device, per-ISA rule: the fused
op on AVX2 and AVX-512 CPUs, the unfused `graph_conv_mix_first` on CUDA and on other CPUs (see
its docstring).
"""

from sscl.kernels.build import backend, cpu_isa
from sscl.kernels.graph_conv import (
    GraphConvInputError,
    graph_conv,
    graph_conv_auto,
    graph_conv_path,
)
from sscl.kernels.reference import graph_conv_mix_first, graph_conv_ref

__all__ = [
    "GraphConvInputError",
    "backend",
    "cpu_isa",
    "graph_conv",
    "graph_conv_auto",
    "graph_conv_mix_first",
    "graph_conv_path",
    "graph_conv_ref",
]
