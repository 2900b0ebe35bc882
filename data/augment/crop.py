"""The temporal crop: the crop rule and the numpy twin of the compiled crop + resize.

SkeletonCLR / AimCLR's ``temperal_crop`` (padding ratio 6, mirrored padding) and CTR-GCN's
``valid_crop_resize`` (crop a random fraction of the valid length, resize by linear
interpolation as ``F.interpolate(align_corners=False)``), written in the model layout. The
compiled crop is ``kernel_crop.crop_sample``, run by the composed op (``compose.two_view``);
:func:`crop_resize_ref` is its step of the composed op's oracle (``compose.two_view_ref``).
"""

from __future__ import annotations

import numpy as np

from sscl.data.augment.arrays import as_f64, as_i64


def crop_windows(
    lengths_N: np.ndarray,
    frac_N: np.ndarray,
    pos_N: np.ndarray,
    speed_N: np.ndarray,
    padding_ratio: int = 6,
    min_crop: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crop of each sample (vectorised twin of the kernels' rule).

    With T_v = lengths[n]: pad = T_v // padding_ratio mirrored frames on each side (AimCLR's
    ``temperal_crop``), crop length c = clip(floor(frac * T_v), min(min_crop, T_v), T_v) (at
    least 1), span = clip(floor(speed * c), 1, T_v + 2 pad) source frames, start = floor(pos *
    (T_v + 2 pad - span + 1)) in padded coordinates. With frac = 1, speed = 1 this is AimCLR's
    crop exactly. A sequence shorter than the crop (T_v < min_crop) is taken whole. ``two_view``
    passes speed = tempo / max(tempos) <= 1 (a slower view spans fewer frames); a speed above 1
    widens the span up to the padded length.

    Returns:
        (pad, start, span), each (N,) int64.
    """
    length = as_i64(lengths_N)
    pad = length // padding_ratio if padding_ratio > 0 else np.zeros_like(length)
    padded = length + 2 * pad
    c = np.floor(as_f64(frac_N) * length).astype(np.int64)
    c = np.minimum(np.maximum(np.maximum(c, np.minimum(min_crop, length)), 1), length)
    span = np.minimum(np.maximum(np.floor(c * as_f64(speed_N)).astype(np.int64), 1), padded)
    start = np.floor(as_f64(pos_N) * (padded - span + 1)).astype(np.int64)
    start = np.minimum(start, padded - span)
    return pad, start, span


def crop_resize_ref(
    raw_NTVCM: np.ndarray,
    valid_NTVM: np.ndarray,
    lengths_N: np.ndarray,
    frac_N: np.ndarray,
    pos_N: np.ndarray,
    tempo_N: np.ndarray,
    out_len: int,
    padding_ratio: int = 6,
    min_crop: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Temporal crop (see :func:`crop_windows`) resized to ``out_len`` frames by linear
    interpolation (``F.interpolate(mode="linear", align_corners=False)`` semantics), written in
    the model layout: the numpy twin of ``kernel_crop.crop_sample`` with no flip, swap, map or
    noise (gathers + blend over the whole batch, float64).

    Args:
        raw_NTVCM: (N, T, V, C, M) float32 raw windows; frames >= lengths[n] are ignored.
        valid_NTVM: (N, T, V, M) bool.
        lengths_N: (N,) valid length of each window (clipped to T; 0 gives an all-zero view).
        frac_N, pos_N, tempo_N: (N,) crop fraction, start position in [0, 1), span speed
            (:func:`crop_windows`).
        out_len: L.
        padding_ratio, min_crop: see :func:`crop_windows`.

    Returns:
        (out (N, C, L, V, M) float32, out_valid (N, L, V, M) bool).
    """
    n, t_max, _, _, _ = raw_NTVCM.shape
    length = np.minimum(as_i64(lengths_N), t_max)
    pad, start, span = crop_windows(length, frac_N, pos_N, tempo_N, padding_ratio, min_crop)
    scale = span / out_len
    src = np.maximum((np.arange(out_len) + 0.5)[None, :] * scale[:, None] - 0.5, 0.0)
    i0 = src.astype(np.int64)
    i1 = np.where(i0 < span[:, None] - 1, i0 + 1, i0)
    w = src - i0

    def mirror(q: np.ndarray) -> np.ndarray:
        r = q - pad[:, None]
        r = np.where(r < 0, -r - 1, r)
        r = np.where(r >= length[:, None], 2 * length[:, None] - 1 - r, r)
        return np.clip(r, 0, t_max - 1)

    rows = np.arange(n)[:, None]
    r0, r1 = mirror(start[:, None] + i0), mirror(start[:, None] + i1)
    ok = valid_NTVM[rows, r0] & ((w == 0.0)[:, :, None, None] | valid_NTVM[rows, r1])
    ok &= (length > 0)[:, None, None, None]
    wb = w[:, :, None, None, None]
    y = (1.0 - wb) * raw_NTVCM[rows, r0] + wb * raw_NTVCM[rows, r1]
    y = np.where(ok[:, :, :, None, :], y, 0.0)
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2, 4), np.float32), ok

