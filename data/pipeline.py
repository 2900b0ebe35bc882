"""The NVIDIA DALI engine: a parallel external source over BatchSource, handed to PyTorch.

Based on DALI's parallel external source (``fn.external_source(parallel=True, batch=True,
batch_info=True)``): DALI's Python worker processes (started with ``spawn``, the only method that
is safe once CUDA is initialised) call a picklable callback with ``BatchInfo(iteration,
epoch_idx)``; the callback here maps that to ``(epoch, step)`` and returns the batch that
``sscl.data.loader.BatchSource`` computes, reading the corpus lazily in each worker and
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

from sscl.data.loader import (
    BatchSource,
    LoaderConfig,
    batch_keys,
    limit_threads,
    pretrain_batch_layout,
    single_threaded_children,
    unpack_batch,
)


def dali_available() -> bool:
    """Whether nvidia-dali and its PyTorch plugin import here."""
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
        packed: ``(layout, bytes)`` of :func:`sscl.data.loader.pretrain_batch_layout` to return
            the whole batch as ONE uint8 sample (computed straight into a buffer), or None for
            one output per key.
    """

    def __init__(
        self,
        source: BatchSource,
        keys: tuple[str, ...],
        first_epoch: int,
        first_step: int,
        packed: tuple | None = None,
    ):
        self.source = source
        self.keys = keys
        self.first_epoch = first_epoch
        self.first_step = first_step
        self.packed = packed
        self._threads_limited = False  # only ever set inside a DALI worker process

    def __call__(self, info) -> tuple:
        if not self._threads_limited:
            limit_threads()
            self._threads_limited = True
        epoch = self.first_epoch + info.epoch_idx
        step = info.iteration + (self.first_step if info.epoch_idx == 0 else 0)
        if step >= self.source.num_steps(epoch):
            raise StopIteration
        if self.packed is not None:
            # A fresh buffer per batch: DALI may still read the previous one after this call
            # returns (reusing one buffer measurably corrupted batches).
            buf = np.empty((1, self.packed[1]), np.uint8)
            self.source(epoch, step, dest=buf[0])
            return (buf,)
        batch = self.source(epoch, step)
        return tuple(batch[k] for k in self.keys)


class DaliLoader:
    """The DALI engine, with the same interface as ``sscl.data.loader.TorchLoader``.

    The pipeline (and its spawned workers) lives across epochs while they are consumed in
    order; asking for another epoch or a mid-epoch position rebuilds it from that point.

    A pretraining batch (fixed shapes) travels as ONE DALI sample: a uint8 buffer in the
    :func:`~sscl.data.loader.pretrain_batch_layout` layout that the worker computes straight into,
    unpacked into views in the training process. DALI's per-output and per-sample work in the
    training process (bookkeeping, copies into its buffers and into torch) was this engine's
    bottleneck with seven outputs of 64 samples. Finetuning batches (padded to each batch's
    longest window) travel as one output per key, B samples each.

    Args:
        source: the batch source.
        cfg: loader config (workers, prefetch depth).
        frame_shape: (V, C, M) of the corpus.
    """

    engine = "dali"

    def __init__(self, source: BatchSource, cfg: LoaderConfig, frame_shape: tuple[int, int, int]):
        self.source = source
        self.cfg = cfg
        self.keys = batch_keys(cfg)
        self.packed = (
            pretrain_batch_layout(cfg, frame_shape) if cfg.task == "pretrain" else None
        )
        self.outputs = ("packed",) if self.packed is not None else self.keys
        self._iter = None
        # (epoch, position) the live pipeline continues at; None when it must be rebuilt (also
        # after an epoch left unfinished: DALI resets only at an epoch's end).
        self._next: tuple[int, int] | None = None

    def num_steps(self, epoch: int) -> int:
        return self.source.num_steps(epoch)

    def _build(self, epoch: int, position: int) -> None:
        from nvidia.dali import fn, pipeline_def
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        first = self.source.plan(epoch).shard(self.source.rank, position).first_step
        callback = DaliCallback(self.source, self.keys, epoch, first, self.packed)
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
                    # Batches computed ahead by the worker pool. DALI's default (1) keeps one
                    # batch in flight, so with 2 workers each sat idle half the time (measured:
                    # 0.46 of a core each); this gives every worker `prefetch` batches.
                    prefetch_queue_depth=max(1, cfg.num_workers) * cfg.prefetch,
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
        for out in self._iter:
            if self.packed is not None:
                yield unpack_batch(out[0]["packed"][0], self.packed[0])
            else:
                yield out[0]
        self._next = (epoch + 1, 0)
