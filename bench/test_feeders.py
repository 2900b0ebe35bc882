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
