"""The argument groups the compiled augmentation kernels take, and their boundary checks.

A kernel that took 27 positional arguments would accept a swapped pair of floats (``frac`` for
``pos``, ``padding_ratio`` for ``min_crop``) without a sign. The kernels instead take one typed
``NamedTuple`` per concern and read every value by field name (Numba compiles named tuples as
structs, so this costs nothing inside the kernel):

- :class:`FrameTable`: where each window's frames are (the frame table and its row map);
- :class:`CropSpec`: the crop settings shared by the batch (padding, minimum crop, flip map);
- :class:`BlurSpec`: the temporal blur settings shared by the batch;
- :class:`Centring`: the NTU centring of each window (``sscl.data.normalize``);
- :class:`StackedParams`: the per-sample random parameters, one (R, N) array each;
- :class:`ViewOutputs`: the preallocated outputs;
- :class:`NoiseDraws`: the per-sample draws of the standalone noise op;
- :class:`DrawSpec` and :class:`ViewRecipe`: the settings of the parameter kernels.

Inside the kernels one sample's draws travel as :class:`SampleCrop`, :class:`SamplePoints` and
:class:`SampleTail`, built with keyword arguments.
:func:`check_group` validates a group at the Python boundary (dtype, rank, contiguity and the
shared sizes) with an error naming the group and field; the hot loops trust it (HOUSE_STYLE.md
"Validate once at the boundary").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sscl.errors import ConfigError


class FrameTable(NamedTuple):
    """Windows read in place from a frame table: frame r of window n is row
    ``rowbase[n, (lo[n] + r) >> shift] + ((lo[n] + r) & (2**shift - 1))``.

    Attributes:
        frames: (F, V, C, M) float32, C-contiguous.
        valid: (F, V, M) bool.
        rowbase: (N, S) int64 first row of each chunk window n touches.
        lo: (N,) int64 offset of window n in its first chunk.
        shift: log2 of the chunk length in frames (62: no chunking).
        lengths: (N,) int64 valid frames of each window (0: an all-zero, all-invalid view).
    """

    frames: np.ndarray
    valid: np.ndarray
    rowbase: np.ndarray
    lo: np.ndarray
    shift: int
    lengths: np.ndarray


class CropSpec(NamedTuple):
    """The crop settings of a batch (``AugmentConfig`` fields; ``crop_windows`` has the rule).

    Attributes:
        padding_ratio: mirrored padding of ``length // padding_ratio`` frames a side (0: none).
        min_crop: lower bound of the crop length in frames.
        flip_perm: (V,) int64 joint permutation of a left/right flip.
    """

    padding_ratio: int
    min_crop: int
    flip_perm: np.ndarray


class BlurSpec(NamedTuple):
    """The temporal blur settings of a batch.

    Attributes:
        radius: taps on each side (``AugmentConfig.blur_kernel // 2``).
    """

    radius: int


class Centring(NamedTuple):
    """The NTU centring of each window (its rotation is folded into the linear map).

    Attributes:
        centre: (N, 3) float64 point subtracted from every joint.
        joint: -1: subtract ``centre``; else person 0's joint ``joint`` of the source frame
            where it is valid there (``"frame"`` normalisation).
    """

    centre: np.ndarray
    joint: int


class ViewOutputs(NamedTuple):
    """The composed kernel's outputs, view r of sample n at ``[r, n]``.

    Attributes:
        x: (R, N, C, L, V, M) float32.
        valid: (R, N, L, V, M) bool.
    """

    x: np.ndarray
    valid: np.ndarray


class SampleCrop(NamedTuple):
    """One sample's crop draw (built inside the kernels).

    Attributes:
        frac: crop length as a fraction of the valid length.
        pos: crop start as a fraction of the free range, in [0, 1).
        speed: span scale (``tempo / max(tempos)`` in the composed op).
    """

    frac: float
    pos: float
    speed: float


class SamplePoints(NamedTuple):
    """One sample's per-point maps (built inside the kernels).

    Attributes:
        perm: (V,) int64 joint gathered for each output joint (the flip, or the identity).
        swap: swap persons 0 and 1 (M == 2 only).
        mat: (3, 3) float64 linear map (rotation @ shear, composed with the centring rotation).
        noise_std: Gaussian noise std (0: none).
        noise_seed: uint64 counter-hash seed of the noise.
    """

    perm: np.ndarray
    swap: bool
    mat: np.ndarray
    noise_std: float
    noise_seed: np.uint64


class SampleTail(NamedTuple):
    """One sample's extreme-view tail draw (built inside the kernels).

    Attributes:
        joint_p: per-joint masking probability (0: none).
        joint_seed: uint64 counter-hash seed of the joint mask.
        sigma: temporal blur sigma in frames (0: none).
        axis: coordinate axis to zero (-1: none).
    """

    joint_p: float
    joint_seed: np.uint64
    sigma: float
    axis: int


class NoiseDraws(NamedTuple):
    """Per-sample draws of the standalone noise op (``point_ops.gaussian_noise``).

    Attributes:
        std: (N,) float64 noise std (0: copy).
        seed: (N,) uint64 counter-hash seed.
    """

    std: np.ndarray
    seed: np.ndarray


class StackedParams(NamedTuple):
    """The per-sample random parameters of R views of N samples, as the kernels take them: one
    C-contiguous array per field, view r at ``[r]`` in ``TwoViewParams.views`` order.
    ``params.stacked_params_for`` computes it; ``params.stack_params`` converts
    ``TwoViewParams``. One view's parameters are the same fields with (N,) arrays: the
    parameter kernels write them so, and ``params.ViewParams`` is that form.

    Attributes:
        crop_frac: (R, N) float64, crop length as a fraction of the valid length.
        crop_pos: (R, N) float64 in [0, 1), crop start as a fraction of the free range.
        tempo: (R, N) float64, the view's tempo, one of ``AugmentConfig.tempos`` (the crop
            spans ``tempo / max(tempos)`` of a full-tempo crop).
        flip: (R, N) bool, left/right flip.
        swap: (R, N) bool, swap persons 0 and 1 (ignored when M == 1).
        mat: (R, N, 3, 3) float64, linear map applied to every point (rotation @ shear); a
            2-channel layout uses its top-left 2x2 block.
        noise_std: (R, N) float64, Gaussian noise std (0: none).
        noise_seed: (R, N) uint64, counter-hash seed of the noise.
        joint_mask_p: (R, N) float64, per-joint masking probability (0: none).
        joint_seed: (R, N) uint64, counter-hash seed of the joint mask.
        blur_sigma: (R, N) float64, temporal blur sigma in frames (0: none).
        axis: (R, N) int64, coordinate axis to zero (-1: none).
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


class DrawSpec(NamedTuple):
    """The ``AugmentConfig`` settings the parameter kernels share across views.

    Attributes:
        crop_lo, crop_hi: ``crop_range``.
        shear: shear amplitude.
        swap_p: person swap probability.
        tempos: (K,) float64 playback tempos.
        noise_prob, noise_std: Gaussian noise probability and std (extreme view).
        blur_prob: blur probability (extreme view).
        sigma_lo, sigma_hi: ``blur_sigma`` range.
        axis_prob: axis mask probability (extreme view).
        joint_mask_p: per-joint mask probability (extreme view).
    """

    crop_lo: float
    crop_hi: float
    shear: float
    swap_p: float
    tempos: np.ndarray
    noise_prob: float
    noise_std: float
    blur_prob: float
    sigma_lo: float
    sigma_hi: float
    axis_prob: float
    joint_mask_p: float


class ViewRecipe(NamedTuple):
    """What differs between views: the extreme recipe, rotation range and flip probability
    (scalars for one view, or (R,), (R, 3), (R,) arrays for a batch).

    Attributes:
        extreme: the view takes the extreme recipe (noise, blur, masks).
        rot: (3,) per-axis rotation range in radians.
        flip_p: left/right flip probability.
    """

    extreme: bool
    rot: np.ndarray
    flip_p: float


# Per group and field: (dtype, rank, size names along the axes). A name shared by fields must
# have one value across the call; None marks a Python scalar of that type.
_SPECS: dict[str, dict[str, tuple]] = {
    "FrameTable": {
        "frames": (np.float32, ("F", "V", "C", "M")),
        "valid": (np.bool_, ("F", "V", "M")),
        "rowbase": (np.int64, ("N", "S")),
        "lo": (np.int64, ("N",)),
        "shift": (int, None),
        "lengths": (np.int64, ("N",)),
    },
    "CropSpec": {
        "padding_ratio": (int, None),
        "min_crop": (int, None),
        "flip_perm": (np.int64, ("V",)),
    },
    "BlurSpec": {"radius": (int, None)},
    "NoiseDraws": {"std": (np.float64, ("N",)), "seed": (np.uint64, ("N",))},
    "Centring": {"centre": (np.float64, ("N", "3")), "joint": (int, None)},
    "ViewOutputs": {
        "x": (np.float32, ("R", "N", "C", "L", "V", "M")),
        "valid": (np.bool_, ("R", "N", "L", "V", "M")),
    },
    "StackedParams": {
        "crop_frac": (np.float64, ("R", "N")),
        "crop_pos": (np.float64, ("R", "N")),
        "tempo": (np.float64, ("R", "N")),
        "flip": (np.bool_, ("R", "N")),
        "swap": (np.bool_, ("R", "N")),
        "mat": (np.float64, ("R", "N", "3", "3")),
        "noise_std": (np.float64, ("R", "N")),
        "noise_seed": (np.uint64, ("R", "N")),
        "joint_mask_p": (np.float64, ("R", "N")),
        "joint_seed": (np.uint64, ("R", "N")),
        "blur_sigma": (np.float64, ("R", "N")),
        "axis": (np.int64, ("R", "N")),
    },
}


def check_group(group: tuple, sizes: dict[str, int]) -> None:
    """Validate a kernel argument group before it crosses into compiled code.

    Args:
        group: a :class:`FrameTable`, :class:`CropSpec`, :class:`BlurSpec`, :class:`Centring`,
            :class:`ViewOutputs` or :class:`StackedParams`.
        sizes: known sizes by name (``"N"``, ``"V"``, ...); sizes first seen here are added,
            so checking the groups of one call with one dict checks them against each other.

    Raises:
        ConfigError: a field of the wrong type, dtype, rank or size, or not C-contiguous; the
            message names ``Group.field``, what was expected and what was given.
    """
    name = type(group).__name__
    sizes.setdefault("3", 3)
    for field, (dtype, axes) in _SPECS[name].items():
        value = getattr(group, field)
        where = f"{name}.{field}"
        if axes is None:
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ConfigError(f"{where} = {value!r}: expected a Python int")
            continue
        if not isinstance(value, np.ndarray) or value.dtype != dtype or value.ndim != len(axes):
            got = (f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray)
                   else type(value).__name__)
            raise ConfigError(
                f"{where}: expected a {np.dtype(dtype)} array of shape ({', '.join(axes)}), got "
                f"{got}; convert it with np.ascontiguousarray(value, np.{np.dtype(dtype)})"
            )
        if not value.flags.c_contiguous:
            raise ConfigError(f"{where}: expected a C-contiguous array; pass "
                              "np.ascontiguousarray(value)")
        for axis, (size_name, size) in enumerate(zip(axes, value.shape)):
            want = sizes.setdefault(size_name, size)
            if size != want:
                raise ConfigError(
                    f"{where}: axis {axis} ({size_name}) has size {size}, expected {want} like "
                    f"the other fields of this call; shape {value.shape} ({', '.join(axes)})"
                )
