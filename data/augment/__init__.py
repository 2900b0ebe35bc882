"""Skeleton augmentation: Numba batch kernels writing into preallocated outputs, each with a
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
left/right flip and person swap folded into the gather, and the NTU normalisation ``norm``,
``sscl.data.normalize``), rotation @ shear, Gaussian noise, joint mask, temporal blur, axis
mask. Its oracle ``two_view_ref`` chains one numpy twin per step: ``crop_resize_ref``,
``flip_swap_ref``, ``linear_transform_ref`` (``rotation_matrices``, ``shear_matrices``),
``gaussian_noise_ref``, ``mask_blur_ref`` (joint mask, blur, axis mask). The linear map and the
noise also exist alone, compiled (``linear_transform``, ``gaussian_noise``): the CPU twins of
``sscl.data.gpu_augment``.

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
``numba.set_num_threads(1)``); ``jit.py`` selects Numba's ``workqueue`` threading layer (import
this package before other parallel Numba code runs) and says why.

Modules, split by concern (this file re-exports the public API only):

- ``config``: :class:`AugmentConfig`, the schema;
- ``params`` / ``params_ref``: the per-sample random parameters (compiled path / numpy oracle),
  ``param_kernels`` their kernels;
- ``compose``: ``two_view``, ``two_view_frames`` and the oracle ``two_view_ref``;
- the steps' numpy twins (and the standalone linear map and noise): ``crop``, ``point_ops``,
  ``mask_ops``; shared boundary checks in ``arrays``;
- compiled kernels: ``kernel_crop``, ``kernel_blur``, ``kernel_views``, ``kernel_ops``,
  ``noise_table`` (the normal quantile table); ``groups`` defines the named argument groups
  they take and checks them at the boundary; ``jit`` the compile options.

The hash is ``sscl.data.splitmix64`` (one implementation per runtime).
"""

from sscl.data.augment.compose import two_view, two_view_frames, two_view_ref
from sscl.data.augment.config import AugmentConfig
from sscl.data.augment.crop import crop_resize_ref, crop_windows
from sscl.data.augment.groups import StackedParams
from sscl.data.augment.mask_ops import mask_blur_ref
from sscl.data.augment.params import (
    TwoViewParams,
    ViewParams,
    draw_two_view_params,
    params_for,
    sample_keys,
    stack_params,
    stacked_params_for,
)
from sscl.data.augment.params_ref import params_for_ref, rotation_matrices, shear_matrices
from sscl.data.augment.point_ops import (
    flip_swap_ref,
    gaussian_noise,
    gaussian_noise_ref,
    linear_transform,
    linear_transform_ref,
)
from sscl.data.normalize import normalization_joints

__all__ = [
    "AugmentConfig",
    "StackedParams",
    "TwoViewParams",
    "ViewParams",
    "crop_resize_ref",
    "crop_windows",
    "draw_two_view_params",
    "flip_swap_ref",
    "gaussian_noise",
    "gaussian_noise_ref",
    "linear_transform",
    "linear_transform_ref",
    "mask_blur_ref",
    "normalization_joints",
    "params_for",
    "params_for_ref",
    "rotation_matrices",
    "sample_keys",
    "shear_matrices",
    "stack_params",
    "stacked_params_for",
    "two_view",
    "two_view_frames",
    "two_view_ref",
]
