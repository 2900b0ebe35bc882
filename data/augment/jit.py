"""How the augmentation kernels are compiled and launched: Numba options and the threading layer.

Every kernel module of this package imports this one first, so the threading layer is chosen
before any parallel launch. Unless the user set ``NUMBA_THREADING_LAYER``, Numba's
``workqueue`` layer is selected: Numba binds the layer at the first parallel launch in the
process, and the default GNU-OpenMP layer kills a process forked (DataLoader workers) after the
parent ran a parallel region ("fork() called from a process already using GNU OpenMP"); a test
runs the parallel kernel beside live torch/OpenBLAS thread pools and in a forked child.
Workqueue is not re-entrant, so parallel launches hold :data:`PARALLEL_LOCK`; serial kernels
release the GIL (``nogil``) and run concurrently.
"""

from __future__ import annotations

import os
import threading

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

#: Held around every parallel kernel launch (workqueue is not re-entrant).
PARALLEL_LOCK = threading.Lock()

#: Options of every kernel: cached on disk, GIL released, strict IEEE arithmetic (the numpy
#: twins and the golden digests depend on it).
JIT = {"cache": True, "nogil": True, "fastmath": False}
