"""Augmentation kernels: each Numba kernel agrees with its numpy twin on random shapes and
parameters (hypothesis), the invariants each step promises, determinism of the per-sample
parameters, and no threading stall next to torch/OpenBLAS threads or after a fork.

The crop and the extreme-view tail are compiled only inside the composed op, so their tests run
``two_view`` with one step's parameters drawn and the others neutral (:func:`_one_view`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sscl.data import augment as A
from sscl.data.augment.noise_table import NORMAL_TABLE, normal3_jit, normal_jit, normals_ref
from sscl.data.augment.params import view_from_draws
from sscl.data.augment.params_ref import view_from_draws_ref
from sscl.data.layouts import Layout, get_layout
from sscl.errors import ConfigError

PROPS = settings(max_examples=25, deadline=None)
TIGHT = {"rtol": 1e-6, "atol": 1e-6}

shapes = st.tuples(
    st.integers(1, 4),  # N
    st.integers(1, 24),  # T
    st.sampled_from([1, 3, 7]),  # V
    st.sampled_from([2, 3]),  # C
    st.sampled_from([1, 2]),  # M
)


def _raw(rng: np.random.Generator, n: int, t: int, v: int, c: int, m: int, p_valid: float = 0.85):
    """Raw windows (N, T, V, C, M) with untracked joints stored as 0, as the corpus does."""
    valid = rng.random((n, t, v, m)) < p_valid
    raw = rng.standard_normal((n, t, v, c, m)).astype(np.float32)
    return raw * valid[:, :, :, None, :], valid


def _model(rng: np.random.Generator, n: int, t: int, v: int, c: int, m: int, p_valid: float = 0.85):
    """Model-layout batch (N, C, T, V, M) with invalid points at 0."""
    raw, valid = _raw(rng, n, t, v, c, m, p_valid)
    return np.ascontiguousarray(raw.transpose(0, 3, 1, 2, 4)), valid


def _neutral(n: int, **fields) -> A.ViewParams:
    """One view's parameters that keep a window as it is (whole crop at 1x, identity map, no
    flip, swap, noise or tail), with ``fields`` replaced."""
    base = dict(
        crop_frac=np.ones(n), crop_pos=np.zeros(n), tempo=np.ones(n), flip=np.zeros(n, bool),
        swap=np.zeros(n, bool), mat=np.tile(np.eye(3), (n, 1, 1)), noise_std=np.zeros(n),
        noise_seed=np.zeros(n, np.uint64), joint_mask_p=np.zeros(n),
        joint_seed=np.zeros(n, np.uint64), blur_sigma=np.zeros(n), axis=np.full(n, -1),
    )
    return A.ViewParams(**{**base, **fields})


def _one_view(raw_NTVCM, valid_NTVM, lengths_N, cfg, flip_perm=None, **fields):
    """``two_view``'s first view with the parameters ``fields`` (the others neutral)."""
    view = _neutral(raw_NTVCM.shape[0], **fields)
    out, out_valid = A.two_view(raw_NTVCM, valid_NTVM, lengths_N, A.TwoViewParams(view, view),
                                cfg, flip_perm=flip_perm)
    return out[0], out_valid[0]


def _steps(x_NCTVM, valid_NTVM, blur_kernel=15, flip_perm=None, **fields):
    """The steps after the crop on model-layout points: ``two_view`` of the same frames with
    the identity crop (all T frames resized to T, no padding: an exact copy)."""
    n, _, t = x_NCTVM.shape[:3]
    cfg = A.AugmentConfig(out_len=t, padding_ratio=0, blur_kernel=blur_kernel)
    raw = np.ascontiguousarray(x_NCTVM.transpose(0, 2, 3, 1, 4))
    return _one_view(raw, valid_NTVM, np.full(n, t), cfg, flip_perm, **fields)


# --------------------------------------------------------------------------- kernel == twin


@PROPS
@given(st.integers(0, 2**32 - 1), shapes, st.integers(1, 40), st.integers(0, 8), st.integers(1, 30))
def test_crop_matches_ref(seed, shape, out_len, padding_ratio, min_crop):
    rng = np.random.default_rng(seed)
    n, t = shape[:2]
    raw, valid = _raw(rng, *shape)
    lengths = rng.integers(0, t + 5, n)  # includes empty windows and lengths past T
    frac, pos, tempo = rng.random(n), rng.random(n), rng.uniform(0.05, 2.0, n)
    cfg = A.AugmentConfig(out_len=out_len, padding_ratio=padding_ratio, min_crop=min_crop)
    got, got_v = _one_view(raw, valid, lengths, cfg, crop_frac=frac, crop_pos=pos, tempo=tempo)
    ref, ref_v = A.crop_resize_ref(
        raw, valid, lengths, frac, pos, tempo, out_len, padding_ratio, min_crop
    )
    np.testing.assert_array_equal(got_v, ref_v)
    np.testing.assert_allclose(got, ref, **TIGHT)


@PROPS
@given(st.integers(0, 2**32 - 1), shapes)
def test_linear_transform_matches_ref(seed, shape):
    rng = np.random.default_rng(seed)
    x, valid = _model(rng, *shape)
    mats = A.rotation_matrices(rng.uniform(-3, 3, (shape[0], 3))) @ A.shear_matrices(
        rng.uniform(-0.5, 0.5, (shape[0], 6))
    )
    np.testing.assert_allclose(
        A.linear_transform(x, valid, mats), A.linear_transform_ref(x, valid, mats), **TIGHT
    )


@PROPS
@given(st.integers(0, 2**32 - 1), shapes)
def test_flip_swap_matches_ref(seed, shape):
    rng = np.random.default_rng(seed)
    x, valid = _model(rng, *shape)
    perm, flip, swap = (
        rng.permutation(shape[2]),
        rng.random(shape[0]) < 0.5,
        rng.random(shape[0]) < 0.5,
    )
    got = _steps(x, valid, flip_perm=perm, flip=flip, swap=swap)
    ref = A.flip_swap_ref(x, valid, perm, flip, swap)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


@PROPS
@given(st.integers(0, 2**32 - 1), shapes)
def test_noise_matches_ref(seed, shape):
    rng = np.random.default_rng(seed)
    x, valid = _model(rng, *shape)
    std = np.where(rng.random(shape[0]) < 0.7, rng.uniform(0, 0.1, shape[0]), 0.0)
    seeds = rng.integers(0, 2**63, shape[0]).astype(np.uint64) * np.uint64(2)
    np.testing.assert_allclose(
        A.gaussian_noise(x, valid, std, seeds), A.gaussian_noise_ref(x, valid, std, seeds), **TIGHT
    )


@pytest.mark.isa
@PROPS
@given(st.integers(0, 2**32 - 1), shapes, st.sampled_from([1, 3, 15]))
def test_tail_matches_ref(seed, shape, kernel):
    rng = np.random.default_rng(seed)
    n = shape[0]
    x, valid = _model(rng, *shape)
    x = x + np.float32(3.0) * ~valid[:, None]  # garbage under invalid points must not leak in
    jp = np.where(rng.random(n) < 0.5, rng.random(n), 0.0)
    js = rng.integers(0, 2**63, n).astype(np.uint64)
    sigma = np.where(rng.random(n) < 0.7, rng.uniform(0.1, 2.0, n), 0.0)
    axis = rng.integers(-1, shape[3], n)
    got, got_v = _steps(x, valid, kernel, joint_mask_p=jp, joint_seed=js, blur_sigma=sigma,
                        axis=axis)
    ref, ref_v = A.mask_blur_ref(x, valid, jp, js, sigma, axis, kernel)
    np.testing.assert_array_equal(got_v, ref_v)
    np.testing.assert_allclose(got, ref, **TIGHT)


@pytest.mark.isa
@PROPS
@given(st.integers(0, 2**32 - 1), shapes, st.booleans(), st.integers(1, 30))
def test_two_view_matches_chain_of_refs(seed, shape, extreme, out_len):
    rng = np.random.default_rng(seed)
    n, t, v = shape[:3]
    raw, valid = _raw(rng, *shape)
    lengths = rng.integers(0, t + 3, n)
    cfg = A.AugmentConfig(
        out_len=out_len,
        rotate_deg=(10, 10, 10),
        flip_prob=0.5,
        swap_prob=0.5,
        tempos=(1.0, 2.0),
        joint_mask_p=0.2,
    )
    params = A.draw_two_view_params(rng, n, cfg, extreme=extreme)
    perm = rng.permutation(v)
    got, got_v = A.two_view(raw, valid, lengths, params, cfg, flip_perm=perm)
    ref, ref_v = A.two_view_ref(raw, valid, lengths, params, cfg, flip_perm=perm)
    assert got.shape == (3 if extreme else 2, n, shape[3], out_len, v, shape[4])
    np.testing.assert_array_equal(got_v, ref_v)
    # The fused kernel keeps the interpolated point in float64 through the matrix; the chain
    # rounds to float32 between ops.
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert np.isfinite(got).all()
    assert (got[np.broadcast_to(~got_v[:, :, None], got.shape)] == 0).all()


def test_serial_and_parallel_kernels_agree():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one CPU: two_view never takes its parallel path here")
    rng = np.random.default_rng(13)
    raw, valid = _raw(rng, 6, 40, 25, 3, 2)
    cfg = A.AugmentConfig(out_len=16, noise_prob=1.0, blur_prob=1.0)
    params = A.params_for(3, 1, np.arange(6), cfg, extreme=True)
    perm = get_layout("ntu25").flip_permutation()
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = A.two_view(raw, valid, np.full(6, 40), params, cfg, perm)
        numba.set_num_threads(2)
        parallel = A.two_view(raw, valid, np.full(6, 40), params, cfg, perm)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(serial[0], parallel[0])
    np.testing.assert_array_equal(serial[1], parallel[1])


# --------------------------------------------------------------------------- invariants


@pytest.mark.isa
def test_crop_is_aimclr_crop_then_torch_interpolate():
    rng = np.random.default_rng(3)
    t, length, out_len = 40, 36, 23
    raw, _ = _raw(rng, 1, t, 25, 3, 2, p_valid=1.0)
    valid = np.ones((1, t, 25, 2), bool)
    frac, pos = np.array([0.7]), np.array([0.9])
    got, _ = _one_view(raw, valid, np.array([length]), A.AugmentConfig(out_len=out_len),
                       crop_frac=frac, crop_pos=pos)
    pad, start, span = (
        int(a[0]) for a in A.crop_windows(np.array([length]), frac, pos, np.array([1]))
    )
    seq = raw[0, :length].transpose(2, 0, 1, 3)  # (C, T, V, M), the feeder's layout
    padded = np.concatenate([seq[:, :pad][:, ::-1], seq, seq[:, -pad:][:, ::-1]], axis=1)
    crop = torch.from_numpy(np.ascontiguousarray(padded[:, start : start + span]))
    c, _, v, m = crop.shape
    flat = crop.permute(0, 2, 3, 1).reshape(1, c * v * m, span)
    want = F.interpolate(flat, size=out_len, mode="linear", align_corners=False)
    want = want.reshape(c, v, m, out_len).permute(0, 3, 1, 2).numpy()
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)


def test_full_crop_at_native_length_is_identity():
    rng = np.random.default_rng(4)
    t = 30
    raw, valid = _raw(rng, 2, t, 7, 3, 2)
    pad = t // 6
    pos = np.full(2, (pad + 0.5) / (2 * pad + 1))  # start == pad: the unpadded sequence
    got, got_v = _one_view(raw, valid, np.full(2, t), A.AugmentConfig(out_len=t), crop_pos=pos)
    np.testing.assert_array_equal(got, raw.transpose(0, 3, 1, 2, 4))
    np.testing.assert_array_equal(got_v, valid)


def test_crop_edge_cases_are_defined():
    rng = np.random.default_rng(5)
    raw, valid = _raw(rng, 3, 10, 3, 3, 1, p_valid=1.0)
    # empty window; window shorter than min_crop (taken whole); length past T (clipped to T)
    lengths = np.array([0, 3, 25])
    got, got_v = _one_view(raw, valid, lengths, A.AugmentConfig(out_len=8, min_crop=5),
                           crop_frac=np.full(3, 0.5))
    assert (got[0] == 0).all() and not got_v[0].any()
    assert got_v[1:].all() and np.isfinite(got).all()
    _, start, span = A.crop_windows(
        np.array([3, 10]), np.full(2, 0.5), np.zeros(2), np.ones(2), 6, 5
    )
    assert span.tolist() == [3, 5] and (start >= 0).all()


def test_rotation_preserves_bone_lengths():
    rng = np.random.default_rng(6)
    parents = np.array(get_layout("ntu25").parents)
    parents = np.where(parents >= 0, parents, np.arange(parents.size))  # the root's bone is 0
    x, valid = _model(rng, 4, 9, 25, 3, 2, p_valid=1.0)
    rot = A.rotation_matrices(rng.uniform(-np.pi, np.pi, (4, 3)))
    y = A.linear_transform(x, valid, rot)
    assert np.isfinite(x).all() and np.isfinite(y).all()
    before = np.linalg.norm(x - x[:, :, :, parents], axis=1)
    after = np.linalg.norm(y - y[:, :, :, parents], axis=1)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    assert not np.allclose(y, x)


def test_flip_twice_is_identity_and_moves_left_to_right():
    rng = np.random.default_rng(7)
    layout = get_layout("ntu25")
    perm = layout.flip_permutation()
    x, valid = _model(rng, 3, 5, 25, 3, 2)
    on = np.ones(3, bool)
    y, yv = _steps(x, valid, flip_perm=perm, flip=on, swap=on)
    z, zv = _steps(y, yv, flip_perm=perm, flip=on, swap=on)
    np.testing.assert_array_equal(z, x)
    np.testing.assert_array_equal(zv, valid)
    left, right = layout.flip_pairs[0]
    np.testing.assert_array_equal(y[:, :, :, left, 0], x[:, :, :, right, 1])


def test_axis_mask_zeros_exactly_one_axis():
    rng = np.random.default_rng(8)
    x, valid = _model(rng, 3, 6, 7, 3, 2, p_valid=1.0)
    y, yv = _steps(x, valid, axis=np.array([0, 2, -1]))
    assert (y[0, 0] == 0).all() and (y[1, 2] == 0).all()
    np.testing.assert_array_equal(y[0, 1:], x[0, 1:])
    np.testing.assert_array_equal(y[1, :2], x[1, :2])
    np.testing.assert_array_equal(y[2], x[2])
    np.testing.assert_array_equal(yv, valid)


def test_blur_keeps_a_constant_signal_and_gaps():
    n, t = 2, 40
    x = np.full((n, 3, t, 5, 1), 0.7, np.float32)
    valid = np.ones((n, t, 5, 1), bool)
    valid[:, 10:14, 2] = False
    x[:, :, 10:14, 2] = 0.0
    y, _ = _steps(x, valid, blur_sigma=np.array([2.0, 0.1]))
    np.testing.assert_allclose(y[np.broadcast_to(valid[:, None], y.shape)], 0.7, rtol=1e-6)
    assert (y[:, :, 10:14, 2] == 0).all()
    ramp = np.broadcast_to(
        np.arange(t, dtype=np.float32)[None, None, :, None, None], x.shape
    ).copy()
    smooth, _ = _steps(ramp, np.ones_like(valid), blur_sigma=np.full(n, 2.0))
    np.testing.assert_allclose(
        smooth[:, :, 7:-7], ramp[:, :, 7:-7], rtol=1e-5
    )  # linear stays linear
    assert not np.allclose(smooth[:, :, 0], ramp[:, :, 0])  # one-sided near the ends


def test_noise_draws_are_standard_normal():
    # About 1e6 draws from the Numba kernel (x = 0, std = 1 leaves the normals themselves).
    n, c, t, v, m = 16, 3, 280, 25, 3
    x = np.zeros((n, c, t, v, m), np.float32)
    seeds = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x1234567)
    z_NCP = A.gaussian_noise(x, np.ones((n, t, v, m), bool), np.ones(n), seeds).reshape(n, c, -1)
    z = z_NCP.astype(np.float64).ravel()
    assert abs(z.mean()) < 0.005 and abs(z.std() - 1.0) < 0.005
    quantiles = ((-1.96, 0.025), (-1.0, 0.158655), (0.0, 0.5), (1.0, 0.841345), (2.576, 0.995))
    for q, p_below in quantiles:
        assert abs(np.mean(z < q) - p_below) < 0.002, q
    # Clipped at the outer bin centres (+-4.32 sigma), every 16-bit index reachable.
    bound = float(NORMAL_TABLE[-1])
    assert 4.3 < bound < 4.35 and NORMAL_TABLE[0] == -bound
    assert np.abs(z).max() <= bound and np.unique(z).size > 60000
    # The three channels of a point (fields of one hash) and neighbouring points are
    # uncorrelated: a repeated or overlapping field would show here.
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert abs(np.corrcoef(z_NCP[:, a].ravel(), z_NCP[:, b].ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(z_NCP[:, 0, 1:].ravel(), z_NCP[:, 0, :-1].ravel())[0, 1]) < 0.01
    ref = normals_ref(seeds[:2], 1000)
    np.testing.assert_array_equal(z_NCP[:2, :, :1000], ref.astype(np.float32))


def test_normal3_is_three_consecutive_normals():
    # Counter-based: normal3_jit(seed, k) == (normal_jit(seed, k + i) for i < 3) for every k % 3,
    # both equal to the numpy twin's normal k.
    for seed in (np.uint64(0), np.uint64(2**64 - 1), np.uint64(987654321)):
        ref = normals_ref(np.array([seed]), 40)[0].T.ravel()
        for k in range(100):
            want = tuple(normal_jit(seed, k + i) for i in range(3))
            assert normal3_jit(seed, k) == want
            assert want[0] == ref[k]


def test_joint_mask_invalidates_whole_joints():
    rng = np.random.default_rng(9)
    x, valid = _model(rng, 2, 6, 25, 3, 2, p_valid=1.0)
    p = np.array([0.5, 0.0])
    y, yv = _steps(x, valid, joint_mask_p=p, joint_seed=np.array([7, 7], np.uint64))
    masked = ~yv[0].any(axis=(0, 2))
    assert 0 < masked.sum() < 25 and (y[0][:, :, masked] == 0).all()
    assert yv[0].all(axis=(0, 2))[~masked].all() and yv[1].all()


def test_invalid_joints_stay_zero_through_every_view():
    rng = np.random.default_rng(10)
    raw, valid = _raw(rng, 8, 40, 25, 3, 2, p_valid=0.6)
    raw[3] = 0.0
    valid[3] = False  # an all-untracked window
    cfg = A.AugmentConfig(
        out_len=20,
        rotate_deg=(20, 20, 20),
        flip_prob=0.5,
        swap_prob=0.5,
        noise_prob=1.0,
        blur_prob=1.0,
        joint_mask_p=0.1,
    )
    params = A.params_for(0, 0, np.arange(8), cfg, extreme=True)
    out, ov = A.two_view(
        raw, valid, np.full(8, 40), params, cfg, flip_perm=get_layout("ntu25").flip_permutation()
    )
    assert np.isfinite(out).all()
    assert (out[np.broadcast_to(~ov[:, :, None], out.shape)] == 0).all()
    assert not ov[:, 3].any()
    assert ov.any()


def test_normalization_joints_for_other_layouts():
    assert A.normalization_joints(get_layout("kinect20"))[:3] == (1, 0, 1)
    with pytest.raises(ConfigError, match="layout 'line' has no spine bone"):
        A.normalization_joints(Layout("line", ("a", "b"), (-1, 0), 0, ()))


# --------------------------------------------------------------------------- parameters and config


def test_params_for_is_a_function_of_seed_epoch_index():
    cfg = A.AugmentConfig(flip_prob=0.5, tempos=(1.0, 2.0))
    a = A.params_for(7, 3, np.array([5, 9, 11]), cfg, extreme=True)
    b = A.params_for(7, 3, np.array([11, 2]), cfg, extreme=True)
    for va, vb in zip(a.views, b.views, strict=True):
        for name in ("crop_frac", "crop_pos", "mat", "noise_seed", "blur_sigma", "axis", "flip"):
            np.testing.assert_array_equal(getattr(va, name)[2], getattr(vb, name)[0])
    c = A.params_for(7, 4, np.array([11]), cfg, extreme=True)
    assert c.query.crop_pos[0] != a.query.crop_pos[2]
    assert a.query.crop_pos[0] != a.key.crop_pos[0]

    rng = np.random.default_rng(12)
    raw, valid = _raw(rng, 3, 30, 25, 3, 2)
    perm = get_layout("ntu25").flip_permutation()
    whole, _ = A.two_view(raw, valid, np.full(3, 30), a, cfg, flip_perm=perm)
    alone, _ = A.two_view(
        raw[2:],
        valid[2:],
        np.full(1, 30),
        A.params_for(7, 3, np.array([11]), cfg, True),
        cfg,
        flip_perm=perm,
    )
    np.testing.assert_array_equal(whole[:, 2], alone[:, 0])


@pytest.mark.isa
@PROPS
@given(
    st.integers(-(2**70), 2**70),
    st.integers(0, 2**40),
    st.lists(st.integers(0, 2**62), min_size=0, max_size=40),
    st.sampled_from(["two", "extreme", "strong_key"]),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)
def test_params_for_matches_its_numpy_twin(seed, epoch, idx, views, p, q):
    cfg = A.AugmentConfig(
        flip_prob=p, swap_prob=q, tempos=(1.0, 0.5, 2.0), noise_prob=p, blur_prob=q,
        axis_mask_prob=p,
        rotate_deg=(10.0, 20.0, 30.0), extreme_rotate_deg=(5.0, 45.0, 90.0), joint_mask_p=q,
    )
    kw = {"extreme": views == "extreme", "strong_key": views == "strong_key"}
    idx = np.array(idx, np.int64)
    want = A.stack_params(A.params_for_ref(seed, epoch, idx, cfg, **kw))
    got = A.stacked_params_for(seed, epoch, idx, cfg, **kw)
    for name, a, b in zip(A.StackedParams._fields, got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape and a.flags.c_contiguous, name
        if name == "mat":  # libm and matmul order differ; every draw is equal bit for bit
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
    # params_for hands out rows of the stacked arrays
    np.testing.assert_array_equal(
        A.stack_params(A.params_for(seed, epoch, idx, cfg, **kw)).crop_pos, got.crop_pos
    )


def test_params_for_rejects_extreme_with_strong_key():
    with pytest.raises(ConfigError, match="extreme and strong_key exclude each other"):
        A.params_for(0, 0, np.arange(3), A.AugmentConfig(), extreme=True, strong_key=True)


def test_param_distributions_follow_the_config():
    cfg = A.AugmentConfig(crop_range=(0.6, 0.9), tempos=(1.0, 2.0))
    p = A.params_for(1, 0, np.arange(4000), cfg, extreme=True)
    assert 0.6 <= p.query.crop_frac.min() and p.query.crop_frac.max() < 0.9
    e = p.extreme
    assert abs((e.axis >= 0).mean() - 0.5) < 0.04
    assert set(np.unique(e.axis)) == {-1, 0, 1, 2}
    assert abs((e.blur_sigma > 0).mean() - 0.5) < 0.04
    assert 0.1 <= e.blur_sigma[e.blur_sigma > 0].min() and e.blur_sigma.max() <= 2.0
    assert abs((e.noise_std > 0).mean() - 0.5) < 0.04
    assert abs((p.key.tempo == 2).mean() - 0.5) < 0.04
    assert (p.query.noise_std == 0).all() and (p.query.axis == -1).all()
    np.testing.assert_allclose(np.diagonal(p.query.mat, axis1=1, axis2=2), 1.0)  # shear only


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="crop_range"):
        A.AugmentConfig(crop_range=(0.0, 1.0))
    with pytest.raises(ConfigError, match="blur_kernel"):
        A.AugmentConfig(blur_kernel=14)
    no_pairs = Layout("line", ("a", "b"), (-1, 0), 0, ())
    with pytest.raises(ConfigError, match="no left/right flip pairs"):
        A.AugmentConfig().check_layout(no_pairs)
    A.AugmentConfig(extreme_flip_prob=0.0).check_layout(no_pairs)
    cfg = A.AugmentConfig(flip_prob=1.0)
    raw, valid = _raw(np.random.default_rng(0), 1, 5, 2, 3, 1)
    with pytest.raises(ConfigError, match="flip_perm"):
        A.two_view(raw, valid, np.array([5]), A.params_for(0, 0, np.array([0]), cfg), cfg)



def test_kernel_groups_name_the_bad_field():
    """The kernels read their arguments by name from checked groups: a per-sample array of the
    wrong length or dtype is refused at the boundary, naming ``Group.field``."""
    x, valid = _model(np.random.default_rng(0), 3, 5, 4, 3, 2)
    with pytest.raises(ConfigError, match=r"NoiseDraws\.std: axis 0 \(N\) has size 4"):
        A.gaussian_noise(x, valid, np.ones(4), np.ones(3, np.uint64))
    with pytest.raises(ConfigError, match=r"NoiseDraws\.seed: expected a uint64 array"):
        A.gaussian_noise(x, valid, np.ones(3), np.ones((3, 1), np.uint64))

# --------------------------------------------------------------------------- threading


_STALL_SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp
    import numba, numpy as np, torch
    from sscl.data import augment as A

    def run():
        rng = np.random.default_rng(0)
        raw = rng.standard_normal((16, 60, 25, 3, 2)).astype(np.float32)
        valid = np.ones((16, 60, 25, 2), bool)
        cfg = A.AugmentConfig(out_len=20)
        p = A.params_for(0, 0, np.arange(16), cfg, extreme=True)
        return float(A.two_view(raw, valid, np.full(16, 60), p, cfg, np.arange(25))[0].sum())

    def child(q):
        q.put(run())

    if __name__ == "__main__":
        numba.set_num_threads(2)
        a = torch.randn(256, 256); b = np.random.rand(256, 256)
        for _ in range(3):
            (a @ a).sum(); (b @ b).sum()
            first = run()
        ctx = mp.get_context("fork")  # what a DataLoader does after the parent ran a kernel
        q = ctx.Queue()
        proc = ctx.Process(target=child, args=(q,))
        proc.start()
        got = q.get(timeout=60)
        proc.join(60)
        assert proc.exitcode == 0 and got == first, (proc.exitcode, got, first)
        print("ok", numba.threading_layer())
    """
)


@pytest.mark.slow
@pytest.mark.isa
def test_parallel_kernel_does_not_stall_beside_blas_threads_or_after_fork(tmp_path):
    script = tmp_path / "stall.py"
    script.write_text(_STALL_SCRIPT)
    # The module's own choice of threading layer is under test, so no user override; BLAS and
    # OpenMP pools keep their default (multi-threaded) sizes.
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_THREADING_LAYER", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=240, check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "workqueue"]


@pytest.mark.isa
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), extreme=st.booleans(),
       axis_p=st.sampled_from([0.0, 0.5, 1.0]))
def test_view_params_kernel_matches_numpy_twin(seed, n, extreme, axis_p):
    cfg = A.AugmentConfig(rotate_deg=(10.0, 20.0, 5.0), flip_prob=0.3, swap_prob=0.4,
                          tempos=(1.0, 2.0), joint_mask_p=0.1, axis_mask_prob=axis_p)
    rng = np.random.default_rng(seed)
    u = rng.random((n, 18))
    z = rng.integers(0, 2**63, (n, 2), dtype=np.uint64)
    got, want = view_from_draws(u, z, cfg, extreme), view_from_draws_ref(u, z, cfg, extreme)
    for name, a, b in zip(want._fields, got, want, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        if name == "mat":
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-14)
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


# --------------------------------------------------------------------------- relative tempo


def test_tempo_scales_the_crop_span_relative_to_the_fastest():
    """RVTCLR's relative tempo: with tempos (1, 2) a 2x view covers twice the frames of a 1x
    view in the same out_len; only tempo / max(tempos) matters, so (1,) and (2,) agree."""
    n, t = 64, 120
    raw = np.zeros((n, t, 3, 3, 1), np.float32)
    raw[:, :, :, 0, 0] = np.arange(t, dtype=np.float32)[None, :, None]  # x = frame index
    valid = np.ones((n, t, 3, 1), bool)
    cfg = A.AugmentConfig(out_len=20, padding_ratio=0, crop_range=(1.0, 1.0), shear=0.0,
                          tempos=(1.0, 2.0), extreme_flip_prob=0.0)
    p = A.params_for(4, 0, np.arange(n), cfg)
    tempo = np.stack([p.query.tempo, p.key.tempo])
    assert set(np.unique(tempo)) == {1.0, 2.0}
    out, _ = A.two_view(raw, valid, np.full(n, t), p, cfg)
    covered = out[:, :, 0, -1, 0, 0] - out[:, :, 0, 0, 0, 0]  # frames between first and last
    # A span of s frames resized to L: source frames (l + 0.5) s / L - 0.5, l = 0 .. L - 1.
    span = np.where(tempo == 2.0, t, t // 2)
    np.testing.assert_allclose(covered, span * (cfg.out_len - 1) / cfg.out_len, atol=1e-4)
    single = {}
    for tempos in ((1.0,), (2.0,)):
        c = A.AugmentConfig(out_len=20, tempos=tempos, extreme_flip_prob=0.0)
        q = A.params_for(4, 0, np.arange(n), c)
        assert (q.query.tempo == tempos[0]).all()
        single[tempos] = A.two_view(raw, valid, np.full(n, t), q, c)[0]
    np.testing.assert_array_equal(single[(1.0,)], single[(2.0,)])
    for bad in ((), (0.0, 1.0), (1.0, 1.0), (float("inf"),)):
        with pytest.raises(ConfigError, match="augment.tempos"):
            A.AugmentConfig(tempos=bad)
