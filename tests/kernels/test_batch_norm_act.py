"""Tests of the fused closing ops of a unit, ``relu(bn(x) + residual)`` (`batch_norm_act`).

The oracle is the separate ATen ops (``batch_norm_train_ref``: ``F.batch_norm``, ``+``,
``torch.relu``). Tolerances as in test_batch_norm.py: float64 to a few ulps of the values
involved (the same sums in another order, and ``x * alpha + beta`` for ``(x - mean) * invstd *
w + b``), float32 norm-wise to 1e-5.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from sscl.kernels import batch_norm as kbn
from sscl.kernels import build
from sscl.models.layers import BatchNorm2d, batch_norm_act

pytestmark = [pytest.mark.isa]

CASES = list(itertools.product([False, True], [False, True]))  # (residual, relu)


@pytest.fixture(scope="module", autouse=True)
def _fused_backend():
    if not build.ensure_loaded("cpu"):
        pytest.skip("the fused CPU extension did not build here (see the logged reason)")


DEFAULT_MIN_ELEMENTS = kbn.MIN_ELEMENTS


@pytest.fixture(autouse=True)
def _every_size(monkeypatch):
    """The fused path at every size (by default inputs under `MIN_ELEMENTS` keep ATen's ops)."""
    monkeypatch.setattr(kbn, "MIN_ELEMENTS", 0)



def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-300)).item()


def inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(shape, generator=g, dtype=dtype) * 2 + 0.5
    r = torch.randn(shape, generator=g, dtype=dtype)
    w = torch.rand(c, generator=g, dtype=dtype) + 0.5
    b = torch.randn(c, generator=g, dtype=dtype)
    gy = torch.randn(shape, generator=g, dtype=dtype)
    return x, r, w, b, gy


def both(fn, x, r, w, b, gy, residual, relu):
    """Output, running stats and gradients (x, w, b[, residual]) of ``fn``."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b, r)]
    xl, wl, bl, rl = leaves
    rm, rv = torch.zeros(x.shape[1], dtype=x.dtype), torch.ones(x.shape[1], dtype=x.dtype)
    y = fn(xl, wl, bl, rm, rv, 0.1, 1e-5, rl if residual else None, relu)
    grads = torch.autograd.grad(y, leaves[:3] + ([rl] if residual else []), gy)
    return [y, rm, rv, *grads]


@pytest.mark.parametrize("residual,relu", CASES)
@pytest.mark.parametrize("shape", [(8, 5, 7, 3), (64, 16, 100, 20), (2, 3, 5), (3, 2, 1, 1)])
def test_matches_separate_ops_in_float64(shape, residual, relu):
    args = inputs(shape, torch.float64)
    ours = both(kbn.batch_norm_train, *args, residual, relu)
    ref = both(kbn.batch_norm_train_ref, *args, residual, relu)
    for name, a, b in zip(["y", "running_mean", "running_var", "gx", "gw", "gb", "gr"], ours, ref):
        assert rel(a, b) < 1e-12, name


@pytest.mark.parametrize("residual,relu", CASES)
def test_matches_separate_ops_in_float32(residual, relu):
    args = inputs((16, 32, 50, 25), torch.float32, seed=3)
    ours = both(kbn.batch_norm_train, *args, residual, relu)
    ref = both(kbn.batch_norm_train_ref, *args, residual, relu)
    for name, a, b in zip(["y", "running_mean", "running_var", "gx", "gw", "gb", "gr"], ours, ref):
        assert rel(a, b) < 1e-5, name


def test_relu_keeps_nan_and_masks_its_gradient_like_torch_relu():
    x, r, w, b, gy = inputs((4, 3, 6, 5), torch.float64)
    r[0, 0, 0, 0] = float("nan")  # one NaN in the residual: a NaN output there, as torch.relu
    ours = both(kbn.batch_norm_train, x, r, w, b, gy, True, True)
    ref = both(kbn.batch_norm_train_ref, x, r, w, b, gy, True, True)
    assert torch.isnan(ours[0][0, 0, 0, 0]) and torch.isnan(ref[0][0, 0, 0, 0])
    for a, b_ in zip(ours, ref):
        assert torch.allclose(a, b_, rtol=1e-12, atol=1e-12, equal_nan=True)


def modules(c: int):
    ours, ref = BatchNorm2d(c), nn.BatchNorm2d(c)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        ours.weight.copy_(torch.rand(c, generator=g) + 0.5)
        ours.bias.copy_(torch.randn(c, generator=g))
        ours.running_mean.copy_(torch.randn(c, generator=g))
        ours.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("residual,relu", CASES)
def test_inference_uses_the_running_statistics_in_one_pass(residual, relu):
    ours, ref = modules(6)
    ours.eval(), ref.eval()
    x, r, *_ = inputs((4, 6, 10, 5), torch.float32)
    res = r if residual else None
    before = kbn.apply_calls()
    with torch.no_grad():
        y = batch_norm_act(ours, x, res, relu)
    assert kbn.apply_calls() - before == 1  # the path taken
    with torch.no_grad():
        assert rel(y, batch_norm_act(ref, x, res, relu)) < 1e-6
    # with a gradient to take (frozen-statistics finetuning), ATen's differentiable ops run
    before = kbn.apply_calls()
    xg = x.clone().requires_grad_()
    y = batch_norm_act(ours, xg, res, relu)
    assert kbn.apply_calls() == before and y.requires_grad


def test_a_broadcast_residual_takes_the_separate_add():
    ours, ref = modules(6)
    x, _, *_ = inputs((4, 6, 10, 5), torch.float64)
    ours, ref = ours.double(), ref.double()
    r = torch.randn(1, 6, 1, 1, dtype=torch.float64)
    assert not kbn.residual_applies(x, r)
    assert rel(batch_norm_act(ours, x, r, True), batch_norm_act(ref, x, r, True)) < 1e-12


def test_kernel_rejects_bad_input():
    x = torch.zeros(2, 3, 4)
    m, s = torch.zeros(3), torch.ones(3)
    with pytest.raises(RuntimeError, match=r"residual must have x's shape"):
        torch.ops.sscl_cpu.batch_norm_apply(x, m, s, None, None, torch.zeros(2, 3, 5), True)
    with pytest.raises(RuntimeError, match=r"residual must be Float"):
        torch.ops.sscl_cpu.batch_norm_apply(x, m, s, None, None, x.double(), True)
    with pytest.raises(RuntimeError, match=r"weight must be \(C,\) = \(3,\)"):
        torch.ops.sscl_cpu.batch_norm_apply(x, m, s, torch.ones(4), None, None, False)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.sscl_cpu.batch_norm_apply(x.int(), m, s, None, None, None, False)


@pytest.mark.parametrize("arch", ["STGCN", "AGCN"])
def test_models_close_every_unit_in_one_pass_and_match_the_separate_ops(arch):
    """A training step runs the fused apply once per block batch norm; the same model with every
    batch norm swapped to ``nn.BatchNorm2d`` (the separate ops) gives the same loss and gradients
    in float64."""
    from sscl import models

    torch.manual_seed(0)
    ours = getattr(models, arch)("ntu25", num_persons=2, width=0.125).double().train()
    ref = getattr(models, arch)("ntu25", num_persons=2, width=0.125).double().train()
    ref.load_state_dict(ours.state_dict())
    for m in ref.modules():
        if type(m) is BatchNorm2d:
            m.__class__ = nn.BatchNorm2d
    x = torch.randn(2, 3, 16, 25, 2, dtype=torch.float64)
    n_bn = sum(type(m) is BatchNorm2d for m in ours.modules())
    before = kbn.apply_calls()
    y = ours(x)
    assert kbn.apply_calls() - before == n_bn
    y_ref = ref(x)
    assert rel(y, y_ref) < 1e-10
    g = torch.randn_like(y)
    ga = torch.autograd.grad(y, list(ours.parameters()), g)
    gb = torch.autograd.grad(y_ref, list(ref.parameters()), g)
    for (name, _), a, b in zip(ours.named_parameters(), ga, gb):
        assert rel(a, b) < 1e-9, name


def test_stgcn_with_dropout_keeps_the_dropout_before_the_residual():
    """Dropout sits between the temporal BN and the residual add: with p > 0 the block keeps the
    separate ops (the same random mask as the reference order draws)."""
    from sscl.models import STGCN

    torch.manual_seed(0)
    ours = STGCN("ntu25", num_persons=2, width=0.125, dropout=0.5).double().train()
    ref = STGCN("ntu25", num_persons=2, width=0.125, dropout=0.5).double().train()
    ref.load_state_dict(ours.state_dict())
    for m in ref.modules():
        if type(m) is BatchNorm2d:
            m.__class__ = nn.BatchNorm2d
    x = torch.randn(2, 3, 16, 25, 2, dtype=torch.float64)
    torch.manual_seed(1)
    y = ours(x)
    torch.manual_seed(1)
    assert rel(y, ref(x)) < 1e-10


def test_small_inputs_keep_atens_ops_by_default(monkeypatch):
    """Under `MIN_ELEMENTS` the fused path's fixed cost outweighs its passes: ATen's ops run."""
    monkeypatch.setattr(kbn, "MIN_ELEMENTS", DEFAULT_MIN_ELEMENTS)
    bn = BatchNorm2d(8).train()
    small = torch.randn(4, 8, 16, 20)  # 10 K elements
    large = torch.randn(64, 8, 32, 20)  # 328 K elements
    before = kbn.apply_calls()
    batch_norm_act(bn, small, None, True)
    assert kbn.apply_calls() == before
    batch_norm_act(bn, large, None, True)
    assert kbn.apply_calls() == before + 1
