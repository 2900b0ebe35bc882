"""The augmentation settings: a typed, frozen schema validated on creation.

Based on the SkeletonCLR / AimCLR feeders (temporal crop with padding ratio 6, shear 0.5, flip,
rotation, Gaussian noise, Gaussian blur kernel 15 with sigma in [0.1, 2] at probability 0.5,
axis mask) and RVTCLR's relative tempo (METHOD.md section 1); YAML presets set these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from sscl.data.layouts import Layout
from sscl.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (schema; YAML presets set these fields).

    Query and key views: crop + resize, shear, optional rotation/flip/person swap/tempo.
    The extreme view (AimCLR) adds its own rotation and flip probability, Gaussian noise, joint
    mask, temporal Gaussian blur and axis mask. Angles are in degrees; each axis angle is drawn
    uniformly in ``[-a, a]`` (AimCLR draws one main axis in [0, 30] and the others in [0, 1]).

    Attributes:
        out_len: frames L of every view (AimCLR/SkeletonCLR: 50 on NTU; SnipCLR: about 200).
        padding_ratio: ``lengths // padding_ratio`` mirrored frames padded on each side (0: none).
        crop_range: (min, max) fraction of the valid length taken by the crop.
        min_crop: lower bound of the crop length in frames (capped at the valid length).
        shear: shear amplitude; off-diagonal entries uniform in ``[-shear, shear]``.
        rotate_deg: per-axis (x, y, z) rotation range of the query/key views.
        flip_prob: left/right flip probability of the query/key views (needs flip pairs).
        swap_prob: probability of swapping persons 0 and 1 (M == 2) in every view.
        tempos: playback tempos (RVTCLR: (1.0, 2.0)). Each view of each sample draws one
            uniformly from the set (a per-sample seeded draw); its crop spans
            ``tempo / max(tempos)`` of the frames a tempo-``max`` crop spans, resized to the
            same ``out_len``, so a 2x view covers twice the motion of a 1x view. The draw is
            in the batch as ``<view>_tempo``. (1.0,): every view at 1x, the plain crop.
        extreme_rotate_deg: per-axis rotation range of the extreme view.
        extreme_flip_prob: flip probability of the extreme view (AimCLR: 0.5).
        noise_prob: probability of Gaussian noise in the extreme view (AimCLR: 0.5).
        noise_std: noise standard deviation in coordinate units (AimCLR: 0.01).
        joint_mask_p: per-joint probability of masking a joint (all frames) in the extreme view.
        blur_prob: probability of the temporal blur in the extreme view (AimCLR: 0.5).
        blur_kernel: odd blur kernel length in frames (AimCLR: 15).
        blur_sigma: (min, max) of the blur sigma in frames (AimCLR: 0.1, 2.0).
        axis_mask_prob: probability of zeroing one coordinate axis in the extreme view.
    """

    out_len: int = 50
    padding_ratio: int = 6
    crop_range: tuple[float, float] = (0.5, 1.0)
    min_crop: int = 1
    shear: float = 0.5
    rotate_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    flip_prob: float = 0.0
    swap_prob: float = 0.0
    tempos: tuple[float, ...] = (1.0,)
    extreme_rotate_deg: tuple[float, float, float] = (30.0, 30.0, 30.0)
    extreme_flip_prob: float = 0.5
    noise_prob: float = 0.5
    noise_std: float = 0.01
    joint_mask_p: float = 0.0
    blur_prob: float = 0.5
    blur_kernel: int = 15
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    axis_mask_prob: float = 0.5

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"augment.{name} = {getattr(self, name)!r}: expected {expected}")

        object.__setattr__(self, "tempos", tuple(float(t) for t in self.tempos))
        if (not self.tempos or len(set(self.tempos)) != len(self.tempos)
                or not all(0.0 < t < float("inf") for t in self.tempos)):
            raise bad("tempos", "a non-empty tuple of distinct tempos > 0, e.g. (1.0, 2.0)")
        if self.out_len < 1:
            raise bad("out_len", "an integer >= 1")
        if self.padding_ratio < 0:
            raise bad("padding_ratio", "an integer >= 0 (0 disables padding)")
        lo, hi = self.crop_range
        if not 0.0 < lo <= hi <= 1.0:
            raise bad("crop_range", "(min, max) with 0 < min <= max <= 1")
        if self.min_crop < 1:
            raise bad("min_crop", "an integer >= 1")
        for name in ("shear", "noise_std"):
            if getattr(self, name) < 0:
                raise bad(name, "a value >= 0")
        for name in ("rotate_deg", "extreme_rotate_deg"):
            r = getattr(self, name)
            if len(r) != 3 or any(a < 0 for a in r):
                raise bad(name, "three per-axis ranges >= 0 in degrees (x, y, z)")
        for f in fields(self):
            is_prob = f.name.endswith("_prob") or f.name == "joint_mask_p"
            if is_prob and not 0.0 <= getattr(self, f.name) <= 1.0:
                raise bad(f.name, "a probability in [0, 1]")
        if self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise bad("blur_kernel", "an odd integer >= 1 (AimCLR: 15)")
        s0, s1 = self.blur_sigma
        if not 0.0 < s0 <= s1:
            raise bad("blur_sigma", "(min, max) with 0 < min <= max (AimCLR: (0.1, 2.0))")

    def check_layout(self, layout: Layout) -> None:
        """Fail at config time when a flip is requested for a layout without left/right pairs.

        Args:
            layout: a ``sscl.data.layouts.Layout``.

        Raises:
            ConfigError: ``flip_prob`` or ``extreme_flip_prob`` > 0 and ``layout.flip_pairs`` is
                empty.
        """
        if (self.flip_prob > 0 or self.extreme_flip_prob > 0) and not layout.flip_pairs:
            raise ConfigError(
                f"augment.flip_prob = {self.flip_prob}, augment.extreme_flip_prob = "
                f"{self.extreme_flip_prob}: layout {layout.name!r} has no left/right flip pairs; "
                "set both to 0 or use a layout with flip_pairs"
            )
