"""Boundary checks and conversions shared by the augmentation ops' Python wrappers.

The wrappers validate once here and hand the kernels trusted arrays (HOUSE_STYLE.md "Validate
once at the boundary"); the composed op's argument groups are checked by ``groups.check_group``.
"""

from __future__ import annotations

import numpy as np


def out_buffer(out: np.ndarray | None, shape: tuple[int, ...], dtype, name: str) -> np.ndarray:
    """``out`` checked to be a C-contiguous ``dtype`` array of ``shape``, or a new one.

    Raises:
        ValueError: ``out`` has another shape, dtype or layout (the message names ``name``).
    """
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != tuple(shape) or out.dtype != np.dtype(dtype) or not out.flags.c_contiguous:
        raise ValueError(
            f"{name}: expected a C-contiguous {np.dtype(dtype)} array of shape {tuple(shape)}, "
            f"got {out.dtype} {out.shape}; allocate it with np.empty(shape, dtype)"
        )
    return out


def check_points(x: np.ndarray, valid: np.ndarray, name: str, axes: str) -> None:
    """``x`` float32 with axes ``axes`` (``"NCTVM"``: the model layout, ``"NTVCM"``: the corpus
    layout) and ``valid`` (N, T, V, M) bool of the same sizes.

    Raises:
        ValueError: another rank, dtype or size (the message names ``name`` and the axes).
    """
    if x.ndim != 5 or x.dtype != np.float32:
        raise ValueError(f"{name} must be float32 ({', '.join(axes)}), got {x.dtype} {x.shape}")
    size = dict(zip(axes, x.shape))
    want = tuple(size[a] for a in "NTVM")
    if valid.shape != want or valid.dtype != np.bool_:
        raise ValueError(
            f"valid must be bool (N, T, V, M) = {want}, got {valid.dtype} {valid.shape}"
        )


def as_f64(a) -> np.ndarray:
    """A C-contiguous float64 array of ``a`` (no copy when it already is one)."""
    return np.ascontiguousarray(a, np.float64)


def as_i64(a) -> np.ndarray:
    """A C-contiguous int64 array of ``a`` (no copy when it already is one)."""
    return np.ascontiguousarray(a, np.int64)
