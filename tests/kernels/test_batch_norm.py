"""Tests of the fused-statistics batch norm (`sscl.models.layers.BatchNorm2d`) against ATen's.

The oracle is ``nn.BatchNorm2d`` (ATen's training batch norm) on the same inputs: float64 must
agree to a few ulps of the values involved (the two compute the same sums in different orders),
float32 norm-wise to 1e-5 (the tolerance of the fused graph convolution against its oracle).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sscl.kernels import batch_norm as kbn
from sscl.kernels import build
from sscl.models.layers import BatchNorm2d

pytestmark = [pytest.mark.isa]


@pytest.fixture(scope="module", autouse=True)
def _fused_backend():
    """Build (or load from the cache) the CPU extension, which holds the statistics kernel."""
    if not build.ensure_loaded("cpu"):
        pytest.skip("the fused CPU extension did not build here (see the logged reason)")


@pytest.fixture(autouse=True)
def _every_size(monkeypatch):
    """The fused path at every size (by default inputs under `MIN_ELEMENTS` keep ATen's ops)."""
    monkeypatch.setattr(kbn, "MIN_ELEMENTS", 0)



def pair(c: int, dtype: torch.dtype, affine: bool = True, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ours, ref = BatchNorm2d(c, affine=affine).to(dtype), nn.BatchNorm2d(c, affine=affine).to(dtype)
    if affine:
        with torch.no_grad():
            ours.weight.copy_(torch.rand(c, generator=g, dtype=dtype) + 0.5)
            ours.bias.copy_(torch.randn(c, generator=g, dtype=dtype))
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def run(module: nn.Module, x: torch.Tensor, gy: torch.Tensor):
    x = x.detach().requires_grad_()
    y = module(x)
    leaves = [x] + [p for p in (module.weight, module.bias) if p is not None]
    return y, torch.autograd.grad(y, leaves, gy)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-300)).item()


SHAPES = [(8, 5, 7, 3), (1, 4, 9, 2), (3, 2, 1, 1), (64, 16, 100, 20), (2, 3, 5)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_matches_aten_in_float64(shape, affine):
    g = torch.Generator().manual_seed(1)
    ours, ref = pair(shape[1], torch.float64, affine)
    if len(shape) == 3:  # (N, C, L): the module is 2-d only; the function takes any (N, C, *)
        x = torch.randn(shape, generator=g, dtype=torch.float64)
        y = kbn.batch_norm_train(x, None, None, None, None, 0.1, 1e-5)
        assert rel(y, kbn.batch_norm_train_ref(x, None, None, None, None, 0.1, 1e-5)) < 1e-14
        return
    for step in range(3):  # the running averages over several steps
        x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + step
        gy = torch.randn(shape, generator=g, dtype=torch.float64)
        before = kbn.stats_calls()
        (y, grads), (y_ref, grads_ref) = run(ours, x, gy), run(ref, x, gy)
        assert kbn.stats_calls() == before + 1  # the fused statistics ran
        assert rel(y, y_ref) < 1e-13
        for a, b in zip(grads, grads_ref):
            assert rel(a, b) < 1e-12
    for name in ("running_mean", "running_var"):
        assert rel(getattr(ours, name), getattr(ref, name)) < 1e-14, name
    assert ours.num_batches_tracked.item() == ref.num_batches_tracked.item() == 3


def test_matches_aten_in_float32():
    g = torch.Generator().manual_seed(2)
    ours, ref = pair(16, torch.float32)
    x = torch.randn(64, 16, 100, 20, generator=g) * 2 + 1
    gy = torch.randn(x.shape, generator=g)
    (y, grads), (y_ref, grads_ref) = run(ours, x, gy), run(ref, x, gy)
    assert rel(y, y_ref) < 1e-5
    for a, b in zip(grads, grads_ref):
        assert rel(a, b) < 1e-5
    assert rel(ours.running_var, ref.running_var) < 1e-5


def test_variance_without_cancellation():
    """A large mean against a tiny spread: E[x^2] - E[x]^2 would lose every digit in float32."""
    g = torch.Generator().manual_seed(3)
    x = 1000.0 + 0.01 * torch.randn(32, 3, 50, 25, generator=g)
    mean, var = torch.ops.sscl_cpu.batch_norm_stats(x)
    var_ref, mean_ref = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    assert ((var.double() - var_ref) / var_ref).abs().max() < 1e-4
    assert ((mean.double() - mean_ref) / mean_ref).abs().max() < 1e-6


@pytest.mark.parametrize("case", ["eval", "channels_last", "bfloat16", "autocast"])
def test_other_inputs_take_atens_path(case):
    ours, ref = pair(4, torch.float32)
    x = torch.randn(6, 4, 5, 3)
    if case == "eval":
        ours.eval(), ref.eval()
    elif case == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif case == "bfloat16":
        ours, ref, x = ours.bfloat16(), ref.bfloat16(), x.bfloat16()
    before = kbn.stats_calls()
    if case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, y_ref = ours(x), ref(x)
    else:
        y, y_ref = ours(x), ref(x)
    assert kbn.stats_calls() == before
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)


def test_one_value_per_channel_is_atens_error():
    ours, _ = pair(3, torch.float32)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        ours(torch.randn(1, 3, 1, 1))


def test_state_dict_is_nn_batchnorm2d():
    ours, ref = pair(5, torch.float32)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert isinstance(ours, nn.BatchNorm2d)


def test_kernel_rejects_bad_input():
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.sscl_cpu.batch_norm_stats(torch.zeros(2, 3, 4, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="more than one value per channel"):
        torch.ops.sscl_cpu.batch_norm_stats(torch.zeros(1, 3))


def test_a_training_step_of_the_models_takes_the_fused_path():
    """Every block batch norm of a training forward runs the fused statistics (the default)."""
    from sscl.models import AGCN, STGCN

    for model in (STGCN("ntu25", num_persons=2, width=0.125),
                  AGCN("ntu25", num_persons=2, width=0.125)):
        n_bn = sum(type(m) is BatchNorm2d for m in model.modules())
        assert n_bn >= 20
        before = kbn.stats_calls()
        model.train()(torch.randn(2, 3, 16, 25, 2)).sum().backward()
        assert kbn.stats_calls() - before == n_bn
        before = kbn.stats_calls()
        with torch.no_grad():
            model.eval()(torch.randn(2, 3, 16, 25, 2))
        assert kbn.stats_calls() == before  # eval mode: running statistics, ATen's path
