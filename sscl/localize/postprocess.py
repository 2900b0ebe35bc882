"""Frame probabilities to scored segments: the reference decoder and the argmax-run decoder.

Input is one sequence's (T, K+1) frame probabilities (softmax over K action classes and
background, background last). Output is a list of :class:`ScoredSegment` ``(label, start, end,
score)`` in frames ``[start, end)``, action classes only.

- ``reference`` (METHOD.md section 5, kept by the reference code from weakly supervised
  localization's outer-inner contrastive score): for every action class ``c`` and threshold
  ``h``, the maximal runs where ``s_c(t) > h`` of at least ``min_len`` frames; a run ``[a, b)``
  of length ``L`` scores ``mean(s_c[a:b]) - outer_weight * mean(s_c over the outer margins)``,
  the margins being ``m = ceil(margin * L)`` frames on each side, clipped at the sequence edges
  (this project's choice, the same on both sides: weakly supervised localization code such as
  BaS-Net's proposal step truncates ``0.25 * L`` to an integer differently on the two sides, and
  the seed's exact rounding is not checked here; a run covering the whole sequence has no
  margin and an outer mean of 0). Runs of
  all thresholds are pooled, then 1-D NMS per class at ``nms_threshold`` (IoU by default,
  ``nms="over_other"`` for the reference code's intersection over the other segment's length).
- ``argmax``: runs of the per-frame argmax that are not background and at least ``min_len``
  frames long, scored by the mean probability of their class inside the run. Runs of one class
  never overlap, so no NMS.

Every constant lives in :class:`DecoderConfig`. Which decoder is the default of a run is chosen
on a validation split (:func:`sscl.localize.evaluate.select_decoder`), never on the test split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sscl.errors import ConfigError
from sscl.localize.segments import NMS_OVERLAPS, ScoredSegment, mask_runs, nms_1d, runs

DECODERS = ("reference", "argmax")


@dataclass(frozen=True)
class DecoderConfig:
    """Every constant of a decoder (defaults: the reference decoder of METHOD.md section 5).

    Attributes:
        name: ``"reference"`` (threshold sweep + outer-inner score + NMS) or ``"argmax"``.
        thresholds: reference: a run is where ``s_c(t) > threshold``; one sweep per value.
        min_len: shortest run kept, in frames (both decoders).
        outer_weight: reference: weight of the outer-margin mean subtracted from the inner mean.
        margin: reference: each outer margin is ``ceil(margin * run length)`` frames.
        nms: reference: ``"iou"`` or ``"over_other"`` (the reference code's overlap).
        nms_threshold: reference: overlaps strictly above it are suppressed.
    """

    name: str = "reference"
    thresholds: tuple[float, ...] = field(default=(0.030, 0.035, 0.040, 0.045, 0.050))
    min_len: int = 3
    outer_weight: float = 0.6
    margin: float = 0.25
    nms: str = "iou"
    nms_threshold: float = 0.2

    def __post_init__(self) -> None:
        if self.name not in DECODERS:
            raise ConfigError(f"decoder.name={self.name!r} unknown; expected one of {DECODERS}")
        object.__setattr__(self, "thresholds", tuple(float(h) for h in self.thresholds))
        if self.name == "reference" and not self.thresholds:
            raise ConfigError("decoder.thresholds is empty; the reference decoder needs >= 1")
        if self.min_len < 1:
            raise ConfigError(f"decoder.min_len={self.min_len}; expected an integer >= 1")
        if self.margin < 0:
            raise ConfigError(f"decoder.margin={self.margin}; expected a fraction >= 0")
        if self.nms not in NMS_OVERLAPS:
            raise ConfigError(f"decoder.nms={self.nms!r} unknown; expected one of {NMS_OVERLAPS}")

    def describe(self) -> str:
        """A short human-readable label (tables, logs)."""
        if self.name == "argmax":
            return f"argmax(min_len={self.min_len})"
        hs = ",".join(f"{h:g}" for h in self.thresholds)
        return (
            f"reference(h={hs}, min_len={self.min_len}, w={self.outer_weight:g}, "
            f"margin={self.margin:g}, nms={self.nms}@{self.nms_threshold:g})"
        )


REFERENCE = DecoderConfig()
REFERENCE_CODE_NMS = DecoderConfig(nms="over_other")
ARGMAX = DecoderConfig(name="argmax", min_len=1)


def _check_probs(probs_TK: np.ndarray) -> np.ndarray:
    probs_TK = np.asarray(probs_TK, dtype=np.float64)
    if probs_TK.ndim != 2 or probs_TK.shape[1] < 2:
        raise ConfigError(
            f"frame probabilities have shape {probs_TK.shape}; expected (T, K+1) with K >= 1 "
            "action classes and background last"
        )
    return probs_TK


def decode_reference(
    probs_TK: np.ndarray, config: DecoderConfig = REFERENCE
) -> list[ScoredSegment]:
    """The reference decoder (threshold sweep, outer-inner score, per-class NMS).

    Args:
        probs_TK: (T, K+1) frame probabilities, background last.
        config: the decoder's constants (``config.name`` is not consulted).

    Returns:
        Segments of all action classes, classes in ascending order, per class by descending
        score (equal scores: threshold order, then time). Scores are prefix-sum means, so two
        mathematically equal scores can differ in their last bits and rank either way.
    """
    probs_TK = _check_probs(probs_TK)
    T, K = probs_TK.shape[0], probs_TK.shape[1] - 1
    s_TK = probs_TK[:, :K]
    csum_TK = np.zeros((T + 1, K))
    np.cumsum(s_TK, axis=0, out=csum_TK[1:])
    cols, starts, ends = [], [], []
    for h in config.thresholds:
        c_R, a_R, b_R = mask_runs(s_TK > h)
        long = (b_R - a_R) >= config.min_len
        cols.append(c_R[long])
        starts.append(a_R[long])
        ends.append(b_R[long])
    c_R, a_R, b_R = (np.concatenate(v) for v in (cols, starts, ends))
    length_R = b_R - a_R
    inner_R = (csum_TK[b_R, c_R] - csum_TK[a_R, c_R]) / np.maximum(length_R, 1)
    m_R = np.ceil(config.margin * length_R - 1e-9).astype(np.int64)  # 0.25 * 4 is 1, not 2
    lo_R = np.maximum(a_R - m_R, 0)
    hi_R = np.minimum(b_R + m_R, T)
    outer_sum_R = (csum_TK[a_R, c_R] - csum_TK[lo_R, c_R]) + (
        csum_TK[hi_R, c_R] - csum_TK[b_R, c_R]
    )
    outer_len_R = (a_R - lo_R) + (hi_R - b_R)
    outer_R = np.where(outer_len_R > 0, outer_sum_R / np.maximum(outer_len_R, 1), 0.0)
    score_R = inner_R - config.outer_weight * outer_R

    out: list[ScoredSegment] = []
    # Stable sort by class keeps the pooled (threshold, time) order inside a class.
    by_class = np.argsort(c_R, kind="stable")
    c_R, a_R, b_R, score_R = c_R[by_class], a_R[by_class], b_R[by_class], score_R[by_class]
    bounds = np.searchsorted(c_R, np.arange(K + 1))
    for c in range(K):
        lo, hi = bounds[c], bounds[c + 1]
        if lo == hi:
            continue
        keep = nms_1d(a_R[lo:hi], b_R[lo:hi], score_R[lo:hi], config.nms_threshold, config.nms)
        out.extend(
            ScoredSegment(c, int(a_R[lo + i]), int(b_R[lo + i]), float(score_R[lo + i]))
            for i in keep
        )
    return out


def decode_argmax(probs_TK: np.ndarray, config: DecoderConfig = ARGMAX) -> list[ScoredSegment]:
    """The plain decoder: non-background runs of the per-frame argmax, scored by mean probability.

    Args:
        probs_TK: (T, K+1) frame probabilities, background last.
        config: only ``min_len`` is used.

    Returns:
        Segments in time order. Argmax ties go to the lower class index (``np.argmax``).
    """
    probs_TK = _check_probs(probs_TK)
    K = probs_TK.shape[1] - 1
    pred_T = probs_TK.argmax(axis=1)
    value_R, a_R, b_R = runs(pred_T)
    keep = (value_R != K) & ((b_R - a_R) >= config.min_len)
    value_R, a_R, b_R = value_R[keep], a_R[keep], b_R[keep]
    csum_TK = np.zeros((probs_TK.shape[0] + 1, K + 1))
    np.cumsum(probs_TK, axis=0, out=csum_TK[1:])
    score_R = (csum_TK[b_R, value_R] - csum_TK[a_R, value_R]) / (b_R - a_R)
    return [
        ScoredSegment(int(c), int(a), int(b), float(s))
        for c, a, b, s in zip(value_R, a_R, b_R, score_R)
    ]


def decode(probs_TK: np.ndarray, config: DecoderConfig = REFERENCE) -> list[ScoredSegment]:
    """Decode one sequence with the decoder named by ``config.name``.

    Args:
        probs_TK: (T, K+1) frame probabilities (softmax over K classes + background, last).
        config: a :class:`DecoderConfig`.

    Returns:
        A list of :class:`ScoredSegment` ``(label, start, end, score)``, frames ``[start, end)``.

    Raises:
        ConfigError: probabilities not shaped (T, K+1).
    """
    if config.name == "argmax":
        return decode_argmax(probs_TK, config)
    return decode_reference(probs_TK, config)

