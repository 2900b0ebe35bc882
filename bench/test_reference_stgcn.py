"""The reference stack's model (`reference_stgcn`) is the same model as ``sscl.models.STGCN``.

Same channel plan, parameter count and output shapes; with ours' weights copied in, the same
function (the einsum formulation against our graph convolution's oracle).
"""

from __future__ import annotations

import pytest
import torch
from reference_stgcn import ReferenceSTGCN, channel_plan

from sscl.errors import LayoutError
from sscl.kernels import graph_conv_ref
from sscl.models import STGCN


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny models: a second thread only adds contention on a loaded machine (10x slower here).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _ours(num_persons: int, width: float) -> STGCN:
    torch.manual_seed(0)
    return STGCN("ntu25", num_persons=num_persons, width=width, graph_conv_impl=graph_conv_ref)


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _copy_ours_into(ref: ReferenceSTGCN, ours: STGCN) -> None:
    """Load ours' weights into the reference (conv weight (K, C', C) -> (K * C', C, 1, 1))."""
    with torch.no_grad():
        if ref.data_bn is not None:
            ref.data_bn.load_state_dict(ours.input_norm.bn.state_dict())
        for r, o in zip(ref.blocks, ours.blocks):
            r.edge_importance.copy_(o.edge_importance)
            r.A_KVV.copy_(o.A_KVV)
            r.gcn.conv.weight.copy_(o.gcn.weight.reshape(r.gcn.conv.weight.shape))
            r.tcn[0].load_state_dict(o.gcn_bn.state_dict())
            r.tcn[2].weight.copy_(o.tcn.conv.weight)
            r.tcn[3].load_state_dict(o.tcn.bn.state_dict())
            if isinstance(r.residual, torch.nn.Sequential):
                r.residual[0].weight.copy_(o.residual.conv.weight)
                r.residual[1].load_state_dict(o.residual.bn.state_dict())


@pytest.mark.parametrize("num_persons,width", [(2, 0.25), (1, 0.5)])
def test_same_plan_parameters_and_shapes(num_persons, width):
    ours = _ours(num_persons, width)
    ref = ReferenceSTGCN.like(ours)
    assert tuple(b.tcn[2].out_channels for b in ref.blocks) == ours.block_channels
    assert _count(ref) == _count(ours)
    x = torch.randn(2, 3, 24, 25, num_persons)
    assert ref(x).shape == ours(x).shape == (2 * num_persons, ours.out_channels, 6, 25)
    assert ref.embed(x).shape == ours.embed(x).shape == (2, ours.out_channels)


def test_same_function_with_the_same_weights():
    ours = _ours(2, 0.25)
    ref = ReferenceSTGCN.like(ours)
    _copy_ours_into(ref, ours)
    x = torch.randn(3, 3, 24, 25, 2)
    # Train mode: batch statistics, the computation a training step runs.
    torch.testing.assert_close(ref(x), ours(x), rtol=1e-4, atol=1e-4)
    # Eval mode after the running statistics moved.
    ours.eval(), ref.eval()
    torch.testing.assert_close(ref(x), ours(x), rtol=1e-4, atol=1e-4)


def test_ssl_plan_keeps_a_256_channel_last_block():
    assert channel_plan(0.25, 256) == (16, 16, 16, 16, 32, 32, 32, 64, 64, 256)
    ref = ReferenceSTGCN("ntu25", num_persons=2)
    assert ref.embed(torch.randn(2, 3, 20, 25, 2)).shape == (2, 256)
    # Shared data BN: V * C statistics, not M * V * C; biases only where asked.
    assert ref.data_bn.num_features == 25 * 3
    with_bias = ReferenceSTGCN("ntu25", num_persons=2, bias=True)
    assert _count(with_bias) > _count(ref)
    with pytest.raises(LayoutError, match="M=1"):
        ref(torch.randn(1, 3, 8, 25, 1))
