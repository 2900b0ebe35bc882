"""Single augmentation ops of ``sscl.data.augment``: Numba wrappers beside their numpy twins.

Each public op writes into a preallocated output and has a vectorised numpy ``<op>_ref`` twin
(the correctness oracle and the speed baseline). Semantics: ``augment.py``'s docstring.
"""

from __future__ import annotations

import numpy as np

from sscl.data.augment_kernels import (
    _INV_2_53,
    _LOW16,
    NORMAL_TABLE,
    _bone_kernel,
    _crop_resize_kernel,
    _flip_swap_kernel,
    _linear_kernel,
    _mask_blur_kernel,
    _motion_kernel,
    _noise_kernel,
    _stream,
    _tempo_kernel,
)
from sscl.data.normalize import (  # noqa: F401  (normalization_joints: re-exported)
    NormJoints,
    normalization_joints,
    normalize_windows,
    normalize_windows_ref,
    sequence_references,
)
from sscl.errors import ConfigError

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
    length = _i64(lengths_N)
    pad = length // padding_ratio if padding_ratio > 0 else np.zeros_like(length)
    padded = length + 2 * pad
    c = np.floor(_f64(frac_N) * length).astype(np.int64)
    c = np.minimum(np.maximum(np.maximum(c, np.minimum(min_crop, length)), 1), length)
    span = np.minimum(np.maximum(np.floor(c * _f64(speed_N)).astype(np.int64), 1), padded)
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
        frac_N, pos_N, tempo_N: (N,) crop fraction, start position in [0, 1), span speed
            (:func:`crop_windows`).
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
        _f64(tempo_N),
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
    of sample n gets normal 3p + c of stream seed_N[n]: 16-bit field c of splitmix64 output p
    indexes a 65,536-entry table of normal quantiles at bin centres (so draws are clipped at
    +-4.32 sigma), and the noise is a pure function of (seed, point), the same in every engine
    and bit-identical in the numpy twin. Cost: one 64-bit hash per point and three table loads;
    bench/bench_augment.py compares it with drawing the normals from ``np.random.Generator`` as
    the AimCLR feeder does.

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
    """(N, 3, points) float64 normals of :func:`gaussian_noise`: normal 3p + c (channel c of
    point p) is NORMAL_TABLE[(splitmix64 output p >> 16 c) & 0xFFFF]."""
    z = _stream(np.asarray(seed_N, np.uint64)[:, None, None], np.arange(points)[None, :, None])
    shift = np.array([0, 16, 32], np.uint64)
    idx = ((z >> shift) & _LOW16).astype(np.intp)  # (N, points, 3): fields c of outputs p
    return NORMAL_TABLE[idx].astype(np.float64).transpose(0, 2, 1)


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


def normalize_ntu(
    raw_NTVCM: np.ndarray,
    valid_NTVM: np.ndarray,
    joints: tuple[int, int, int, int, int],
    mode: str = "first",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """NTU-style pre-normalisation (2s-AGCN; METHOD.md section 1) of whole sequences.

    Each row is taken as a whole sequence and normalised as ``sscl.data.normalize`` defines it:
    centre reference person 0's centre joint at its first tracked frame (``"first"``: for every
    frame; ``"frame"``: where the frame's own centre joint is untracked), rotation R with rows
    (e_x, e_y, e_z) from the first frame with the four bone joints tracked (e_z the spine bone,
    e_x the shoulder bone made orthogonal to it). The batch loader computes the same references
    once per corpus sequence (``normalize.ReferenceTable``) and folds them into its kernels.

    Args:
        raw_NTVCM: (N, T, V, C, M) float32; valid_NTVM: (N, T, V, M) bool.
        joints: (centre, spine_from, spine_to, shoulder_from, shoulder_to), see
            :func:`normalization_joints` (NTU-25: (1, 0, 1, 8, 4)).
        mode: "first" or "frame".
        out: optional (N, T, V, C, M) float32 buffer (must not alias raw).

    Returns:
        (N, T, V, C, M) float32; invalid points exactly 0.
    """
    if mode not in ("first", "frame"):
        raise ConfigError(f"normalization mode {mode!r}: expected 'first' or 'frame'")
    _check_raw(raw_NTVCM, valid_NTVM)
    out = _buffer(out, raw_NTVCM.shape, np.float32, "out")
    nj = NormJoints(*(int(j) for j in joints))
    centre, rot, _, _ = sequence_references(raw_NTVCM, valid_NTVM, nj)
    y = normalize_windows(raw_NTVCM, valid_NTVM, centre, rot, mode, nj.centre)
    out[...] = y.transpose(0, 2, 3, 1, 4)
    return out


def normalize_ntu_ref(
    raw_NTVCM: np.ndarray,
    valid_NTVM: np.ndarray,
    joints: tuple[int, int, int, int, int],
    mode: str = "first",
) -> np.ndarray:
    """Numpy twin of :func:`normalize_ntu`."""
    nj = NormJoints(*(int(j) for j in joints))
    centre, rot, _, _ = sequence_references(raw_NTVCM, valid_NTVM, nj)
    y = normalize_windows_ref(raw_NTVCM, valid_NTVM, centre, rot, mode, nj.centre)
    return np.ascontiguousarray(y.transpose(0, 2, 3, 1, 4))
