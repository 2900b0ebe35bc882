"""Decoders on hand-made probability arrays, and the vectorised reference decoder vs a loop twin."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscl.errors import ConfigError
from sscl.localize.postprocess import (
    ARGMAX,
    REFERENCE,
    DecoderConfig,
    decode,
    decode_argmax,
    decode_reference,
)


def probs_of(*scores: list[float]) -> np.ndarray:
    """(T, K+1) from K action score rows; background takes the rest of each frame's mass."""
    s_KT = np.array(scores, dtype=np.float64)
    return np.concatenate([s_KT, 1.0 - s_KT.sum(0, keepdims=True)]).T


def test_reference_decoder_hand_case():
    # s_0 = 0 .04 .5 .5 .5 .5 .04 0
    # h = 0.030, 0.035: run [1,7) (L 6, margins ceil(1.5) = 2 -> [0,1) clipped... frame 0, and
    #   frame 7, clipped at T = 8): inner (2*.04 + 4*.5)/6 = 0.34667, outer 0 -> 0.34667
    # h = 0.040, 0.045, 0.050 (strictly above): run [2,6) (L 4, margins 1: frames 1 and 6,
    #   both .04): 0.5 - 0.6 * 0.04 = 0.476
    # NMS: all five runs overlap [2,6) at IoU >= 4/6 > 0.2 -> one segment left.
    probs = probs_of([0, 0.04, 0.5, 0.5, 0.5, 0.5, 0.04, 0])
    segs = decode_reference(probs)
    assert [(s.label, s.start, s.end) for s in segs] == [(0, 2, 6)]
    assert segs[0].score == pytest.approx(0.5 - 0.6 * 0.04)
    no_nms = decode_reference(probs, DecoderConfig(nms_threshold=1.0))
    assert sorted((s.start, s.end, round(s.score, 6)) for s in no_nms) == sorted(
        [(1, 7, round(2.08 / 6, 6))] * 2 + [(2, 6, 0.476)] * 3
    )


def test_reference_decoder_min_len_margins_and_classes():
    #       frame: 0   1   2   3   4   5   6   7   8   9
    c0 = [0.9, 0.9, 0.9, 0, 0, 0, 0, 0.2, 0.2, 0]  # run [0,3) at the edge; [7,9) is 2 frames
    c1 = [0, 0, 0, 0, 0.1, 0.3, 0.3, 0.3, 0, 0]  # runs [4,8)
    probs = probs_of(c0, c1)
    segs = decode_reference(probs, DecoderConfig(thresholds=(0.05,)))
    # class 0 [0,3): left margin clipped away; right margin ceil(0.75) = 1 frame (frame 3 = 0)
    # class 1 [4,8): margins 1: frames 3 (0) and 8 (0) -> outer 0
    assert [(s.label, s.start, s.end) for s in segs] == [(0, 0, 3), (1, 4, 8)]
    assert segs[0].score == pytest.approx(0.9)
    assert segs[1].score == pytest.approx(1.0 / 4)
    segs = decode_reference(probs, DecoderConfig(thresholds=(0.05,), min_len=2))
    assert (0, 7, 9) in [(s.label, s.start, s.end) for s in segs]
    # a run over the whole sequence has no margin: outer mean 0
    whole = decode_reference(probs_of([0.5] * 6), DecoderConfig(thresholds=(0.1,)))
    assert [(s.start, s.end, s.score) for s in whole] == [(0, 6, pytest.approx(0.5))]


def test_reference_nms_option_changes_what_survives():
    # Class 0: a long plateau with a short peak. Threshold 0.1 gives [0,20); 0.6 gives [8,11).
    s = [0.3] * 20
    s[8:11] = [0.9, 0.9, 0.9]
    probs = probs_of(s)
    iou = decode_reference(probs, DecoderConfig(thresholds=(0.1, 0.6)))
    ref = decode_reference(probs, DecoderConfig(thresholds=(0.1, 0.6), nms="over_other"))
    # peak: inner 0.9, margins 1 frame each side at 0.3 -> 0.9 - 0.18 = 0.72 (ranked first);
    # plateau: IoU with the peak 3/20 <= 0.2 survives IoU-NMS; 3/20 over its own length too.
    assert [(x.start, x.end) for x in iou] == [(8, 11), (0, 20)]
    assert [(x.start, x.end) for x in ref] == [(8, 11), (0, 20)]
    # With the plateau ranked first (strong outer penalty on the peak), the reference overlap
    # (3 / 3 of the peak) removes the peak, IoU (3 / 20) keeps it.
    cfg = dict(thresholds=(0.1, 0.6), outer_weight=3.0)
    iou = decode_reference(probs, DecoderConfig(**cfg))
    ref = decode_reference(probs, DecoderConfig(**cfg, nms="over_other"))
    assert [(x.start, x.end) for x in iou] == [(0, 20), (8, 11)]
    assert [(x.start, x.end) for x in ref] == [(0, 20)]


def test_argmax_decoder_hand_case():
    # argmax: 0 0 bg 1 1 1 bg 0
    probs = probs_of(
        [0.6, 0.8, 0.1, 0.1, 0.0, 0.2, 0.1, 0.7], [0.1, 0.1, 0.2, 0.6, 0.9, 0.5, 0.0, 0]
    )
    segs = decode_argmax(probs)
    assert [(s.label, s.start, s.end) for s in segs] == [(0, 0, 2), (1, 3, 6), (0, 7, 8)]
    assert [s.score for s in segs] == pytest.approx([0.7, 2.0 / 3, 0.7])
    longer = decode(probs, DecoderConfig(name="argmax", min_len=2))
    assert [(s.label, s.start, s.end) for s in longer] == [(0, 0, 2), (1, 3, 6)]
    assert decode(probs, ARGMAX) == segs


def test_decoder_config_checks_and_is_frozen():
    with pytest.raises(ConfigError, match="decoder.name"):
        DecoderConfig(name="viterbi")
    with pytest.raises(ConfigError, match="decoder.nms"):
        DecoderConfig(nms="soft")
    with pytest.raises(ConfigError, match="decoder.min_len"):
        DecoderConfig(min_len=0)
    with pytest.raises(FrozenInstanceError):
        REFERENCE.min_len = 5
    assert DecoderConfig(thresholds=[0.1, 0.2]).thresholds == (0.1, 0.2)
    with pytest.raises(ConfigError, match=r"\(T, K\+1\)"):
        decode(np.ones(5), REFERENCE)


def reference_loop(probs: np.ndarray, cfg: DecoderConfig) -> list[tuple]:
    """The reference decoder written frame by frame (the vectorised one's twin)."""
    T, K = probs.shape[0], probs.shape[1] - 1
    out = []
    for c in range(K):
        s = probs[:, c]
        pool = []
        for h in cfg.thresholds:
            t = 0
            while t < T:
                if s[t] > h:
                    a = t
                    while t < T and s[t] > h:
                        t += 1
                    b = t
                    if b - a >= cfg.min_len:
                        m = math.ceil(cfg.margin * (b - a) - 1e-9)
                        outer = [s[i] for i in range(a - m, a) if i >= 0]
                        outer += [s[i] for i in range(b, b + m) if i < T]
                        inner = sum(s[a:b]) / (b - a)
                        o = sum(outer) / len(outer) if outer else 0.0
                        pool.append((a, b, inner - cfg.outer_weight * o))
                else:
                    t += 1
        order = sorted(range(len(pool)), key=lambda i: (-pool[i][2], i))
        alive = [True] * len(pool)
        for i in order:
            if not alive[i]:
                continue
            out.append((c, pool[i][0], pool[i][1], pool[i][2]))
            alive[i] = False
            for j in order:
                if alive[j]:
                    inter = max(0, min(pool[i][1], pool[j][1]) - max(pool[i][0], pool[j][0]))
                    lj = pool[j][1] - pool[j][0]
                    li = pool[i][1] - pool[i][0]
                    den = lj if cfg.nms == "over_other" else li + lj - inter
                    if inter / den > cfg.nms_threshold:
                        alive[j] = False
    return out


@given(
    T=st.integers(1, 40),
    K=st.integers(1, 3),
    seed=st.integers(0, 2**31),
    nms=st.sampled_from(["iou", "over_other"]),
    min_len=st.integers(1, 4),
)
@settings(max_examples=60, deadline=None)
def test_reference_decoder_matches_its_loop_twin(T, K, seed, nms, min_len):
    rng = np.random.default_rng(seed)
    # Cubed uniforms cross all three thresholds often. Continuous values on purpose: the
    # vectorised scores (prefix-sum differences) and the loop's sums differ in the last bits, so
    # mathematically tied scores could rank either way in the two.
    probs = rng.random((T, K + 1)) ** 3
    cfg = DecoderConfig(thresholds=(0.03, 0.1, 0.3), min_len=min_len, nms=nms, margin=0.3)
    got = [(s.label, s.start, s.end, s.score) for s in decode_reference(probs, cfg)]
    want = reference_loop(probs, cfg)
    assert [g[:3] for g in got] == [w[:3] for w in want]
    np.testing.assert_allclose([g[3] for g in got], [w[3] for w in want], atol=1e-12)


def test_long_sequence_many_classes_runs():
    """10^4 frames x 61 columns decode without error and give valid, sorted output."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(61, 0.3), size=10_000)
    segs = decode_reference(probs)
    assert segs and all(0 <= s.start < s.end <= 10_000 and 0 <= s.label < 60 for s in segs)
    labels = [s.label for s in segs]
    assert labels == sorted(labels)
