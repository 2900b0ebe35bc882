"""Compiled view parameters: uniforms to one view's parameters, and a whole batch from its keys.

The compiled path of ``params.params_for`` / ``params.stacked_params_for`` (numpy oracle:
``params_ref``). Settings come as groups read by field name (``groups.DrawSpec`` shared by the
views, ``groups.ViewRecipe`` per view) and the outputs as a ``params.StackedParams`` of (N,)
arrays (one view) or (R, N) arrays (the batch).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from sscl.data.augment.groups import StackedParams, ViewRecipe
from sscl.data.augment.jit import JIT
from sscl.data.splitmix64 import stream_jit, uniform_jit

#: Uniforms and raw 64-bit words each view consumes; a view's slot spans both.
DRAWS_PER_VIEW = 18
SEEDS_PER_VIEW = 2


@njit(**JIT)
def view_params_kernel(u, z, recipe, spec, out):
    """One view's parameters from uniforms u (N, 18) and words z (N, 2): the compiled twin of
    ``params_ref.view_from_draws_ref`` (same formulas, one pass per sample).

    Args:
        u: (N, 18) float64 uniforms in [0, 1); z: (N, 2) uint64 words.
        recipe: groups.ViewRecipe of this view (extreme, rot (3,) radians, flip_p).
        spec: groups.DrawSpec shared by the views.
        out: StackedParams of (N,) arrays ((N, 3, 3) ``mat``), written in place.
    """
    tempos, rot = spec.tempos, recipe.rot
    for n in range(u.shape[0]):
        un = u[n]
        out.crop_frac[n] = spec.crop_lo + (spec.crop_hi - spec.crop_lo) * un[0]
        out.crop_pos[n] = un[1]
        out.tempo[n] = tempos[min(int(un[2] * tempos.shape[0]), tempos.shape[0] - 1)]
        out.flip[n] = un[3] < recipe.flip_p
        out.swap[n] = un[4] < spec.swap_p
        ax = (2.0 * un[5] - 1.0) * rot[0]
        ay = (2.0 * un[6] - 1.0) * rot[1]
        az = (2.0 * un[7] - 1.0) * rot[2]
        cx, sx = math.cos(ax), math.sin(ax)
        cy, sy = math.cos(ay), math.sin(ay)
        cz, sz = math.cos(az), math.sin(az)
        r = np.empty((3, 3))
        r[0, 0], r[0, 1], r[0, 2] = cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx
        r[1, 0], r[1, 1], r[1, 2] = sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx
        r[2, 0], r[2, 1], r[2, 2] = -sy, cy * sx, cy * cx
        shear = spec.shear
        s = np.eye(3)
        s[0, 1] = (2.0 * un[8] - 1.0) * shear
        s[1, 0] = (2.0 * un[9] - 1.0) * shear
        s[2, 0] = (2.0 * un[10] - 1.0) * shear
        s[0, 2] = (2.0 * un[11] - 1.0) * shear
        s[1, 2] = (2.0 * un[12] - 1.0) * shear
        s[2, 1] = (2.0 * un[13] - 1.0) * shear
        mat = out.mat
        for i in range(3):
            for j in range(3):
                mat[n, i, j] = r[i, 0] * s[0, j] + r[i, 1] * s[1, j] + r[i, 2] * s[2, j]
        out.noise_seed[n] = z[n, 0]
        out.joint_seed[n] = z[n, 1]
        if recipe.extreme:
            out.noise_std[n] = spec.noise_std if un[14] < spec.noise_prob else 0.0
            s0, s1 = spec.sigma_lo, spec.sigma_hi
            out.blur_sigma[n] = s0 + (s1 - s0) * un[16] if un[15] < spec.blur_prob else 0.0
            if un[17] < spec.axis_prob:
                out.axis[n] = min(int(3.0 * un[17] / spec.axis_prob), 2)
            else:
                out.axis[n] = -1
            out.joint_mask_p[n] = spec.joint_mask_p
        else:
            out.noise_std[n] = 0.0
            out.blur_sigma[n] = 0.0
            out.axis[n] = -1
            out.joint_mask_p[n] = 0.0


@njit(**JIT)
def batch_params_kernel(seed, epoch, idx, slots, recipes, spec, out):
    """Every view's parameters of a batch, stacked (R, N), in one compiled pass.

    Sample key = hash chain of seed, epoch and index; view r reads words ``slots[r] * 20 ..``
    of the key's stream, mapped by :func:`view_params_kernel`. ``params_ref.params_for_ref``
    is the numpy oracle.

    Args:
        seed: uint64 run seed; epoch: int64; idx: (N,) int64 global sample indices.
        slots: (R,) int64 stream slot of each view.
        recipes: groups.ViewRecipe of (R,) extreme, (R, 3) rot and (R,) flip_p arrays.
        spec: groups.DrawSpec.
        out: StackedParams of (R, N) arrays, written in place.
    """
    n_views, n = slots.shape[0], idx.shape[0]
    e = stream_jit(stream_jit(seed, 0), epoch)
    keys = np.empty(n, np.uint64)
    for i in range(n):
        keys[i] = stream_jit(e, idx[i])
    per = DRAWS_PER_VIEW + SEEDS_PER_VIEW
    u = np.empty((n, DRAWS_PER_VIEW))
    z = np.empty((n, SEEDS_PER_VIEW), np.uint64)
    for r in range(n_views):
        base = slots[r] * per
        for i in range(n):
            for j in range(DRAWS_PER_VIEW):
                u[i, j] = uniform_jit(keys[i], base + j)
            z[i, 0] = stream_jit(keys[i], base + DRAWS_PER_VIEW)
            z[i, 1] = stream_jit(keys[i], base + DRAWS_PER_VIEW + 1)
        recipe = ViewRecipe(
            extreme=recipes.extreme[r], rot=recipes.rot[r], flip_p=recipes.flip_p[r]
        )
        view = StackedParams(
            crop_frac=out.crop_frac[r], crop_pos=out.crop_pos[r], tempo=out.tempo[r],
            flip=out.flip[r], swap=out.swap[r], mat=out.mat[r], noise_std=out.noise_std[r],
            noise_seed=out.noise_seed[r], joint_mask_p=out.joint_mask_p[r],
            joint_seed=out.joint_seed[r], blur_sigma=out.blur_sigma[r], axis=out.axis[r],
        )
        view_params_kernel(u, z, recipe, spec, view)
