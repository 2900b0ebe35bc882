"""The benchmark's per-sample feeders do what their docstrings say.

`aimclr_feeder`: the offline resize is torch's linear interpolation of the valid frames, the
temporal crop is a slice of the mirror-padded clip (no interpolation), the views keep the clip's
shape. `per_sample_baseline`: views of ``out_len`` frames from a 300-frame window.
"""

from __future__ import annotations

import aimclr_feeder
import numpy as np
import per_sample_baseline
import torch
import torch.nn.functional as F

from sscl.data.corpus import CorpusHeader, Sequence, write_corpus
from sscl.data.layouts import get_layout


def _sample(rng: np.random.Generator, t: int, valid: int) -> np.ndarray:
    x = rng.standard_normal((3, t, 25, 2)).astype(np.float32)
    x[:, valid:] = 0.0
    return x


def test_resize_clip_is_linear_interpolation_of_the_valid_frames():
    rng = np.random.default_rng(0)
    x = _sample(rng, 300, 173)
    got = aimclr_feeder.resize_clip(x, 50)
    flat = torch.from_numpy(x[:, :173]).permute(0, 2, 3, 1).reshape(1, -1, 173)
    want = F.interpolate(flat, size=50, mode="linear", align_corners=False)
    want = want.reshape(3, 25, 2, 50).permute(0, 3, 1, 2).numpy()
    # torch computes the source positions in float32: agreement to about 1e-5 of a frame.
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4)
    # At the clip's own length the resize is the identity.
    y = _sample(rng, 80, 50)
    np.testing.assert_allclose(aimclr_feeder.resize_clip(y, 50), y[:, :50], rtol=0, atol=1e-6)


def test_temporal_crop_is_a_slice_of_the_mirror_padded_clip():
    t, pad = 50, 50 // 6
    clip = np.broadcast_to(np.arange(t, dtype=np.float32)[None, :, None, None], (3, t, 25, 2))
    padded_index = np.concatenate([np.arange(pad)[::-1], np.arange(t), np.arange(t - pad, t)[::-1]])
    starts = set()
    rng = np.random.default_rng(1)
    for _ in range(200):
        out = aimclr_feeder.temporal_crop(clip, rng)
        assert out.shape == clip.shape
        frames = out[0, :, 0, 0].astype(int)
        matches = [s for s in range(2 * pad + 1)
                   if np.array_equal(frames, padded_index[s : s + t])]
        assert matches, frames
        starts.add(matches[0])
    assert starts == set(range(2 * pad + 1))  # every start in [0, 2 pad] is drawn


def test_views_keep_shapes():
    rng = np.random.default_rng(2)
    x = _sample(rng, 300, 120)
    q, k = per_sample_baseline.two_views(x, rng, 50)
    assert q.shape == k.shape == (3, 50, 25, 2)
    clip = aimclr_feeder.resize_clip(x)
    q, k = aimclr_feeder.two_views(clip, rng)
    assert q.shape == k.shape == clip.shape
    feeder = aimclr_feeder.AimCLRFeeder(clip[None], length=3)
    assert len(feeder) == 3 and [v.shape for v in feeder[2]] == [clip.shape] * 2


def test_normal_view_is_a_sheared_slice():
    rng = np.random.default_rng(3)
    clip = aimclr_feeder.resize_clip(_sample(rng, 300, 200))
    q, _ = aimclr_feeder.two_views(clip, rng)
    t, pad = clip.shape[1], clip.shape[1] // 6
    padded = np.concatenate([clip[:, :pad][:, ::-1], clip, clip[:, t - pad :][:, ::-1]], axis=1)
    fits = []
    for s in range(2 * pad + 1):
        src = padded[:, s : s + t].reshape(3, -1).astype(np.float64)
        S = q.reshape(3, -1) @ np.linalg.pinv(src)
        fits.append((np.abs(S @ src - q.reshape(3, -1)).max(), S))
    err, S = min(fits, key=lambda f: f[0])
    assert err < 1e-4
    np.testing.assert_allclose(np.diag(S), 1.0, atol=1e-5)
    assert np.abs(S - np.diag(np.diag(S))).max() <= 0.5 + 1e-6


def test_feeder_samples_start_at_the_first_tracked_frame(tmp_path):
    rng = np.random.default_rng(4)
    header = CorpusHeader(layout=get_layout("ntu25"), class_names=("a",), fps=30.0, persons=2,
                          source_frame="test")
    seqs = []
    for name, t, lead in (("s0", 40, 5), ("s1", 12, 0), ("empty", 8, 8)):
        x = rng.normal(0, 1, (t, 25, 3, 2)).astype(np.float32)
        valid = np.ones((t, 25, 2), bool)
        valid[:lead] = False
        x[:lead] = 0.0
        seqs.append(Sequence(name, x, "a", valid=valid))
    write_corpus(tmp_path / "c.zarr", header, iter(seqs))
    got = per_sample_baseline.feeder_samples(str(tmp_path / "c.zarr"), raw=30)
    assert got.shape == (2, 3, 30, 25, 2)  # the untracked sequence is left out
    np.testing.assert_array_equal(got[0], seqs[0].joints[5:35].transpose(2, 0, 1, 3))
    np.testing.assert_array_equal(got[1, :, :12], seqs[1].joints.transpose(2, 0, 1, 3))
    assert not got[1, :, 12:].any()
    feeder = per_sample_baseline.PerSampleFeeder(str(got.filename), length=5, out_len=10)
    q, k = feeder[3]
    assert q.shape == k.shape == (3, 10, 25, 2)
