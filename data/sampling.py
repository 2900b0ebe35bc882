"""Which raw windows to read, in which order, on which rank: every choice from an explicit seed.

Three jobs, one rule. The rule (HOUSE_STYLE.md "Data stages"): every random choice is a pure
function of ``(seed, epoch, global sample index, stream)`` (a counter-based splitmix64 hash per
sample; the epoch's permutation from a Philox generator seeded by ``(seed, epoch)``), never of
global state or the rank, so one process and N processes see the same samples and a resumed
run continues exactly where the interrupted one stopped.

- Window sets (:class:`WindowSet`): the items of an epoch. Pretraining takes one window per
  sequence (:func:`pretrain_windows` ``mode="per_sequence"``) or, for long sequences,
  ``ceil(T / stride)`` windows per sequence at stratified seeded offsets (``mode="dense"``).
  The SkeletonCLR-family temporal crop (padding ratio, crop fraction, resize to L) is applied
  afterwards by ``sscl.data.augment``; sampling only decides which raw frames are read.
  Finetuning (:func:`finetune_windows`) reads whole sequences up to ``max_length`` and cuts
  longer ones into overlapping sliding windows whose frame scores :func:`stitch` averages back.
- Epoch order and sharding (:class:`EpochPlan`): a seeded permutation padded by wrap-around to a
  multiple of ``world_size * batch_size``; padded positions carry weight 0. Global step ``s``
  holds positions ``[s*W*B, (s+1)*W*B)``; rank ``r`` takes the ``r``-th block of ``B`` of them,
  so the union over ranks of one step is the same global batch whatever ``W`` is (for a fixed
  ``W*B``).
- Label-fraction subsets (:func:`label_fraction_subset`) for semi-supervised protocols, nested
  across fractions.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from sscl.data.splitmix64 import GOLDEN_INT, INV_2_53, MASK64, mix64_int, stream_np, uniform_jit
from sscl.errors import ConfigError

# Stream tags keep the draws of independent stages apart even with equal (seed, epoch, index).
STREAM_ORDER = 0x5EED_0001
STREAM_WINDOW = 0x5EED_0002


def sample_rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
    """The generator for one (seed, epoch, index, stream) tuple (used for the epoch order).

    Args:
        seed: run seed.
        epoch: epoch number (0-based).
        index: global sample index (position in the epoch order), never a rank-local index.
        stream: a stage tag (``STREAM_*``) so that stages draw independent numbers.

    Returns:
        A Philox-backed ``np.random.Generator``; equal arguments give equal streams.
    """
    return np.random.Generator(
        np.random.Philox(np.random.SeedSequence([seed, epoch, index, stream]))
    )


def _stream_key(seed: int, epoch: int, stream: int) -> int:
    """The 64-bit key of (seed, epoch, stream) that :func:`sample_uniforms` hashes indices with."""
    key = 0
    for word in (seed, epoch, stream):
        key = mix64_int((key + (word % 2**64) * GOLDEN_INT + GOLDEN_INT) & MASK64)
    return key


def sample_uniforms(seed: int, epoch: int, positions: np.ndarray, stream: int) -> np.ndarray:
    """One uniform in [0, 1) per sample, a pure function of (seed, epoch, position, stream).

    A counter-based hash instead of a Generator per sample: vectorised over the batch (a
    Generator costs ~20 us to seed, more than reading a window) and independent of which batch
    or rank the sample lands in.

    Args:
        seed: run seed.
        epoch: epoch number.
        positions: (N,) global sample indices.
        stream: a stage tag (``STREAM_*``).

    Returns:
        (N,) float64 uniforms with 53 random bits each.
    """
    key = np.uint64(_stream_key(seed, epoch, stream))
    bits = stream_np(key, np.asarray(positions, dtype=np.int64))
    return (bits >> np.uint64(11)).astype(np.float64) * INV_2_53


@njit(cache=True, nogil=True)
def _starts_kernel(key, positions, items, start, span, out):
    """out[i] = start[w] + min(floor(u_i * span[w]), span[w] - 1), w = items[i], u_i the uniform
    of :func:`sample_uniforms` for positions[i] (compiled: the per-batch numpy version cost
    ~70 us a batch of 64 in small-array overhead; ``WindowSet.resolve_starts_ref`` is the
    twin)."""
    for i in range(positions.shape[0]):
        u = uniform_jit(key, positions[i])
        w = items[i]
        out[i] = start[w] + min(np.int64(u * span[w]), span[w] - 1)


@dataclass(frozen=True)
class WindowSet:
    """Windows to read: window ``w`` covers ``length[w]`` frames of sequence ``seq[w]``
    starting at ``start[w] + floor(u * span[w])`` with ``u`` uniform in [0, 1) drawn per sample.

    ``span == 1`` means a fixed start. ``length`` never exceeds the sequence length, so a read
    never crosses into the next sequence; a sequence shorter than the requested raw length is
    read whole (its window is shorter) and the batch stage zero-pads it and passes the length on.

    Attributes:
        seq: (W,) int64 sequence index per window.
        start: (W,) int64 lowest start frame.
        span: (W,) int64 number of admissible starts (>= 1).
        length: (W,) int64 frames read.
        skipped: sequence indices left out by a training-time cap (empty for evaluation).
        cropped: number of sequences a training-time cap shortened.
    """

    seq: np.ndarray
    start: np.ndarray
    span: np.ndarray
    length: np.ndarray
    skipped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cropped: int = 0

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    def resolve_starts(
        self, items: np.ndarray, positions: np.ndarray, seed: int, epoch: int
    ) -> np.ndarray:
        """Draw the start frame of each requested window.

        Args:
            items: (N,) int64 window indices.
            positions: (N,) int64 global sample indices (epoch positions) seeding the draws.
            seed: run seed.
            epoch: epoch number.

        Returns:
            (N,) int64 start frames.

        Raises:
            IndexError: a window index outside the set.
            ValueError: items and positions of different shapes.
        """
        items = np.ascontiguousarray(items, np.int64)
        positions = np.ascontiguousarray(positions, np.int64)
        if items.shape != positions.shape or items.ndim != 1:
            raise ValueError(f"items {items.shape} and positions {positions.shape} must be equal "
                             "(N,) arrays")
        if items.size and (items.min() < 0 or items.max() >= len(self)):
            bad = items[(items < 0) | (items >= len(self))][0]
            raise IndexError(f"window {bad} out of range: the set has {len(self)} windows")
        out = np.empty(items.shape[0], np.int64)
        _starts_kernel(
            np.uint64(_stream_key(seed, epoch, STREAM_WINDOW)),
            positions,
            items,
            np.ascontiguousarray(self.start, np.int64),
            np.ascontiguousarray(self.span, np.int64),
            out,
        )
        return out

    def resolve_starts_ref(
        self, items: np.ndarray, positions: np.ndarray, seed: int, epoch: int
    ) -> np.ndarray:
        """Numpy twin of :meth:`resolve_starts`."""
        span = self.span[items]
        u = sample_uniforms(seed, epoch, positions, STREAM_WINDOW)
        return self.start[items] + np.minimum((u * span).astype(np.int64), span - 1)


def _check_lengths(lengths: np.ndarray) -> np.ndarray:
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or (lengths.size and lengths.min() < 1):
        raise ConfigError(f"sequence lengths must be a 1-D array of positive ints, got {lengths!r}")
    return lengths


def pretrain_windows(
    lengths: np.ndarray, raw_length: int, mode: str = "per_sequence", stride: int | None = None
) -> WindowSet:
    """Raw windows for pretraining.

    Rule: ``per_sequence`` gives one window per sequence, its start uniform over the
    ``T - R + 1`` admissible starts. ``dense`` gives ``n = max(1, ceil(T / stride))`` windows per
    sequence; the admissible starts are cut into ``n`` equal strata and window ``k`` starts
    uniformly inside stratum ``k`` (stratified, so the windows of one epoch cover the sequence
    evenly). A sequence with ``T <= R`` yields one window of its whole length in both modes.

    Args:
        lengths: (S,) sequence lengths in frames.
        raw_length: R, frames read per window (the crop and resize to L happen in augment).
        mode: ``"per_sequence"`` or ``"dense"``.
        stride: frames per extra window in dense mode (default ``raw_length``).

    Returns:
        The epoch's window set.

    Raises:
        ConfigError: unknown mode, non-positive raw_length or stride.
    """
    lengths = _check_lengths(lengths)
    if raw_length < 1:
        raise ConfigError(f"raw_length must be >= 1 frame, got {raw_length}")
    stride = raw_length if stride is None else stride
    if stride < 1:
        raise ConfigError(f"dense stride must be >= 1 frame, got {stride}")
    win_len = np.minimum(lengths, raw_length)
    n_starts = lengths - win_len + 1
    if mode == "per_sequence":
        seq = np.arange(lengths.size, dtype=np.int64)
        return WindowSet(seq, np.zeros_like(seq), n_starts, win_len)
    if mode != "dense":
        raise ConfigError(f"window mode must be 'per_sequence' or 'dense', got {mode!r}")
    counts = np.where(lengths > raw_length, -(-lengths // stride), 1)
    seq = np.repeat(np.arange(lengths.size, dtype=np.int64), counts)
    k = np.arange(seq.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    n = counts[seq]
    lo = (k * n_starts[seq]) // n
    hi = ((k + 1) * n_starts[seq]) // n
    # A stratum can be empty when there are more windows than starts; it then keeps one start.
    return WindowSet(seq, lo, np.maximum(hi - lo, 1), win_len[seq])


def finetune_windows(
    lengths: np.ndarray,
    max_length: int,
    overlap: int = 0,
    *,
    train: bool = False,
    train_long: str = "windows",
) -> WindowSet:
    """Whole sequences up to ``max_length``; longer ones as overlapping sliding windows.

    Sliding windows have length ``max_length`` and stride ``max_length - overlap``; the last
    window is aligned to the sequence end so every frame is covered. Evaluation
    (``train=False``) always uses this rule and never drops a sequence. In training a long
    sequence may instead be handled by ``train_long``: ``"windows"`` (as evaluation),
    ``"crop"`` (one window of ``max_length`` at a seeded random start per epoch; counted in
    ``cropped``) or ``"skip"`` (left out; listed in ``skipped``, as the reference code drops
    BABEL sequences over 1000 frames).

    Args:
        lengths: (S,) sequence lengths.
        max_length: longest window read in one piece.
        overlap: frames shared by consecutive sliding windows (0 <= overlap < max_length).
        train: whether the training-time cap policy applies.
        train_long: ``"windows"``, ``"crop"`` or ``"skip"``.

    Returns:
        The window set (``span == 1`` everywhere except cropped training windows).

    Raises:
        ConfigError: bad max_length, overlap or policy.
    """
    lengths = _check_lengths(lengths)
    if max_length < 1 or not 0 <= overlap < max_length:
        raise ConfigError(
            f"need max_length >= 1 and 0 <= overlap < max_length, got max_length={max_length}, "
            f"overlap={overlap}"
        )
    if train_long not in ("windows", "crop", "skip"):
        raise ConfigError(f"train_long must be 'windows', 'crop' or 'skip', got {train_long!r}")
    policy = train_long if train else "windows"
    hop = max_length - overlap
    rows: list[tuple[int, int, int, int]] = []  # (seq, start, span, length) per window
    skipped: list[int] = []
    cropped = 0
    for s, t in enumerate(lengths.tolist()):
        if t <= max_length:
            rows.append((s, 0, 1, t))
        elif policy == "skip":
            skipped.append(s)
        elif policy == "crop":
            rows.append((s, 0, t - max_length + 1, max_length))
            cropped += 1
        else:
            n = 1 + math.ceil((t - max_length) / hop)
            rows += [(s, min(k * hop, t - max_length), 1, max_length) for k in range(n)]
    cols = np.asarray(rows, dtype=np.int64).reshape(-1, 4).T
    return WindowSet(*cols, np.asarray(skipped, dtype=np.int64), cropped)


def stitch(
    scores_per_window: Sequence[np.ndarray], windows: WindowSet, lengths: np.ndarray
) -> list[np.ndarray]:
    """Average the frame scores of overlapping fixed-start windows back into whole sequences.

    Args:
        scores_per_window: per window ``w``, (length[w], K) float scores (padding removed), in
            the order of ``windows``.
        windows: an evaluation window set from :func:`finetune_windows` (all ``span == 1``).
        lengths: (S,) sequence lengths.

    Returns:
        Per sequence, (T, K) float64 scores: each frame the mean over the windows covering it.

    Raises:
        ConfigError: a random-start window set, a count or shape mismatch, or an uncovered frame.
    """
    lengths = _check_lengths(lengths)
    if len(scores_per_window) != len(windows):
        raise ConfigError(
            f"got scores for {len(scores_per_window)} windows, the plan has {len(windows)}"
        )
    if np.any(windows.span != 1):
        raise ConfigError("stitch needs fixed-start windows (an evaluation plan, train=False)")
    k = np.asarray(scores_per_window[0]).shape[-1] if len(windows) else 0
    means = [np.zeros((t, k)) for t in lengths.tolist()]
    counts = [np.zeros(t) for t in lengths.tolist()]
    for w, scores in enumerate(scores_per_window):
        s, a, n = int(windows.seq[w]), int(windows.start[w]), int(windows.length[w])
        if np.shape(scores) != (n, k):
            raise ConfigError(f"window {w} scores have shape {np.shape(scores)}, expected {(n, k)}")
        counts[s][a : a + n] += 1
        # A running mean (not sum / count) keeps equal scores bitwise equal: a per-frame model
        # stitched from overlapping windows gives exactly its whole-sequence scores.
        means[s][a : a + n] += (scores - means[s][a : a + n]) / counts[s][a : a + n, None]
    for s, c in enumerate(counts):
        if c.size and c.min() == 0:
            raise ConfigError(
                f"sequence {s} has frames no window covers (was it skipped by a cap?)"
            )
    return means


@dataclass(frozen=True)
class Shard:
    """One rank's part of an epoch, from a resume point on.

    Attributes:
        positions: (n,) int64 global sample indices (epoch positions); seeds of the draws.
        items: (n,) int64 item (window) indices.
        weights: (n,) float32, 1 for real samples, 0 for wrap-around padding.
        batch_size: per-rank batch size; ``n`` is a multiple of it.
        first_step: global step of the first batch (the resume point).
    """

    positions: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    batch_size: int
    first_step: int

    @property
    def num_steps(self) -> int:
        return self.positions.size // self.batch_size

    def batch(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions, items, weights) of the shard's ``i``-th batch (0-based from first_step)."""
        sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.positions[sl], self.items[sl], self.weights[sl]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return (self.batch(i) for i in range(self.num_steps))


@dataclass(frozen=True)
class EpochPlan:
    """The order of one epoch, padded by wrap-around to whole global batches, and its shards.

    Args:
        seed: run seed.
        epoch: epoch number; the shuffle is seeded by (seed, epoch).
        num_items: real items (windows) in the epoch.
        world_size: number of ranks W.
        batch_size: per-rank batch size B.
        shuffle: seeded permutation (True) or the natural order (evaluation).
        groups: optional (num_items,) locality group of each item (e.g. the corpus block its
            window starts in). With ``mix > 0`` the shuffle is block-local: groups are put in
            a seeded random order and the items of ``mix`` consecutive groups are interleaved,
            so a reader touches each corpus chunk about once a pass while batches still mix
            ``mix`` groups.
        mix: groups interleaved at any point of a block-local shuffle (0: plain shuffle).
    """

    seed: int
    epoch: int
    num_items: int
    world_size: int = 1
    batch_size: int = 1
    shuffle: bool = True
    groups: np.ndarray | None = field(default=None, compare=False)
    mix: int = 0

    def __post_init__(self) -> None:
        if self.num_items < 1:
            raise ConfigError(f"an epoch needs at least one item, got num_items={self.num_items}")
        if self.world_size < 1 or self.batch_size < 1:
            raise ConfigError(
                f"world_size and batch_size must be >= 1, got {self.world_size}, {self.batch_size}"
            )
        if self.mix < 0:
            raise ConfigError(f"mix must be >= 0 groups, got {self.mix}")
        if self.mix and (self.groups is None or len(self.groups) != self.num_items):
            raise ConfigError(
                f"a block-local shuffle (mix={self.mix}) needs one group per item "
                f"({self.num_items}), got {None if self.groups is None else len(self.groups)}"
            )

    @property
    def global_batch(self) -> int:
        return self.world_size * self.batch_size

    @property
    def num_steps(self) -> int:
        """Steps every rank runs in this epoch."""
        return -(-self.num_items // self.global_batch)

    @property
    def padded_size(self) -> int:
        return self.num_steps * self.global_batch

    def order(self) -> np.ndarray:
        """(num_items,) int64 item order of the epoch, without padding."""
        if not self.shuffle:
            return np.arange(self.num_items, dtype=np.int64)
        rng = sample_rng(self.seed, self.epoch, 0, STREAM_ORDER)
        if not self.mix:
            return rng.permutation(self.num_items)
        _, group = np.unique(np.asarray(self.groups), return_inverse=True)
        rank = rng.permutation(int(group.max()) + 1)[group]
        # Items of the group at rank r spread uniformly over [r, r + mix): about `mix` groups
        # are interleaved at every point of the order.
        key = rank + self.mix * rng.random(self.num_items)
        return np.argsort(key, kind="stable").astype(np.int64)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(padded_size,) int64 items by wrap-around and (padded_size,) float32 weights."""
        pos = np.arange(self.padded_size, dtype=np.int64)
        return self.order()[pos % self.num_items], (pos < self.num_items).astype(np.float32)

    def shard(self, rank: int, position: int = 0) -> Shard:
        """The items rank ``rank`` reads, from global position ``position`` on.

        Args:
            rank: 0 <= rank < world_size.
            position: global samples of this epoch already consumed (a multiple of
                ``world_size * batch_size``; checkpoints store it as ``step * W * B``, so a run
                may resume on another world size with the same global batch).

        Returns:
            The rank's shard; every rank gets ``num_steps - position / (W*B)`` batches.

        Raises:
            ConfigError: bad rank or a position off a global-batch boundary.
        """
        if not 0 <= rank < self.world_size:
            raise ConfigError(f"rank must be in [0, {self.world_size}), got {rank}")
        if position % self.global_batch or not 0 <= position <= self.padded_size:
            raise ConfigError(
                f"resume position {position} must be a multiple of world_size*batch_size="
                f"{self.global_batch} within [0, {self.padded_size}]"
            )
        items, weights = self.items()
        pos = np.arange(self.padded_size, dtype=np.int64).reshape(
            self.num_steps, self.world_size, -1
        )
        mine = pos[position // self.global_batch :, rank].reshape(-1)
        return Shard(
            mine, items[mine], weights[mine], self.batch_size, position // self.global_batch
        )


def label_fraction_subset(
    seq_ids: Sequence[str], labelled: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """A seeded subset holding ``fraction`` of the labelled sequences.

    Each labelled sequence gets a key from a hash of ``(seed, seq_id)``; the subset is the
    ``round(fraction * n)`` (at least 1 when ``fraction > 0``) smallest keys. The keys do not
    depend on the fraction or on the corpus order, so subsets are nested (10% is inside 20%)
    and stable when sequences are added or reordered.

    Args:
        seq_ids: (S,) sequence ids (unique).
        labelled: (S,) bool, whether the sequence has at least one labelled frame.
        fraction: in (0, 1].
        seed: subset seed.

    Returns:
        Sorted int64 indices of the chosen sequences.

    Raises:
        ConfigError: fraction outside (0, 1] or no labelled sequence.
    """
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"label fraction must be in (0, 1], got {fraction}")
    labelled = np.asarray(labelled, dtype=bool)
    candidates = np.flatnonzero(labelled)
    if candidates.size == 0:
        raise ConfigError("no labelled sequence to draw a label-fraction subset from")
    keys = np.array(
        [
            int.from_bytes(
                hashlib.blake2b(f"{seed}\0{seq_ids[i]}".encode(), digest_size=8).digest(), "little"
            )
            for i in candidates.tolist()
        ],
        dtype=np.uint64,
    )
    n = max(1, round(fraction * candidates.size))
    return np.sort(candidates[np.argsort(keys, kind="stable")[:n]])
