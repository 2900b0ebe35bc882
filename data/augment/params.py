"""Per-sample random parameters of the views: what each view of each sample draws, and how.

``params_for`` derives every random number of sample ``i`` from ``(seed, epoch, i)`` with the
splitmix64 counter hash (``sscl.data.splitmix64``), so a sample is augmented the same whatever
batch or rank it lands in; ``draw_two_view_params(rng, n, cfg)`` draws the same kind of
parameters from one ``np.random.Generator``. The compiled path is ``param_kernels``; the numpy
oracle is ``params_ref``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sscl.data.augment.config import AugmentConfig
from sscl.data.augment.groups import DrawSpec, StackedParams, ViewRecipe
from sscl.data.augment.param_kernels import (
    DRAWS_PER_VIEW,
    SEEDS_PER_VIEW,
    batch_params_kernel,
    view_params_kernel,
)
from sscl.data.splitmix64 import stream_np
from sscl.errors import ConfigError


class ViewParams(StackedParams):
    """Per-sample random parameters of one view: the fields of ``groups.StackedParams`` (names,
    dtypes and meaning) as (N,) arrays, ``mat`` (N, 3, 3)."""

    __slots__ = ()


@dataclass(frozen=True)
class TwoViewParams:
    """Parameters of the query, key and optional extreme view of a batch (view order 0, 1, 2)."""

    query: ViewParams
    key: ViewParams
    extreme: ViewParams | None = None

    @property
    def views(self) -> tuple[ViewParams, ...]:
        """(query, key) or (query, key, extreme): the view order of ``two_view``'s output."""
        return (
            (self.query, self.key) if self.extreme is None else (self.query, self.key, self.extreme)
        )


def draw_spec(cfg: AugmentConfig) -> DrawSpec:
    """The settings every view shares, as the parameter kernels take them."""
    lo, hi = cfg.crop_range
    s0, s1 = cfg.blur_sigma
    return DrawSpec(
        crop_lo=float(lo), crop_hi=float(hi), shear=float(cfg.shear),
        swap_p=float(cfg.swap_prob), tempos=np.array(cfg.tempos, np.float64),
        noise_prob=float(cfg.noise_prob), noise_std=float(cfg.noise_std),
        blur_prob=float(cfg.blur_prob), sigma_lo=float(s0), sigma_hi=float(s1),
        axis_prob=float(cfg.axis_mask_prob), joint_mask_p=float(cfg.joint_mask_p),
    )


def view_recipes(cfg: AugmentConfig, extreme: tuple[bool, ...]) -> ViewRecipe:
    """Per view: whether it is extreme, (R, 3) rotation ranges in radians, (R,) flip
    probabilities."""
    rot = np.radians(np.array(
        [cfg.extreme_rotate_deg if e else cfg.rotate_deg for e in extreme], np.float64
    ))
    flip_p = np.array([cfg.extreme_flip_prob if e else cfg.flip_prob for e in extreme])
    return ViewRecipe(extreme=np.array(extreme, np.bool_), rot=rot, flip_p=flip_p)


def empty_params(shape: tuple[int, ...]) -> StackedParams:
    """Uninitialised parameter arrays of the given leading shape ((N,) or (R, N))."""
    f, i, b, u = np.float64, np.int64, np.bool_, np.uint64
    dtypes = (f, f, f, b, b, f, f, u, f, u, f, i)
    return StackedParams(*(
        np.empty(shape + ((3, 3) if name == "mat" else ()), dt)
        for name, dt in zip(StackedParams._fields, dtypes, strict=True)
    ))


def view_from_draws(u: np.ndarray, z: np.ndarray, cfg: AugmentConfig, extreme: bool) -> ViewParams:
    """Map uniforms u (N, 18) in [0, 1) and raw 64-bit words z (N, 2) to one view's parameters
    (compiled: ``param_kernels.view_params_kernel``; numpy twin:
    ``params_ref.view_from_draws_ref``)."""
    recipes = view_recipes(cfg, (extreme,))
    recipe = ViewRecipe(extreme=bool(extreme), rot=recipes.rot[0],
                        flip_p=float(recipes.flip_p[0]))
    out = empty_params((u.shape[0],))
    view_params_kernel(np.ascontiguousarray(u, np.float64), np.ascontiguousarray(z, np.uint64),
                       recipe, draw_spec(cfg), out)
    return ViewParams(*out)


def draw_two_view_params(
    rng: np.random.Generator, n: int, cfg: AugmentConfig, extreme: bool = False
) -> TwoViewParams:
    """Draw the parameters of n samples from one generator (tests, single-stream callers).

    Args:
        rng: the generator; consumed in a fixed order.
        n: batch size.
        cfg: augmentation settings.
        extreme: also draw the extreme view.

    Returns:
        TwoViewParams with arrays of length n.
    """
    r = 3 if extreme else 2
    u = rng.random((n, r, DRAWS_PER_VIEW))
    z = rng.integers(
        0, np.iinfo(np.uint64).max, size=(n, r, SEEDS_PER_VIEW), dtype=np.uint64, endpoint=True
    )
    views = [view_from_draws(u[:, i], z[:, i], cfg, i == 2) for i in range(r)]
    return TwoViewParams(views[0], views[1], views[2] if extreme else None)


def sample_keys(seed: int, epoch: int, global_indices: np.ndarray) -> np.ndarray:
    """The 64-bit key of each sample: a hash of (seed, epoch, global index).

    Args:
        seed: run seed (any int; taken modulo 2**64).
        epoch: epoch number.
        global_indices: (N,) global sample indices (positions in the epoch order).

    Returns:
        (N,) uint64 keys; equal triples give equal keys.
    """
    idx = np.asarray(global_indices).astype(np.int64).astype(np.uint64)
    s = stream_np(np.array([seed % 2**64], np.uint64), np.zeros(1, np.int64))
    e = stream_np(s, np.array([epoch % 2**63], np.int64))
    return stream_np(np.broadcast_to(e, idx.shape), idx.astype(np.int64))


def view_slots(extreme: bool, strong_key: bool) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """Stream slot of each view (slot r: words r*20 .. r*20+19 of a sample's stream) and
    whether it takes the extreme recipe. strong_key keeps the extreme view's slot (2) for the
    key, so its draws equal the extreme view of ``extreme=True``.

    Raises:
        ConfigError: both ``extreme`` and ``strong_key``.
    """
    if extreme and strong_key:
        raise ConfigError("extreme and strong_key exclude each other: strong_key puts the "
                          "extreme recipe on the key view, extreme adds a third view")
    if extreme:
        return (0, 1, 2), (False, False, True)
    if strong_key:
        return (0, 2), (False, True)
    return (0, 1), (False, False)


def stacked_params_for(
    seed: int,
    epoch: int,
    global_indices: np.ndarray,
    cfg: AugmentConfig,
    extreme: bool = False,
    strong_key: bool = False,
) -> StackedParams:
    """:func:`params_for`'s parameters stacked as the composed kernel takes them (the batch
    loader's path): the hash chain, the uniforms and the view formulas in one compiled pass
    (``param_kernels.batch_params_kernel``). Numpy building the views and then stacking them
    cost ~220 us a batch of 64, a sixth of the composed kernel's time on MSRC-12; this costs
    ~67 us.

    Args, semantics and errors: as :func:`params_for`.
    """
    slots, ext = view_slots(extreme, strong_key)
    idx = np.ascontiguousarray(np.asarray(global_indices), np.int64)
    out = empty_params((len(slots), idx.shape[0]))
    batch_params_kernel(
        np.uint64(seed % 2**64), np.int64(epoch % 2**63), idx, np.array(slots, np.int64),
        view_recipes(cfg, ext), draw_spec(cfg), out,
    )
    return out


def params_for(
    seed: int,
    epoch: int,
    global_indices: np.ndarray,
    cfg: AugmentConfig,
    extreme: bool = False,
    strong_key: bool = False,
) -> TwoViewParams:
    """Per-sample parameters determined by (seed, epoch, global index) alone.

    Sample i's draws are outputs 0, 1, ... of a splitmix64 stream keyed by
    ``sample_keys(seed, epoch, i)``: no Generator per sample, and independent of the batch
    composition, the rank and the number of processes. Computed by :func:`stacked_params_for`
    (each view's arrays are rows of its stacked arrays); numpy twin:
    ``params_ref.params_for_ref``.

    Args:
        seed: run seed.
        epoch: epoch number.
        global_indices: (N,) int global sample indices.
        cfg: augmentation settings.
        extreme: also make the extreme view.
        strong_key: return (query, extreme) as (query, key): the extreme recipe on the key
            view, equal to ``TwoViewParams(p.query, p.extreme)`` of ``extreme=True`` without
            building the unused key view. Excludes ``extreme``.

    Returns:
        TwoViewParams with arrays of length N.

    Raises:
        ConfigError: both ``extreme`` and ``strong_key``.
    """
    stacked = stacked_params_for(seed, epoch, global_indices, cfg, extreme, strong_key)
    views = [ViewParams(*(a[r] for a in stacked)) for r in range(stacked.flip.shape[0])]
    return TwoViewParams(views[0], views[1], views[2] if extreme else None)


def stack_params(params: TwoViewParams | StackedParams) -> StackedParams:
    """``params`` as :class:`StackedParams` (returned unchanged when it already is)."""
    if isinstance(params, StackedParams):
        return params
    views = params.views
    return StackedParams(*(np.ascontiguousarray(np.stack(arrays)) for arrays in zip(*views)))
