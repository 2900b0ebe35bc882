"""The input pipeline's entry point: :func:`make_loader`, the epoch's window set and the plain
torch DataLoader engine. Its config ``LoaderConfig`` belongs to this module's API (README:
``from sscl.data.loader import LoaderConfig, make_loader``) but is defined, with ``LoaderInfo``
(what the pipeline tells the trainer), in ``sscl.data.loader_config``: the DALI engine and the
batch stages take both, and this module imports them, so they must not import it back.

One picklable ``BatchSource`` (``sscl.data.batch_source``: read -> normalise + augment ->
batch) turns ``(epoch, step)`` into one rank's batch as a dict of numpy arrays; both engines
call exactly this object (the torch DataLoader here, the DALI parallel external source in
``sscl.data.pipeline``), which is why they yield identical batches for the same seed. The
source opens the corpus lazily in each worker process, so only its path, the window set and the
config cross the process boundary. Packed batch layouts: ``sscl.data.packing``.

Batches (per rank, ``B`` = per-rank batch size):

- pretraining: ``query``, ``key`` (B, C, L, V, M) float32, optionally ``extreme``, each with
  its ``<view>_valid`` (B, L, V, M) bool (invalid points are exactly 0 in the view) and
  ``<view>_tempo`` (B,) float32 (the view's tempo, ``AugmentConfig.tempos``), and
  ``weight`` (B,) float32 (0 for wrap-around padding), ``index`` (B,) int64 window index,
  ``position`` (B,) int64 global sample index (epoch position; the seed of its draws).
- finetuning: ``x`` (B, C, T, V, M) float32 zero-padded to the longest window of the batch,
  ``labels`` (B, T) int64 (-1 on padding and unlabelled frames), ``mask`` (B, T) bool (real
  frames), ``weight``, ``index``, ``position``, and ``seq``/``start`` (B,) int64 for :func:`stitch`.

:func:`make_loader` picks the engine (torch unless asked for DALI: it measured faster) and
both engines expose the same ``epoch(e, position) -> iterator of dict[str, torch.Tensor]``
interface, ``engine`` name and ``info`` (:class:`LoaderInfo`: layout, persons, classes, steps
per epoch, views and tempos, read from the corpus header).
With either engine a batch's tensors may be views valid until the next batch is requested:
copy (or move to the device) what must live longer. Workers run with one thread each
(OpenBLAS, torch, Numba; ``sscl.data.worker_threads``): BLAS thread pools in many processes
oversubscribe the cores and can stall Numba's threading layer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sscl.data.batch_source import BatchSource
from sscl.data.loader_config import LoaderConfig, LoaderInfo  # LoaderConfig: re-exported API
from sscl.data.normalize import normalization_joints
from sscl.data.packing import (
    _layout_key,
    _spans,
    batch_layout,
    max_batch_nbytes,
    pack_into,
    unpack_batch,
    view_names,
)
from sscl.data.pipeline import DaliLoader, dali_available
from sscl.data.reader import open_corpus
from sscl.data.sampling import WindowSet, finetune_windows, pretrain_windows
from sscl.data.worker_threads import limit_threads, single_threaded_children
from sscl.errors import ConfigError

# Frames per locality block: 16 corpus chunks of 1024 frames (sscl.data.corpus.CHUNK_FRAMES).
LOCALITY_BLOCK = 16 * 1024


def corpus_path(corpus: Any) -> str:
    """The path or URL a worker reopens the corpus from (accepts a Corpus or a path)."""
    path = getattr(corpus, "path", corpus)
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(
            f"expected a corpus path or an opened Corpus, got {type(corpus).__name__}"
        )
    return str(path)


def build_windows(lengths: np.ndarray, cfg: LoaderConfig) -> WindowSet:
    """The epoch's window set for ``cfg`` over sequences of ``lengths`` (within cfg.sequences)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if cfg.task == "pretrain":
        ws = pretrain_windows(lengths, cfg.raw_length, cfg.window_mode, cfg.dense_stride)
    elif cfg.task == "finetune":
        ws = finetune_windows(
            lengths, cfg.max_length, cfg.overlap, train=cfg.train, train_long=cfg.train_long
        )
    else:
        raise ConfigError(f"loader task must be 'pretrain' or 'finetune', got {cfg.task!r}")
    if cfg.sequences is None:
        return ws
    keep = np.isin(ws.seq, np.asarray(cfg.sequences, dtype=np.int64))
    return WindowSet(
        ws.seq[keep], ws.start[keep], ws.span[keep], ws.length[keep], ws.skipped, ws.cropped
    )


class _StepDataset(torch.utils.data.Dataset):
    """Map-style dataset keyed by (epoch, step, slot): one item is one whole batch.

    With a ring (worker processes), the batch is written into ring slot ``slot`` and only its
    layout travels back; a batch larger than a slot travels as its own packed tensor.
    """

    def __init__(self, source: BatchSource, ring: torch.Tensor | None):
        self.source = source
        self.ring = ring

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor | None, tuple, int]:
        epoch, step, slot = key
        source = self.source
        if self.ring is not None and source.cfg.task == "pretrain":
            layout, nbytes = source.packed_layout()
            if nbytes <= self.ring.shape[1]:
                # Computed straight into the shared slot: nothing to copy.
                source(epoch, step, dest=self.ring[slot].numpy())
                return None, layout, slot
        batch = source(epoch, step)
        layout, nbytes = batch_layout(batch)
        if self.ring is not None and nbytes <= self.ring.shape[1]:
            pack_into(batch, layout, self.ring[slot].numpy())
            return None, layout, slot
        buf = np.empty(nbytes, np.uint8)
        pack_into(batch, layout, buf)
        return torch.from_numpy(buf), layout, -1


class _StepSampler(torch.utils.data.Sampler):
    """Yields (epoch, step, slot) keys; re-aimed by the loader before each epoch."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int, int]] = []

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        return iter(list(self.keys))

    def __len__(self) -> int:
        return len(self.keys)


def _worker_init(_: int) -> None:
    limit_threads()


class TorchLoader:
    """The plain engine: a torch DataLoader with persistent spawned workers over BatchSource.

    Workers write each batch into a ring of preallocated shared-memory slots and send back only
    its layout: a DataLoader otherwise allocates a new shared-memory segment and copies every
    batch into it, which capped the hand-off at ~530 batches/s of 1.6 MB here (bench/README.md).
    Like the DALI engine's, a batch's tensors are therefore views valid until the next batch is
    requested: copy (or move to the device) what must live longer. The ring holds
    ``num_workers * prefetch + 2`` slots, more than the DataLoader ever has dispatched and not
    yet handed out (``num_workers * prefetch``) plus the batch the caller holds.

    Pinned memory (``cfg.pin_memory`` with CUDA available): the ring stays on (the measured
    path) and the training process copies each batch from its slot into a page-locked buffer
    from torch's caching host allocator (one memcpy of the packed batch, e.g. 1.6 MB, about
    0.1-0.3 ms), whose tensors it hands out: they are then the caller's to keep, and
    ``.to(device, non_blocking=True)`` is a true asynchronous copy (the allocator does not
    reuse a buffer before the copies recorded on it complete, as for DataLoader pinning).
    Pinning the shared ring itself (cudaHostRegister) would save that memcpy, but a worker
    rewrites a slot two batches after it was handed out, while an asynchronous copy from it may
    still be queued behind the GPU's work. Without workers, the DataLoader pins as usual.

    Args:
        source: the batch source.
        cfg: loader config (workers, prefetch, pinning).
        slot_bytes: size of one ring slot (:func:`max_batch_nbytes`).
        info: what the trainer reads (:class:`LoaderInfo`).
    """

    engine = "torch"

    def __init__(self, source: BatchSource, cfg: LoaderConfig, slot_bytes: int,
                 info: LoaderInfo | None = None):
        self.source = source
        self.info = info
        self._sampler = _StepSampler()
        workers = cfg.num_workers
        pin = cfg.pin_memory and torch.cuda.is_available()
        self._ring = None
        if workers:
            slots = workers * cfg.prefetch + 2
            self._ring = torch.empty((slots, slot_bytes), dtype=torch.uint8).share_memory_()
        # Batches handed out from a pinned copy of their ring slot (see above).
        self.pin_from_ring = pin and self._ring is not None
        self._issued = 0  # batches requested so far: the slot of the next one is issued % slots
        self._loader = torch.utils.data.DataLoader(
            _StepDataset(source, self._ring),
            sampler=self._sampler,
            batch_size=None,
            num_workers=workers,
            pin_memory=pin and not self.pin_from_ring,
            worker_init_fn=_worker_init if workers else None,
            prefetch_factor=cfg.prefetch if workers else None,
            persistent_workers=workers > 0,
            # spawn: safe after CUDA initialisation and with Numba/OpenBLAS threads in the parent.
            multiprocessing_context="spawn" if workers else None,
        )

    @property
    def windows(self) -> WindowSet:
        return self.source.windows

    def num_steps(self, epoch: int) -> int:
        return self.source.num_steps(epoch)

    def epoch(self, epoch: int, position: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of ``epoch`` from global position ``position`` (a multiple of W*B) on."""
        first = self.source.plan(epoch).shard(self.source.rank, position).first_step
        slots = 1 if self._ring is None else self._ring.shape[0]
        steps = range(first, self.num_steps(epoch))
        self._sampler.keys = [(epoch, s, (self._issued + j) % slots) for j, s in enumerate(steps)]
        self._issued += len(steps)
        with single_threaded_children():
            it = iter(self._loader)
        return (self._hand_out(buf, layout, slot) for buf, layout, slot in it)

    def _hand_out(self, buf: torch.Tensor | None, layout: tuple, slot: int
                  ) -> dict[str, torch.Tensor]:
        if buf is None:
            buf = self._ring[slot]
            if self.pin_from_ring:
                nbytes = max(end for *_, end in _spans(_layout_key(layout)))
                pinned = pinned_empty(nbytes)
                pinned.copy_(buf[:nbytes])
                buf = pinned
        return unpack_batch(buf, layout)


def pinned_empty(nbytes: int) -> torch.Tensor:
    """A page-locked uint8 buffer from torch's caching host allocator (CUDA only)."""
    return torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)


def make_loader(
    corpus: Any, cfg: LoaderConfig, rank: int = 0, world_size: int = 1, engine: str = "auto"
) -> TorchLoader | DaliLoader:
    """Build the input pipeline for one rank.

    ``engine="auto"`` picks the torch engine: every measured case in bench/README.md has it
    ahead of DALI (MSRC-12 pretraining 42,267 against 37,501 samples/s, the 400k-frame
    synthetic corpus 24,024 against 21,286), because the batches are made by the same
    ``BatchSource`` in worker processes either way and DALI only adds its per-sample hand-off
    in the training process. DALI stays available (``engine="dali"``), e.g. to feed a DALI GPU
    pipeline; both give identical batches.

    Args:
        corpus: an opened ``Corpus`` (or its path); workers reopen it from its path.
        cfg: loader config.
        rank: this process's rank (0 <= rank < world_size).
        world_size: number of ranks.
        engine: ``"auto"`` (the torch engine, see above), ``"dali"`` or ``"torch"``.

    Returns:
        A loader (``TorchLoader`` or ``sscl.data.pipeline.DaliLoader``) with ``info``
        (:class:`LoaderInfo`: layout, persons, classes, steps per epoch, views and tempos, ...),
        ``engine``, ``num_steps(epoch)``, ``epoch(epoch, position=0)`` and ``windows``.

    Raises:
        ConfigError: unknown engine, ``"dali"`` asked for where DALI is not installed, flips
            asked for on a layout without left/right pairs, or a normalisation the layout
            lacks joints for.
    """
    if engine not in ("auto", "dali", "torch"):
        raise ConfigError(f"engine must be 'auto', 'dali' or 'torch', got {engine!r}")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, {world_size}), got {rank}")
    if engine == "dali" and not dali_available():
        raise ConfigError(
            "engine='dali' but nvidia-dali is not importable; install the "
            "dali-cuda12 extra or use engine='torch'"
        )
    path = corpus_path(corpus)
    if isinstance(corpus, (str, Path)):
        # Budget 0: the parent needs lengths and layout only, never the decoded frames.
        corpus = open_corpus(path, memory_budget=0)
    # Fail here, not inside a worker.
    if cfg.task == "pretrain":
        cfg.augment.check_layout(corpus.layout)
    if cfg.normalize != "none":
        normalization_joints(corpus.layout)
    windows = build_windows(corpus.lengths, cfg)
    groups = (corpus.offsets[windows.seq] + windows.start) // LOCALITY_BLOCK
    source = BatchSource(path, cfg, windows, rank, world_size, groups)
    name = "dali" if engine == "dali" else "torch"
    V, C, M = corpus.frame_shape
    info = LoaderInfo(
        layout=corpus.layout, num_persons=M, class_names=tuple(corpus.class_names),
        fps=float(corpus.fps), units="metres" if C == 3 else "source units (2-D)",
        normalize=cfg.normalize, frame_shape=(V, C, M), windows=windows, task=cfg.task,
        views=view_names(cfg), tempos=cfg.augment.tempos, out_len=cfg.augment.out_len,
        batch_size=cfg.batch_size, world_size=world_size, rank=rank, engine=name,
    )
    if name == "torch":
        longest = int(windows.length.max()) if len(windows) else 1
        return TorchLoader(source, cfg, max_batch_nbytes(cfg, corpus.frame_shape, longest), info)
    return DaliLoader(source, cfg, corpus.frame_shape, info)
