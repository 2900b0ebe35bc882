"""The batch stages of one rank, read -> normalise + augment -> batch, as one picklable object.

:class:`BatchSource` turns ``(epoch, step)`` into one rank's batch (a dict of numpy arrays, or
arrays computed straight into a hand-off buffer); both engines call exactly this object (the
torch DataLoader in ``sscl.data.loader``, the DALI parallel external source in
``sscl.data.pipeline``), which is why they yield identical batches for the same seed. It opens
the corpus lazily in each process, so only its path, the window set and the config cross the
process boundary. Batch contents: ``sscl.data.loader``'s module docstring.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sscl.data import augment
from sscl.data.loader_config import LoaderConfig
from sscl.data.normalize import (
    ReferenceTable,
    WindowNorm,
    normalization_joints,
    normalize_windows,
)
from sscl.data.packing import pretrain_batch_layout, unpack_numpy, view_names
from sscl.data.reader import open_corpus
from sscl.data.sampling import EpochPlan, WindowSet


class BatchSource:
    """Picklable ``(epoch, step) -> batch`` for one rank: read windows, normalise + augment, batch.

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
        self._refs: ReferenceTable | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_corpus"] = None  # reopened in the worker (file handles do not pickle)
        state["_plan"] = None
        state["_refs"] = None  # filled lazily per process
        return state

    @property
    def corpus(self):
        if self._corpus is None:
            self._corpus = open_corpus(
                self.path, memory_budget=self.cfg.memory_budget, map_joints=self.cfg.map_joints,
                nonfinite=self.cfg.nonfinite,
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
        seq = self.windows.seq[items]
        norm = self.window_norm(seq)  # reads first: a read may evict a window table's chunks
        if self.cfg.task == "pretrain":
            # The augmentation gathers its frames from the corpus (or its chunk cache) in
            # place: no raw window is copied.
            table = self.corpus.window_table(seq, starts, lengths)
            views = None
            if dest is not None:
                views = unpack_numpy(dest, self.packed_layout()[0])
            out = self._pretrain(table, lengths, positions, epoch, norm, views)
            if views is not None:
                views["weight"][:] = weights
                views["index"][:] = items
                views["position"][:] = positions
                return views
        else:
            joints, valid, labels = self._read(seq, starts, lengths)
            out = self._finetune(joints, valid, labels, lengths, norm)
            out["seq"] = seq.astype(np.int64)
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

    def window_norm(self, seq: np.ndarray) -> WindowNorm | None:
        """The normalisation of windows of sequences ``seq`` (None with ``normalize="none"``).

        Each sequence's references are computed the first time one of its windows is read in
        this process (:class:`~sscl.data.normalize.ReferenceTable`) and reused after.
        """
        mode = self.cfg.normalize
        if mode == "none":
            return None
        if self._refs is None:
            corpus = self.corpus
            self._refs = ReferenceTable(
                corpus.num_sequences, normalization_joints(corpus.layout)
            )
        refs = self._refs
        refs.ensure(self.corpus, seq)
        cj = refs.joints.centre if mode == "frame" else -1
        return WindowNorm(refs.centre[seq], refs.rot[seq], cj)

    def _pretrain(self, table, lengths, positions, epoch, norm, views=None
                  ) -> dict[str, np.ndarray]:
        cfg = self.cfg
        params = augment.stacked_params_for(
            cfg.seed, epoch, positions, cfg.augment, extreme=cfg.extreme,
            strong_key=cfg.strong_key,
        )
        flip = self.corpus.layout.flip_permutation() if self.corpus.layout.flip_pairs else None
        out_views, valid_views = augment.two_view_frames(
            table.joints, table.valid, table.rowbase, table.lo, table.shift, lengths, params,
            cfg.augment, flip_perm=flip,
            out=None if views is None else views["_views"],
            out_valid=None if views is None else views["_valid"],
            norm=norm,
        )
        out = {} if views is None else views
        for r, name in enumerate(view_names(cfg)):
            if views is None:
                out[name], out[f"{name}_valid"] = out_views[r], valid_views[r]
                out[f"{name}_tempo"] = params.tempo[r].astype(np.float32)
            else:
                out[f"{name}_tempo"][:] = params.tempo[r]
        return out

    def _finetune(self, joints, valid, labels, lengths, norm) -> dict[str, np.ndarray]:
        mask = np.arange(joints.shape[1])[None, :] < lengths[:, None]
        if norm is None:
            x = np.ascontiguousarray(joints.transpose(0, 3, 1, 2, 4))  # (N,L,V,C,M) -> (N,C,L,V,M)
        else:  # normalised while transposing; padding is invalid, so it stays 0
            x = normalize_windows(joints, valid, norm)
        return {"x": x, "labels": np.where(mask, labels, -1).astype(np.int64), "mask": mask}
