"""Fused custom ops of sscl. Importing this package registers `torch.ops.sscl.graph_conv`.

`graph_conv` is the fused spatial graph convolution (C++/OpenMP on CPU, CUDA on GPU, built on
first use), `graph_conv_ref` its einsum oracle, `backend(device)` says which one runs.
"""

from sscl.kernels.build import backend
from sscl.kernels.graph_conv import GraphConvInputError, graph_conv
from sscl.kernels.reference import graph_conv_ref

__all__ = ["GraphConvInputError", "backend", "graph_conv", "graph_conv_ref"]
