"""Training-mode batch norm on CPU with the batch statistics from one read of the input.

``batch_norm_train`` is the training forward of ``nn.BatchNorm2d`` (and of any (N, C, *) batch
norm) on contiguous float32/float64 CPU tensors, computed as:

1. ``sscl_cpu::batch_norm_stats`` (``csrc/batch_norm_cpu.cpp``): the per-channel mean and biased
   variance in one read of x;
2. ATen's inference batch norm with those statistics (the normalisation and affine, one pass);
3. backward: ATen's own ``native_batch_norm_backward`` in training mode, given the saved mean and
   inverse std, exactly as ``nn.BatchNorm2d`` runs it;
4. the running averages updated as ``nn.BatchNorm2d`` updates them (unbiased variance).

ATen's training forward on NCHW spends most of its time in the statistics (bench/README
"Batch norm"); the result is the same function to float rounding (``batch_norm_train_ref`` is
``torch.nn.functional.batch_norm``, the oracle of the tests). `sscl.models.layers.BatchNorm2d`
takes this path where `fast_path_applies` says so and ``nn.BatchNorm2d``'s everywhere else (GPU,
autocast, eval mode, half precision, non-contiguous input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sscl.kernels import build


def fast_path_applies(x: Tensor) -> bool:
    """Whether `batch_norm_train` runs the fused statistics for ``x`` (else use ATen's)."""
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and x.dim() >= 2
        and x.is_contiguous()
        and x.numel() > x.shape[1]  # more than one value per channel
        and not torch.is_autocast_enabled("cpu")
        and build.ensure_loaded("cpu")
    )


class _BatchNormTrain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float):
        mean, var = torch.ops.sscl_cpu.batch_norm_stats(x)
        y = torch.batch_norm(x, weight, bias, mean, var, False, 0.0, eps, False)
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad_y: Tensor, _grad_mean, _grad_var):
        x, weight, mean, invstd = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
            grad_y.contiguous(), x, weight, None, None, mean, invstd, True, ctx.eps,
            [need_x, need_w and weight is not None, need_b and weight is not None])
        return gx, gw, gb, None


def batch_norm_train(
    x: Tensor,
    weight: Tensor | None,
    bias: Tensor | None,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    momentum: float,
    eps: float,
) -> Tensor:
    """Training-mode batch norm of (N, C, *) ``x`` over all dims but 1; updates the running stats.

    Same contract as ``F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum,
    eps)`` for a numeric momentum. Call only where `fast_path_applies(x)`.
    """
    y, mean, var = _BatchNormTrain.apply(x, weight, bias, eps)
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
) -> Tensor:
    """The oracle of `batch_norm_train`: ATen's training batch norm."""
    return F.batch_norm(x, running_mean, running_var, weight, bias, True, momentum, eps)


def stats_calls() -> int:
    """Calls of the fused statistics kernel so far (tests check the path taken)."""
    return int(torch.ops.sscl_cpu.batch_norm_stats_calls()) if build.ensure_loaded("cpu") else 0
