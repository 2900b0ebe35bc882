"""Skeleton augmentation: Numba batch kernels writing into preallocated outputs, each beside its
vectorised numpy twin (``<op>_ref``, the correctness oracle and the speed baseline).

Based on the SkeletonCLR / AimCLR feeders (``feeder/tools.py``: temporal crop with padding ratio
6, shear 0.5, flip, rotation, Gaussian noise, Gaussian blur kernel 15 with sigma in [0.1, 2] at
probability 0.5, axis mask), the CTR-GCN ``valid_crop_resize`` (crop a random fraction of the
valid length, resize by linear interpolation as ``F.interpolate(align_corners=False)``), RVTCLR's
relative tempo (1x/2x playback) and the 2s-AGCN NTU pre-normalisation (METHOD.md section 1).

Layouts. Raw windows come from the corpus reader as ``raw_NTVCM`` float32 (N, T, V, C, M) with
``valid_NTVM`` bool (N, T, V, M) and the valid length of each window ``lengths_N`` (frames at or
after ``lengths[n]`` are ignored: a window may run past the end of its sequence). The crop reads
the raw window and writes the model layout (N, C, L, V, M) directly (the transpose is fused into
the crop), and every later op works on (N, C, L, V, M) with a (N, L, V, M) valid mask.

Public API (everything the input pipeline needs)::

    cfg = AugmentConfig(out_len=50)                    # typed, frozen; validated on creation
    cfg.check_layout(layout)                           # ConfigError if flips need missing pairs
    params = params_for(seed, epoch, global_idx, cfg, extreme=True)   # TwoViewParams, per sample
    out, out_valid = two_view(raw_NTVCM, valid_NTVM, lengths_N, params, cfg,
                              flip_perm=layout.flip_permutation(), out=buf, out_valid=vbuf)
    x_q, x_k, x_e = out                                # each (N, C, L, V, M) float32

``two_view`` makes the query, key and (optionally) extreme view of every sample in one call and
one pass over each raw window; per view it applies, in order: crop + linear resize (with the
left/right flip and person swap folded into the gather), rotation @ shear, Gaussian noise, joint
mask, temporal blur, axis mask. Each step also exists alone, kernel + twin: ``crop_resize``,
``linear_transform`` (``rotation_matrices``, ``shear_matrices``), ``flip_swap``,
``gaussian_noise``, ``mask_blur`` (joint mask, blur, axis mask), ``tempo_change``; plus the
pre-processing ``normalize_ntu`` (``normalization_joints``; default centring "first", which keeps
global translation) and the ``bone_stream`` / ``motion_stream`` modalities.

``params_for`` derives every random number of sample ``i`` from ``(seed, epoch, i)`` with a
counter-based hash (splitmix64), so a sample is augmented the same whatever batch or rank it
lands in; ``draw_two_view_params(rng, n, cfg)`` draws the same kind of parameters from one
``np.random.Generator``. Kernels are pure functions of (input, parameters): the noise is a hash
of (per-sample seed, point) too, not a stateful draw.

Invalid joints (``valid == False``) are exactly zero in every output and stay invalid. After the
crop, output frame ``l`` of joint ``(v, m)`` is valid iff the raw frame(s) it interpolates from
are valid (both neighbours, or the single one when the interpolation weight of the second is 0).
Windows with ``lengths[n] == 0`` give all-zero, all-invalid views. No op produces NaN from
finite input.

Threading. ``two_view`` runs a ``prange`` kernel over the batch when
``numba.get_num_threads() > 1`` and a serial kernel otherwise (input workers should call
``numba.set_num_threads(1)``). Unless the user set ``NUMBA_THREADING_LAYER``, this module
selects Numba's ``workqueue`` layer (Numba binds the layer at the first parallel launch in the
process, so import this module before other parallel Numba code runs): the default GNU-OpenMP
layer kills a process forked (DataLoader workers) after the parent ran a parallel region
("fork() called from a process already using GNU OpenMP"); a test runs the parallel kernel
beside live torch/OpenBLAS thread pools and in a forked child. Workqueue is not re-entrant, so
parallel launches are serialised by a lock; serial kernels release the GIL (``nogil``) and run
concurrently.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, fields
from statistics import NormalDist

import numba
import numpy as np
from numba import njit, prange

from sscl.data.layouts import Layout
from sscl.errors import ConfigError

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

_PARALLEL_LOCK = threading.Lock()
_JIT = {"cache": True, "nogil": True, "fastmath": False}

# splitmix64 (Steele, Lea, Flood 2014): the k-th output of a stream seeded with s is
# _mix64(s + (k + 1) * GOLDEN), so any draw is addressable by a counter without state.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV_2_53 = 1.0 / 9007199254740992.0
_LOW32 = np.uint64(0xFFFFFFFF)

# Normals by inverse-CDF lookup: standard normal quantiles at the centres of 4096 equal-mass
# bins, linearly interpolated, indexed by 32-bit uniforms. About 4x cheaper than Box-Muller's
# log/sqrt/cos and bit-identical in the kernel, the numpy twin and on every platform (no libm).
# Draws are clipped at +-3.67 sigma (the outer bin centres), which removes 0.02% of the mass.
_NORMAL_BINS = 4096
_NORMAL_TABLE = np.array(
    [NormalDist().inv_cdf((j + 0.5) / _NORMAL_BINS) for j in range(_NORMAL_BINS)]
)
_BIN_SCALE = _NORMAL_BINS / 2.0**32


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (schema; YAML presets set these fields).

    Query and key views: crop + resize, shear, optional rotation/flip/person swap/2x tempo.
    The extreme view (AimCLR) adds its own rotation and flip probability, Gaussian noise, joint
    mask, temporal Gaussian blur and axis mask. Angles are in degrees; each axis angle is drawn
    uniformly in ``[-a, a]`` (AimCLR draws one main axis in [0, 30] and the others in [0, 1]).

    Attributes:
        out_len: frames L of every view (AimCLR/SkeletonCLR: 50 on NTU; SnipCLR: about 200).
        padding_ratio: ``lengths // padding_ratio`` mirrored frames padded on each side (0: none).
        crop_range: (min, max) fraction of the valid length taken by the crop.
        min_crop: lower bound of the crop length in frames (capped at the valid length).
        shear: shear amplitude; off-diagonal entries uniform in ``[-shear, shear]``.
        rotate_deg: per-axis (x, y, z) rotation range of the query/key views.
        flip_prob: left/right flip probability of the query/key views (needs flip pairs).
        swap_prob: probability of swapping persons 0 and 1 (M == 2) in every view.
        tempo_2x_prob: probability that a view plays at 2x (RVTCLR uses 0.5; crop span doubled).
        extreme_rotate_deg: per-axis rotation range of the extreme view.
        extreme_flip_prob: flip probability of the extreme view (AimCLR: 0.5).
        noise_prob: probability of Gaussian noise in the extreme view (AimCLR: 0.5).
        noise_std: noise standard deviation in coordinate units (AimCLR: 0.01).
        joint_mask_p: per-joint probability of masking a joint (all frames) in the extreme view.
        blur_prob: probability of the temporal blur in the extreme view (AimCLR: 0.5).
        blur_kernel: odd blur kernel length in frames (AimCLR: 15).
        blur_sigma: (min, max) of the blur sigma in frames (AimCLR: 0.1, 2.0).
        axis_mask_prob: probability of zeroing one coordinate axis in the extreme view.
    """

    out_len: int = 50
    padding_ratio: int = 6
    crop_range: tuple[float, float] = (0.5, 1.0)
    min_crop: int = 1
    shear: float = 0.5
    rotate_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    flip_prob: float = 0.0
    swap_prob: float = 0.0
    tempo_2x_prob: float = 0.0
    extreme_rotate_deg: tuple[float, float, float] = (30.0, 30.0, 30.0)
    extreme_flip_prob: float = 0.5
    noise_prob: float = 0.5
    noise_std: float = 0.01
    joint_mask_p: float = 0.0
    blur_prob: float = 0.5
    blur_kernel: int = 15
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    axis_mask_prob: float = 0.5

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"augment.{name} = {getattr(self, name)!r}: expected {expected}")

        if self.out_len < 1:
            raise bad("out_len", "an integer >= 1")
        if self.padding_ratio < 0:
            raise bad("padding_ratio", "an integer >= 0 (0 disables padding)")
        lo, hi = self.crop_range
        if not 0.0 < lo <= hi <= 1.0:
            raise bad("crop_range", "(min, max) with 0 < min <= max <= 1")
        if self.min_crop < 1:
            raise bad("min_crop", "an integer >= 1")
        for name in ("shear", "noise_std"):
            if getattr(self, name) < 0:
                raise bad(name, "a value >= 0")
        for name in ("rotate_deg", "extreme_rotate_deg"):
            r = getattr(self, name)
            if len(r) != 3 or any(a < 0 for a in r):
                raise bad(name, "three per-axis ranges >= 0 in degrees (x, y, z)")
        for f in fields(self):
            is_prob = f.name.endswith("_prob") or f.name == "joint_mask_p"
            if is_prob and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise bad(f.name, "a probability in [0, 1]")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise bad("blur_kernel", "an odd integer >= 1 (AimCLR: 15)")
        s0, s1 = self.blur_sigma
        if not 0.0 < s0 <= s1:
            raise bad("blur_sigma", "(min, max) with 0 < min <= max (AimCLR: (0.1, 2.0))")

    def check_layout(self, layout: Layout) -> None:
        """Fail at config time when a flip is requested for a layout without left/right pairs.

        Args:
            layout: a ``sscl.data.layouts.Layout``.

        Raises:
            ConfigError: ``flip_prob`` or ``extreme_flip_prob`` > 0 and ``layout.flip_pairs`` is
                empty.
        """
        if (self.flip_prob > 0 or self.extreme_flip_prob > 0) and not layout.flip_pairs:
            raise ConfigError(
                f"augment.flip_prob = {self.flip_prob}, augment.extreme_flip_prob = "
                f"{self.extreme_flip_prob}: layout {layout.name!r} has no left/right flip pairs; "
                "set both to 0 or use a layout with flip_pairs"
            )


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ViewParams:
    """Per-sample random parameters of one view (arrays of length N).

    Attributes:
        crop_frac: (N,) float64, crop length as a fraction of the valid length.
        crop_pos: (N,) float64 in [0, 1), crop start as a fraction of the free range.
        tempo: (N,) int64, playback speed 1 or 2 (the crop spans ``tempo`` times more frames).
        flip: (N,) bool, left/right flip.
        swap: (N,) bool, swap persons 0 and 1 (ignored when M == 1).
        mat: (N, 3, 3) float64, linear map applied to every point (rotation @ shear); a
            2-channel layout uses its top-left 2x2 block.
        noise_std: (N,) float64, Gaussian noise std (0: none).
        noise_seed: (N,) uint64, counter-hash seed of the noise.
        joint_mask_p: (N,) float64, per-joint masking probability (0: none).
        joint_seed: (N,) uint64, counter-hash seed of the joint mask.
        blur_sigma: (N,) float64, temporal blur sigma in frames (0: none).
        axis: (N,) int64, coordinate axis to zero (-1: none).
    """

    crop_frac: np.ndarray
    crop_pos: np.ndarray
    tempo: np.ndarray
    flip: np.ndarray
    swap: np.ndarray
    mat: np.ndarray
    noise_std: np.ndarray
    noise_seed: np.ndarray
    joint_mask_p: np.ndarray
    joint_seed: np.ndarray
    blur_sigma: np.ndarray
    axis: np.ndarray


@dataclass(frozen=True)
class TwoViewParams:
    """Parameters of the query, key and optional extreme view of a batch (view order 0, 1, 2)."""

    query: ViewParams
    key: ViewParams
    extreme: ViewParams | None = None

    @property
    def views(self) -> tuple[ViewParams, ...]:
        """(query, key) or (query, key, extreme): the view order of ``two_view``'s output."""
        return (
            (self.query, self.key) if self.extreme is None else (self.query, self.key, self.extreme)
        )


_DRAWS_PER_VIEW = 18  # uniforms per view consumed by _view_from_draws
_SEEDS_PER_VIEW = 2


def _view_from_draws(u: np.ndarray, z: np.ndarray, cfg: AugmentConfig, extreme: bool) -> ViewParams:
    """Map uniforms u (N, 18) in [0, 1) and raw 64-bit words z (N, 2) to one view's parameters."""
    n = u.shape[0]
    lo, hi = cfg.crop_range
    rot = np.radians(np.asarray(cfg.extreme_rotate_deg if extreme else cfg.rotate_deg))
    angles = (2.0 * u[:, 5:8] - 1.0) * rot
    shear = (2.0 * u[:, 8:14] - 1.0) * cfg.shear
    flip_p = cfg.extreme_flip_prob if extreme else cfg.flip_prob
    zeros = np.zeros(n)
    if extreme:
        noise_std = np.where(u[:, 14] < cfg.noise_prob, cfg.noise_std, 0.0)
        s0, s1 = cfg.blur_sigma
        blur_sigma = np.where(u[:, 15] < cfg.blur_prob, s0 + (s1 - s0) * u[:, 16], 0.0)
        # u < p picks the mask; u / p is then uniform in [0, 1) and picks the axis.
        hit = u[:, 17] < cfg.axis_mask_prob
        scaled = 3.0 * u[:, 17] / cfg.axis_mask_prob if cfg.axis_mask_prob > 0 else np.zeros(n)
        which = np.minimum(scaled.astype(np.int64), 2)
        axis = np.where(hit, which, -1)
        jm = np.full(n, cfg.joint_mask_p)
    else:
        noise_std, blur_sigma, axis, jm = (
            zeros,
            zeros.copy(),
            np.full(n, -1, np.int64),
            zeros.copy(),
        )
    return ViewParams(
        crop_frac=lo + (hi - lo) * u[:, 0],
        crop_pos=u[:, 1].copy(),
        tempo=np.where(u[:, 2] < cfg.tempo_2x_prob, 2, 1).astype(np.int64),
        flip=u[:, 3] < flip_p,
        swap=u[:, 4] < cfg.swap_prob,
        mat=rotation_matrices(angles) @ shear_matrices(shear),
        noise_std=noise_std.astype(np.float64),
        noise_seed=z[:, 0].copy(),
        joint_mask_p=jm.astype(np.float64),
        joint_seed=z[:, 1].copy(),
        blur_sigma=blur_sigma.astype(np.float64),
        axis=axis.astype(np.int64),
    )


def _params_from_draws(
    u: np.ndarray, z: np.ndarray, cfg: AugmentConfig, extreme: bool
) -> TwoViewParams:
    views = [_view_from_draws(u[:, r], z[:, r], cfg, r == 2) for r in range(u.shape[1])]
    return TwoViewParams(views[0], views[1], views[2] if extreme else None)


def draw_two_view_params(
    rng: np.random.Generator, n: int, cfg: AugmentConfig, extreme: bool = False
) -> TwoViewParams:
    """Draw the parameters of n samples from one generator (tests, single-stream callers).

    Args:
        rng: the generator; consumed in a fixed order.
        n: batch size.
        cfg: augmentation settings.
        extreme: also draw the extreme view.

    Returns:
        TwoViewParams with arrays of length n.
    """
    r = 3 if extreme else 2
    u = rng.random((n, r, _DRAWS_PER_VIEW))
    z = rng.integers(
        0, np.iinfo(np.uint64).max, size=(n, r, _SEEDS_PER_VIEW), dtype=np.uint64, endpoint=True
    )
    return _params_from_draws(u, z, cfg, extreme)


def _mix64_np(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _stream(base: np.ndarray, k: np.ndarray) -> np.ndarray:
    """splitmix64 outputs k (broadcast) of the streams seeded with base (uint64 arrays)."""
    with np.errstate(over="ignore"):
        return _mix64_np(base + (k.astype(np.uint64) + np.uint64(1)) * _GOLDEN)


def sample_keys(seed: int, epoch: int, global_indices: np.ndarray) -> np.ndarray:
    """The 64-bit key of each sample: a hash of (seed, epoch, global index).

    Args:
        seed: run seed (any int; taken modulo 2**64).
        epoch: epoch number.
        global_indices: (N,) global sample indices (positions in the epoch order).

    Returns:
        (N,) uint64 keys; equal triples give equal keys.
    """
    idx = np.asarray(global_indices).astype(np.int64).astype(np.uint64)
    s = _stream(np.array([seed % 2**64], np.uint64), np.zeros(1, np.int64))
    e = _stream(s, np.array([epoch % 2**63], np.int64))
    return _stream(np.broadcast_to(e, idx.shape), idx.astype(np.int64))


def params_for(
    seed: int, epoch: int, global_indices: np.ndarray, cfg: AugmentConfig, extreme: bool = False
) -> TwoViewParams:
    """Per-sample parameters determined by (seed, epoch, global index) alone.

    Sample i's draws are outputs 0, 1, ... of a splitmix64 stream keyed by
    ``sample_keys(seed, epoch, i)``: vectorised over the batch (no Generator per sample), and
    independent of the batch composition, the rank and the number of processes.

    Args:
        seed: run seed.
        epoch: epoch number.
        global_indices: (N,) int global sample indices.
        cfg: augmentation settings.
        extreme: also make the extreme view.

    Returns:
        TwoViewParams with arrays of length N.
    """
    keys = sample_keys(seed, epoch, global_indices)[:, None]
    r = 3 if extreme else 2
    per = _DRAWS_PER_VIEW + _SEEDS_PER_VIEW
    words = _stream(keys, np.arange(r * per, dtype=np.int64)[None, :]).reshape(-1, r, per)
    u = (words[..., :_DRAWS_PER_VIEW] >> np.uint64(11)).astype(np.float64) * _INV_2_53
    return _params_from_draws(u, words[..., _DRAWS_PER_VIEW:], cfg, extreme)


def rotation_matrices(angles_N3: np.ndarray) -> np.ndarray:
    """Rotations R = Rz @ Ry @ Rx (right-handed, radians) acting on column vectors.

    Args:
        angles_N3: (N, 3) angles about x, y, z in radians.

    Returns:
        (N, 3, 3) float64.
    """
    a = np.asarray(angles_N3, np.float64)
    c, s = np.cos(a), np.sin(a)
    n = a.shape[0]
    rx, ry, rz = (np.tile(np.eye(3), (n, 1, 1)) for _ in range(3))
    rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = c[:, 0], -s[:, 0], s[:, 0], c[:, 0]
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 2, 0], ry[:, 2, 2] = c[:, 1], s[:, 1], -s[:, 1], c[:, 1]
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1] = c[:, 2], -s[:, 2], s[:, 2], c[:, 2]
    return rz @ ry @ rx


def shear_matrices(s_N6: np.ndarray) -> np.ndarray:
    """AimCLR's shear acting on column vectors: y = S x with unit diagonal.

    AimCLR builds R = [[1, s1_0, s2_0], [s1_1, 1, s2_1], [s1_2, s2_2, 1]] and computes
    ``x_row @ R.T`` per point, i.e. y = R x; ``s_N6`` holds (s1_0, s1_1, s1_2, s2_0, s2_1, s2_2).

    Args:
        s_N6: (N, 6) shear coefficients.

    Returns:
        (N, 3, 3) float64.
    """
    s = np.asarray(s_N6, np.float64)
    m = np.tile(np.eye(3), (s.shape[0], 1, 1))
    m[:, 0, 1], m[:, 1, 0], m[:, 2, 0] = s[:, 0], s[:, 1], s[:, 2]
    m[:, 0, 2], m[:, 1, 2], m[:, 2, 1] = s[:, 3], s[:, 4], s[:, 5]
    return m


# --------------------------------------------------------------------------- scalar helpers


@njit(**_JIT)
def _mix64(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(**_JIT)
def _table_normal(bits):
    """A 32-bit uniform through the interpolated inverse-CDF table."""
    pos = np.float64(bits) * _BIN_SCALE - 0.5
    if pos <= 0.0:
        return _NORMAL_TABLE[0]
    i = int(pos)
    if i >= _NORMAL_BINS - 1:
        return _NORMAL_TABLE[_NORMAL_BINS - 1]
    return _NORMAL_TABLE[i] + (pos - i) * (_NORMAL_TABLE[i + 1] - _NORMAL_TABLE[i])


@njit(**_JIT)
def _hash(seed, j):
    return _mix64(seed + (np.uint64(j) + np.uint64(1)) * _GOLDEN)


@njit(**_JIT)
def _uniform(seed, k):
    """Output k of the splitmix64 stream ``seed`` as a float64 in [0, 1)."""
    return np.float64(_hash(seed, k) >> np.uint64(11)) * _INV_2_53


@njit(**_JIT)
def _normal(seed, k):
    """Normal k of stream ``seed``: the low (k even) or high (k odd) 32-bit half of splitmix64
    output k // 2 through the inverse-CDF table."""
    z = _hash(seed, k >> 1)
    return _table_normal((z >> np.uint64(32)) if (k & 1) else (z & _LOW32))


@njit(**_JIT)
def _normal3(seed, k):
    """Normals k, k+1, k+2 of stream ``seed`` (== _normal of each) from two hashes, not three."""
    za = _hash(seed, k >> 1)
    zb = _hash(seed, (k >> 1) + 1)
    if k & 1:
        return (
            _table_normal(za >> np.uint64(32)),
            _table_normal(zb & _LOW32),
            _table_normal(zb >> np.uint64(32)),
        )
    return (
        _table_normal(za & _LOW32),
        _table_normal(za >> np.uint64(32)),
        _table_normal(zb & _LOW32),
    )


@njit(**_JIT)
def _crop_window(length, frac, pos, tempo, padding_ratio, min_crop):
    """(pad, start, span) of one crop; ``start`` indexes the mirror-padded sequence."""
    pad = length // padding_ratio if padding_ratio > 0 else 0
    padded = length + 2 * pad
    c = min(max(math.floor(frac * length), min(min_crop, length), 1), length)
    span = min(c * tempo, padded)
    start = min(math.floor(pos * (padded - span + 1)), padded - span)
    return pad, start, span


@njit(**_JIT)
def _mirror(q, pad, length):
    """Raw frame of padded index q: AimCLR pads with the edge frames in reverse order."""
    r = q - pad
    if r < 0:
        return -r - 1
    if r >= length:
        return 2 * length - 1 - r
    return r


# --------------------------------------------------------------------------- per-sample steps


@njit(**_JIT)
def _crop_sample(
    raw_TVCM,
    valid_TVM,
    length,
    perm,
    swap,
    mat,
    padding_ratio,
    min_crop,
    frac,
    pos,
    tempo,
    noise_std,
    noise_seed,
    out_CLVM,
    vout_LVM,
):
    """Crop + linear resize + joint permutation + person swap + linear map + noise, fused."""
    C, L, V, M = out_CLVM.shape
    if length <= 0:
        out_CLVM[:] = 0.0
        vout_LVM[:] = False
        return
    pad, start, span = _crop_window(length, frac, pos, tempo, padding_ratio, min_crop)
    scale = span / L
    three = C == 3
    # Scalars, not array reads, in the inner loop: stores to out could alias mat in the compiler's
    # eyes and would force reloads.
    a00, a01, a10, a11 = mat[0, 0], mat[0, 1], mat[1, 0], mat[1, 1]
    a02, a12, a20, a21, a22 = 0.0, 0.0, 0.0, 0.0, 0.0
    if three:
        a02, a12, a20, a21, a22 = mat[0, 2], mat[1, 2], mat[2, 0], mat[2, 1], mat[2, 2]
    noisy = noise_std > 0.0
    pm = np.arange(M)
    if swap and M == 2:
        pm[0], pm[1] = 1, 0
    for ti in range(L):
        # PyTorch F.interpolate(mode="linear", align_corners=False) source coordinate.
        src = max((ti + 0.5) * scale - 0.5, 0.0)
        i0 = int(src)
        i1 = i0 + 1 if i0 < span - 1 else i0
        w = src - i0
        w0 = 1.0 - w
        r0 = _mirror(start + i0, pad, length)
        r1 = _mirror(start + i1, pad, length)
        for v in range(V):
            sv = perm[v]
            for m in range(M):
                sm = pm[m]
                ok = valid_TVM[r0, sv, sm] and (w == 0.0 or valid_TVM[r1, sv, sm])
                vout_LVM[ti, v, m] = ok
                if not ok:
                    for c in range(C):
                        out_CLVM[c, ti, v, m] = 0.0
                    continue
                x0 = w0 * raw_TVCM[r0, sv, 0, sm] + w * raw_TVCM[r1, sv, 0, sm]
                x1 = w0 * raw_TVCM[r0, sv, 1, sm] + w * raw_TVCM[r1, sv, 1, sm]
                x2 = 0.0
                if three:
                    x2 = w0 * raw_TVCM[r0, sv, 2, sm] + w * raw_TVCM[r1, sv, 2, sm]
                y0 = 0.0 + a00 * x0 + a01 * x1 + a02 * x2
                y1 = 0.0 + a10 * x0 + a11 * x1 + a12 * x2
                y2 = 0.0 + a20 * x0 + a21 * x1 + a22 * x2
                if noisy:
                    z0, z1, z2 = _normal3(noise_seed, 3 * ((ti * V + v) * M + m))
                    y0 += noise_std * z0
                    y1 += noise_std * z1
                    y2 += noise_std * z2
                out_CLVM[0, ti, v, m] = y0
                out_CLVM[1, ti, v, m] = y1
                if three:
                    out_CLVM[2, ti, v, m] = y2


@njit(**_JIT)
def _joint_mask_sample(out_CTVM, vout_TVM, prob, seed):
    """Zero (and invalidate) joint v in all frames when uniform(seed, v) < prob."""
    if prob <= 0.0:
        return
    for v in range(out_CTVM.shape[2]):
        if _uniform(seed, v) < prob:
            out_CTVM[:, :, v, :] = 0.0
            vout_TVM[:, v, :] = False


@njit(**_JIT)
def _blur_sample(out_CTVM, vout_TVM, sigma, radius):
    """Normalised temporal Gaussian blur over the valid frames, in place.

    out[t] = sum_k g_k x[t+k] / sum_k g_k over the in-range valid taps; invalid points stay 0.
    AimCLR convolves with the unnormalised kernel and zero padding, which scales the signal by
    sum(g) (up to about 5 at sigma 2) and darkens the ends; normalising keeps a constant signal.
    Invalid points must hold 0 on entry (every step before guarantees it), so the numerator
    needs no mask; the inner loops run over the V*M points of a frame (contiguous,
    branch-free), which the compiler vectorises.
    """
    if sigma <= 0.0:
        return
    C, T, V, M = out_CTVM.shape
    Q = V * M
    x = out_CTVM.reshape((C, T, Q))
    ok = vout_TVM.reshape((T, Q))
    # float32 throughout (weights rounded from float64): twice the SIMD width of float64, and
    # 15 taps of weights <= 1 lose nothing an augmentation would notice; the twin does the same.
    g = np.empty(2 * radius + 1, np.float32)
    for k in range(-radius, radius + 1):
        g[k + radius] = math.exp(-(k * k) / (2.0 * sigma * sigma))
    # The denominator (the weight of the in-range valid taps) is shared by the channels; with
    # every point valid (the common case) it depends on t only.
    den = np.zeros((T, Q), np.float32)
    if ok.all():
        for t in range(T):
            d = np.float32(0.0)
            for k in range(max(-radius, -t), min(radius, T - 1 - t) + 1):
                d += g[k + radius] * np.float32(1.0)
            den[t, :] = d
    else:
        vm = np.empty((T, Q), np.float32)
        for t in range(T):
            for q in range(Q):
                vm[t, q] = 1.0 if ok[t, q] else 0.0
        for t in range(T):
            for k in range(max(-radius, -t), min(radius, T - 1 - t) + 1):
                gk = g[k + radius]
                for q in range(Q):
                    den[t, q] += gk * vm[t + k, q]
    # All channels side by side in one row per frame: longer inner loops vectorise better.
    CQ = C * Q
    src = np.empty((T, CQ), np.float32)
    for c in range(C):
        for t in range(T):
            for q in range(Q):
                src[t, c * Q + q] = x[c, t, q]
    num = np.empty(CQ, np.float32)
    for t in range(T):
        num[:] = 0.0
        for k in range(max(-radius, -t), min(radius, T - 1 - t) + 1):
            gk = g[k + radius]
            for j in range(CQ):
                num[j] += gk * src[t + k, j]
        for c in range(C):
            for q in range(Q):
                x[c, t, q] = num[c * Q + q] / den[t, q] if ok[t, q] else np.float32(0.0)


@njit(**_JIT)
def _view_sample(
    raw_TVCM,
    valid_TVM,
    length,
    perm,
    padding_ratio,
    min_crop,
    radius,
    frac,
    pos,
    tempo,
    flip,
    swap,
    mat,
    noise_std,
    noise_seed,
    jm_p,
    jm_seed,
    sigma,
    axis,
    out_CLVM,
    vout_LVM,
    ident,
):
    _crop_sample(
        raw_TVCM,
        valid_TVM,
        length,
        perm if flip else ident,
        swap,
        mat,
        padding_ratio,
        min_crop,
        frac,
        pos,
        tempo,
        noise_std,
        noise_seed,
        out_CLVM,
        vout_LVM,
    )
    _joint_mask_sample(out_CLVM, vout_LVM, jm_p, jm_seed)
    _blur_sample(out_CLVM, vout_LVM, sigma, radius)
    if 0 <= axis < out_CLVM.shape[0]:
        out_CLVM[axis] = 0.0


@njit(**_JIT)
def _two_view_one(
    n,
    raw,
    valid,
    lengths,
    perm,
    padding_ratio,
    min_crop,
    radius,
    frac,
    pos,
    tempo,
    flip,
    swap,
    mat,
    noise_std,
    noise_seed,
    jm_p,
    jm_seed,
    sigma,
    axis,
    out,
    vout,
):
    """All views of sample n: the raw window is read while it is hot in cache."""
    ident = np.arange(perm.shape[0])
    length = min(lengths[n], raw.shape[1])
    for r in range(out.shape[0]):
        _view_sample(
            raw[n],
            valid[n],
            length,
            perm,
            padding_ratio,
            min_crop,
            radius,
            frac[r, n],
            pos[r, n],
            tempo[r, n],
            flip[r, n],
            swap[r, n],
            mat[r, n],
            noise_std[r, n],
            noise_seed[r, n],
            jm_p[r, n],
            jm_seed[r, n],
            sigma[r, n],
            axis[r, n],
            out[r, n],
            vout[r, n],
            ident,
        )


@njit(**_JIT)
def _two_view_serial(
    raw,
    valid,
    lengths,
    perm,
    padding_ratio,
    min_crop,
    radius,
    frac,
    pos,
    tempo,
    flip,
    swap,
    mat,
    noise_std,
    noise_seed,
    jm_p,
    jm_seed,
    sigma,
    axis,
    out,
    vout,
):
    for n in range(raw.shape[0]):
        _two_view_one(
            n,
            raw,
            valid,
            lengths,
            perm,
            padding_ratio,
            min_crop,
            radius,
            frac,
            pos,
            tempo,
            flip,
            swap,
            mat,
            noise_std,
            noise_seed,
            jm_p,
            jm_seed,
            sigma,
            axis,
            out,
            vout,
        )


@njit(parallel=True, **_JIT)
def _two_view_parallel(
    raw,
    valid,
    lengths,
    perm,
    padding_ratio,
    min_crop,
    radius,
    frac,
    pos,
    tempo,
    flip,
    swap,
    mat,
    noise_std,
    noise_seed,
    jm_p,
    jm_seed,
    sigma,
    axis,
    out,
    vout,
):
    for n in prange(raw.shape[0]):
        _two_view_one(
            n,
            raw,
            valid,
            lengths,
            perm,
            padding_ratio,
            min_crop,
            radius,
            frac,
            pos,
            tempo,
            flip,
            swap,
            mat,
            noise_std,
            noise_seed,
            jm_p,
            jm_seed,
            sigma,
            axis,
            out,
            vout,
        )


# --------------------------------------------------------------------------- standalone kernels


@njit(**_JIT)
def _crop_resize_kernel(raw, valid, lengths, frac, pos, tempo, padding_ratio, min_crop, out, vout):
    ident = np.arange(raw.shape[2])
    eye = np.eye(3)
    for n in range(raw.shape[0]):
        _crop_sample(
            raw[n],
            valid[n],
            min(lengths[n], raw.shape[1]),
            ident,
            False,
            eye,
            padding_ratio,
            min_crop,
            frac[n],
            pos[n],
            tempo[n],
            0.0,
            np.uint64(0),
            out[n],
            vout[n],
        )


@njit(**_JIT)
def _linear_kernel(x, valid, mat, out):
    """x, out: (N, C, P) with P = T V M flattened (contiguous inner loops); valid: (N, P)."""
    N, C, P = x.shape
    row = np.empty(P)
    for n in range(N):
        for c in range(C):
            # One input channel at a time over a float64 row: contiguous loops that vectorise.
            row[:] = 0.0
            for k in range(C):
                a = mat[n, c, k]
                for p in range(P):
                    row[p] += a * x[n, k, p]
            for p in range(P):
                out[n, c, p] = row[p] if valid[n, p] else 0.0


@njit(**_JIT)
def _flip_swap_kernel(x, valid, perm, flip, swap, out, vout):
    N, C, T, V, M = x.shape
    for n in range(N):
        swap_m = swap[n] and M == 2
        for t in range(T):
            for v in range(V):
                sv = perm[v] if flip[n] else v
                for m in range(M):
                    vout[n, t, v, m] = valid[n, t, sv, (M - 1 - m) if swap_m else m]
        for c in range(C):
            for t in range(T):
                for v in range(V):
                    sv = perm[v] if flip[n] else v
                    for m in range(M):
                        out[n, c, t, v, m] = x[n, c, t, sv, (M - 1 - m) if swap_m else m]


@njit(**_JIT)
def _noise_kernel(x, valid, std, seed, out):
    """x, out: (N, C, P) with P = T V M flattened; valid: (N, P)."""
    N, C, P = x.shape
    for n in range(N):
        for c in range(C):
            for p in range(P):
                if not valid[n, p]:
                    out[n, c, p] = 0.0
                elif std[n] > 0.0:
                    out[n, c, p] = x[n, c, p] + std[n] * _normal(seed[n], 3 * p + c)
                else:
                    out[n, c, p] = x[n, c, p]


@njit(**_JIT)
def _mask_blur_kernel(out, vout, jm_p, jm_seed, sigma, radius, axis):
    """In place on copies: joint mask, blur, axis mask (each a no-op at its neutral value)."""
    for n in range(out.shape[0]):
        _joint_mask_sample(out[n], vout[n], jm_p[n], jm_seed[n])
        _blur_sample(out[n], vout[n], sigma[n], radius)
        if 0 <= axis[n] < out.shape[1]:
            out[n, axis[n]] = 0.0


@njit(**_JIT)
def _tempo_kernel(x, valid, factor, out, vout):
    """x, out: (N, C, T, Q) with Q = V M flattened; valid, vout: (N, T, Q)."""
    N, C, T, Q = x.shape
    for n in range(N):
        for t in range(T):
            s = t * factor[n]
            for q in range(Q):
                vout[n, t, q] = s < T and valid[n, s, q]
        for c in range(C):
            for t in range(T):
                s = t * factor[n]
                for q in range(Q):
                    out[n, c, t, q] = x[n, c, s, q] if vout[n, t, q] else 0.0


@njit(**_JIT)
def _bone_kernel(x, valid, parents, out, vout):
    N, C, T, V, M = x.shape
    for n in range(N):
        for t in range(T):
            for v in range(V):
                for m in range(M):
                    pv = parents[v] if parents[v] >= 0 else v
                    vout[n, t, v, m] = valid[n, t, v, m] and valid[n, t, pv, m]
        for c in range(C):
            for t in range(T):
                for v in range(V):
                    pv = parents[v] if parents[v] >= 0 else v
                    for m in range(M):
                        d = x[n, c, t, v, m] - x[n, c, t, pv, m]
                        out[n, c, t, v, m] = d if vout[n, t, v, m] else 0.0


@njit(**_JIT)
def _motion_kernel(x, valid, out, vout):
    """x, out: (N, C, T, Q) with Q = V M flattened; valid, vout: (N, T, Q)."""
    N, C, T, Q = x.shape
    for n in range(N):
        for t in range(T):
            for q in range(Q):
                vout[n, t, q] = t + 1 < T and valid[n, t, q] and valid[n, t + 1, q]
        for c in range(C):
            for t in range(T):
                for q in range(Q):
                    d = x[n, c, t + 1, q] - x[n, c, t, q] if vout[n, t, q] else np.float32(0.0)
                    out[n, c, t, q] = d


@njit(**_JIT)
def _normalize_kernel(raw, valid, center, sa, sb, ha, hb, per_frame, out):
    N, T, V, C, M = raw.shape
    ctr = np.zeros((T, C))
    d = np.zeros(C)
    for n in range(N):
        # Centre: person 0's centre joint; per frame with the last tracked value carried forward
        # (and the first tracked value carried back), or the first tracked frame's value.
        ctr[:] = 0.0
        first = -1
        for t in range(T):
            if valid[n, t, center, 0]:
                first = t
                break
        if first >= 0:
            last = first
            for t in range(T):
                if per_frame and valid[n, t, center, 0]:
                    last = t
                for c in range(C):
                    ctr[t, c] = raw[n, last, center, c, 0]
        rot = np.eye(C)
        if C == 3:
            for t in range(T):
                if not (
                    valid[n, t, sa, 0]
                    and valid[n, t, sb, 0]
                    and valid[n, t, ha, 0]
                    and valid[n, t, hb, 0]
                ):
                    continue
                u = np.empty(3)
                w = np.empty(3)
                for c in range(3):
                    u[c] = np.float64(raw[n, t, sb, c, 0]) - np.float64(raw[n, t, sa, c, 0])
                    w[c] = np.float64(raw[n, t, hb, c, 0]) - np.float64(raw[n, t, ha, c, 0])
                nu = math.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2])
                if nu < 1e-8:
                    continue
                u /= nu
                dot = w[0] * u[0] + w[1] * u[1] + w[2] * u[2]
                for c in range(3):
                    w[c] = w[c] - dot * u[c]
                nw = math.sqrt(w[0] * w[0] + w[1] * w[1] + w[2] * w[2])
                if nw < 1e-8:
                    continue
                w /= nw
                rot[0, :] = w
                rot[1, 0] = u[1] * w[2] - u[2] * w[1]
                rot[1, 1] = u[2] * w[0] - u[0] * w[2]
                rot[1, 2] = u[0] * w[1] - u[1] * w[0]
                rot[2, :] = u
                break
        for t in range(T):
            for v in range(V):
                for m in range(M):
                    if not valid[n, t, v, m]:
                        for c in range(C):
                            out[n, t, v, c, m] = 0.0
                        continue
                    for c in range(C):
                        d[c] = np.float64(raw[n, t, v, c, m]) - ctr[t, c]
                    for c in range(C):
                        y = 0.0
                        for k in range(C):
                            y += rot[c, k] * d[k]
                        out[n, t, v, c, m] = y


# --------------------------------------------------------------------------- public ops + twins


def _buffer(out: np.ndarray | None, shape: tuple[int, ...], dtype, name: str) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != tuple(shape) or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous:
        raise ValueError(
            f"{name}: expected a C-contiguous {np.dtype(dtype)} array of shape {tuple(shape)}, "
            f"got {out.dtype} {out.shape}; allocate it with np.empty(shape, dtype)"
        )
    return out


def _check_x(x: np.ndarray, valid: np.ndarray) -> None:
    if x.ndim != 5 or x.dtype != np.float32:
        raise ValueError(f"x must be float32 (N, C, T, V, M), got {x.dtype} {x.shape}")
    n, _, t, v, m = x.shape
    if valid.shape != (n, t, v, m) or valid.dtype != np.bool_:
        raise ValueError(
            f"valid must be bool (N, T, V, M) = {(n, t, v, m)}, got {valid.dtype} {valid.shape}"
        )


def _check_raw(raw: np.ndarray, valid: np.ndarray) -> None:
    if raw.ndim != 5 or raw.dtype != np.float32:
        raise ValueError(f"raw must be float32 (N, T, V, C, M), got {raw.dtype} {raw.shape}")
    n, t, v, _, m = raw.shape
    if valid.shape != (n, t, v, m) or valid.dtype != np.bool_:
        raise ValueError(
            f"valid must be bool (N, T, V, M) = {(n, t, v, m)}, got {valid.dtype} {valid.shape}"
        )


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(a, np.float64)


def _i64(a) -> np.ndarray:
    return np.ascontiguousarray(a, np.int64)


def crop_windows(
    lengths_N: np.ndarray,
    frac_N: np.ndarray,
    pos_N: np.ndarray,
    tempo_N: np.ndarray,
    padding_ratio: int = 6,
    min_crop: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The crop of each sample (vectorised twin of the kernels' rule).

    With T_v = lengths[n]: pad = T_v // padding_ratio mirrored frames on each side (AimCLR's
    ``temperal_crop``), crop length c = clip(floor(frac * T_v), min(min_crop, T_v), T_v) (at
    least 1), span = min(tempo * c, T_v + 2 pad) source frames, start = floor(pos * (T_v + 2 pad
    - span + 1)) in padded coordinates. With frac = 1, tempo = 1 this is AimCLR's crop exactly.
    A sequence shorter than the crop (T_v < min_crop) is taken whole; a 2x span that exceeds the
    padded length is cut to it (the effective tempo is then below 2).

    Returns:
        (pad, start, span), each (N,) int64.
    """
    length = _i64(lengths_N)
    pad = length // padding_ratio if padding_ratio > 0 else np.zeros_like(length)
    padded = length + 2 * pad
    c = np.floor(_f64(frac_N) * length).astype(np.int64)
    c = np.minimum(np.maximum(np.maximum(c, np.minimum(min_crop, length)), 1), length)
    span = np.minimum(c * _i64(tempo_N), padded)
    start = np.minimum(np.floor(_f64(pos_N) * (padded - span + 1)).astype(np.int64), padded - span)
    return pad, start, span


def crop_resize(
    raw_NTVCM: np.ndarray,
    valid_NTVM: np.ndarray,
    lengths_N: np.ndarray,
    frac_N: np.ndarray,
    pos_N: np.ndarray,
    tempo_N: np.ndarray,
    out_len: int,
    padding_ratio: int = 6,
    min_crop: int = 1,
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Temporal crop (see :func:`crop_windows`) resized to ``out_len`` frames by linear
    interpolation (``F.interpolate(mode="linear", align_corners=False)`` semantics), written in
    the model layout.

    Args:
        raw_NTVCM: (N, T, V, C, M) float32 raw windows; frames >= lengths[n] are ignored.
        valid_NTVM: (N, T, V, M) bool.
        lengths_N: (N,) valid length of each window (clipped to T; 0 gives an all-zero view).
        frac_N, pos_N, tempo_N: (N,) crop fraction, start position in [0, 1), tempo (1 or 2).
        out_len: L.
        padding_ratio, min_crop: see :func:`crop_windows`.
        out, out_valid: optional (N, C, L, V, M) float32 and (N, L, V, M) bool buffers.

    Returns:
        (out (N, C, L, V, M) float32, out_valid (N, L, V, M) bool).
    """
    _check_raw(raw_NTVCM, valid_NTVM)
    n, _, v, c, m = raw_NTVCM.shape
    out = _buffer(out, (n, c, out_len, v, m), np.float32, "out")
    out_valid = _buffer(out_valid, (n, out_len, v, m), np.bool_, "out_valid")
    _crop_resize_kernel(
        raw_NTVCM,
        valid_NTVM,
        _i64(lengths_N),
        _f64(frac_N),
        _f64(pos_N),
        _i64(tempo_N),
        padding_ratio,
        min_crop,
        out,
        out_valid,
    )
    return out, out_valid


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
    """Numpy twin of :func:`crop_resize` (gathers + blend over the whole batch)."""
    n, t_max, _, _, _ = raw_NTVCM.shape
    length = np.minimum(_i64(lengths_N), t_max)
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


def linear_transform(
    x_NCTVM: np.ndarray, valid_NTVM: np.ndarray, mat_NCC: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample linear map of every point, y = A x (rotation, shear, or their product).

    Args:
        x_NCTVM: (N, C, T, V, M) float32.
        valid_NTVM: (N, T, V, M) bool; invalid points are written as 0.
        mat_NCC: (N, 3, 3) matrices (the top-left C x C block is used).
        out: optional (N, C, T, V, M) float32 buffer (must not alias x).

    Returns:
        (N, C, T, V, M) float32.
    """
    _check_x(x_NCTVM, valid_NTVM)
    out = _buffer(out, x_NCTVM.shape, np.float32, "out")
    n, c = x_NCTVM.shape[:2]
    _linear_kernel(
        x_NCTVM.reshape(n, c, -1), valid_NTVM.reshape(n, -1), _f64(mat_NCC), out.reshape(n, c, -1)
    )
    return out


def linear_transform_ref(
    x_NCTVM: np.ndarray, valid_NTVM: np.ndarray, mat_NCC: np.ndarray
) -> np.ndarray:
    """Numpy twin of :func:`linear_transform` (same summation order)."""
    c_n = x_NCTVM.shape[1]
    a = _f64(mat_NCC)[:, :c_n, :c_n, None, None, None]
    x = x_NCTVM.astype(np.float64)
    y = np.zeros(x.shape)
    for k in range(c_n):
        y = y + a[:, :, k] * x[:, k][:, None]
    return np.where(valid_NTVM[:, None], y, 0.0).astype(np.float32)


def flip_swap(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    perm_V: np.ndarray,
    flip_N: np.ndarray,
    swap_N: np.ndarray,
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Left/right flip (joint v takes joint perm[v], ``Layout.flip_permutation()``) where flip_N,
    and person swap (0 <-> 1, M == 2 only; a no-op for M == 1) where swap_N.

    Args:
        x_NCTVM: (N, C, T, V, M) float32; valid_NTVM: (N, T, V, M) bool.
        perm_V: (V,) int joint permutation; flip_N, swap_N: (N,) bool.
        out, out_valid: optional buffers shaped like the inputs.

    Returns:
        (out, out_valid).
    """
    _check_x(x_NCTVM, valid_NTVM)
    out = _buffer(out, x_NCTVM.shape, np.float32, "out")
    out_valid = _buffer(out_valid, valid_NTVM.shape, np.bool_, "out_valid")
    _flip_swap_kernel(
        x_NCTVM,
        valid_NTVM,
        _i64(perm_V),
        np.asarray(flip_N, np.bool_),
        np.asarray(swap_N, np.bool_),
        out,
        out_valid,
    )
    return out, out_valid


def flip_swap_ref(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    perm_V: np.ndarray,
    flip_N: np.ndarray,
    swap_N: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`flip_swap`."""
    f = np.asarray(flip_N, bool)
    x = np.where(f[:, None, None, None, None], x_NCTVM[:, :, :, _i64(perm_V)], x_NCTVM)
    val = np.where(f[:, None, None, None], valid_NTVM[:, :, _i64(perm_V)], valid_NTVM)
    if x.shape[-1] == 2:
        s = np.asarray(swap_N, bool)
        x = np.where(s[:, None, None, None, None], x[..., ::-1], x)
        val = np.where(s[:, None, None, None], val[..., ::-1], val)
    return np.ascontiguousarray(x), np.ascontiguousarray(val)


def gaussian_noise(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    std_N: np.ndarray,
    seed_N: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Add N(0, std^2) noise to valid points; invalid points are written as 0.

    The normals are made in the kernel from a counter hash: channel c of point p = (t V + v) M + m
    of sample n gets normal 3p + c of stream seed_N[n] (a 32-bit half of a splitmix64 output
    through an interpolated inverse-CDF table, clipped at +-3.67 sigma), so the noise is a pure
    function of (seed, point), the same in every engine and bit-identical in the numpy twin.
    Cost: one 64-bit hash per two normals and a table lookup; bench/bench_augment.py compares it
    with drawing the normals from ``np.random.Generator`` as the AimCLR feeder does.

    Args:
        x_NCTVM: (N, C, T, V, M) float32; valid_NTVM: (N, T, V, M) bool.
        std_N: (N,) noise std (0: copy); seed_N: (N,) uint64.
        out: optional buffer (must not alias x).

    Returns:
        (N, C, T, V, M) float32.
    """
    _check_x(x_NCTVM, valid_NTVM)
    out = _buffer(out, x_NCTVM.shape, np.float32, "out")
    n, c = x_NCTVM.shape[:2]
    _noise_kernel(
        x_NCTVM.reshape(n, c, -1),
        valid_NTVM.reshape(n, -1),
        _f64(std_N),
        np.asarray(seed_N, np.uint64),
        out.reshape(n, c, -1),
    )
    return out


def _normals_ref(seed_N: np.ndarray, points: int) -> np.ndarray:
    """(N, 3, points) float64 normals of :func:`gaussian_noise`: normal 3p + c is channel c of
    point p."""
    k = np.arange(3 * points, dtype=np.int64)[None, :]
    z = _stream(np.asarray(seed_N, np.uint64)[:, None], k >> 1)
    bits = np.where(k & 1, z >> np.uint64(32), z & _LOW32)
    pos = bits.astype(np.float64) * _BIN_SCALE - 0.5
    i = np.clip(pos.astype(np.int64), 0, _NORMAL_BINS - 2)
    table = _NORMAL_TABLE
    val = table[i] + (pos - i) * (table[i + 1] - table[i])
    val = np.where(pos <= 0.0, table[0], np.where(pos >= _NORMAL_BINS - 1, table[-1], val))
    return val.reshape(-1, points, 3).transpose(0, 2, 1)


def gaussian_noise_ref(
    x_NCTVM: np.ndarray, valid_NTVM: np.ndarray, std_N: np.ndarray, seed_N: np.ndarray
) -> np.ndarray:
    """Numpy twin of :func:`gaussian_noise` (the same counter-hash normals, vectorised)."""
    n, c, t, v, m = x_NCTVM.shape
    z = _normals_ref(seed_N, t * v * m)[:, :c].reshape(n, c, t, v, m)
    std = _f64(std_N)[:, None, None, None, None]
    y = np.where(std > 0.0, x_NCTVM.astype(np.float64) + std * z, x_NCTVM.astype(np.float64))
    return np.where(valid_NTVM[:, None], y, 0.0).astype(np.float32)


def mask_blur(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    joint_p_N: np.ndarray,
    joint_seed_N: np.ndarray,
    sigma_N: np.ndarray,
    axis_N: np.ndarray,
    kernel: int = 15,
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Joint mask, then temporal Gaussian blur, then axis mask (the extreme view's tail).

    Joint mask: joint v of sample n is zeroed and invalidated in every frame and person when
    output v of splitmix64 stream joint_seed_N[n] (as a uniform) is below joint_p_N[n].
    Blur: weights exp(-k^2 / (2 sigma^2)), k in [-kernel//2, kernel//2], normalised over the
    in-range valid taps, in float32 (a constant stays constant; invalid points stay 0; sigma 0:
    no blur).
    Axis mask: coordinate axis_N[n] is zeroed for every point (-1: none; joints stay valid).
    Each op alone is this function with the other two at their neutral value (p 0, sigma 0,
    axis -1).

    Args:
        x_NCTVM: (N, C, T, V, M) float32; valid_NTVM: (N, T, V, M) bool.
        joint_p_N, joint_seed_N, sigma_N, axis_N: (N,) per-sample parameters.
        kernel: odd blur length (AimCLR: 15).
        out, out_valid: optional buffers (must not alias the inputs).

    Returns:
        (out, out_valid).
    """
    _check_x(x_NCTVM, valid_NTVM)
    out = _buffer(out, x_NCTVM.shape, np.float32, "out")
    out_valid = _buffer(out_valid, valid_NTVM.shape, np.bool_, "out_valid")
    np.copyto(out, np.where(valid_NTVM[:, None], x_NCTVM, np.float32(0.0)))  # the blur needs 0s
    out_valid[:] = valid_NTVM
    _mask_blur_kernel(
        out,
        out_valid,
        _f64(joint_p_N),
        np.asarray(joint_seed_N, np.uint64),
        _f64(sigma_N),
        kernel // 2,
        _i64(axis_N),
    )
    return out, out_valid


def mask_blur_ref(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    joint_p_N: np.ndarray,
    joint_seed_N: np.ndarray,
    sigma_N: np.ndarray,
    axis_N: np.ndarray,
    kernel: int = 15,
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`mask_blur` (vectorised over the batch; a loop over the taps)."""
    _, c, t, v, _ = x_NCTVM.shape
    u = (
        _stream(np.asarray(joint_seed_N, np.uint64)[:, None], np.arange(v)[None, :])
        >> np.uint64(11)
    ).astype(np.float64) * _INV_2_53
    masked = u < _f64(joint_p_N)[:, None]
    val = valid_NTVM & ~masked[:, None, :, None]
    x = np.where(val[:, None], x_NCTVM, np.float32(0.0))

    r = kernel // 2
    sigma = _f64(sigma_N)
    on = sigma > 0.0
    taps = np.arange(-r, r + 1)
    safe = np.where(on, sigma, 1.0)
    g = np.exp(-(taps * taps)[None, :] / (2.0 * safe * safe)[:, None]).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (r, r), (0, 0), (0, 0)))
    vp = np.pad(val, ((0, 0), (r, r), (0, 0), (0, 0)))
    num = np.zeros(x.shape, np.float32)
    den = np.zeros(val.shape, np.float32)
    for j, k in enumerate(taps):
        vk = vp[:, r + k : r + k + t]
        gk = g[:, j, None, None, None]
        num = num + gk[:, None] * xp[:, :, r + k : r + k + t] * vk[:, None]
        den = den + gk * vk
    one, zero = np.float32(1.0), np.float32(0.0)
    blurred = np.where(val[:, None], num / np.where(val, den, one)[:, None], zero)
    y = np.where(on[:, None, None, None, None], blurred, x)

    axis = _i64(axis_N)
    hit = (axis[:, None] == np.arange(c)[None, :])[:, :, None, None, None]
    return np.where(hit, np.float32(0.0), y), val


def tempo_change(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    factor_N: np.ndarray,
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Play sample n at factor_N[n] x speed (RVTCLR: 1 or 2): out[t] = x[t * f]; frames whose
    source lies past T are zero and invalid. (In ``two_view`` the tempo widens the crop instead,
    so a 2x view still fills L frames.)

    Returns:
        (out (N, C, T, V, M) float32, out_valid (N, T, V, M) bool).
    """
    _check_x(x_NCTVM, valid_NTVM)
    out = _buffer(out, x_NCTVM.shape, np.float32, "out")
    out_valid = _buffer(out_valid, valid_NTVM.shape, np.bool_, "out_valid")
    n, c, t = x_NCTVM.shape[:3]
    _tempo_kernel(
        x_NCTVM.reshape(n, c, t, -1),
        valid_NTVM.reshape(n, t, -1),
        _i64(factor_N),
        out.reshape(n, c, t, -1),
        out_valid.reshape(n, t, -1),
    )
    return out, out_valid


def tempo_change_ref(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    factor_N: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`tempo_change`."""
    n, _, t, _, _ = x_NCTVM.shape
    src = np.arange(t)[None, :] * _i64(factor_N)[:, None]
    inside = src < t
    rows = np.arange(n)[:, None]
    s = np.minimum(src, t - 1)
    val = valid_NTVM[rows, s] & inside[:, :, None, None]
    x = x_NCTVM.transpose(0, 2, 1, 3, 4)[rows, s].transpose(0, 2, 1, 3, 4)
    return np.where(val[:, None], x, np.float32(0.0)), val


def bone_stream(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    parents: np.ndarray | tuple[int, ...],
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bones x[v] - x[parent[v]] (``Layout.parents``); the root's bone is 0. A bone is valid iff
    both its joints are.

    Returns:
        (out (N, C, T, V, M) float32, out_valid (N, T, V, M) bool).
    """
    _check_x(x_NCTVM, valid_NTVM)
    out = _buffer(out, x_NCTVM.shape, np.float32, "out")
    out_valid = _buffer(out_valid, valid_NTVM.shape, np.bool_, "out_valid")
    _bone_kernel(x_NCTVM, valid_NTVM, _i64(parents), out, out_valid)
    return out, out_valid


def bone_stream_ref(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    parents: np.ndarray | tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`bone_stream`."""
    par = _i64(parents)
    par = np.where(par >= 0, par, np.arange(par.size))
    val = valid_NTVM & valid_NTVM[:, :, par]
    d = x_NCTVM - x_NCTVM[:, :, :, par]
    return np.where(val[:, None], d, np.float32(0.0)), val


def motion_stream(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Motion x[t+1] - x[t]; the last frame is 0 and invalid, as is any step touching an
    invalid point.

    Returns:
        (out (N, C, T, V, M) float32, out_valid (N, T, V, M) bool).
    """
    _check_x(x_NCTVM, valid_NTVM)
    out = _buffer(out, x_NCTVM.shape, np.float32, "out")
    out_valid = _buffer(out_valid, valid_NTVM.shape, np.bool_, "out_valid")
    n, c, t = x_NCTVM.shape[:3]
    _motion_kernel(
        x_NCTVM.reshape(n, c, t, -1),
        valid_NTVM.reshape(n, t, -1),
        out.reshape(n, c, t, -1),
        out_valid.reshape(n, t, -1),
    )
    return out, out_valid


def motion_stream_ref(x_NCTVM: np.ndarray, valid_NTVM: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`motion_stream`."""
    val = np.zeros_like(valid_NTVM)
    val[:, :-1] = valid_NTVM[:, :-1] & valid_NTVM[:, 1:]
    d = np.zeros(x_NCTVM.shape, np.float32)
    d[:, :, :-1] = x_NCTVM[:, :, 1:] - x_NCTVM[:, :, :-1]
    return np.where(val[:, None], d, np.float32(0.0)), val


def normalization_joints(layout: Layout) -> tuple[int, int, int, int, int]:
    """Joints of the NTU-style normalisation for a layout: (centre, spine_from, spine_to,
    shoulder_from, shoulder_to).

    NTU-25: (1, 0, 1, 8, 4): centre spine-middle, spine bone 0 -> 1, shoulder bone right (8) ->
    left (4). Other layouts: centre ``layout.center``; spine bone root -> centre (or centre ->
    ``neck`` when the root is the centre, e.g. OpenNI ``torso``); shoulder bone right -> left of
    the first flip pair whose joint names contain "shoulder".

    Raises:
        ConfigError: the layout has no such joints; pass the joints explicitly to
            :func:`normalize_ntu`.
    """
    names = layout.joint_names
    center = layout.center
    root = layout.parents.index(-1)
    if root != center:
        spine = (root, center)
    elif "neck" in names:
        spine = (center, names.index("neck"))
    else:
        raise ConfigError(
            f"layout {layout.name!r}: root == centre and no 'neck' joint; "
            "pass joints=(centre, spine_from, spine_to, shoulder_from, shoulder_to)"
        )
    for left, right in layout.flip_pairs:
        if "shoulder" in names[left] and "shoulder" in names[right]:
            return center, spine[0], spine[1], right, left
    raise ConfigError(
        f"layout {layout.name!r} has no left/right shoulder flip pair; pass "
        "joints=(centre, spine_from, spine_to, shoulder_from, shoulder_to)"
    )


def normalize_ntu(
    raw_NTVCM: np.ndarray,
    valid_NTVM: np.ndarray,
    joints: tuple[int, int, int, int, int],
    mode: str = "first",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """NTU-style pre-normalisation (2s-AGCN; METHOD.md section 1) of raw windows.

    Centring subtracts person 0's centre joint: ``mode="first"`` (default) the value at the first
    frame where it is tracked, for every frame, which keeps global translation (walk, jog, jump:
    information localisation needs); ``mode="frame"`` the value of each frame (untracked frames
    reuse the last tracked value, leading ones the first). Then every point is rotated by R, whose
    rows are (e_x, e_y, e_z): e_z along person 0's spine bone and e_x along the shoulder bone made
    orthogonal to e_z (Gram-Schmidt), taken at the first frame where the four joints are tracked
    and the bones are not degenerate; so that bone is exactly +z and the shoulder bone lies in the
    +x half of the xz-plane. No such frame: no rotation; no tracked centre: no centring. Two-channel
    layouts are centred only. Invalid joints are written as 0.

    Args:
        raw_NTVCM: (N, T, V, C, M) float32; valid_NTVM: (N, T, V, M) bool.
        joints: (centre, spine_from, spine_to, shoulder_from, shoulder_to), see
            :func:`normalization_joints` (NTU-25: (1, 0, 1, 8, 4)).
        mode: "first" or "frame".
        out: optional (N, T, V, C, M) float32 buffer (must not alias raw).

    Returns:
        (N, T, V, C, M) float32.
    """
    if mode not in ("first", "frame"):
        raise ConfigError(f"normalization mode {mode!r}: expected 'first' or 'frame'")
    _check_raw(raw_NTVCM, valid_NTVM)
    out = _buffer(out, raw_NTVCM.shape, np.float32, "out")
    c, sa, sb, ha, hb = (int(j) for j in joints)
    _normalize_kernel(raw_NTVCM, valid_NTVM, c, sa, sb, ha, hb, mode == "frame", out)
    return out


def normalize_ntu_ref(
    raw_NTVCM: np.ndarray,
    valid_NTVM: np.ndarray,
    joints: tuple[int, int, int, int, int],
    mode: str = "first",
) -> np.ndarray:
    """Numpy twin of :func:`normalize_ntu`."""
    n, t, _, c, _ = raw_NTVCM.shape
    center, sa, sb, ha, hb = joints
    x = raw_NTVCM.astype(np.float64)
    rows = np.arange(n)[:, None]
    tracked = valid_NTVM[:, :, center, 0]
    first = np.argmax(tracked, axis=1)
    idx = np.where(tracked, np.arange(t)[None, :], -1)
    idx = np.maximum.accumulate(idx, axis=1) if mode == "frame" else np.full((n, t), -1)
    idx = np.where(idx < 0, first[:, None], idx)
    ctr = np.where(tracked.any(axis=1)[:, None, None], x[rows, idx, center, :, 0], 0.0)  # (N, T, C)

    rot = np.tile(np.eye(c), (n, 1, 1))
    if c == 3:
        u = x[:, :, sb, :, 0] - x[:, :, sa, :, 0]
        w = x[:, :, hb, :, 0] - x[:, :, ha, :, 0]
        nu = np.sqrt(u[..., 0] * u[..., 0] + u[..., 1] * u[..., 1] + u[..., 2] * u[..., 2])
        u = u / np.where(nu < 1e-8, 1.0, nu)[..., None]
        dot = w[..., 0] * u[..., 0] + w[..., 1] * u[..., 1] + w[..., 2] * u[..., 2]
        w = w - dot[..., None] * u
        nw = np.sqrt(w[..., 0] * w[..., 0] + w[..., 1] * w[..., 1] + w[..., 2] * w[..., 2])
        w = w / np.where(nw < 1e-8, 1.0, nw)[..., None]
        ok = valid_NTVM[:, :, [sa, sb, ha, hb], 0].all(axis=2) & (nu >= 1e-8) & (nw >= 1e-8)
        t1 = np.argmax(ok, axis=1)
        e_z, e_x = u[np.arange(n), t1], w[np.arange(n), t1]
        found = ok.any(axis=1)
        r = np.stack([e_x, np.cross(e_z, e_x), e_z], axis=1)
        rot = np.where(found[:, None, None], r, rot)
    d = x - ctr[:, :, None, :, None]
    y = np.zeros(x.shape)
    for k in range(c):
        y = y + rot[:, None, None, :, k, None] * d[:, :, :, k, None, :]
    return np.where(valid_NTVM[:, :, :, None, :], y, 0.0).astype(np.float32)


# --------------------------------------------------------------------------- composed views


def _stacked(params: TwoViewParams) -> tuple[np.ndarray, ...]:
    views = params.views
    return tuple(
        np.ascontiguousarray(np.stack([getattr(v, f.name) for v in views]))
        for f in fields(ViewParams)
    )


def two_view(
    raw_NTVCM: np.ndarray,
    valid_NTVM: np.ndarray,
    lengths_N: np.ndarray,
    params: TwoViewParams,
    cfg: AugmentConfig,
    flip_perm: np.ndarray | None = None,
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Query, key and (when ``params.extreme`` is set) extreme view of every window, one call.

    Per view and sample, fused in one pass: crop + resize (:func:`crop_resize`) with the flip
    permutation and person swap folded into the gather, the linear map ``mat`` (rotation @
    shear), Gaussian noise; then joint mask, temporal blur and axis mask
    (:func:`mask_blur`). The result equals the chain of the standalone ops (``two_view_ref``).

    Args:
        raw_NTVCM: (N, T, V, C, M) float32 raw windows (corpus layout).
        valid_NTVM: (N, T, V, M) bool.
        lengths_N: (N,) int valid length of each window (0: all-zero, all-invalid views).
        params: from :func:`params_for` or :func:`draw_two_view_params` (arrays of length N).
        cfg: supplies out_len, padding_ratio, min_crop and blur_kernel.
        flip_perm: (V,) ``Layout.flip_permutation()``; required when any view flips.
        out: optional (R, N, C, L, V, M) float32 buffer, R = 2 or 3 views (query, key, extreme).
        out_valid: optional (R, N, L, V, M) bool buffer.

    Returns:
        (out, out_valid); ``out[0]``, ``out[1]``, ``out[2]`` are the query, key, extreme views.

    Raises:
        ConfigError: a view flips and no ``flip_perm`` was given.
    """
    _check_raw(raw_NTVCM, valid_NTVM)
    n, _, v, c, m = raw_NTVCM.shape
    arrays = _stacked(params)
    r = arrays[0].shape[0]
    if arrays[0].shape[1] != n:
        raise ValueError(f"params hold {arrays[0].shape[1]} samples, the batch has {n}")
    if flip_perm is None:
        if any(view.flip.any() for view in params.views):
            raise ConfigError(
                "two_view: params flip some samples but flip_perm is None; pass "
                "layout.flip_permutation() (AugmentConfig.check_layout checks it)"
            )
        flip_perm = np.arange(v)
    perm = _i64(flip_perm)
    if perm.shape != (v,):
        raise ValueError(f"flip_perm must be (V,) = ({v},), got {perm.shape}")
    out = _buffer(out, (r, n, c, cfg.out_len, v, m), np.float32, "out")
    out_valid = _buffer(out_valid, (r, n, cfg.out_len, v, m), np.bool_, "out_valid")
    args = (
        raw_NTVCM,
        valid_NTVM,
        _i64(lengths_N),
        perm,
        cfg.padding_ratio,
        cfg.min_crop,
        cfg.blur_kernel // 2,
        *arrays,
        out,
        out_valid,
    )
    if numba.get_num_threads() > 1 and n > 1:
        with _PARALLEL_LOCK:
            _two_view_parallel(*args)
    else:
        _two_view_serial(*args)
    return out, out_valid


def two_view_ref(
    raw_NTVCM: np.ndarray,
    valid_NTVM: np.ndarray,
    lengths_N: np.ndarray,
    params: TwoViewParams,
    cfg: AugmentConfig,
    flip_perm: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`two_view`: the chain of the standalone ``_ref`` ops per view."""
    v = raw_NTVCM.shape[2]
    perm = np.arange(v) if flip_perm is None else flip_perm
    outs, vals = [], []
    for p in params.views:
        x, val = crop_resize_ref(
            raw_NTVCM,
            valid_NTVM,
            lengths_N,
            p.crop_frac,
            p.crop_pos,
            p.tempo,
            cfg.out_len,
            cfg.padding_ratio,
            cfg.min_crop,
        )
        x, val = flip_swap_ref(x, val, perm, p.flip, p.swap)
        x = linear_transform_ref(x, val, p.mat)
        x = gaussian_noise_ref(x, val, p.noise_std, p.noise_seed)
        x, val = mask_blur_ref(
            x, val, p.joint_mask_p, p.joint_seed, p.blur_sigma, p.axis, cfg.blur_kernel
        )
        outs.append(x)
        vals.append(val)
    return np.stack(outs), np.stack(vals)
