"""Training-mode batch norm on CPU, with the block's residual add and ReLU in the same pass.

``batch_norm_train`` is the training forward of ``nn.BatchNorm2d`` (and of any (N, C, *) batch
norm) on contiguous float32/float64 CPU tensors, optionally followed by ``+ residual`` and ReLU
(``relu(bn(x) + residual)``, the closing ops of an ST-GCN / AGCN unit), computed as:

1. ``sscl_cpu::batch_norm_stats`` (``csrc/batch_norm_cpu.cpp``): the per-channel mean and biased
   variance in one read of x;
2. ``sscl_cpu::batch_norm_apply``: the normalisation and affine, the residual and the ReLU in one
   read of x (and of the residual) and one write, where ATen's ops take one pass each;
3. backward: ATen's ``threshold_backward`` (ReLU's own backward) and ``native_batch_norm_backward``
   in training mode with the saved mean and inverse std, as autograd runs them for the separate
   ops; the residual's gradient is the ReLU-masked gradient, as for ``y + residual``;
4. the running averages updated as ``nn.BatchNorm2d`` updates them (unbiased variance).

ATen's training forward on NCHW spends most of its time in the statistics, and the add and ReLU
each cost a read and a write of the block's output (bench/README "Batch norm"). The result is the
same function to float rounding: ``batch_norm_train_ref`` (``torch.nn.functional.batch_norm``,
then ``+ residual`` and ``torch.relu``) is the oracle of the tests. `sscl.models.layers`
takes this path where `fast_path_applies` says so (in eval mode without gradients, step 2 alone
with the running statistics) and the separate ATen ops everywhere else (GPU, autocast, half
precision, non-contiguous or small input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sscl.kernels import build

#: Inputs with fewer elements keep ATen's ops: the fused path's fixed cost (its autograd function
#: and extra op calls, about 0.1 ms a training call) outweighs its saved passes there. Measured
#: crossover (bench/README "The closing ops in one pass"): training fwd + bwd 0.50x at 10 K
#: elements, 0.71x at 82 K, 1.02x at 256 K, 1.38x at 512 K. The tests lower it to reach the
#: kernels at small shapes.
MIN_ELEMENTS = 1 << 18


def fast_path_applies(x: Tensor) -> bool:
    """Whether `batch_norm_train` runs the fused statistics for ``x`` (else use ATen's)."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and x.dim() >= 2
        and x.is_contiguous()
        and x.numel() >= MIN_ELEMENTS
        and x.numel() > x.shape[1]  # more than one value per channel
        and not torch.is_autocast_enabled("cpu")
        and build.ensure_loaded("cpu")
    )


def residual_applies(x: Tensor, residual: Tensor | None) -> bool:
    """Whether ``residual`` can join `batch_norm_train`'s pass over ``x`` (same shape and dtype;
    a broadcast residual takes the separate add)."""
    return residual is None or (residual.shape == x.shape and residual.dtype == x.dtype
                                and residual.device == x.device)


class _BatchNormTrain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                residual: Tensor | None, eps: float, relu: bool):
        mean, var = torch.ops.sscl_cpu.batch_norm_stats(x)
        invstd = torch.rsqrt(var + eps)
        y = torch.ops.sscl_cpu.batch_norm_apply(x, mean, invstd, weight, bias, residual, relu)
        # ReLU's backward needs its output (as autograd's ReluBackward keeps it).
        ctx.save_for_backward(x, weight, mean, invstd, y if relu else None)
        ctx.eps, ctx.relu = eps, relu
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad_y: Tensor, _grad_mean, _grad_var):
        x, weight, mean, invstd, y = ctx.saved_tensors
        need_x, need_w, need_b, need_r = ctx.needs_input_grad[:4]
        g = grad_y.contiguous()
        if ctx.relu:
            g = torch.ops.aten.threshold_backward(g, y, 0)
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            g, x, weight, None, None, mean, invstd, True, ctx.eps,
            [need_x, need_w and weight is not None, need_b and weight is not None])
        return gx, gw, gb, g if need_r else None, None, None


def batch_norm_train(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    momentum: float,
    eps: float,
    residual: Tensor | None = None,
    relu: bool = False,
) -> Tensor:
    """Training-mode batch norm of (N, C, *) ``x`` over all dims but 1, plus ``residual`` (None:
    nothing), then ReLU if ``relu``; updates the running stats.

    Same contract as ``F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum,
    eps)`` followed by ``+ residual`` and ``torch.relu``, for a numeric momentum. Call only where
    `fast_path_applies(x)` and `residual_applies(x, residual)`.
    """
    y, mean, var = _BatchNormTrain.apply(x, weight, bias, residual, eps, relu)
    if running_mean is not None and running_var is not None:
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_((var * (n / (n - 1))).to(running_var.dtype), momentum)
    return y


def batch_norm_train_ref(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    momentum: float,
    eps: float,
    residual: Tensor | None = None,
    relu: bool = False,
) -> Tensor:
    """The oracle of `batch_norm_train`: ATen's training batch norm, add and ReLU, one op each."""
    y = F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)
    return add_relu(y, residual, relu)


def add_relu(y: Tensor, residual: Tensor | None, relu: bool) -> Tensor:
    """``relu(y + residual)`` as separate ATen ops (no add for None, no ReLU unless ``relu``):
    what the fused pass replaces, wherever it does not apply."""
    if residual is not None:
        y = y + residual
    return torch.relu(y) if relu else y


def stats_calls() -> int:
    """Calls of the fused statistics kernel so far (tests check the path taken)."""
    return int(torch.ops.sscl_cpu.batch_norm_stats_calls()) if build.ensure_loaded("cpu") else 0


def apply_calls() -> int:
    """Calls of the fused normalise (+ residual) (+ ReLU) kernel so far."""
    return int(torch.ops.sscl_cpu.batch_norm_apply_calls()) if build.ensure_loaded("cpu") else 0
