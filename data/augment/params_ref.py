"""Numpy twins of the view parameters: the rotation and shear matrices, one view's parameters
from its uniforms, and :func:`params_for_ref`, the oracle of ``params.params_for``.

Vectorised over the batch; the compiled path (``param_kernels``) uses the same formulas in the
same order, so the two agree to the last bit on the platforms tested.
"""

from __future__ import annotations

import numpy as np

from sscl.data.augment.config import AugmentConfig
from sscl.data.augment.param_kernels import DRAWS_PER_VIEW, SEEDS_PER_VIEW
from sscl.data.augment.params import TwoViewParams, ViewParams, sample_keys, view_slots
from sscl.data.splitmix64 import INV_2_53, stream_np


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




def view_from_draws_ref(
    u: np.ndarray, z: np.ndarray, cfg: AugmentConfig, extreme: bool
) -> ViewParams:
    """Numpy twin of ``params.view_from_draws`` (vectorised over the batch)."""
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



def params_for_ref(
    seed: int,
    epoch: int,
    global_indices: np.ndarray,
    cfg: AugmentConfig,
    extreme: bool = False,
    strong_key: bool = False,
) -> TwoViewParams:
    """Numpy twin of ``params.params_for`` (vectorised hashing, :func:`view_from_draws_ref`)."""
    slots, ext = view_slots(extreme, strong_key)
    keys = sample_keys(seed, epoch, global_indices)[:, None]
    per = DRAWS_PER_VIEW + SEEDS_PER_VIEW
    words = stream_np(keys, np.arange(3 * per, dtype=np.int64)[None, :]).reshape(-1, 3, per)
    u = (words[..., :DRAWS_PER_VIEW] >> np.uint64(11)).astype(np.float64) * INV_2_53
    z = words[..., DRAWS_PER_VIEW:]
    views = [view_from_draws_ref(u[:, r], z[:, r], cfg, e) for r, e in zip(slots, ext)]
    return TwoViewParams(views[0], views[1], views[2] if extreme else None)
