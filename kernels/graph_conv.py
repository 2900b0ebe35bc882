"""The `sscl::graph_conv` custom op: fused spatial graph convolution with autograd and autocast.

    y[n, o, t, w] = sum_k sum_c sum_v W[k, o, c] x[n, c, t, v] A[k, v, w] + bias[o]

(A[n, k, v, w] for per-sample graphs), the spatial graph convolution of ST-GCN / 2s-AGCN
(METHOD.md section 3). Structure follows pytorch/extension-cpp and flash-attention: a
`torch.library` custom op with a registered fake (shape) function and `register_autograd`, whose
forward and backward are themselves custom ops dispatching to the fused C++
(`csrc/graph_conv_cpu.cpp`) or CUDA (`csrc/graph_conv_cuda.cu`) kernels, built on first use by
`build.py`; `reference.py` holds the einsum oracle used as the fallback.

Precision: float32 and float64 compute in their own dtype. float16/bfloat16 inputs are computed
with float32 accumulation and the result is returned in the input dtype (on CPU the kernel
upcasts its tiles to float32). Under autocast (CPU or CUDA) floating inputs other than float64 are
cast to the autocast dtype first, so the output has the autocast dtype. CUDA float32 never uses
TF32 unless `torch.backends.cuda.matmul.allow_tf32` is set.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from sscl.errors import SsclError
from sscl.kernels import build
from sscl.kernels.reference import graph_conv_mix_first, graph_conv_ref

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class GraphConvInputError(SsclError, ValueError):
    """An argument of `graph_conv` has the wrong shape, dtype or device."""


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def check_inputs(x: Tensor, weight: Tensor, bias: Tensor | None, adjacency: Tensor) -> None:
    """Validate the arguments of `graph_conv`; raise `GraphConvInputError` naming the culprit."""
    if x.dim() != 4:
        raise GraphConvInputError(f"x must be (N, C, T, V), got {_shape(x)}")
    n, c, _, v = x.shape
    if weight.dim() != 3 or weight.shape[2] != c:
        raise GraphConvInputError(
            f"weight must be (K, C', C) with C={c} matching x.shape[1], got {_shape(weight)}"
        )
    k, o = weight.shape[0], weight.shape[1]
    if adjacency.dim() == 3:
        ok = tuple(adjacency.shape) == (k, v, v)
    elif adjacency.dim() == 4:
        ok = tuple(adjacency.shape) == (n, k, v, v)
    else:
        ok = False
    if not ok:
        raise GraphConvInputError(
            f"adjacency must be (K, V, V) or (N, K, V, V) with K={k} matching weight.shape[0], "
            f"V={v} matching x.shape[3] and N={n}, got {_shape(adjacency)}"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != o):
        raise GraphConvInputError(
            f"bias must be (C',) with C'={o} matching weight.shape[1], or None, got {_shape(bias)}"
        )
    named = [("x", x), ("weight", weight), ("adjacency", adjacency)]
    if bias is not None:
        named.append(("bias", bias))
    for name, t in named:
        if t.dtype not in _FLOATS:
            raise GraphConvInputError(
                f"{name} must be float16, bfloat16, float32 or float64, got {t.dtype}"
            )
        if t.dtype != x.dtype:
            raise GraphConvInputError(
                f"{name} has dtype {t.dtype} but x has {x.dtype}: all arguments must share one "
                "dtype (cast them, or run under torch.autocast)"
            )
        if t.device != x.device:
            raise GraphConvInputError(
                f"{name} is on {t.device} but x is on {x.device}: move all arguments to one device"
            )


def _fused_ops(device: torch.device):
    """The internal op namespace holding the fused kernels for `device`, or None (fallback)."""
    if device.type in ("cpu", "cuda") and build.ensure_loaded(device.type):
        return getattr(torch.ops, f"sscl_{device.type}")
    return None


def _ref_forward(x: Tensor, weight: Tensor, bias: Tensor | None, adjacency: Tensor) -> Tensor:
    # The fallback keeps the fused path's precision contract: low precision computes in float32.
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    b = None if bias is None else bias.to(ct)
    y = graph_conv_ref(x.to(ct), weight.to(ct), b, adjacency.to(ct))
    return y.to(x.dtype).contiguous()


def _ref_backward(
    grad_y: Tensor, x: Tensor, weight: Tensor, adjacency: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    gy, xx, w, a = (t.to(ct) for t in (grad_y, x, weight, adjacency))
    adj = "kvw" if a.dim() == 3 else "nkvw"
    grad_x = torch.einsum(f"koc,notw,{adj}->nctv", w, gy, a)
    grad_w = torch.einsum(f"notw,nctv,{adj}->koc", gy, xx, a)
    grad_a = torch.einsum(f"koc,nctv,notw->{adj}", w, xx, gy)
    grad_b = gy.sum(dim=(0, 2, 3))
    return tuple(g.to(x.dtype).contiguous() for g in (grad_x, grad_w, grad_b, grad_a))


@torch.library.custom_op("sscl::graph_conv", mutates_args=())
def _graph_conv_op(
    x: Tensor, weight: Tensor, bias: Tensor | None, adjacency: Tensor
) -> Tensor:
    check_inputs(x, weight, bias, adjacency)
    ops = _fused_ops(x.device)
    if ops is not None:
        return ops.graph_conv_fwd(x, weight, bias, adjacency)
    return _ref_forward(x, weight, bias, adjacency)


@_graph_conv_op.register_fake
def _graph_conv_fake(
    x: Tensor, weight: Tensor, bias: Tensor | None, adjacency: Tensor
) -> Tensor:
    check_inputs(x, weight, bias, adjacency)
    n, _, t, v = x.shape
    return x.new_empty((n, weight.shape[1], t, v))


@torch.library.custom_op("sscl::graph_conv_backward", mutates_args=())
def _graph_conv_backward_op(
    grad_y: Tensor,
    x: Tensor,
    weight: Tensor,
    adjacency: Tensor,
    need_x: bool,
    need_weight: bool,
    need_bias: bool,
    need_adjacency: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients (x, weight, bias, adjacency); an unneeded one comes back as an empty tensor."""
    grad_y = grad_y.to(x.dtype)
    ops = _fused_ops(x.device)
    if ops is not None:
        return tuple(
            ops.graph_conv_bwd(
                grad_y, x, weight, adjacency, need_x, need_weight, need_bias, need_adjacency
            )
        )
    grads = _ref_backward(grad_y, x, weight, adjacency)
    needs = (need_x, need_weight, need_bias, need_adjacency)
    return tuple(g if need else x.new_empty(0) for g, need in zip(grads, needs))


@_graph_conv_backward_op.register_fake
def _graph_conv_backward_fake(
    grad_y: Tensor,
    x: Tensor,
    weight: Tensor,
    adjacency: Tensor,
    need_x: bool,
    need_weight: bool,
    need_bias: bool,
    need_adjacency: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    shapes = (x.shape, weight.shape, (weight.shape[1],), adjacency.shape)
    needs = (need_x, need_weight, need_bias, need_adjacency)
    return tuple(x.new_empty(s if need else (0,)) for s, need in zip(shapes, needs))


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, adjacency = inputs
    ctx.save_for_backward(x, weight, adjacency)
    ctx.has_bias = bias is not None


def _backward(ctx, grad_y: Tensor):
    x, weight, adjacency = ctx.saved_tensors
    need_x, need_w, need_b, need_a = ctx.needs_input_grad
    need_b = need_b and ctx.has_bias
    gx, gw, gb, ga = torch.ops.sscl.graph_conv_backward(
        grad_y.contiguous(), x, weight, adjacency, need_x, need_w, need_b, need_a
    )
    return (
        gx if need_x else None,
        gw if need_w else None,
        gb if need_b else None,
        ga if need_a else None,
    )


_graph_conv_op.register_autograd(_backward, setup_context=_setup_context)


def _autocast_kernel(device_type: str):
    key = getattr(torch._C.DispatchKey, "Autocast" + torch._C._dispatch_key_for_device(device_type))

    def kernel(_keyset, x, weight, bias, adjacency):
        # The autocast dtype is read per call (register_autocast would pin one dtype): fp16 or
        # bf16 on CUDA, bf16 on CPU. float64 stays float64, as in torch's own autocast policy.
        dtype = torch.get_autocast_dtype(device_type)

        def cast(t: Tensor | None) -> Tensor | None:
            if t is None or not t.is_floating_point() or t.dtype == torch.float64:
                return t
            return t.to(dtype) if t.device.type == device_type else t

        with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key)):
            return torch.ops.sscl.graph_conv(cast(x), cast(weight), cast(bias), cast(adjacency))

    return kernel


_autocast_lib = torch.library.Library("sscl", "IMPL")
for _device_type in ("cpu", "cuda"):
    _autocast_lib.impl(
        "graph_conv",
        _autocast_kernel(_device_type),
        "Autocast" + torch._C._dispatch_key_for_device(_device_type),
        with_keyset=True,
    )


def graph_conv(x: Tensor, weight: Tensor, bias: Tensor | None, adjacency: Tensor) -> Tensor:
    """Fused spatial graph convolution (calls `torch.ops.sscl.graph_conv`).

    Args:
        x: (N, C, T, V) features; float16, bfloat16, float32 or float64.
        weight: (K, C', C) channel mixing per adjacency subset, same dtype/device as x.
        bias: (C',) or None.
        adjacency: (K, V, V) shared graph, or (N, K, V, V) one graph per sample.

    Returns:
        (N, C', T, V) contiguous, in x's dtype (the autocast dtype under autocast).

    Raises:
        GraphConvInputError: a shape, dtype or device does not match (the message names it).
    """
    return torch.ops.sscl.graph_conv(x, weight, bias, adjacency)


CUDA_IMPL_ENV = "SSCL_GRAPH_CONV_CUDA"
# Kernel variants measured faster than every unfused formulation (bench/README.md, both at their
# own ISA): the portable `generic` variant is not among them (no ARM machine measured), so
# `graph_conv_auto` runs the unfused formulation there.
FAST_CPU_ISAS = ("avx2", "avx512")


def graph_conv_path(device: str | torch.device = "cpu") -> str:
    """Which implementation `graph_conv_auto` runs for tensors on `device`.

    A fixed rule, never a timing taken at run time, so a resumed run computes what the killed one
    did on the same machine and build:

    - CPU: ``"fused-cpu/avx512"`` or ``"fused-cpu/avx2"`` when the fused kernel's variant for this
      CPU (`sscl.kernels.cpu_isa`) is one of `FAST_CPU_ISAS`; otherwise (the portable variant, as
      on ARM, or no C++ compiler) ``"mix_first"``, the unfused `graph_conv_mix_first`.
    - CUDA: ``"mix_first"``; ``"fused-cuda"`` with ``SSCL_GRAPH_CONV_CUDA=fused``.
    - any other device: ``"sscl-op"``, the custom op with its einsum fallback.

    Builds the CPU extension on first call.
    """
    device_type = torch.device(device).type
    if device_type == "cuda":
        fused = os.environ.get(CUDA_IMPL_ENV, "").strip().lower() == "fused"
        return "fused-cuda" if fused else "mix_first"
    if device_type == "cpu":
        isa = build.cpu_isa()
        return f"fused-cpu/{isa}" if isa in FAST_CPU_ISAS else "mix_first"
    return "sscl-op"


def graph_conv_auto(x: Tensor, weight: Tensor, bias: Tensor | None, adjacency: Tensor) -> Tensor:
    """The models' default: the implementation `graph_conv_path(x.device)` names.

    CPU: the fused op, :func:`graph_conv`, where its kernel variant is measured faster than the
    best unfused formulation (AVX2 and AVX-512; bench/bench_graph_conv.py, bench/README.md),
    else `graph_conv_mix_first`. CUDA: the unfused mix-first formulation
    (`graph_conv_mix_first`, cuDNN + cuBLAS), because the fused CUDA kernel, correct to the
    oracle, measured 0.10-0.34x of it on an H200 and a whole AGCN training step 0.58x (fp32)
    and 0.76x (bf16) (bench/gpu_run.py, bench/README.md). Set ``SSCL_GRAPH_CONV_CUDA=fused``
    to run the fused CUDA kernel anyway (it does not save the K-fold intermediate for
    backward, so it needs less activation memory).

    Same arguments, result and errors as :func:`graph_conv`.
    """
    path = graph_conv_path(x.device)
    if path != "mix_first":
        return graph_conv(x, weight, bias, adjacency)
    if x.is_cuda and torch.is_autocast_enabled("cuda"):
        # As the fused op's autocast kernel: every argument in the autocast dtype.
        dt = torch.get_autocast_dtype("cuda")
        x, weight, adjacency = x.to(dt), weight.to(dt), adjacency.to(dt)
        bias = None if bias is None else bias.to(dt)
    check_inputs(x, weight, bias, adjacency)
    return graph_conv_mix_first(x, weight, bias, adjacency)
