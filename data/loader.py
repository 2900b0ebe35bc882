"""The batch stages (read -> augment -> batch) and the plain torch DataLoader engine over them.

One picklable :class:`BatchSource` turns ``(epoch, step)`` into one rank's batch as a dict of
numpy arrays; both engines call exactly this object (the torch DataLoader here, the DALI
parallel external source in ``sscl.data.pipeline``), which is why they yield identical batches
for the same seed. The source opens the corpus lazily in each worker process, so only its path,
the window set and the config cross the process boundary.

Batches (per rank, ``B`` = per-rank batch size):

- pretraining: ``query``, ``key`` (B, C, L, V, M) float32, optionally ``extreme``, each with
  its ``<view>_valid`` (B, L, V, M) bool (invalid points are exactly 0 in the view), and
  ``weight`` (B,) float32 (0 for wrap-around padding), ``index`` (B,) int64 window index,
  ``position`` (B,) int64 global sample index (epoch position; the seed of its draws).
- finetuning: ``x`` (B, C, T, V, M) float32 zero-padded to the longest window of the batch,
  ``labels`` (B, T) int64 (-1 on padding and unlabelled frames), ``mask`` (B, T) bool (real
  frames), ``weight``, ``index``, ``position``, and ``seq``/``start`` (B,) int64 for :func:`stitch`.

:func:`make_loader` picks the engine (DALI when installed) and both engines expose the same
``epoch(e, position) -> iterator of dict[str, torch.Tensor]`` interface and ``engine`` name.
With either engine a batch's tensors may be views valid until the next batch is requested:
copy (or move to the device) what must live longer. Workers run with one thread each
(OpenBLAS, torch, Numba): BLAS thread pools in many processes oversubscribe the cores and can
stall Numba's threading layer.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sscl.data import augment
from sscl.data.sampling import EpochPlan, WindowSet, finetune_windows, pretrain_windows
from sscl.errors import ConfigError

# Read once when the BLAS / OpenMP runtimes load, so they must be in a worker's environment from
# its start (see single_threaded_children). Numba's pool is sized at run time instead.
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class LoaderConfig:
    """What the input pipeline needs from the run config.

    Attributes:
        task: ``"pretrain"`` (augmented views) or ``"finetune"`` (whole sequences / windows).
        seed: run seed; with the epoch and the global sample index it seeds every draw.
        batch_size: per-rank batch size.
        num_workers: reader/augment worker processes (0: in the main process, torch engine).
        prefetch: batches prefetched per worker (torch) / queue depth (DALI).
        shuffle: shuffle the epoch order (training); False keeps corpus order (evaluation).
        raw_length: pretraining: frames R read per window before crop + resize to L.
        window_mode: pretraining: ``"per_sequence"`` or ``"dense"`` (see sampling).
        dense_stride: pretraining dense mode: frames per window (default ``raw_length``).
        max_length: finetuning: longest window read in one piece.
        overlap: finetuning: frames shared by consecutive sliding windows.
        train: finetuning: apply the training-time cap policy ``train_long``.
        train_long: finetuning: ``"windows"``, ``"crop"`` or ``"skip"`` for long sequences.
        sequences: restrict to these sequence indices (e.g. a label-fraction subset); None: all.
        augment: augmentation parameters for pretraining (``sscl.data.augment.AugmentConfig``).
        extreme: pretraining: also make AimCLR's extremely augmented third view.
        strong_key: pretraining: draw the key view with the extreme recipe (noise, blur, axis
            mask, ...) instead of a third view: SkeletonCLR with a strong second view, the
            AimCLR feeder's two-view mode. Excludes ``extreme``.
        pin_memory: pin batches when CUDA is available (torch engine).
        memory_budget: bytes of decoded corpus each worker may hold (None: the reader's
            default); bounds a worker's private memory on corpora larger than it.
        map_joints: on a corpus larger than ``memory_budget``, memory-map the raw joints
            (``sscl.data.open_corpus``): pages come from the page cache, shared by the workers,
            and windows are read in place. False reads through each worker's chunk cache
            (every decoded byte inside the budget).
        dali_group: pretraining, DALI engine: batches per DALI sample. DALI's own work in the
            training process (scheduling a worker task, receiving its shared-memory batch, the
            pipeline run and the PyTorch plugin) is paid once per sample, so grouping divides
            it (measured: see ``sscl.data.pipeline``). Changes no batch, only the hand-off.
        locality: training order. 0: windows shuffled uniformly. k > 0: block-local shuffle:
            blocks of ``LOCALITY_BLOCK`` corpus frames in random order, k consecutive blocks
            interleaved, so on a corpus larger than ``memory_budget`` each worker decodes a
            chunk about once a pass instead of once a window (batches then draw from about k
            blocks). Part of the sample order: set it in the config, never by the machine.
    """

    task: str = "pretrain"
    seed: int = 0
    batch_size: int = 64
    num_workers: int = 2
    prefetch: int = 2
    shuffle: bool = True
    raw_length: int = 300
    window_mode: str = "per_sequence"
    dense_stride: int | None = None
    max_length: int = 1000
    overlap: int = 0
    train: bool = True
    train_long: str = "windows"
    sequences: tuple[int, ...] | None = None
    augment: augment.AugmentConfig = field(default_factory=augment.AugmentConfig)
    extreme: bool = False
    strong_key: bool = False
    pin_memory: bool = True
    memory_budget: int | None = None
    map_joints: bool = True
    dali_group: int = 4
    locality: int = 0

    def __post_init__(self) -> None:
        if self.dali_group < 1:
            raise ConfigError(
                f"loader.dali_group must be >= 1 (batches per DALI sample), got {self.dali_group}"
            )
        if self.extreme and self.strong_key:
            raise ConfigError(
                "loader.extreme and loader.strong_key are both set; strong_key puts the extreme "
                "recipe on the key view, extreme adds it as a third view: choose one"
            )


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


def batch_keys(cfg: LoaderConfig) -> tuple[str, ...]:
    """The keys of every batch for ``cfg``, in a fixed order (the DALI outputs' order)."""
    if cfg.task == "pretrain":
        views = ("query", "key", "extreme") if cfg.extreme else ("query", "key")
        data = tuple(k for v in views for k in (v, f"{v}_valid"))
    else:
        data = ("x", "labels", "mask", "seq", "start")
    return data + ("weight", "index", "position")


def limit_threads() -> None:
    """One torch and one Numba compute thread in this worker process (not the main process)."""
    import numba

    torch.set_num_threads(1)
    numba.set_num_threads(1)


@contextlib.contextmanager
def single_threaded_children() -> Iterator[None]:
    """Spawned children inherit these variables, so their BLAS pools start with one thread.

    The variables only act when read at library load, which in a spawned worker happens before
    any of our code runs; the parent's environment is restored afterwards.
    """
    saved = {v: os.environ.get(v) for v in _THREAD_VARS}
    os.environ.update({v: "1" for v in _THREAD_VARS})
    try:
        yield
    finally:
        for v, old in saved.items():
            if old is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = old


class BatchSource:
    """Picklable ``(epoch, step) -> batch`` for one rank: read windows, augment, batch.

    Args:
        path: corpus path or URL, opened lazily in the calling process.
        cfg: loader config.
        windows: the window set (built once by the parent from the corpus lengths).
        rank: this process's rank.
        world_size: number of ranks.
        groups: (W,) corpus block of each window, for ``cfg.locality``.
    """

    def __init__(
        self,
        path: str,
        cfg: LoaderConfig,
        windows: WindowSet,
        rank: int,
        world_size: int,
        groups: np.ndarray | None = None,
    ):
        self.path = path
        self.cfg = cfg
        self.windows = windows
        self.rank = rank
        self.world_size = world_size
        self.groups = groups
        self._corpus = None
        self._plan: tuple[int, Any] | None = None
        self._packed: tuple | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_corpus"] = None  # reopened in the worker (file handles do not pickle)
        state["_plan"] = None
        return state

    @property
    def corpus(self):
        if self._corpus is None:
            from sscl.data.corpus import open_corpus

            self._corpus = open_corpus(
                self.path, memory_budget=self.cfg.memory_budget, map_joints=self.cfg.map_joints
            )
        return self._corpus

    def plan(self, epoch: int) -> EpochPlan:
        return EpochPlan(
            self.cfg.seed,
            epoch,
            len(self.windows),
            self.world_size,
            self.cfg.batch_size,
            self.cfg.shuffle,
            groups=self.groups,
            mix=self.cfg.locality if self.cfg.shuffle else 0,
        )

    def shard(self, epoch: int):
        """This rank's shard of ``epoch`` (cached: the permutation is drawn once per epoch)."""
        if self._plan is None or self._plan[0] != epoch:
            self._plan = (epoch, self.plan(epoch).shard(self.rank))
        return self._plan[1]

    def num_steps(self, epoch: int) -> int:
        return self.plan(epoch).num_steps

    def packed_layout(self) -> tuple:
        """(layout, bytes) of every pretraining batch packed (:func:`pretrain_batch_layout`)."""
        if self._packed is None:
            self._packed = pretrain_batch_layout(self.cfg, self.corpus.frame_shape)
        return self._packed

    def __call__(self, epoch: int, step: int, dest: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
        """The batch of global step ``step`` of ``epoch`` for this rank.

        Args:
            epoch, step: which batch.
            dest: optional uint8 buffer (pretraining only) of at least
                :func:`pretrain_batch_layout` bytes: the batch is computed straight into it
                (the returned arrays are views into ``dest``), so handing it off copies nothing.
        """
        positions, items, weights = self.shard(epoch).batch(step)
        starts = self.windows.resolve_starts(items, positions, self.cfg.seed, epoch)
        lengths = self.windows.length[items]
        if self.cfg.task == "pretrain":
            # The augmentation gathers its frames from the corpus (or its chunk cache) in
            # place: no raw window is copied.
            table = self.corpus.window_table(self.windows.seq[items], starts, lengths)
            views = None
            if dest is not None:
                views = unpack_numpy(dest, self.packed_layout()[0])
            out = self._pretrain(table, lengths, positions, epoch, views)
            if views is not None:
                views["weight"][:] = weights
                views["index"][:] = items
                views["position"][:] = positions
                return views
        else:
            joints, valid, labels = self._read(self.windows.seq[items], starts, lengths)
            out = self._finetune(joints, valid, labels, lengths)
            out["seq"] = self.windows.seq[items].astype(np.int64)
            out["start"] = starts.astype(np.int64)
        out["weight"] = weights.astype(np.float32)
        out["index"] = items.astype(np.int64)
        out["position"] = positions.astype(np.int64)
        return out

    def _read(self, seq: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
        """(N, Lmax, V, C, M) joints, (N, Lmax, V, M) valid, (N, Lmax) labels; 0 past each length.

        Windows of the batch's longest length are read in one ``read_windows`` call; shorter
        ones (sequences shorter than the window) one by one, since a fixed-length read would
        cross into the next sequence.
        """
        corpus = self.corpus
        lmax = int(lengths.max())
        full = lengths == lmax
        joints, valid, labels = corpus.read_windows(seq[full], starts[full], lmax)
        if full.all():
            return joints, valid, labels
        n = seq.size
        j = np.zeros((n,) + joints.shape[1:], np.float32)
        v = np.zeros((n,) + valid.shape[1:], bool)
        lab = np.full((n, lmax), -1, np.int16)
        j[full], v[full], lab[full] = joints, valid, labels
        for i in np.flatnonzero(~full).tolist():
            a, b, c = corpus.read_window(int(seq[i]), int(starts[i]), int(lengths[i]))
            t = int(lengths[i])
            j[i, :t], v[i, :t], lab[i, :t] = a, b, c
        return j, v, lab

    def _pretrain(self, table, lengths, positions, epoch, views=None) -> dict[str, np.ndarray]:
        cfg = self.cfg
        params = augment.stacked_params_for(
            cfg.seed, epoch, positions, cfg.augment, extreme=cfg.extreme,
            strong_key=cfg.strong_key,
        )
        flip = self.corpus.layout.flip_permutation() if self.corpus.layout.flip_pairs else None
        views, valid_views = augment.two_view_frames(
            table.joints, table.valid, table.rowbase, table.lo, table.shift, lengths, params,
            cfg.augment, flip_perm=flip,
            out=None if views is None else views["_views"],
            out_valid=None if views is None else views["_valid"],
        )
        out = {}
        for name, view, view_valid in zip(("query", "key", "extreme"), views, valid_views):
            out[name], out[f"{name}_valid"] = view, view_valid
        return out

    @staticmethod
    def _finetune(joints, valid, labels, lengths) -> dict[str, np.ndarray]:
        mask = np.arange(joints.shape[1])[None, :] < lengths[:, None]
        x = np.ascontiguousarray(joints.transpose(0, 3, 1, 2, 4))  # (N,L,V,C,M) -> (N,C,L,V,M)
        return {"x": x, "labels": np.where(mask, labels, -1).astype(np.int64), "mask": mask}


def batch_layout(batch: dict[str, np.ndarray]) -> tuple[tuple, int]:
    """((name, dtype, shape, byte offset) per array, total bytes), arrays 8-byte aligned."""
    layout, offset = [], 0
    for k, v in batch.items():
        layout.append((k, v.dtype.str, v.shape, offset))
        offset += -(-v.nbytes // 8) * 8
    return tuple(layout), offset


def pack_into(batch: dict[str, np.ndarray], layout: tuple, dest: np.ndarray) -> None:
    """Copy every array of ``batch`` into the uint8 buffer ``dest`` at its layout offset."""
    for (_, _, _, off), v in zip(layout, batch.values()):
        dest[off:off + v.nbytes] = np.ascontiguousarray(v).reshape(-1).view(np.uint8)


def unpack_batch(buf: torch.Tensor, layout: tuple) -> dict[str, torch.Tensor]:
    """Views into ``buf`` as packed by :func:`pack_into` (no copy)."""
    arr = buf.numpy()
    # Layouts that crossed a process boundary may hold lists (a DataLoader converts sequences).
    key = tuple((k, d, tuple(sh), int(off)) for k, d, sh, off in layout)
    return {k: torch.from_numpy(arr[a:b].view(dt).reshape(shape))
            for k, dt, shape, a, b in _spans(key)}


@functools.lru_cache(maxsize=64)
def _spans(layout: tuple) -> tuple:
    """(name, numpy dtype, shape, first byte, end byte) per array of a layout (runs per batch in
    the training process: computed once per distinct layout)."""
    out = []
    for k, dtype, shape, off in layout:
        dt = np.dtype(dtype)
        out.append((k, dt, tuple(shape), off, off + math.prod(shape) * dt.itemsize))
    return tuple(out)


def pretrain_batch_layout(cfg: LoaderConfig, frame_shape: tuple[int, int, int]
                          ) -> tuple[tuple[tuple[str, str, tuple[int, ...], int], ...], int]:
    """The packed layout (as :func:`batch_layout`) of every pretraining batch of ``cfg``.

    The views lie side by side as one (R, B, C, L, V, M) block and their masks as one
    (R, B, L, V, M) block, so the augmentation kernel writes straight into a hand-off buffer.
    """
    V, C, M = frame_shape
    B, L = cfg.batch_size, cfg.augment.out_len
    names = ("query", "key", "extreme") if cfg.extreme else ("query", "key")
    view, mask = B * C * L * V * M * 4, B * L * V * M
    layout = [(n, "<f4", (B, C, L, V, M), r * view) for r, n in enumerate(names)]
    off = len(names) * view
    layout += [(f"{n}_valid", "|b1", (B, L, V, M), off + r * mask) for r, n in enumerate(names)]
    off += -(-len(names) * mask // 8) * 8
    for name, dtype in (("weight", "<f4"), ("index", "<i8"), ("position", "<i8")):
        layout.append((name, dtype, (B,), off))
        off += -(-B * np.dtype(dtype).itemsize // 8) * 8
    order = {k: i for i, k in enumerate(batch_keys(cfg))}  # batches list keys in this order
    return tuple(sorted(layout, key=lambda e: order[e[0]])), off


def unpack_numpy(buf: np.ndarray, layout: tuple) -> dict[str, np.ndarray]:
    """Numpy views into the uint8 ``buf`` for a :func:`pretrain_batch_layout` layout, plus
    ``_views`` / ``_valid``: the whole view and mask blocks (the kernel's output buffers)."""
    out = {k: buf[a:b].view(dt).reshape(shape) for k, dt, shape, a, b in _spans(layout)}
    offset = {k: off for k, _, _, off in layout}
    r = sum(1 for k in offset if k in ("query", "key", "extreme"))
    first, first_valid = out["query"], out["query_valid"]
    a = offset["query"]
    out["_views"] = buf[a:a + r * first.nbytes].view(np.float32).reshape((r,) + first.shape)
    a = offset["query_valid"]
    out["_valid"] = buf[a:a + r * first_valid.nbytes].view(np.bool_).reshape(
        (r,) + first_valid.shape)
    return out


def max_batch_nbytes(cfg: LoaderConfig, frame_shape: tuple[int, int, int], longest: int) -> int:
    """An upper bound of a packed batch's bytes (the size of one hand-off slot).

    Args:
        cfg: loader config.
        frame_shape: (V, C, M) of the corpus.
        longest: frames of the longest window (finetuning pads a batch to its longest).
    """
    V, C, M = frame_shape
    B = cfg.batch_size
    if cfg.task == "pretrain":
        views, L = (3 if cfg.extreme else 2), cfg.augment.out_len
        data = views * B * (C * L * V * M * 4 + L * V * M)  # float32 views + bool masks
    else:  # x float32, labels int64, mask bool, seq and start int64
        data = B * longest * (V * C * M * 4 + 8 + 1) + 2 * B * 8
    return data + B * (4 + 8 + 8) + 8 * 16  # weight, index, position; alignment slack


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
    yet handed out (``num_workers * prefetch``) plus the batch the caller holds. With pinned
    memory (CUDA) batches travel as pinned tensors instead.

    Args:
        source: the batch source.
        cfg: loader config (workers, prefetch, pinning).
        slot_bytes: size of one ring slot (:func:`max_batch_nbytes`).
    """

    engine = "torch"

    def __init__(self, source: BatchSource, cfg: LoaderConfig, slot_bytes: int):
        self.source = source
        self._sampler = _StepSampler()
        workers = cfg.num_workers
        pin = cfg.pin_memory and torch.cuda.is_available()
        self._ring = None
        if workers and not pin:
            slots = workers * cfg.prefetch + 2
            self._ring = torch.empty((slots, slot_bytes), dtype=torch.uint8).share_memory_()
        self._issued = 0  # batches requested so far: the slot of the next one is issued % slots
        self._loader = torch.utils.data.DataLoader(
            _StepDataset(source, self._ring),
            sampler=self._sampler,
            batch_size=None,
            num_workers=workers,
            pin_memory=pin,
            worker_init_fn=_worker_init if workers else None,
            prefetch_factor=cfg.prefetch if workers else None,
            persistent_workers=workers > 0,
            # spawn: safe after CUDA initialisation and with Numba/OpenBLAS threads in the parent.
            multiprocessing_context="spawn" if workers else None,
        )

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
        return (unpack_batch(buf if buf is not None else self._ring[slot], layout)
                for buf, layout, slot in it)


def make_loader(
    corpus: Any, cfg: LoaderConfig, rank: int = 0, world_size: int = 1, engine: str = "auto"
):
    """Build the input pipeline for one rank.

    Args:
        corpus: an opened ``Corpus`` (or its path); workers reopen it from its path.
        cfg: loader config.
        rank: this process's rank (0 <= rank < world_size).
        world_size: number of ranks.
        engine: ``"auto"`` (DALI when importable, else torch), ``"dali"`` or ``"torch"``.

    Returns:
        A loader with ``engine`` (``"dali"`` or ``"torch"``: which one runs), ``num_steps(epoch)``,
        ``epoch(epoch, position=0)`` and ``windows``.

    Raises:
        ConfigError: unknown engine, ``"dali"`` asked for where DALI is not installed, or flips
            asked for on a layout without left/right pairs.
    """
    if engine not in ("auto", "dali", "torch"):
        raise ConfigError(f"engine must be 'auto', 'dali' or 'torch', got {engine!r}")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, {world_size}), got {rank}")
    from sscl.data import pipeline

    if engine == "dali" and not pipeline.dali_available():
        raise ConfigError(
            "engine='dali' but nvidia-dali is not importable; install the "
            "dali-cuda12 extra or use engine='torch'"
        )
    path = corpus_path(corpus)
    if isinstance(corpus, (str, Path)):
        from sscl.data.corpus import open_corpus

        # Budget 0: the parent needs lengths and layout only, never the decoded frames.
        corpus = open_corpus(path, memory_budget=0)
    if cfg.task == "pretrain":
        cfg.augment.check_layout(corpus.layout)  # fail here, not inside a worker
    windows = build_windows(corpus.lengths, cfg)
    groups = (corpus.offsets[windows.seq] + windows.start) // LOCALITY_BLOCK
    source = BatchSource(path, cfg, windows, rank, world_size, groups)
    if engine == "torch" or (engine == "auto" and not pipeline.dali_available()):
        longest = int(windows.length.max()) if len(windows) else 1
        loader = TorchLoader(source, cfg, max_batch_nbytes(cfg, corpus.frame_shape, longest))
    else:
        loader = pipeline.DaliLoader(source, cfg, corpus.frame_shape)
    loader.windows = source.windows
    return loader
