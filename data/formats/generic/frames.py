"""The generic importer's frames: which joints are valid, and the unit and axis transform.

Validity: a joint is valid when its ``valid`` entry (if given) is True, its values are finite
and it is not exactly all zeros (unless ``zeros_valid``); invalid joints are stored as 0. NaN or
infinity at a joint marked valid is an error unless ``nan_as_missing``. The transform scales
into metres and applies the proper rotation (no mirroring) that takes the source's up axis to
+y; both are stated in sscl.data.formats.generic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sscl.errors import FormatError

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
# source up axis -> 3x3 proper rotation R (rows: new x, y, z in terms of old x, y, z)
UP_ROTATIONS: dict[str, np.ndarray] = {
    "y": np.eye(3),
    "-y": np.array([[1, 0, 0], [0, -1, 0], [0, 0, -1]], dtype=np.float64),
    "z": np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64),
    "-z": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64),
    "x": np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float64),
    "-x": np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]], dtype=np.float64),
}


def transform(units: str, up: str, channels: int) -> np.ndarray:
    """(C, C) matrix taking source coordinates to metres with +y up (2-D: scaling only)."""
    if channels == 3:
        return UP_ROTATIONS[up] * UNITS[units]
    return np.eye(channels) * UNITS[units]


def valid_joints(joints: np.ndarray, valid: np.ndarray, path: Path, *, nan_as_missing: bool,
                 zeros_valid: bool) -> tuple[np.ndarray, np.ndarray]:
    """Joints zeroed where invalid, and the validity (module docstring).

    Args:
        joints: (T, V, C, M) float64.
        valid: (T, V, M) bool, the file's own ``valid`` (all True without one).
        path: the file, named in errors.

    Returns:
        (joints (T, V, C, M) float64, valid (T, V, M) bool), new arrays.

    Raises:
        FormatError: NaN or infinity at a valid joint without ``nan_as_missing``, naming the
            first frame, joint and person.
    """
    finite = np.isfinite(joints).all(axis=2)
    if not nan_as_missing and not finite[valid].all():
        t, v, m = (int(a[0]) for a in np.nonzero(valid & ~finite))
        raise FormatError(
            path,
            f"NaN or infinity at frame {t}, joint {v}, person {m}; expected finite "
            "values (or pass --nan-as-missing or --nonfinite mask)",
        )
    valid = valid & finite
    joints = np.where(valid[:, :, None, :], joints, 0.0)
    if not zeros_valid:
        valid &= (joints != 0.0).any(axis=2)
    return joints, valid


def to_corpus_frame(joints: np.ndarray, valid: np.ndarray, matrix: np.ndarray, persons: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(T, V, C, M) joints through ``matrix`` (:func:`transform`), padded with invalid persons
    to ``persons``; returns (joints (T, V, C, persons) float64, valid (T, V, persons) bool)."""
    joints = np.einsum("ij,tvjm->tvim", matrix, joints)
    pad = persons - joints.shape[3]
    if pad > 0:
        T, V, C, _ = joints.shape
        joints = np.concatenate([joints, np.zeros((T, V, C, pad))], axis=3)
        valid = np.concatenate([valid, np.zeros((T, V, pad), dtype=bool)], axis=2)
    return joints, valid
