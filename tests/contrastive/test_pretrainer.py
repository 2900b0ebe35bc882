"""One pretraining step end to end on a tiny ST-GCN: every method, weights, queues, config."""

from __future__ import annotations

import pytest
import torch

from sscl.config import ContrastiveConfig
from sscl.contrastive import Pretrainer
from sscl.contrastive.losses import match_snippets
from sscl.contrastive.tempo import tempo_clips, tempo_is_2x
from sscl.errors import ConfigError
from sscl.kernels import graph_conv_ref
from sscl.models import STGCN

V, M = 15, 1


def _backbone() -> STGCN:
    torch.manual_seed(0)
    return STGCN("openni15", num_persons=M, width=0.125, graph_conv_impl=graph_conv_ref)


def _batch(B: int, L: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batch = {v: torch.randn(B, 3, L, V, M, generator=gen) for v in ("query", "key", "extreme")}
    batch["weight"] = torch.ones(B)
    batch["position"] = torch.arange(B, dtype=torch.int64) + 100 * seed
    return batch


@pytest.mark.parametrize(
    "method, extra",
    [("skeletonclr", {}), ("aimclr", {"eadm": True}), ("rvtclr", {"extreme_view": True})],
)
def test_step_of_every_method(method, extra):
    cfg = ContrastiveConfig(method=method, queue_size=24, num_snippets=3, mine_from_epoch=1,
                            **extra)
    p = Pretrainer(cfg, _backbone)
    L = 24 if method == "rvtclr" else 12
    batch = _batch(4, L)
    batch["weight"][3] = 0.0
    loss, metrics = p(batch, epoch=1)  # mining on
    assert loss.dim() == 0 and torch.isfinite(loss)
    want = {"loss", "loss_global", "top1_global", "queue_fill", "loss_snippet", "top1_snippet",
            "snippet_queue_fill", "snippet_coherence"}
    if method == "rvtclr":
        want |= {"loss_global_tempo", "loss_tempo"}
    if cfg.uses_extreme:
        want |= {"loss_d3m"}
    assert set(metrics) == want
    assert all(v.dim() == 0 and not v.requires_grad for v in metrics.values())
    # One process: the loss is the weighted mean of the per-item totals.
    assert loss.item() == pytest.approx(metrics["loss"].item(), rel=1e-6)
    loss.backward()
    assert all(t.grad is not None for t in p.encoder_q.parameters())
    assert all(t.grad is None for t in p.encoder_k.parameters())
    # Three real keys entered each queue; the padding item did not.
    assert int(p.queue.ptr) == 3 and int(p.snippet_queue.ptr) == 3
    assert int(p.calls) == 1


def test_enqueued_keys_are_the_key_encoders_real_items():
    cfg = ContrastiveConfig(queue_size=10, num_snippets=2, snippet_negatives="mean")
    p = Pretrainer(cfg, _backbone)
    batch = _batch(4, 8)
    batch["weight"] = torch.tensor([1.0, 0.0, 1.0, 1.0])
    p(batch, epoch=0)
    with torch.no_grad():
        k = p.encoder_k(batch["key"])  # same batch, same BN statistics (one group, no shuffle)
    real = [0, 2, 3]
    assert torch.allclose(p.queue.keys_KD[:3], k["global"][real], atol=1e-6)
    assert torch.allclose(p.snippet_queue.keys_KD[:3], k["dense_mean"][real], atol=1e-6)


def test_padding_items_do_not_change_the_loss():
    # In eval mode batch norm uses running statistics, so only the weighting links items.
    cfg = ContrastiveConfig(method="aimclr", queue_size=16, num_snippets=2)
    p = Pretrainer(cfg, _backbone).eval()
    batch = _batch(3, 8)
    batch["weight"] = torch.tensor([1.0, 1.0, 0.0])
    loss_a, _ = p(batch, epoch=0)
    for view in ("query", "key", "extreme"):
        batch[view][2] = 100.0 * torch.randn_like(batch[view][2])
    loss_b, _ = p(batch, epoch=0)
    assert loss_a.item() == pytest.approx(loss_b.item(), rel=1e-6)
    assert int(p.queue.ptr) == 0 and int(p.calls) == 0  # eval: nothing enqueued


def test_snippet_flag_is_the_ablation_switch():
    base = Pretrainer(ContrastiveConfig(snippet=False, queue_size=8), _backbone)
    assert base.snippet_queue is None and base.encoder_q.dense_head is None
    # No snippet branch: no snippet length constraint either.
    _, metrics = base(_batch(2, 4), epoch=0)
    assert not any("snippet" in name for name in metrics)
    full = Pretrainer(ContrastiveConfig(snippet=True, queue_size=8, num_snippets=2), _backbone)
    n_base = sum(t.numel() for t in base.encoder_q.parameters())
    n_full = sum(t.numel() for t in full.encoder_q.parameters())
    C = full.backbone.out_channels
    assert n_full - n_base == (C * C + C) + (C * 128 + 128)


def test_snippet_weight_scales_the_snippet_term():
    batch = _batch(2, 8)
    losses = {}
    for w in (0.0, 1.5):
        p = Pretrainer(ContrastiveConfig(queue_size=8, num_snippets=2, snippet_weight=w),
                       _backbone)
        loss, metrics = p(batch, epoch=0)
        losses[w] = (loss.item(), metrics["loss_global"].item(), metrics["loss_snippet"].item())
    assert losses[0.0][0] == pytest.approx(losses[0.0][1], rel=1e-6)
    assert losses[1.5][0] == pytest.approx(losses[1.5][1] + 1.5 * losses[1.5][2], rel=1e-6)


def test_tempo_clips_and_choice():
    x = torch.arange(10, dtype=torch.float32).view(1, 1, 10, 1, 1).repeat(2, 1, 1, 1, 1)
    own, other = tempo_clips(x, torch.tensor([False, True]))
    assert own[0].flatten().tolist() == [0, 1, 2, 3, 4]  # 1x: the first half
    assert own[1].flatten().tolist() == [0, 2, 4, 6, 8]  # 2x: every second frame
    assert other[0].flatten().tolist() == [0, 2, 4, 6, 8]
    assert other[1].flatten().tolist() == [0, 1, 2, 3, 4]
    pos = torch.arange(4000)
    two_x = tempo_is_2x(pos, epoch=3, seed=0)
    assert 0.45 < two_x.float().mean().item() < 0.55
    # A sample's tempo depends on its position, not on the batch it is in.
    assert torch.equal(tempo_is_2x(pos[1000:1100], 3, 0), two_x[1000:1100])
    assert not torch.equal(tempo_is_2x(pos, 4, 0), two_x)


def test_batch_errors_name_what_is_wrong():
    p = Pretrainer(ContrastiveConfig(method="aimclr", queue_size=8, num_snippets=2), _backbone)
    batch = _batch(2, 8)
    del batch["extreme"]
    with pytest.raises(ConfigError, match="lacks \\['extreme'\\]"):
        p(batch, epoch=0)
    r = Pretrainer(ContrastiveConfig(method="rvtclr", queue_size=8, num_snippets=2), _backbone)
    batch = _batch(2, 16)
    batch["query_tempo"] = torch.tensor([1.0, 2.0])
    with pytest.raises(ConfigError, match="tempo_2x_prob"):
        r(batch, epoch=0)
    with pytest.raises(ConfigError, match="at least 5 frames"):
        Pretrainer(ContrastiveConfig(queue_size=8, num_snippets=2), _backbone)(_batch(2, 4), 0)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"method": "simclr"}, "method"),
        ({"bn_mode": "sync"}, "bn_mode"),
        ({"queue_size": 0}, "queue_size"),
        ({"momentum": 1.0}, "momentum"),
        ({"temperature": 0.0}, "temperature"),
        ({"mine_from_epoch": -1}, "mine_from_epoch"),
        ({"queue_size": 4, "mine_topk_snippet": 5}, "mine_topk_snippet"),
        ({"eadm": True}, "eadm"),
    ],
)
def test_config_rejects_bad_values(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ContrastiveConfig(**kwargs)


def test_state_dict_holds_everything_a_resume_needs():
    p = Pretrainer(ContrastiveConfig(queue_size=8, num_snippets=2), _backbone)
    p(_batch(2, 8), epoch=0)
    state = p.state_dict()
    for name in ("queue.keys_KD", "queue.ptr", "queue.filled", "snippet_queue.keys_KD",
                 "snippet_queue.ptr", "snippet_queue.filled", "calls"):
        assert name in state
    assert any(k.startswith("encoder_k.") for k in state)
    q = Pretrainer(ContrastiveConfig(queue_size=8, num_snippets=2), _backbone)
    q.load_state_dict(state)
    batch = _batch(2, 8, seed=1)
    la, _ = p(batch, epoch=0)
    lb, _ = q(batch, epoch=0)
    assert la.item() == lb.item()
    assert torch.equal(p.queue.keys_KD, q.queue.keys_KD)


def _key_outputs(p: Pretrainer, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What the key encoder makes of the batch's keys (before the step's update)."""
    return p.encoder_k(batch["key"], snippets=True)


def test_snippet_negatives_sampled_enqueue_one_snippet_of_each_key_video():
    cfg = ContrastiveConfig(queue_size=10, num_snippets=3, snippet_negatives="sampled")
    p = Pretrainer(cfg, _backbone)
    batch = _batch(4, 12)
    batch["weight"][2] = 0.0
    with torch.no_grad():
        k = _key_outputs(p, batch)
    p(batch, epoch=0)
    dense_NDS = k["dense"]
    for slot, item in enumerate([0, 1, 3]):  # the padding item left nothing
        dists = (dense_NDS[item] - p.snippet_queue.keys_KD[slot][:, None]).norm(dim=0)
        assert float(dists.min()) < 1e-5, (slot, dists)  # one of the video's snippets
    picked = [int((dense_NDS[i] - p.snippet_queue.keys_KD[s][:, None]).norm(dim=0).argmin())
              for s, i in enumerate([0, 1, 3])]
    # The same step on a fresh copy draws the same snippets (a hash of step and item).
    q = Pretrainer(cfg, _backbone)
    q(batch, epoch=0)
    assert torch.equal(q.snippet_queue.keys_KD[:3], p.snippet_queue.keys_KD[:3])
    assert len(set(picked)) >= 1 and int(p.snippet_queue.ptr) == 3


def test_snippet_negatives_reference_keep_the_pointer_at_zero():
    cfg = ContrastiveConfig(queue_size=10, num_snippets=3, snippet_negatives="reference")
    p = Pretrainer(cfg, _backbone)
    initial = p.snippet_queue.keys_KD.clone()
    p(_batch(4, 12, seed=0), epoch=0)
    with torch.no_grad():
        k = _key_outputs(p, _batch(4, 12, seed=1))
    p(_batch(4, 12, seed=1), epoch=0)
    assert int(p.snippet_queue.ptr) == 0 and int(p.queue.ptr) == 8  # the global one advances
    torch.testing.assert_close(p.snippet_queue.keys_KD[:4], k["dense_mean"], atol=1e-6, rtol=0)
    assert torch.equal(p.snippet_queue.keys_KD[4:], initial[4:])


def test_snippet_match_dot_follows_the_feature_norms():
    # Key snippet 1 points exactly where the query's does; key snippet 0 is longer but off by
    # a few degrees: cosine matching picks 1, the reference's raw dot product picks 0.
    q = torch.tensor([[[1.0], [0.0]]])  # (N=1, C=2, S=1): (1, 0)
    k = torch.tensor([[[10.0, 1.0], [1.0, 0.0]]])  # (1, 2, 2): snippets (10, 1) and (1, 0)
    assert match_snippets(q, k, cosine=True).tolist() == [[1]]
    assert match_snippets(q, k, cosine=False).tolist() == [[0]]


def test_momentum_ramps_on_a_half_cosine_then_holds():
    cfg = ContrastiveConfig(queue_size=8, momentum=0.999, momentum_start=0.99,
                            momentum_ramp_steps=100)
    assert cfg.momentum_at(0) == 0.99
    assert cfg.momentum_at(50) == pytest.approx(0.9945)
    assert cfg.momentum_at(100) == cfg.momentum_at(10**6) == 0.999
    assert all(cfg.momentum_at(s) <= cfg.momentum_at(s + 1) for s in range(120))
    assert ContrastiveConfig(queue_size=8).momentum_at(0) == 0.999  # no ramp: constant
    with pytest.raises(ConfigError, match="momentum_start"):
        ContrastiveConfig(momentum=0.99, momentum_start=0.995)


def test_after_optimizer_step_uses_the_step_s_momentum():
    cfg = ContrastiveConfig(queue_size=8, num_snippets=2, momentum=0.999, momentum_start=0.5,
                            momentum_ramp_steps=10)
    p = Pretrainer(cfg, _backbone)
    with torch.no_grad():
        for t in p.encoder_q.parameters():
            t.add_(1.0)
    k0 = next(p.encoder_k.parameters()).clone()
    q0 = next(p.encoder_q.parameters()).clone()
    p.after_optimizer_step(0)  # momentum 0.5
    torch.testing.assert_close(next(p.encoder_k.parameters()), 0.5 * k0 + 0.5 * q0)


def test_auto_queue_sizes_must_be_resolved_before_the_model_is_built():
    with pytest.raises(ConfigError, match="queue_size='auto' must be resolved"):
        Pretrainer(ContrastiveConfig(queue_size="auto", num_snippets=2), _backbone)
    with pytest.raises(ConfigError, match="queue_size"):
        ContrastiveConfig(queue_size="big")
    with pytest.raises(ConfigError, match="snippet_negatives"):
        ContrastiveConfig(snippet_negatives="random")
