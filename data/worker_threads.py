"""Thread pools of the input workers: one compute thread per worker process.

Both engines start worker processes (the torch DataLoader's, DALI's parallel external source)
that run the batch stages; BLAS thread pools in many processes oversubscribe the cores and can
stall Numba's threading layer, so each worker runs torch, Numba and the BLAS runtimes on one
thread: :func:`single_threaded_children` around the spawn (variables the runtimes read when
they load), :func:`limit_threads` once inside each worker (pools sized at run time).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numba
import torch

# Read once when the BLAS / OpenMP runtimes load, so they must be in a worker's environment from
# its start (see single_threaded_children). Numba's pool is sized at run time instead.
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads() -> None:
    """One torch and one Numba compute thread in this worker process (not the main process)."""
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
