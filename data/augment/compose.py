"""The composed op: query, key and extreme view of every window in one call, and its numpy twin.

``two_view`` / ``two_view_frames`` validate their inputs, build the kernel argument groups
(``groups.py``) and launch the composed kernel (``kernel_views``); ``two_view_ref`` is the chain
of the steps' numpy twins (``crop``, ``point_ops``, ``mask_ops``), the oracle.
"""

from __future__ import annotations

import numba
import numpy as np

from sscl.data.augment.arrays import as_i64, check_points, out_buffer
from sscl.data.augment.config import AugmentConfig
from sscl.data.augment.crop import crop_resize_ref
from sscl.data.augment.groups import (
    BlurSpec,
    Centring,
    CropSpec,
    FrameTable,
    StackedParams,
    ViewOutputs,
    check_group,
)
from sscl.data.augment.jit import PARALLEL_LOCK
from sscl.data.augment.kernel_views import two_view_parallel, two_view_serial
from sscl.data.augment.mask_ops import mask_blur_ref
from sscl.data.augment.params import TwoViewParams, stack_params
from sscl.data.augment.point_ops import flip_swap_ref, gaussian_noise_ref, linear_transform_ref
from sscl.data.normalize import WindowNorm, normalize_windows_ref
from sscl.errors import ConfigError


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

    Per view and sample, fused in one pass: crop + resize (``crop.crop_windows``, the span
    scaled by ``tempo / max(cfg.tempos)``) with the flip permutation and person swap folded
    into the gather, the NTU normalisation ``norm`` (centring subtracted in the gather, its
    rotation composed with ``mat``), the linear map ``mat`` (rotation @ shear), Gaussian noise;
    then joint mask, temporal blur and axis mask (``mask_ops.mask_blur_ref``). The result equals
    the chain of the steps' numpy twins (``two_view_ref``).

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
    check_points(raw_NTVCM, valid_NTVM, "raw", "NTVCM")
    n, t = raw_NTVCM.shape[:2]
    frames = np.ascontiguousarray(raw_NTVCM).reshape((n * t,) + raw_NTVCM.shape[2:])
    vframes = np.ascontiguousarray(valid_NTVM).reshape((n * t,) + valid_NTVM.shape[2:])
    rowbase = (np.arange(n, dtype=np.int64) * t)[:, None]
    lengths = np.minimum(as_i64(lengths_N), t)
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
    perm = as_i64(flip_perm)
    if perm.shape != (v,):
        raise ValueError(f"flip_perm must be (V,) = ({v},), got {perm.shape}")
    out = out_buffer(out, (r, n, c, cfg.out_len, v, m), np.float32, "out")
    out_valid = out_buffer(out_valid, (r, n, cfg.out_len, v, m), np.bool_, "out_valid")
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
    table = FrameTable(
        frames=np.ascontiguousarray(frames_FVCM),
        valid=np.ascontiguousarray(valid_FVM),
        rowbase=as_i64(rowbase_NS),
        lo=as_i64(lo_N),
        shift=int(shift),
        lengths=as_i64(lengths_N),
    )
    crop = CropSpec(padding_ratio=cfg.padding_ratio, min_crop=cfg.min_crop, flip_perm=perm)
    blur = BlurSpec(radius=cfg.blur_kernel // 2)
    centring = Centring(centre=centre, joint=cj)
    views = ViewOutputs(x=out, valid=out_valid)
    sizes: dict[str, int] = {}
    for group in (table, crop, centring, arrays, views, blur):
        check_group(group, sizes)
    kernel = two_view_parallel if numba.get_num_threads() > 1 and n > 1 else two_view_serial
    if kernel is two_view_parallel:
        with PARALLEL_LOCK:
            kernel(table, crop, blur, centring, arrays, views)
    else:
        kernel(table, crop, blur, centring, arrays, views)
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
    """Numpy twin of :func:`two_view`: the chain of the steps' numpy twins per view (the
    normalisation first, on the raw windows)."""
    v = raw_NTVCM.shape[2]
    perm = np.arange(v) if flip_perm is None else flip_perm
    if norm is not None:
        y = normalize_windows_ref(raw_NTVCM, valid_NTVM, norm)
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

