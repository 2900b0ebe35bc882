"""Modalities and pre-processing: the bone and motion streams and the NTU pre-normalisation of
whole sequences; each a wrapper beside its numpy twin (``<op>_ref``).

Bones and motion as in 2s-AGCN / MS-G3D's multi-stream inputs; the normalisation is 2s-AGCN's
NTU pre-processing (METHOD.md section 1), defined in ``sscl.data.normalize``.
"""

from __future__ import annotations

import numpy as np

from sscl.data.augment.arrays import as_i64, check_raw, check_x, out_buffer
from sscl.data.augment.kernel_ops import bone_kernel, motion_kernel
from sscl.data.normalize import (
    NormJoints,
    normalize_windows,
    normalize_windows_ref,
    sequence_references,
)
from sscl.errors import ConfigError


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
    check_x(x_NCTVM, valid_NTVM)
    out = out_buffer(out, x_NCTVM.shape, np.float32, "out")
    out_valid = out_buffer(out_valid, valid_NTVM.shape, np.bool_, "out_valid")
    bone_kernel(x_NCTVM, valid_NTVM, as_i64(parents), out, out_valid)
    return out, out_valid


def bone_stream_ref(
    x_NCTVM: np.ndarray,
    valid_NTVM: np.ndarray,
    parents: np.ndarray | tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray]:
    """Numpy twin of :func:`bone_stream`."""
    par = as_i64(parents)
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
    check_x(x_NCTVM, valid_NTVM)
    out = out_buffer(out, x_NCTVM.shape, np.float32, "out")
    out_valid = out_buffer(out_valid, valid_NTVM.shape, np.bool_, "out_valid")
    n, c, t = x_NCTVM.shape[:3]
    motion_kernel(
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
    check_raw(raw_NTVCM, valid_NTVM)
    out = out_buffer(out, raw_NTVCM.shape, np.float32, "out")
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
