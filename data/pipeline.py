"""The NVIDIA DALI engine: a parallel external source over BatchSource, handed to PyTorch.

Based on DALI's parallel external source (``fn.external_source(parallel=True, batch=True,
batch_info=True)``): DALI's Python worker processes (started with ``spawn``, the only method that
is safe once CUDA is initialised) call a picklable callback with ``BatchInfo(iteration,
epoch_idx)``; the callback here maps that to ``(epoch, step)`` and returns the batch that
``sscl.data.batch_source.BatchSource`` computes, reading the corpus lazily in each worker and
augmenting there with the Numba kernels. The DALI PyTorch plugin (``DALIGenericIterator``)
turns the outputs into torch tensors.

Why augment in the workers and not in a DALI ``numba_function`` operator: measured (2 workers,
batch 64, three views, the 400k-frame synthetic corpus, this 2-core machine), the Numba kernel
inside the pipeline ran at 970 samples/s with one pipeline thread against 1894 samples/s in the
workers; with two pipeline threads (more CPU than the workers' side gets) 1775 against 1356 in a
noisier run. A numba_function operator runs per sample on the pipeline's threads in the
training process, with per-sample parameters as extra pipeline inputs; in the workers the
kernel runs batched in separate processes and is literally the code the plain loader runs,
which is what makes the two engines' batches identical.

Sharding is by hand (``EpochPlan`` shard of this rank; not ``accelerator.prepare``). Epochs are
exact: every batch is full (wrap-around padding with weight 0), the callback raises
``StopIteration`` after the rank's last step, and the iterator is reset for the next epoch.

The tensors ``DALIGenericIterator`` hands out are owned by the iterator and may be overwritten
by the next call: copy (``.clone()``) anything that must live past the next batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from sscl.data.batch_source import BatchSource
from sscl.data.loader_config import LoaderConfig, LoaderInfo
from sscl.data.packing import batch_keys, pretrain_batch_layout, unpack_batch
from sscl.data.sampling import WindowSet
from sscl.data.worker_threads import limit_threads, single_threaded_children


def dali_available() -> bool:
    """Whether nvidia-dali and its PyTorch plugin import here."""
    # nvidia.dali is imported lazily here and in _build: a heavy optional dependency.
    try:
        import nvidia.dali  # noqa: F401
        from nvidia.dali.plugin import pytorch  # noqa: F401
    except ImportError:
        return False
    return True


class DaliCallback:
    """Picklable parallel-external-source callback: ``BatchInfo -> tuple of batch arrays``.

    DALI counts ``epoch_idx`` from 0 at pipeline build and ``iteration`` from 0 in every
    epoch; the callback adds the first epoch and, in that first epoch only, the resume step.

    Args:
        source: the batch source.
        keys: output names, in the order the pipeline declares them.
        first_epoch: the epoch DALI's ``epoch_idx`` 0 stands for.
        first_step: the resume step inside ``first_epoch``.
        packed: ``(layout, bytes)`` of :func:`sscl.data.packing.pretrain_batch_layout` to return
            batches packed into ONE uint8 sample (computed straight into a buffer), or None for
            one output per key (one batch per call).
        group: with ``packed``, batches per sample: iteration i of an epoch carries steps
            ``i * group ..`` (fewer in the epoch's last), each at a multiple of
            :func:`packed_stride`.
    """

    def __init__(
        self,
        source: BatchSource,
        keys: tuple[str, ...],
        first_epoch: int,
        first_step: int,
        packed: tuple | None = None,
        group: int = 1,
    ):
        self.source = source
        self.keys = keys
        self.first_epoch = first_epoch
        self.first_step = first_step
        self.packed = packed
        self.group = group if packed is not None else 1
        self._threads_limited = False  # only ever set inside a DALI worker process

    def __call__(self, info) -> tuple:
        if not self._threads_limited:
            limit_threads()
            self._threads_limited = True
        epoch = self.first_epoch + info.epoch_idx
        step = info.iteration * self.group + (self.first_step if info.epoch_idx == 0 else 0)
        total = self.source.num_steps(epoch)
        if step >= total:
            raise StopIteration
        if self.packed is not None:
            nbytes = self.packed[1]
            stride = packed_stride(nbytes)
            k = min(self.group, total - step)
            # A fresh buffer per call: DALI may still read the previous one after this call
            # returns (reusing one buffer measurably corrupted batches).
            buf = np.empty((1, k * stride), np.uint8)
            for j in range(k):
                self.source(epoch, step + j, dest=buf[0, j * stride : j * stride + nbytes])
            return (buf,)
        batch = self.source(epoch, step)
        return tuple(batch[k] for k in self.keys)


def packed_stride(nbytes: int) -> int:
    """Offset between consecutive packed batches in one DALI sample: ``nbytes`` rounded up to
    64 bytes (a cache line; every array of a batch keeps its alignment)."""
    return -(-nbytes // 64) * 64


class DaliLoader:
    """The DALI engine, with the same interface as ``sscl.data.loader.TorchLoader``.

    The pipeline (and its spawned workers) lives across epochs while they are consumed in
    order; asking for another epoch or a mid-epoch position rebuilds it from that point.

    Pretraining batches (fixed shapes) travel ``cfg.dali_group`` at a time as ONE DALI sample:
    a uint8 buffer holding each batch in the :func:`~sscl.data.packing.pretrain_batch_layout`
    layout (at multiples of :func:`packed_stride`), which the worker computes straight into and
    the training process unpacks into views. DALI's per-output, per-sample and per-iteration
    work in the training process (bookkeeping, scheduling the worker task, copies into its
    buffers, the plugin) was this engine's bottleneck: with seven outputs of 64 samples, then
    with one batch per iteration (0.54-0.83 ms of training-process CPU a batch against 0.23-0.39
    for the torch engine; grouping 4 batches: see bench/README.md). Finetuning batches (padded
    to each batch's longest window) travel one batch per iteration, one output per key.

    Args:
        source: the batch source.
        cfg: loader config (workers, prefetch depth).
        frame_shape: (V, C, M) of the corpus.
        info: what the trainer reads (``sscl.data.loader_config.LoaderInfo``).
    """

    engine = "dali"

    def __init__(self, source: BatchSource, cfg: LoaderConfig, frame_shape: tuple[int, int, int],
                 info: LoaderInfo | None = None):
        self.source = source
        self.info = info
        self.cfg = cfg
        self.keys = batch_keys(cfg)
        self.packed = (
            pretrain_batch_layout(cfg, frame_shape) if cfg.task == "pretrain" else None
        )
        self.outputs = ("packed",) if self.packed is not None else self.keys
        self.group = cfg.dali_group if self.packed is not None else 1
        self._iter = None
        # (epoch, position) the live pipeline continues at; None when it must be rebuilt (also
        # after an epoch left unfinished: DALI resets only at an epoch's end).
        self._next: tuple[int, int] | None = None

    @property
    def windows(self) -> WindowSet:
        return self.source.windows

    def num_steps(self, epoch: int) -> int:
        return self.source.num_steps(epoch)

    def _build(self, epoch: int, position: int) -> None:
        # Lazy: nvidia.dali is a heavy optional dependency (dali_available says whether it is).
        from nvidia.dali import fn, pipeline_def
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        first = self.source.plan(epoch).shard(self.source.rank, position).first_step
        callback = DaliCallback(self.source, self.keys, epoch, first, self.packed, self.group)
        cfg = self.cfg

        @pipeline_def(
            batch_size=1 if self.packed is not None else cfg.batch_size,
            num_threads=1,
            device_id=None,
            py_num_workers=max(1, cfg.num_workers),
            py_start_method="spawn",
            prefetch_queue_depth=cfg.prefetch,
            exec_dynamic=True,
        )
        def pipe():
            return tuple(
                fn.external_source(
                    source=callback,
                    num_outputs=len(self.outputs),
                    parallel=True,
                    batch=True,
                    batch_info=True,
                    # Samples computed ahead by the worker pool. DALI's default (1) keeps one
                    # in flight, so with 2 workers each sat idle half the time (measured: 0.46 of
                    # a core each); this gives every worker `prefetch` batches (at least one
                    # sample).
                    prefetch_queue_depth=max(1, cfg.num_workers)
                    * max(1, -(-cfg.prefetch // self.group)),
                )
            )

        with single_threaded_children():
            p = pipe()
            p.build()
        # Every batch is full (EpochPlan pads), so no policy ever trims or pads here.
        self._iter = DALIGenericIterator(
            [p], list(self.outputs), auto_reset=False, last_batch_policy=LastBatchPolicy.PARTIAL
        )

    def epoch(self, epoch: int, position: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of ``epoch`` from global position ``position`` on (views: see module doc)."""
        if self._next != (epoch, position):
            self._build(epoch, position)
        else:
            self._iter.reset()
        self._next = None
        return self._batches(epoch)

    def _batches(self, epoch: int) -> Iterator[dict[str, torch.Tensor]]:
        if self.packed is not None:
            layout, nbytes = self.packed
            stride = packed_stride(nbytes)
        for out in self._iter:
            if self.packed is not None:
                buf = out[0]["packed"][0]
                for j in range(buf.shape[0] // stride):
                    yield unpack_batch(buf[j * stride : j * stride + nbytes], layout)
            else:
                yield out[0]
        self._next = (epoch + 1, 0)
