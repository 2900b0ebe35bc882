"""Atomic file writes: a temporary name in the same folder, fsync, rename, fsync the folder.

A file under its final name is always complete (HOUSE_STYLE.md "Errors": nothing half-written);
a failed write removes its temporary file, a killed one leaves at most a hidden
``.<name>.*.tmp``. A full disk, quota or file size limit (ENOSPC, EDQUOT, EFBIG; with SIGXFSZ
ignored) is one :class:`sscl.errors.DiskWriteError` naming the file (:func:`disk_errors`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors.torch import save

from sscl.errors import DiskWriteError

# errno values that mean "the disk, a quota or a file size limit is full"
FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def is_full(e: BaseException) -> bool:
    """Whether ``e`` is an OSError of a full disk, quota or file size limit."""
    return isinstance(e, OSError) and not isinstance(e, DiskWriteError) and e.errno in FULL


@contextlib.contextmanager
def disk_errors(path: str | Path, kept: str = "") -> Iterator[None]:
    """Turn a full disk / quota / file size limit inside the block into one DiskWriteError
    naming ``path`` (other errors pass unchanged)."""
    try:
        yield
    except OSError as e:
        if is_full(e):
            raise DiskWriteError(path, e, kept) from None
        raise


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parents created); returns the path.

    Raises:
        DiskWriteError: the disk, a quota or the file size limit is full (an OSError too);
            ``path`` is then unchanged and no temporary file is left.
        OSError: another failed write; ``path`` is then unchanged.
    """
    path = Path(path)
    kept = "its previous content is intact" if path.exists() else ""
    with disk_errors(path, kept):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    fsync_dir(path.parent)
    return path


def cpu_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies of ``tensors`` (what safetensors can store)."""
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def write_weights_atomic(path: str | Path, tensors: Mapping[str, torch.Tensor]) -> Path:
    """``tensors`` (e.g. a state dict) as a safetensors file, atomically; returns the path."""
    return write_bytes_atomic(path, save(cpu_tensors(tensors)))
