"""The backbones' reference options: fixed graphs, input batch norm, last width, dropout, init.

Each option is checked against the published code's behaviour as METHOD.md section 7 records it
(2s-AGCN, ST-GCN, AimCLR); initializations are checked by the statistics of the drawn weights.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sscl.data.layouts import get_layout
from sscl.errors import ConfigError
from sscl.models.agcn import AGCN, GRAPH_BN_INIT, SEED_AGCN_LOCALIZER, SEED_AGCN_PRETRAIN
from sscl.models.initialization import init_weights
from sscl.models.layers import InputNorm, MaskedBatchNorm1d, SpatialGraphConv
from sscl.models.stgcn import AIMCLR_STGCN, SSL_LAST_CHANNELS, STGCN


def fixed_input(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- fixed graphs


def test_fixed_graph_per_backbone():
    ntu = get_layout("ntu25")
    agcn = AGCN("ntu25", width=0.125)
    for block in agcn.blocks:
        np.testing.assert_array_equal(block.graph.A_KVV.numpy(), ntu.adjacency("agcn"))
    stgcn = STGCN("ntu25", width=0.125)
    np.testing.assert_array_equal(stgcn.blocks[0].A_KVV.numpy(), ntu.adjacency("spatial"))
    code = STGCN("ntu25", width=0.125, adjacency="stgcn")
    np.testing.assert_array_equal(code.blocks[9].A_KVV.numpy(), ntu.adjacency("stgcn"))
    with pytest.raises(ConfigError, match="unknown adjacency strategy 'bogus'"):
        AGCN("ntu25", width=0.125, adjacency="bogus")


# ----------------------------------------------------------------------------- input norm


def test_input_norm_feature_grouping_per_backbone():
    # ST-GCN: V * C features shared by persons; 2s-AGCN: M * V * C; off: none.
    assert STGCN("ntu25", num_persons=2, width=0.125).input_norm.bn.num_features == 75
    assert AGCN("ntu25", num_persons=2, width=0.125).input_norm.bn.num_features == 150
    assert STGCN("ntu25", num_persons=2, width=0.125, input_norm="MVC").input_norm.features == "MVC"
    off = AGCN("ntu25", num_persons=2, **{**SEED_AGCN_LOCALIZER, "width": 0.125})
    assert off.input_norm.bn is None
    x = fixed_input((2, 3, 8, 25, 2))
    folded = x.permute(0, 4, 1, 2, 3).reshape(4, 3, 8, 25)
    torch.testing.assert_close(off.input_norm(x), folded, rtol=0, atol=0)
    with pytest.raises(ConfigError, match="input_norm 'MV'"):
        STGCN("ntu25", width=0.125, input_norm="MV")


def test_input_norm_shares_statistics_across_persons_only_for_vc():
    x = fixed_input((4, 3, 10, 25, 2))
    x[..., 1] = 3.0 * x[..., 1] + 5.0  # person slot 1 lives elsewhere
    vc = InputNorm(3, 25, 2, "VC").train()(x).view(4, 2, 3, 10, 25)
    mvc = InputNorm(3, 25, 2, "MVC").train()(x).view(4, 2, 3, 10, 25)
    # MVC: every slot's feature has mean 0 / var 1 on its own.
    torch.testing.assert_close(mvc.mean(dim=(0, 3)), torch.zeros(2, 3, 25), atol=1e-5, rtol=0)
    # VC: only the pooled persons do; slot 1 sits well above slot 0.
    torch.testing.assert_close(vc.mean(dim=(0, 1, 3)), torch.zeros(3, 25), atol=1e-5, rtol=0)
    assert (vc[:, 1].mean(dim=(0, 2)) - vc[:, 0].mean(dim=(0, 2)) > 0.5).all()


@pytest.mark.parametrize("features", ["MVC", "VC"])
def test_input_norm_statistics_exclude_padded_frames(features):
    lengths = (7, 12)
    x = fixed_input((2, 3, 12, 25, 2))
    mask = torch.arange(12)[None] < torch.tensor(lengths)[:, None]
    x_pad = x.masked_fill(~mask[:, None, :, None, None], 1000.0)  # garbage on padded frames
    norm = InputNorm(3, 25, 2, features).train()
    y = norm(x_pad, mask).view(2, 2, 3, 12, 25)
    # Oracle: nn.BatchNorm1d on the real frames only, laid end to end as one long sequence.
    bn = nn.BatchNorm1d(norm.bn.num_features).train()
    real = torch.cat([x[n, :, :L] for n, L in enumerate(lengths)], dim=1)  # (C, L, V, M)
    feats_MVCL = real.permute(3, 2, 0, 1)
    # MVC: one batch row holding every person slot's features; VC: the persons are the batch.
    feats = feats_MVCL.reshape(*((1, 150) if features == "MVC" else (2, 75)), sum(lengths))
    out = bn(feats).reshape(2, 25, 3, -1).permute(0, 2, 3, 1)  # (M, C, L, V)
    got = torch.cat([y[n, :, :, :L] for n, L in enumerate(lengths)], dim=2)  # (M, C, L, V)
    torch.testing.assert_close(got, out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(norm.bn.running_mean, bn.running_mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(norm.bn.running_var, bn.running_var, rtol=1e-4, atol=1e-5)
    assert int(norm.bn.num_batches_tracked) == 1


def test_masked_batch_norm_is_batch_norm_without_padding():
    x = fixed_input((3, 6, 9))
    masked, plain = MaskedBatchNorm1d(6).train(), nn.BatchNorm1d(6).train()
    full = torch.ones(3, 9, dtype=torch.bool)
    torch.testing.assert_close(masked(x, full), plain(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(masked.running_var, plain.running_var, rtol=1e-5, atol=1e-6)
    masked.eval(), plain.eval()
    torch.testing.assert_close(masked(x, full), plain(x))
    assert set(masked.state_dict()) == set(plain.state_dict())


# ----------------------------------------------------------------------------- width, dropout


def test_stgcn_last_channels_and_aimclr_preset():
    model = STGCN("ntu25", num_persons=2, **AIMCLR_STGCN)
    assert SSL_LAST_CHANNELS == 256
    assert model.block_channels == (16, 16, 16, 16, 32, 32, 32, 64, 64, 256)
    assert model.out_channels == 256
    assert model.blocks[9].gcn.weight.shape == (3, 256, 64)
    assert model.embed(fixed_input((2, 3, 8, 25, 2))).shape == (2, 256)
    assert [b.dropout.p for b in model.blocks] == [0.0] + [0.5] * 9
    assert model.input_norm.features == "VC" and model.adjacency == "stgcn"
    assert STGCN("ntu25", width=0.25).out_channels == 64  # not set: scaled
    with pytest.raises(ConfigError, match="last_channels"):
        STGCN("ntu25", width=0.25, last_channels=0)


def test_stgcn_dropout_skips_block_one():
    model = STGCN("ntu25", width=0.125, dropout=0.5)
    assert [b.dropout.p for b in model.blocks] == [0.0] + [0.5] * 9
    assert all(b.dropout.p == 0.0 for b in STGCN("ntu25", width=0.125).blocks)


# ----------------------------------------------------------------------------- initialization


def _assert_std(t: torch.Tensor, std: float, mean: float = 0.0, what: str = "") -> None:
    # The sample std of n normal draws has relative error about 1/sqrt(2n): allow 5 of those
    # (and 5 standard errors on the mean).
    n = t.numel()
    assert abs(t.std().item() / std - 1.0) < 5.0 / math.sqrt(2 * n), (what, t.std().item(), std)
    assert abs(t.mean().item() - mean) < 5.0 * std / math.sqrt(n), (what, t.mean().item())


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _bns(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BATCH_NORMS)]


def test_init_agcn_statistics():
    model = AGCN("ntu25", num_persons=2, init="agcn", generator=gen())
    K = 3
    for b, block in enumerate(model.blocks):
        Kw, C_out, C_in = block.gcn.weight.shape
        assert Kw == K
        # Per-subset std of 2s-AGCN's conv_branch_init: sqrt(2 / (C' C K)), not K C'.
        _assert_std(block.gcn.weight, math.sqrt(2.0 / (C_out * C_in * K)), what=f"gcn {b}")
        # theta/phi: Kaiming fan-out per subset (C_e outputs each), bias 0.
        Ce = block.graph.embed_channels
        for conv in (block.graph.theta, block.graph.phi):
            _assert_std(conv.weight, math.sqrt(2.0 / Ce), what=f"embed {b}")
        assert not block.graph.phi.bias.any()
        _assert_std(block.tcn.conv.weight, math.sqrt(2.0 / (9 * C_out)), what=f"tcn {b}")
        torch.testing.assert_close(block.graph.B_KVV, torch.full((K, 25, 25), 1e-6))
        assert torch.all(block.gcn_bn.weight == GRAPH_BN_INIT) and not block.gcn_bn.bias.any()
        if b > 0 and not isinstance(block.residual, nn.Identity):
            _assert_std(block.residual.conv.weight, math.sqrt(2.0 / C_out), what=f"res {b}")
    others = [m for n, m in _bns(model) if not n.endswith("gcn_bn")]
    assert len(others) > 10
    assert all(torch.all(m.weight == 1.0) and not m.bias.any() for m in others)
    # ST-GCN has no graph-unit skip: under "agcn" every BN weight starts at 1.
    st = STGCN("ntu25", width=0.25, init="agcn", generator=gen())
    assert all(torch.all(m.weight == 1.0) for _, m in _bns(st))
    w = st.blocks[9].gcn.weight
    _assert_std(w, math.sqrt(2.0 / (w.shape[1] * w.shape[2] * 3)), what="stgcn gcn")


@pytest.mark.parametrize("cls", [STGCN, AGCN])
def test_init_skeletonclr_statistics(cls):
    model = cls("ntu25", num_persons=2, init="skeletonclr", generator=gen())
    weights, biases = [], []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            weights.append(m.weight.flatten())
            if m.bias is not None:
                biases.append(m.bias)
        elif isinstance(m, SpatialGraphConv):
            weights.append(m.weight.flatten())
    _assert_std(torch.cat(weights), 0.02, what="conv")
    assert not any(b.any() for b in biases)  # ST-GCN's convs have none
    bn_w = torch.cat([m.weight for _, m in _bns(model)])
    _assert_std(bn_w, 0.02, mean=1.0, what="bn")
    assert not torch.cat([m.bias for _, m in _bns(model)]).any()
    if cls is STGCN:
        assert all(torch.all(b.edge_importance == 1.0) for b in model.blocks)
    else:
        assert all(torch.all(b.graph.B_KVV == 1e-6) for b in model.blocks)


def test_init_torch_statistics_and_default():
    model = AGCN("ntu25", init="torch", generator=gen())
    for block in model.blocks:
        C_in = block.gcn.weight.shape[2]
        bound = 1.0 / math.sqrt(C_in)
        assert block.gcn.weight.abs().max() <= bound
        _assert_std(block.gcn.weight, bound / math.sqrt(3.0), what="gcn uniform")
        fan_in = block.tcn.conv.weight[0].numel()
        _assert_std(block.tcn.conv.weight, 1.0 / math.sqrt(fan_in) / math.sqrt(3.0), what="tcn")
    assert all(torch.all(m.weight == 1.0) for _, m in _bns(model))
    # The default keeps the construction-time (global RNG) draws.
    torch.manual_seed(5)
    a = AGCN("ntu25", width=0.125)
    torch.manual_seed(5)
    b = AGCN("ntu25", width=0.125, init="torch")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("scheme", ["torch", "agcn", "skeletonclr"])
def test_init_is_reproducible_from_an_explicit_generator(scheme):
    torch.manual_seed(1)
    a = STGCN("ntu25", width=0.125, init=scheme, generator=gen(7))
    torch.manual_seed(2)  # a different global state must not matter
    b = STGCN("ntu25", width=0.125, init=scheme, generator=gen(7))
    c = STGCN("ntu25", width=0.125, init=scheme, generator=gen(8))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    # init_weights on a built model gives the same draws.
    init_weights(c, scheme, gen(7))
    sc = c.state_dict()
    assert all(torch.equal(sa[k], sc[k]) for k in sa)


def test_init_unknown_scheme_and_seed_pretrain_preset():
    with pytest.raises(ConfigError, match="init scheme 'xavier'"):
        AGCN("ntu25", width=0.125, init="xavier")
    model = AGCN("ntu25", **{**SEED_AGCN_PRETRAIN, "width": 0.125})
    assert model.input_norm.bn is None
    # The seed's pretraining override: no BN left at 1e-6.
    assert all(m.weight.min() > 0.5 for _, m in _bns(model))
