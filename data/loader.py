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
Workers run with one thread each (OpenBLAS, torch, Numba): BLAS thread pools in many processes
oversubscribe the cores and can stall Numba's threading layer.
"""

from __future__ import annotations

import contextlib
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
            default); bounds a worker's RSS on corpora larger than it.
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
    locality: int = 0

    def __post_init__(self) -> None:
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

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_corpus"] = None  # reopened in the worker (file handles do not pickle)
        state["_plan"] = None
        return state

    @property
    def corpus(self):
        if self._corpus is None:
            from sscl.data.corpus import open_corpus

            self._corpus = open_corpus(self.path, memory_budget=self.cfg.memory_budget)
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

    def __call__(self, epoch: int, step: int) -> dict[str, np.ndarray]:
        """The batch of global step ``step`` of ``epoch`` for this rank."""
        positions, items, weights = self.shard(epoch).batch(step)
        starts = self.windows.resolve_starts(items, positions, self.cfg.seed, epoch)
        lengths = self.windows.length[items]
        joints, valid, labels = self._read(self.windows.seq[items], starts, lengths)
        if self.cfg.task == "pretrain":
            out = self._pretrain(joints, valid, lengths, positions, epoch)
        else:
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

    def _pretrain(self, joints, valid, lengths, positions, epoch) -> dict[str, np.ndarray]:
        cfg = self.cfg
        params = augment.params_for(
            cfg.seed, epoch, positions, cfg.augment, extreme=cfg.extreme or cfg.strong_key
        )
        if cfg.strong_key:
            params = augment.TwoViewParams(query=params.query, key=params.extreme)
        flip = self.corpus.layout.flip_permutation() if self.corpus.layout.flip_pairs else None
        views, valid_views = augment.two_view(
            joints, valid, lengths, params, cfg.augment, flip_perm=flip
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


def pack_batch(batch: dict[str, np.ndarray]) -> tuple[torch.Tensor, tuple]:
    """One uint8 tensor holding every array of ``batch`` (8-byte aligned), and its layout.

    A worker hands a batch to the main process through shared memory, one segment per tensor;
    one segment per batch instead of seven roughly halves the hand-off cost (bench_pipeline).
    """
    layout, offset = [], 0
    for k, v in batch.items():
        layout.append((k, v.dtype.str, v.shape, offset))
        offset += -(-v.nbytes // 8) * 8
    buf = np.empty(offset, np.uint8)
    for (_, _, _, off), v in zip(layout, batch.values()):
        buf[off:off + v.nbytes] = np.ascontiguousarray(v).reshape(-1).view(np.uint8)
    return torch.from_numpy(buf), tuple(layout)


def unpack_batch(buf: torch.Tensor, layout: tuple) -> dict[str, torch.Tensor]:
    """Views into ``buf`` as packed by :func:`pack_batch` (no copy)."""
    arr = buf.numpy()
    out = {}
    for k, dtype, shape, off in layout:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        out[k] = torch.from_numpy(arr[off:off + n].view(dtype).reshape(shape))
    return out


class _StepDataset(torch.utils.data.Dataset):
    """Map-style dataset keyed by (epoch, step): one item is one whole batch, packed."""

    def __init__(self, source: BatchSource):
        self.source = source

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, tuple]:
        return pack_batch(self.source(*key))


class _StepSampler(torch.utils.data.Sampler):
    """Yields (epoch, step) keys; re-aimed by the loader before each epoch."""

    def __init__(self) -> None:
        self.keys: list[tuple[int, int]] = []

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(list(self.keys))

    def __len__(self) -> int:
        return len(self.keys)


def _worker_init(_: int) -> None:
    limit_threads()


class TorchLoader:
    """The plain engine: a torch DataLoader with persistent spawned workers over BatchSource.

    Args:
        source: the batch source.
        cfg: loader config (workers, prefetch, pinning).
    """

    engine = "torch"

    def __init__(self, source: BatchSource, cfg: LoaderConfig):
        self.source = source
        self._sampler = _StepSampler()
        workers = cfg.num_workers
        self._loader = torch.utils.data.DataLoader(
            _StepDataset(source),
            sampler=self._sampler,
            batch_size=None,
            num_workers=workers,
            pin_memory=cfg.pin_memory and torch.cuda.is_available(),
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
        self._sampler.keys = [(epoch, s) for s in range(first, self.num_steps(epoch))]
        with single_threaded_children():
            it = iter(self._loader)
        return (unpack_batch(buf, layout) for buf, layout in it)


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
        loader = TorchLoader(source, cfg)
    else:
        loader = pipeline.DaliLoader(source, cfg)
    loader.windows = source.windows
    return loader
