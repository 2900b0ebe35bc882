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
pre-processing ``normalize_ntu`` (whole sequences; the batch loader folds the same
normalisation into ``two_view``'s gather through ``norm``, see ``sscl.data.normalize``) and the
``bone_stream`` / ``motion_stream`` modalities.

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

from dataclasses import dataclass, fields
from typing import NamedTuple

import numba
import numpy as np

from sscl.data.augment_kernels import (
    _INV_2_53,
    _PARALLEL_LOCK,
    _batch_params_kernel,
    _stream,
    _two_view_parallel,
    _two_view_serial,
    _view_params_kernel,
)
from sscl.data.augment_ops import (  # noqa: F401  (re-exported)
    _buffer,
    _check_raw,
    _i64,
    bone_stream,
    bone_stream_ref,
    crop_resize,
    crop_resize_ref,
    crop_windows,
    flip_swap,
    flip_swap_ref,
    gaussian_noise,
    gaussian_noise_ref,
    linear_transform,
    linear_transform_ref,
    mask_blur,
    mask_blur_ref,
    motion_stream,
    motion_stream_ref,
    normalization_joints,
    normalize_ntu,
    normalize_ntu_ref,
    tempo_change,
    tempo_change_ref,
)
from sscl.data.layouts import Layout
from sscl.data.normalize import WindowNorm, normalize_windows_ref
from sscl.errors import ConfigError

# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (schema; YAML presets set these fields).

    Query and key views: crop + resize, shear, optional rotation/flip/person swap/tempo.
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
        tempos: playback tempos (RVTCLR: (1.0, 2.0)). Each view of each sample draws one
            uniformly from the set (a per-sample seeded draw); its crop spans
            ``tempo / max(tempos)`` of the frames a tempo-``max`` crop spans, resized to the
            same ``out_len``, so a 2x view covers twice the motion of a 1x view. The draw is
            in the batch as ``<view>_tempo``. (1.0,): every view at 1x, the plain crop.
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
    tempos: tuple[float, ...] = (1.0,)
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

        object.__setattr__(self, "tempos", tuple(float(t) for t in self.tempos))
        if (not self.tempos or len(set(self.tempos)) != len(self.tempos)
                or not all(0.0 < t < float("inf") for t in self.tempos)):
            raise bad("tempos", "a non-empty tuple of distinct tempos > 0, e.g. (1.0, 2.0)")
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
        tempo: (N,) float64, the view's tempo, one of ``AugmentConfig.tempos`` (the crop spans
            ``tempo / max(tempos)`` of a full-tempo crop).
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


# One C-contiguous (R, N) array per ViewParams field (``mat`` (R, N, 3, 3)), view r in
# TwoViewParams.views order: what the composed kernel takes. Built from ViewParams' fields so the
# two cannot drift apart.
StackedParams = NamedTuple(  # noqa: UP014 (field names come from ViewParams)
    "StackedParams", [(f.name, np.ndarray) for f in fields(ViewParams)]
)
StackedParams.__doc__ = (
    "The views' parameters stacked as the composed kernel takes them: every ViewParams field "
    "as one (R, N) array. stacked_params_for computes it; stack_params converts TwoViewParams."
)


_DRAWS_PER_VIEW = 18  # uniforms per view consumed by _view_from_draws
_SEEDS_PER_VIEW = 2


def _kernel_cfg(cfg: AugmentConfig) -> tuple:
    """The settings shared by every view, in the view-parameter kernels' argument order."""
    lo, hi = cfg.crop_range
    s0, s1 = cfg.blur_sigma
    head = tuple(float(x) for x in (lo, hi, cfg.shear, cfg.swap_prob))
    tail = tuple(float(x) for x in (
        cfg.noise_prob, cfg.noise_std, cfg.blur_prob, s0, s1, cfg.axis_mask_prob, cfg.joint_mask_p,
    ))
    return head + (np.array(cfg.tempos, np.float64),) + tail


def _view_cfg(cfg: AugmentConfig, extreme: tuple[bool, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Per view: (R, 3) rotation ranges in radians and (R,) flip probabilities."""
    rot = np.radians(np.array(
        [cfg.extreme_rotate_deg if e else cfg.rotate_deg for e in extreme], np.float64
    ))
    return rot, np.array([cfg.extreme_flip_prob if e else cfg.flip_prob for e in extreme])


def _empty_params(shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Output arrays of the view-parameter kernels, in ``ViewParams`` field order."""
    f, i, b, u = np.float64, np.int64, np.bool_, np.uint64
    dtypes = (f, f, f, b, b, f, f, u, f, u, f, i)
    return tuple(
        np.empty(shape + ((3, 3) if name == "mat" else ()), dt)
        for name, dt in zip(StackedParams._fields, dtypes, strict=True)
    )


def _view_from_draws(u: np.ndarray, z: np.ndarray, cfg: AugmentConfig, extreme: bool) -> ViewParams:
    """Map uniforms u (N, 18) in [0, 1) and raw 64-bit words z (N, 2) to one view's parameters
    (compiled: ``_view_params_kernel``; numpy twin: :func:`_view_from_draws_ref`)."""
    rot, flip_p = _view_cfg(cfg, (extreme,))
    out = ViewParams(*_empty_params((u.shape[0],)))
    _view_params_kernel(
        np.ascontiguousarray(u, np.float64), np.ascontiguousarray(z, np.uint64), bool(extreme),
        rot[0], float(flip_p[0]), *_kernel_cfg(cfg), *(getattr(out, f.name) for f in fields(out)),
    )
    return out


def _view_from_draws_ref(
    u: np.ndarray, z: np.ndarray, cfg: AugmentConfig, extreme: bool
) -> ViewParams:
    """Numpy twin of :func:`_view_from_draws` (vectorised over the batch)."""
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
        with np.errstate(over="ignore"):  # u / p overflows only where u >= p (no hit)
            scaled = np.where(hit, 3.0 * u[:, 17] / max(cfg.axis_mask_prob, 1e-300), 0.0)
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
        tempo=np.asarray(cfg.tempos)[
            np.minimum((u[:, 2] * len(cfg.tempos)).astype(np.int64), len(cfg.tempos) - 1)
        ],
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


def _slots(extreme: bool, strong_key: bool) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """Stream slot of each view (slot r: words r*20 .. r*20+19 of a sample's stream) and
    whether it takes the extreme recipe. strong_key keeps the extreme view's slot (2) for the
    key, so its draws equal the extreme view of ``extreme=True``."""
    if extreme and strong_key:
        raise ConfigError("extreme and strong_key exclude each other: strong_key puts the "
                          "extreme recipe on the key view, extreme adds a third view")
    if extreme:
        return (0, 1, 2), (False, False, True)
    if strong_key:
        return (0, 2), (False, True)
    return (0, 1), (False, False)


def params_for(
    seed: int,
    epoch: int,
    global_indices: np.ndarray,
    cfg: AugmentConfig,
    extreme: bool = False,
    strong_key: bool = False,
) -> TwoViewParams:
    """Per-sample parameters determined by (seed, epoch, global index) alone.

    Sample i's draws are outputs 0, 1, ... of a splitmix64 stream keyed by
    ``sample_keys(seed, epoch, i)``: no Generator per sample, and independent of the batch
    composition, the rank and the number of processes. Computed by :func:`stacked_params_for`
    (each view's arrays are rows of its stacked arrays); numpy twin: :func:`params_for_ref`.

    Args:
        seed: run seed.
        epoch: epoch number.
        global_indices: (N,) int global sample indices.
        cfg: augmentation settings.
        extreme: also make the extreme view.
        strong_key: return (query, extreme) as (query, key): the extreme recipe on the key
            view, equal to ``TwoViewParams(p.query, p.extreme)`` of ``extreme=True`` without
            building the unused key view. Excludes ``extreme``.

    Returns:
        TwoViewParams with arrays of length N.

    Raises:
        ConfigError: both ``extreme`` and ``strong_key``.
    """
    stacked = stacked_params_for(seed, epoch, global_indices, cfg, extreme, strong_key)
    views = [ViewParams(*(a[r] for a in stacked)) for r in range(stacked.flip.shape[0])]
    return TwoViewParams(views[0], views[1], views[2] if extreme else None)


def params_for_ref(
    seed: int,
    epoch: int,
    global_indices: np.ndarray,
    cfg: AugmentConfig,
    extreme: bool = False,
    strong_key: bool = False,
) -> TwoViewParams:
    """Numpy twin of :func:`params_for` (vectorised hashing, :func:`_view_from_draws_ref`)."""
    slots, ext = _slots(extreme, strong_key)
    keys = sample_keys(seed, epoch, global_indices)[:, None]
    per = _DRAWS_PER_VIEW + _SEEDS_PER_VIEW
    words = _stream(keys, np.arange(3 * per, dtype=np.int64)[None, :]).reshape(-1, 3, per)
    u = (words[..., :_DRAWS_PER_VIEW] >> np.uint64(11)).astype(np.float64) * _INV_2_53
    z = words[..., _DRAWS_PER_VIEW:]
    views = [_view_from_draws_ref(u[:, r], z[:, r], cfg, e) for r, e in zip(slots, ext)]
    return TwoViewParams(views[0], views[1], views[2] if extreme else None)


def rotation_matrices(angles_N3: np.ndarray) -> np.ndarray:
    """Rotations R = Rz @ Ry @ Rx (right-handed, radians) acting on column vectors.

    Args:
        angles_N3: (N, 3) angles about x, y, z in radians.

    Returns:
        (N, 3, 3) float64.
    """
    a = np.asarray(angles_N3, np.float64)
    cx, cy, cz = np.cos(a).T
    sx, sy, sz = np.sin(a).T
    # The product Rz @ Ry @ Rx written out (one batched array build instead of two matmuls).
    rows = (
        (cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx),
        (sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx),
        (-sy, cy * sx, cy * cx),
    )
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


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
    m = np.empty((s.shape[0], 3, 3))
    m[:, [0, 1, 2], [0, 1, 2]] = 1.0
    m[:, 0, 1], m[:, 1, 0], m[:, 2, 0] = s[:, 0], s[:, 1], s[:, 2]
    m[:, 0, 2], m[:, 1, 2], m[:, 2, 1] = s[:, 3], s[:, 4], s[:, 5]
    return m



# --------------------------------------------------------------------------- composed views


def stack_params(params: TwoViewParams | StackedParams) -> StackedParams:
    """``params`` as :class:`StackedParams` (returned unchanged when it already is)."""
    if isinstance(params, StackedParams):
        return params
    views = params.views
    return StackedParams(*(
        np.ascontiguousarray(np.stack([getattr(v, f.name) for v in views]))
        for f in fields(ViewParams)
    ))


def stacked_params_for(
    seed: int,
    epoch: int,
    global_indices: np.ndarray,
    cfg: AugmentConfig,
    extreme: bool = False,
    strong_key: bool = False,
) -> StackedParams:
    """:func:`params_for`'s parameters stacked as the composed kernel takes them (the batch
    loader's path): the hash chain, the uniforms and the view formulas in one compiled pass
    (``_batch_params_kernel``). Numpy building the views and then stacking them cost ~220 us a
    batch of 64, a sixth of the composed kernel's time on MSRC-12; this costs ~67 us.

    Args, semantics and errors: as :func:`params_for`.
    """
    slots, ext = _slots(extreme, strong_key)
    idx = np.ascontiguousarray(np.asarray(global_indices), np.int64)
    rot, flip_p = _view_cfg(cfg, ext)
    out = StackedParams(*_empty_params((len(slots), idx.shape[0])))
    _batch_params_kernel(
        np.uint64(seed % 2**64), np.int64(epoch % 2**63), idx, np.array(slots, np.int64),
        np.array(ext), rot, flip_p, *_kernel_cfg(cfg), *out,
    )
    return out


def two_view(
    raw_NTVCM: np.ndarray,
    valid_NTVM: np.ndarray,
    lengths_N: np.ndarray,
    params: TwoViewParams,
    cfg: AugmentConfig,
    flip_perm: np.ndarray | None = None,
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
    norm: WindowNorm | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Query, key and (when ``params.extreme`` is set) extreme view of every window, one call.

    Per view and sample, fused in one pass: crop + resize (:func:`crop_resize`, the span
    scaled by ``tempo / max(cfg.tempos)``) with the flip permutation and person swap folded
    into the gather, the NTU normalisation ``norm`` (centring subtracted in the gather, its
    rotation composed with ``mat``), the linear map ``mat`` (rotation @ shear), Gaussian noise;
    then joint mask, temporal blur and axis mask (:func:`mask_blur`). The result equals the
    chain of the standalone ops (``two_view_ref``).

    Args:
        raw_NTVCM: (N, T, V, C, M) float32 raw windows (corpus layout).
        valid_NTVM: (N, T, V, M) bool.
        lengths_N: (N,) int valid length of each window (0: all-zero, all-invalid views).
        params: from :func:`params_for` or :func:`draw_two_view_params` (arrays of length N).
        cfg: supplies out_len, padding_ratio, min_crop and blur_kernel.
        flip_perm: (V,) ``Layout.flip_permutation()``; required when any view flips.
        out: optional (R, N, C, L, V, M) float32 buffer, R = 2 or 3 views (query, key, extreme).
        out_valid: optional (R, N, L, V, M) bool buffer.
        norm: the NTU normalisation of each window's sequence
            (``sscl.data.normalize.WindowNorm``); None: the raw coordinates.

    Returns:
        (out, out_valid); ``out[0]``, ``out[1]``, ``out[2]`` are the query, key, extreme views.

    Raises:
        ConfigError: a view flips and no ``flip_perm`` was given.
    """
    _check_raw(raw_NTVCM, valid_NTVM)
    n, t = raw_NTVCM.shape[:2]
    frames = np.ascontiguousarray(raw_NTVCM).reshape((n * t,) + raw_NTVCM.shape[2:])
    vframes = np.ascontiguousarray(valid_NTVM).reshape((n * t,) + valid_NTVM.shape[2:])
    rowbase = (np.arange(n, dtype=np.int64) * t)[:, None]
    lengths = np.minimum(_i64(lengths_N), t)
    return two_view_frames(
        frames, vframes, rowbase, np.zeros(n, np.int64), 62, lengths, params, cfg,
        flip_perm=flip_perm, out=out, out_valid=out_valid, norm=norm,
    )


def two_view_frames(
    frames_FVCM: np.ndarray,
    valid_FVM: np.ndarray,
    rowbase_NS: np.ndarray,
    lo_N: np.ndarray,
    shift: int,
    lengths_N: np.ndarray,
    params: TwoViewParams | StackedParams,
    cfg: AugmentConfig,
    flip_perm: np.ndarray | None = None,
    out: np.ndarray | None = None,
    out_valid: np.ndarray | None = None,
    norm: WindowNorm | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`two_view` reading every window in place from a frame table (no window copy).

    Frame r of window n is row ``rowbase_NS[n, (lo_N[n] + r) >> shift] + ((lo_N[n] + r) &
    (2**shift - 1))`` of the table: the corpus held in RAM (``shift`` large, one entry per
    window), or a slab of cached chunks of ``2**shift`` frames
    (``sscl.data.reader.Corpus.window_table``). The caller guarantees every row a window of
    ``lengths_N[n]`` frames maps to exists (``Corpus.window_table`` does).

    Args:
        frames_FVCM: (F, V, C, M) float32 frame table, C-contiguous.
        valid_FVM: (F, V, M) bool, the same rows.
        rowbase_NS: (N, S) int64 first table row of each chunk window n touches.
        lo_N: (N,) int64 offset of each window in its first chunk.
        shift: log2 of the chunk length in frames (62: no chunking).
        lengths_N: (N,) window lengths (0: all-zero, all-invalid views).
        params: as :func:`two_view`, or already stacked (:func:`stacked_params_for`).
        cfg, flip_perm, out, out_valid, norm: as :func:`two_view`.

    Returns:
        (out, out_valid) as :func:`two_view`.
    """
    if frames_FVCM.ndim != 4 or frames_FVCM.dtype != np.float32:
        raise ValueError(f"frames must be (F, V, C, M) float32, got {frames_FVCM.dtype} "
                         f"{frames_FVCM.shape}")
    f, v, c, m = frames_FVCM.shape
    if valid_FVM.shape != (f, v, m) or valid_FVM.dtype != np.bool_:
        raise ValueError(f"valid must be (F, V, M) = {(f, v, m)} bool, got {valid_FVM.dtype} "
                         f"{valid_FVM.shape}")
    if c not in (2, 3):
        raise ValueError(f"frames must have C = 2 or 3 coordinates, got {c}")
    n = rowbase_NS.shape[0]
    arrays = stack_params(params)
    r = arrays[0].shape[0]
    if arrays[0].shape[1] != n:
        raise ValueError(f"params hold {arrays[0].shape[1]} samples, the batch has {n}")
    if flip_perm is None:
        if arrays.flip.any():
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
    # The kernel's tempo slot takes the crop speed; the default (1.0,) gives exactly 1.0.
    arrays = arrays._replace(tempo=arrays.tempo / max(cfg.tempos))
    if norm is None:
        centre, cj = np.zeros((n, 3)), -1
    else:
        # The normalisation's rotation acts first: out = mat @ rot @ (x - centre).
        arrays = arrays._replace(mat=np.ascontiguousarray(
            np.einsum("rnij,njk->rnik", arrays.mat, np.asarray(norm.rot, np.float64))))
        centre, cj = np.ascontiguousarray(norm.centre, np.float64), int(norm.centre_joint)
        if centre.shape != (n, 3) or np.shape(norm.rot) != (n, 3, 3) or cj >= v:
            raise ValueError(f"norm must hold (N, 3) = ({n}, 3) centres, (N, 3, 3) rotations "
                             f"and a joint < V = {v}, got {centre.shape}, "
                             f"{np.shape(norm.rot)}, {cj}")
    args = (
        np.ascontiguousarray(frames_FVCM),
        np.ascontiguousarray(valid_FVM),
        np.ascontiguousarray(_i64(rowbase_NS)),
        np.ascontiguousarray(_i64(lo_N)),
        int(shift),
        np.ascontiguousarray(_i64(lengths_N)),
        perm,
        cfg.padding_ratio,
        cfg.min_crop,
        cfg.blur_kernel // 2,
        *arrays,
        centre,
        cj,
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
    norm: WindowNorm | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`two_view`: the chain of the standalone ``_ref`` ops per view (the
    normalisation first, on the raw windows)."""
    v = raw_NTVCM.shape[2]
    perm = np.arange(v) if flip_perm is None else flip_perm
    if norm is not None:
        y = normalize_windows_ref(raw_NTVCM, valid_NTVM, norm.centre, norm.rot, norm.mode,
                                  norm.centre_joint)
        raw_NTVCM = np.ascontiguousarray(y.transpose(0, 2, 3, 1, 4))
    outs, vals = [], []
    for p in params.views:
        x, val = crop_resize_ref(
            raw_NTVCM,
            valid_NTVM,
            lengths_N,
            p.crop_frac,
            p.crop_pos,
            p.tempo / max(cfg.tempos),
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

