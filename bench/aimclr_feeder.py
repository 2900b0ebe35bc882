"""The AimCLR feeder's two-view work, one sample at a time: a row beside the target's baseline.

Written from the published description of AimCLR (Guo et al., AAAI 2022) and its SkeletonCLR
lineage's feeder (``feeder/ntu_feeder.py``, ``feeder/tools.py``; described here, not copied):

- offline, once: each sample's valid frames (frames whose coordinates are not all zero) are
  resized to ``max_frame = 50`` frames by linear interpolation and stored as
  (N, 3, 50, V, M) float32 (`resize_clips`); the feeder holds that array in memory;
- per sample, in the DataLoader's workers: the temporal crop mirror-pads ``T // padding_ratio``
  frames (ratio 6: 8 frames of a 50-frame clip) on each side and takes a random T-frame slice
  (`temporal_crop`: no valid-length scan, no interpolation), then shear 0.5; the strong view
  then also gets Gaussian noise, Gaussian blur and the axis mask at probability 0.5 each
  (`per_sample_baseline`'s functions, which are AimCLR's, including the float64 torch blur);
- a plain torch DataLoader with its default collate.

The published feeder makes three views (two normal ones and an extreme one that also flips and
rotates); this module makes the two-view form every pipeline row is measured in (a normal view
and a strong one), so its rate is comparable with ``per_sample_baseline.two_views``. Randomness:
one ``np.random.Generator`` per worker, seeded with the worker's number, in place of the
published code's global ``random`` / ``np.random`` state (the same draws per sample).
"""

from __future__ import annotations

import numpy as np
import torch
from per_sample_baseline import axis_mask, gaussian_blur, gaussian_noise, shear, valid_length

#: AimCLR's preprocessed clip length (``max_frame`` of its frame-downsampling script).
MAX_FRAME = 50


def resize_clip(sample_CTVM: np.ndarray, out_len: int = MAX_FRAME) -> np.ndarray:
    """The offline step: a sample's valid frames linearly resized to ``out_len`` frames.

    Linear interpolation with half-pixel centres (torch's ``align_corners=False``): output
    frame j reads source position (j + 0.5) * T_v / out_len - 0.5, clamped to [0, T_v - 1].

    Args:
        sample_CTVM: (C, T, V, M) float32, valid frames first, zero-padded.
        out_len: frames of the clip.

    Returns:
        (C, out_len, V, M) float32; all zeros when no frame is valid.
    """
    valid = valid_length(sample_CTVM)
    c, _, v, m = sample_CTVM.shape
    if valid == 0:
        return np.zeros((c, out_len, v, m), np.float32)
    pos = np.clip((np.arange(out_len) + 0.5) * (valid / out_len) - 0.5, 0.0, valid - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, valid - 1)
    w = (pos - lo)[None, :, None, None]
    x = sample_CTVM[:, :valid].astype(np.float64)
    return (x[:, lo] * (1.0 - w) + x[:, hi] * w).astype(np.float32)


def resize_clips(samples_NCTVM: np.ndarray, out_len: int = MAX_FRAME) -> np.ndarray:
    """`resize_clip` of every sample: the feeder's in-memory (N, C, out_len, V, M) float32."""
    n, c, _, v, m = samples_NCTVM.shape
    out = np.empty((n, c, out_len, v, m), np.float32)
    for i in range(n):
        out[i] = resize_clip(np.asarray(samples_NCTVM[i]), out_len)
    return out


def temporal_crop(
    clip_CTVM: np.ndarray, rng: np.random.Generator, padding_ratio: int = 6
) -> np.ndarray:
    """Mirror-pad ``T // padding_ratio`` frames on each side, then a random T-frame slice.

    The first ``pad`` frames are prepended in reverse order and the last ``pad`` appended in
    reverse order; the slice starts uniformly in [0, 2 pad].

    Args:
        clip_CTVM: (C, T, V, M) clip.
        rng: the generator.
        padding_ratio: AimCLR's ``temperal_padding_ratio`` (6).

    Returns:
        (C, T, V, M), a view of the padded copy.
    """
    t = clip_CTVM.shape[1]
    pad = t // padding_ratio
    padded = np.concatenate(
        (clip_CTVM[:, :pad][:, ::-1], clip_CTVM, clip_CTVM[:, t - pad :][:, ::-1]), axis=1
    )
    start = int(rng.integers(0, 2 * pad + 1))
    return padded[:, start : start + t]


def two_views(
    clip_CTVM: np.ndarray, rng: np.random.Generator, padding_ratio: int = 6,
    shear_amplitude: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """The feeder's work for one sample: a normal view and a strongly augmented view.

    Args:
        clip_CTVM: (3, T, V, M) float32 preprocessed clip (T = 50).
        rng: the generator.
        padding_ratio: temporal crop padding ratio (6).
        shear_amplitude: shear amplitude (0.5).

    Returns:
        Two (3, T, V, M) float64 arrays (float64 after the shear's ``np.dot``, as published).
    """
    first = shear(temporal_crop(clip_CTVM, rng, padding_ratio), rng, shear_amplitude)
    second = shear(temporal_crop(clip_CTVM, rng, padding_ratio), rng, shear_amplitude)
    second = axis_mask(gaussian_blur(gaussian_noise(second, rng), rng), rng)
    return first, second


class AimCLRFeeder(torch.utils.data.Dataset):
    """Per-sample two-view dataset over preprocessed clips held in memory.

    Args:
        clips_NCTVM: (N, 3, 50, V, M) float32 clips (`resize_clips`); with fork-started
            workers they are shared copy-on-write.
        length: dataset length (indices wrap around the clips; a large value lets a sampler
            run as long as a benchmark needs).
    """

    def __init__(self, clips_NCTVM: np.ndarray, length: int | None = None) -> None:
        self.clips = clips_NCTVM
        self.length = len(clips_NCTVM) if length is None else length
        self.rng: np.random.Generator | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> list[np.ndarray]:
        if self.rng is None:
            info = torch.utils.data.get_worker_info()
            self.rng = np.random.default_rng(0 if info is None else info.id)
        q, k = two_views(self.clips[i % len(self.clips)], self.rng)
        return [q, k]
