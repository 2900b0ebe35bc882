"""Per-sample two-view feeder in the CTR-GCN ``valid_crop_resize`` style: the target's baseline.

The same job as our loader (two augmented 50-frame views of a raw window of up to 300 frames),
done the field's usual way, one sample at a time in numpy and torch, for a (C=3, T=300, V, M)
float32 sample as a feeder receives it from an ``np.memmap``:

- valid length: frames whose coordinates are not all zero (the feeders' rule);
- temporal crop and resize (CTR-GCN's ``valid_crop_resize``, with the mirror padding of the
  SkeletonCLR / AimCLR ``temperal_crop``): mirror-pad ``valid // padding_ratio`` frames on each
  side, crop a random fraction in [0.5, 1] of the valid length at a random start, and resize it
  to ``out_len`` frames with ``torch.nn.functional.interpolate`` (bilinear, align_corners=False)
  on a per-sample tensor;
- shear 0.5: a random 3x3 unit-diagonal matrix applied with ``np.dot`` (SkeletonCLR / AimCLR
  ``shear``);
- the second view also (AimCLR's strong augmentations): Gaussian noise std 0.01 with
  probability 0.5, Gaussian blur along time, kernel 15, sigma in [0.1, 2], applied with
  probability 0.5 by a float64 torch ``conv2d`` with the unnormalised kernel, and zeroing one
  random axis with probability 0.5.

This is not the AimCLR feeder: AimCLR augments clips resized offline to 50 frames, and its crop
is mirror padding plus a slice, with no valid-length scan and no interpolation per sample (about
half this work a sample); ``aimclr_feeder.py`` is that feeder, reported beside this baseline.

`feeder_samples` cuts the feeders' storage from a corpus and `PerSampleFeeder` is the dataset a
plain DataLoader runs (the reference stack of ``bench_pipeline.py`` and the trainer benchmark).
Randomness comes from an ``np.random.Generator`` argument instead of the feeders' global
``random`` / ``np.random`` state (same number of draws, deterministic benchmarks).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sscl.data.corpus import open_corpus


def valid_length(sample_CTVM: np.ndarray) -> int:
    """Frames whose coordinates are not all zero (the feeders' valid frame count)."""
    return int(np.sum(sample_CTVM.sum(0).sum(-1).sum(-1) != 0))


def crop_resize(
    sample_CTVM: np.ndarray,
    valid: int,
    rng: np.random.Generator,
    out_len: int,
    padding_ratio: int = 6,
    crop_range: tuple[float, float] = (0.5, 1.0),
) -> np.ndarray:
    """Mirror-pad, crop a random fraction of the valid frames, resize to out_len with torch."""
    c, _, v, m = sample_CTVM.shape
    seq = sample_CTVM[:, :valid]
    pad = valid // padding_ratio
    if pad > 0:
        seq = np.concatenate((seq[:, :pad][:, ::-1], seq, seq[:, valid - pad :][:, ::-1]), axis=1)
    frac = rng.uniform(*crop_range)
    length = min(max(int(math.floor(valid * frac)), 1), valid)
    start = int(rng.integers(0, seq.shape[1] - length + 1))
    crop = torch.tensor(seq[:, start : start + length], dtype=torch.float)
    crop = crop.permute(0, 2, 3, 1).contiguous().view(c * v * m, length)[None, None]
    resized = F.interpolate(crop, size=(c * v * m, out_len), mode="bilinear", align_corners=False)
    return resized.squeeze().view(c, v, m, out_len).permute(0, 3, 1, 2).contiguous().numpy()


def shear(sample_CTVM: np.ndarray, rng: np.random.Generator, amplitude: float = 0.5) -> np.ndarray:
    """y = S x per point with S unit-diagonal, off-diagonals uniform in [-amplitude, amplitude]."""
    s1 = rng.uniform(-amplitude, amplitude, 3)
    s2 = rng.uniform(-amplitude, amplitude, 3)
    mat = np.array([[1.0, s1[0], s2[0]], [s1[1], 1.0, s2[1]], [s1[2], s2[2], 1.0]])
    return np.dot(sample_CTVM.transpose(1, 2, 3, 0), mat.T).transpose(3, 0, 1, 2)


def gaussian_noise(
    sample_CTVM: np.ndarray, rng: np.random.Generator, std: float = 0.01, p: float = 0.5
) -> np.ndarray:
    if rng.random() < p:
        return sample_CTVM + rng.normal(0.0, std, size=sample_CTVM.shape)
    return sample_CTVM


def gaussian_blur(
    sample_CTVM: np.ndarray,
    rng: np.random.Generator,
    kernel: int = 15,
    sigma_range: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
) -> np.ndarray:
    """AimCLR's Gaussian blur: a depthwise float64 conv2d along time, unnormalised kernel."""
    sigma = rng.uniform(*sigma_range)
    taps = np.arange(-(kernel // 2), kernel // 2 + 1)
    weight = torch.from_numpy(np.exp(-(taps**2) / (2.0 * sigma**2)))[None, None].double()
    channels = sample_CTVM.shape[0]
    weight = weight.repeat(channels, 1, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(sample_CTVM))
    if rng.random() < p:
        x = x.permute(3, 0, 2, 1)  # (M, C, V, T)
        x = F.conv2d(x, weight, padding=(0, kernel // 2), groups=channels)
        x = x.permute(1, -1, -2, 0)  # (C, T, V, M)
    return x.numpy()


def axis_mask(sample_CTVM: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    if rng.random() < p:
        out = sample_CTVM.copy()
        out[int(rng.integers(0, 3))] = 0.0
        return out
    return sample_CTVM


def two_views(
    sample_CTVM: np.ndarray,
    rng: np.random.Generator,
    out_len: int = 50,
) -> tuple[np.ndarray, np.ndarray]:
    """The baseline's work for one sample: a normal view and a strongly augmented view.

    Args:
        sample_CTVM: (3, T, V, M) float32.
        rng: the generator.
        out_len: frames of each view.

    Returns:
        Two (3, out_len, V, M) arrays (float64, as the feeders produce after ``np.dot``).
    """
    valid = valid_length(sample_CTVM)
    first = shear(crop_resize(sample_CTVM, valid, rng, out_len), rng)
    second = shear(crop_resize(sample_CTVM, valid, rng, out_len), rng)
    second = axis_mask(gaussian_blur(gaussian_noise(second, rng), rng), rng)
    return first, second


def feeder_samples(corpus_path: str, raw: int = 300) -> np.memmap:
    """The feeders' storage: (N, 3, raw, V, M) float32, one sample per sequence, zero-padded.

    A sample starts at the sequence's first frame with a tracked joint: the feeders count valid
    frames from the start (NTU's preprocessing trims leading empty frames; MSRC-12 has them).
    Entirely untracked sequences (one in MSRC-12) are left out: the feeder crashes on them.
    Written once beside the corpus (``<corpus>.feeder.npy`` for 300 frames, else
    ``<corpus>.feeder<raw>.npy``) and returned memory-mapped.
    """
    suffix = ".feeder.npy" if raw == 300 else f".feeder{raw}.npy"
    dest = Path(corpus_path).with_suffix(suffix)
    if dest.exists():
        return np.load(dest, mmap_mode="r")
    c = open_corpus(corpus_path)
    v, ch, m = c.frame_shape
    tracked = [i for i in range(c.num_sequences) if c.read_window(i, 0, int(c.lengths[i]))[1].any()]
    tmp = dest.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, "w+", np.float32, (len(tracked), ch, raw, v, m))
    for row, i in enumerate(tracked):
        joints, valid, _ = c.read_sequence(i)
        first = int(np.argmax(valid.any(axis=(1, 2))))
        window = joints[first : first + raw]
        out[row, :, : len(window)] = window.transpose(2, 0, 1, 3)
    out.flush()
    del out
    os.replace(tmp, dest)
    return np.load(dest, mmap_mode="r")


class PerSampleFeeder(torch.utils.data.Dataset):
    """The baseline as a dataset: `two_views` of each sample of a ``feeder_samples`` file.

    Args:
        path: the .npy file, opened memory-mapped in each worker.
        length: dataset length (indices wrap around the samples).
        out_len: frames of each view.

    Items: two (3, out_len, V, M) float64 tensors, the views of sample ``i % N`` drawn with
    ``np.random.default_rng(i)``.
    """

    def __init__(self, path: str, length: int, out_len: int = 50) -> None:
        self.path, self.length, self.out_len, self.data = path, length, out_len, None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.data is None:
            self.data = np.load(self.path, mmap_mode="r")
        sample = np.asarray(self.data[i % len(self.data)])
        q, k = two_views(sample, np.random.default_rng(i), self.out_len)
        return torch.from_numpy(q), torch.from_numpy(k)
