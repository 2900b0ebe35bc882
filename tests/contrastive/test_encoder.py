"""Encoder heads, the snippet pooling and its length check, and the exact EMA update."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sscl.config import ContrastiveConfig
from sscl.contrastive import (
    Encoder,
    Pretrainer,
    check_snippets,
    momentum_update,
    required_window,
    snippet_pool,
)
from sscl.errors import ConfigError
from sscl.kernels import graph_conv_ref
from sscl.models import AGCN, STGCN


def _stgcn() -> STGCN:
    torch.manual_seed(0)
    return STGCN("openni15", num_persons=1, width=0.125, graph_conv_impl=graph_conv_ref)


def test_required_window_from_the_backbone_time_factor():
    st = _stgcn()
    ag = AGCN("openni15", num_persons=1, width=0.125, graph_conv_impl=graph_conv_ref)
    assert st.time_factors[-1] == 4 and ag.time_factors[-1] == 8
    assert required_window(19, st.time_factors[-1]) == 73
    assert required_window(19, ag.time_factors[-1]) == 145
    # The boundary: 73 frames give ceil(73/4) = 19 snippets' worth, 72 give 18.
    assert check_snippets(73, 19, 4) == 19
    with pytest.raises(ConfigError, match="at least 73 frames"):
        check_snippets(72, 19, 4)
    with pytest.raises(ConfigError, match="at least 145 frames"):
        check_snippets(144, 19, 8)


def test_too_few_frames_for_the_snippets_raises_before_running():
    enc = Encoder(_stgcn(), feature_dim=8, num_snippets=4, tempo_head=False)
    with pytest.raises(ConfigError, match=r"num_snippets=4 .* at least 13 frames"):
        enc(torch.randn(2, 3, 12, 15, 1))
    out = enc(torch.randn(2, 3, 13, 15, 1))
    assert out["snip_feat"].shape == (2, enc.backbone.out_channels, 4)
    assert out["dense"].shape == (2, 8, 4)
    # The pretrainer checks a window at configuration time, rvtclr's half clips included.
    p = Pretrainer(ContrastiveConfig(method="rvtclr", queue_size=8, num_snippets=4), _stgcn)
    p.check_window(26)
    with pytest.raises(ConfigError, match="rvtclr plays half"):
        p.check_window(25)


def test_heads_give_unit_embeddings():
    enc = Encoder(_stgcn(), feature_dim=8, num_snippets=3, tempo_head=True)
    out = enc(torch.randn(4, 3, 16, 15, 1))
    assert set(out) == {"pooled", "global", "tempo", "snip_feat", "dense", "dense_mean",
                        "dense_coherence"}
    assert torch.all((out["dense_coherence"] > 0) & (out["dense_coherence"] <= 1 + 1e-6))
    ones = torch.ones(4)
    assert torch.allclose(out["global"].norm(dim=1), ones)
    assert torch.allclose(out["tempo"].norm(dim=1), ones)
    assert torch.allclose(out["dense"].norm(dim=1), torch.ones(4, 3))
    assert torch.allclose(out["dense_mean"].norm(dim=1), ones)
    no_snip = Encoder(_stgcn(), feature_dim=8, num_snippets=0, tempo_head=False)
    assert no_snip.dense_head is None and set(no_snip(torch.randn(2, 3, 8, 15, 1))) == {
        "pooled", "global"}


def test_snippet_pool_averages_joints_persons_then_time_bins():
    # (N*M = 2*2, C = 1, T' = 6, V = 3): value = 10 * person + frame, constant over joints.
    t = torch.arange(6, dtype=torch.float32)
    feat = torch.stack([t + 10 * m for m in (0, 1)] * 2).view(4, 1, 6, 1).expand(4, 1, 6, 3)
    out = snippet_pool(feat, num_persons=2, num_snippets=3)
    # Person mean: t + 5; three bins of two frames: 5.5, 7.5, 9.5.
    assert out.shape == (2, 1, 3)
    assert out[0, 0].tolist() == [5.5, 7.5, 9.5]


def test_momentum_update_is_exact():
    p = Pretrainer(ContrastiveConfig(queue_size=8, num_snippets=2), _stgcn)
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for t in p.encoder_q.parameters():
            t.copy_(torch.randn(t.shape, generator=gen))
        for t in p.encoder_k.parameters():
            t.copy_(torch.randn(t.shape, generator=gen))
        for b in p.encoder_q.buffers():
            if b.is_floating_point():
                b.copy_(torch.rand(b.shape, generator=gen))
    m = 0.999
    want = [
        np.float32(m) * k.detach().numpy() + np.float32(1 - m) * q.detach().numpy()
        for k, q in zip(p.encoder_k.parameters(), p.encoder_q.parameters())
    ]
    p.momentum_update()
    for got, w in zip(p.encoder_k.parameters(), want):
        assert got.dtype == torch.float32 and not got.requires_grad
        np.testing.assert_array_equal(got.detach().numpy(), w)  # bit for bit
    for bk, bq in zip(p.encoder_k.buffers(), p.encoder_q.buffers()):
        assert torch.equal(bk, bq)
    # momentum 0 copies the query encoder; so does sync_key_encoder.
    momentum_update(p.encoder_k, p.encoder_q, 0.0)
    for k, q in zip(p.encoder_k.parameters(), p.encoder_q.parameters()):
        assert torch.equal(k, q)
    with torch.no_grad():
        for t in p.encoder_q.parameters():
            t.add_(1.0)
    p.sync_key_encoder()
    for k, q in zip(p.encoder_k.state_dict().values(), p.encoder_q.state_dict().values()):
        assert torch.equal(k, q)
