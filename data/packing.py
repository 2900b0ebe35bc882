"""How a batch lies in memory: its keys, the packed layout of its arrays in one byte buffer,
and packing and unpacking (no copy on the way out).

Both engines hand batches between processes as one uint8 buffer (a shared-memory ring slot, or a
DALI sample) holding every array at an 8-byte aligned offset; a layout is a tuple of
``(name, dtype str, shape, byte offset)``. Pretraining batches have a fixed layout for a config
(:func:`pretrain_batch_layout`), so the augmentation kernel writes its views straight into the
hand-off buffer; finetuning batches (padded to their longest window) are packed after the fact
(:func:`batch_layout`, :func:`pack_into`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from sscl.data.loader_config import LoaderConfig


def view_names(cfg: LoaderConfig) -> tuple[str, ...]:
    """The views of a pretraining batch, in order (empty for finetuning)."""
    if cfg.task != "pretrain":
        return ()
    return ("query", "key", "extreme") if cfg.extreme else ("query", "key")


def batch_keys(cfg: LoaderConfig) -> tuple[str, ...]:
    """The keys of every batch for ``cfg``, in a fixed order (the DALI outputs' order)."""
    if cfg.task == "pretrain":
        data = tuple(k for v in view_names(cfg) for k in (v, f"{v}_valid", f"{v}_tempo"))
    else:
        data = ("x", "labels", "mask", "seq", "start")
    return data + ("weight", "index", "position")


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
    return {k: torch.from_numpy(arr[a:b].view(dt).reshape(shape))
            for k, dt, shape, a, b in _spans(_layout_key(layout))}


def _layout_key(layout: tuple) -> tuple:
    """A layout as nested tuples: one that crossed a process boundary may hold lists (a
    DataLoader converts sequences), which do not hash."""
    return tuple((k, d, tuple(sh), int(off)) for k, d, sh, off in layout)


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
    names = view_names(cfg)
    view, mask = B * C * L * V * M * 4, B * L * V * M
    layout = [(n, "<f4", (B, C, L, V, M), r * view) for r, n in enumerate(names)]
    off = len(names) * view
    layout += [(f"{n}_valid", "|b1", (B, L, V, M), off + r * mask) for r, n in enumerate(names)]
    off += -(-len(names) * mask // 8) * 8
    tail = [(f"{n}_tempo", "<f4") for n in names]
    tail += [("weight", "<f4"), ("index", "<i8"), ("position", "<i8")]
    for name, dtype in tail:
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
        data = views * B * (C * L * V * M * 4 + L * V * M + 4)  # views, masks, tempos
    else:  # x float32, labels int64, mask bool, seq and start int64
        data = B * longest * (V * C * M * 4 + 8 + 1) + 2 * B * 8
    return data + B * (4 + 8 + 8) + 8 * 24  # weight, index, position; alignment slack
