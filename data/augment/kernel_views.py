"""The compiled composed op: every view of every window of a batch, one pass over each window.

``compose.two_view_frames`` validates the argument groups (``groups.py``) and launches
:func:`two_view_serial` or, with more than one Numba thread, :func:`two_view_parallel` (under
``jit.PARALLEL_LOCK``). Per view and sample: the fused crop (``kernel_crop.crop_sample``), then
the extreme-view tail (``kernel_blur.tail_sample``). The result equals the chain of the steps'
numpy twins (``compose.two_view_ref``).

Before the groups, these kernels took 27 positional arguments down the chain
_two_view_one -> _view_sample -> _crop_sample; every value is now read by field name.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from sscl.data.augment.groups import SampleCrop, SamplePoints, SampleTail
from sscl.data.augment.jit import JIT
from sscl.data.augment.kernel_blur import tail_sample
from sscl.data.augment.kernel_crop import crop_sample


@njit(**JIT)
def _two_view_one(n, table, crop, blur, centring, params, out, ident):
    """All views of sample n: the source frames are read while they are hot in cache.
    ``params`` (StackedParams) holds each view's crop speed in ``tempo``."""
    for r in range(out.x.shape[0]):
        draw = SampleCrop(
            frac=params.crop_frac[r, n], pos=params.crop_pos[r, n], speed=params.tempo[r, n]
        )
        points = SamplePoints(
            perm=crop.flip_perm if params.flip[r, n] else ident,
            swap=params.swap[r, n],
            mat=params.mat[r, n],
            noise_std=params.noise_std[r, n],
            noise_seed=params.noise_seed[r, n],
        )
        tail = SampleTail(
            joint_p=params.joint_mask_p[r, n],
            joint_seed=params.joint_seed[r, n],
            sigma=params.blur_sigma[r, n],
            axis=params.axis[r, n],
        )
        x, valid = out.x[r, n], out.valid[r, n]
        crop_sample(table, n, crop, draw, points, centring, x, valid)
        tail_sample(x, valid, tail, blur)


@njit(**JIT)
def two_view_serial(table, crop, blur, centring, params, out):
    """Every view of every window, one sample after the other.

    Args:
        table: groups.FrameTable; crop: groups.CropSpec; blur: groups.BlurSpec;
        centring: groups.Centring; params: params.StackedParams (tempo holding the crop
        speed); out: groups.ViewOutputs, written in place.
    """
    ident = np.arange(crop.flip_perm.shape[0])
    for n in range(table.rowbase.shape[0]):
        _two_view_one(n, table, crop, blur, centring, params, out, ident)


@njit(parallel=True, **JIT)
def two_view_parallel(table, crop, blur, centring, params, out):
    """:func:`two_view_serial` with the samples spread over Numba's threads."""
    ident = np.arange(crop.flip_perm.shape[0])
    for n in prange(table.rowbase.shape[0]):
        _two_view_one(n, table, crop, blur, centring, params, out, ident)
