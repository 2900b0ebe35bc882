"""Cross-rank key encoding: gathering, and MoCo's shuffle-BN.

Choice: shuffle-BN (He et al., MoCo, CVPR 2020, section 3.3), not SyncBN.
- Why: the queue holds keys of earlier batches. If the key batch were normalised with the same
  samples as the query batch, a query could find its positive through the shared batch statistics
  (MoCo's "cheating" signal): current keys differ from queued ones by their statistics, not their
  content. Shuffling which samples share a BN batch on the key side removes that signal. SyncBN
  over the global batch keeps it (queries and keys still normalise over the same sample set),
  and torch's SyncBatchNorm does not run on CPU at all ("SyncBatchNorm expected input tensor to
  be on GPU"), so it could not be tested here or run by two CPU processes over gloo.
- How: all ranks gather the key clips (concatenated in rank order) and permute them with a
  counter-based permutation keyed by the step counter (identical on every rank); each rank
  encodes its slice of the permuted batch; the outputs are gathered and un-permuted. The
  result is the global key batch in rank order, the same tensor on every rank: it feeds the
  queue directly.
- BN groups: `splits` equal slices per rank are encoded separately (the query encoder uses the
  same split), so one process with `splits = W` reproduces the BN grouping of W ranks exactly
  (the two-process test holds the keys to 1e-5 of that emulation).

Every rank must bring a batch of the same size (the loader pads with weight-0 items).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import Tensor

from sscl.errors import ConfigError

from .hashing import hash_permutation

Outputs = dict[str, Tensor]


def world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def all_gather_cat(x: Tensor) -> Tensor:
    """Every rank's `x` concatenated in rank order (no gradient): (B, ...) -> (W*B, ...)."""
    _, W = world()
    if W == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(W)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def all_gather_outputs(out: Outputs) -> Outputs:
    """`all_gather_cat` of every tensor of a dict of (B, ...) float outputs, in one collective."""
    _, W = world()
    if W == 1:
        return out
    names = sorted(out)
    B = out[names[0]].shape[0]
    dtype = functools.reduce(torch.promote_types, (out[k].dtype for k in names), torch.float32)
    flat = torch.cat([out[k].to(dtype).reshape(B, -1) for k in names], dim=1)
    flat_all = all_gather_cat(flat)
    result, col = {}, 0
    for k in names:
        width = out[k][0].numel()
        result[k] = flat_all[:, col:col + width].reshape((W * B,) + out[k].shape[1:])
        col += width
    return result


def encode_in_splits(fn: Callable[[Tensor], Outputs], x: Tensor, splits: int) -> Outputs:
    """Run `fn` on `splits` equal slices of the batch (separate BN statistics), concatenated.

    Raises:
        ConfigError: the batch does not divide into `splits` slices.
    """
    if splits == 1:
        return fn(x)
    if x.shape[0] % splits:
        raise ConfigError(
            f"bn_splits={splits} must divide the per-rank batch, which has {x.shape[0]} items; "
            "choose a batch size that is a multiple of bn_splits"
        )
    parts = [fn(chunk) for chunk in x.chunk(splits)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
def encode_keys(
    fn: Callable[[Tensor], Outputs],
    x_local: Tensor,
    splits: int,
    shuffle: bool,
    key: Tensor,
    stream: int = 0,
) -> Outputs:
    """Encode the key clips of all ranks; returns the global outputs, in rank order.

    Args:
        fn: the key encoder, x (b, ...) -> dict of (b, ...) tensors.
        x_local: (B, C, T, V, M) this rank's key clips.
        splits: BN groups per rank.
        shuffle: shuffle-BN (True) or each rank encodes its own clips (False).
        key: () int64 tensor keying the permutation (the step counter; the same on every
            rank); `stream` separates several key batches of one step.

    Returns:
        dict of (W * B, ...) tensors, rows in rank order (rank r's item i at row r * B + i),
        identical on every rank.
    """
    rank, W = world()
    B = x_local.shape[0]
    if not shuffle or W * splits == 1:
        return all_gather_outputs(encode_in_splits(fn, x_local, splits))
    x_all = all_gather_cat(x_local)
    perm = hash_permutation(W * B, key.to(x_all.device), stream)
    mine = encode_in_splits(fn, x_all[perm[rank * B:(rank + 1) * B]], splits)
    shuffled = all_gather_outputs(mine)
    inverse = torch.argsort(perm)
    return {k: v[inverse] for k, v in shuffled.items()}
