"""The ceiling of a training step: its own convolutions and matmuls, each timed alone.

``capture(step)`` runs one step under a ``TorchDispatchMode`` and records every op that carries
the step's arithmetic (convolution, convolution_backward, mm, addmm, bmm, baddbmm, and the fused
``sscl::graph_conv`` forward and backward) with the shapes, strides and dtypes of its arguments.
``replay`` then runs each recorded op alone on fresh random tensors of the same layout, in the
same thread setting, and sums the medians: the time the step would take if everything else
(batch norm, ReLU, copies, adds, the optimizer, the data) cost nothing and each op ran at the
speed it reaches alone. The step's samples/s at that time is its ceiling.

The dispatch mode sees ops below autograd, so forward and backward ops are both recorded, once
each as the step issues them (ops issued inside the fused op's C++ are not seen: the fused op
is timed as one op).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_ATEN = {"convolution", "convolution_backward", "mm", "addmm", "bmm", "baddbmm"}
_SSCL = {"graph_conv", "graph_conv_backward"}


def _group(func) -> str | None:
    ns, name = func.namespace, func._schema.name.split("::")[-1]
    if ns == "aten" and name in _ATEN:
        return "conv" if name.startswith("convolution") else "matmul"
    if ns == "sscl" and name in _SSCL:
        return "graph_conv"
    return None


@dataclass(frozen=True)
class _Meta:
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype


def _meta(a):
    if isinstance(a, torch.Tensor):
        return _Meta(tuple(a.shape), tuple(a.stride()), a.dtype)
    if isinstance(a, list):
        return tuple(_meta(x) for x in a)
    return a


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        group = _group(func)
        if group is not None:
            key = (group, func, tuple(_meta(a) for a in args),
                   tuple(sorted((k, _meta(v)) for k, v in kwargs.items())))
            self.ops[key] += 1
        return func(*args, **kwargs)


def capture(step: Callable[[], None]) -> Counter:
    """The arithmetic-carrying ops of one call of ``step``: {(group, op, args, kwargs): count}."""
    rec = _Recorder()
    with rec:
        step()
    return rec.ops


def _materialize(m, gen: torch.Generator):
    if isinstance(m, _Meta):
        t = torch.empty_strided(m.shape, m.stride, dtype=m.dtype)
        return t.normal_(generator=gen) if t.is_floating_point() else t.zero_()
    if isinstance(m, tuple) and m and all(isinstance(x, _Meta) for x in m):
        return [_materialize(x, gen) for x in m]
    return m


def replay(ops: Counter, repeat: int = 3) -> dict[str, float]:
    """Seconds per step of each group's ops run alone (median of ``repeat`` after one warm-up)."""
    gen = torch.Generator().manual_seed(0)
    out: dict[str, float] = Counter()
    with torch.no_grad():
        for (group, func, args, kwargs), count in ops.items():
            a = [_materialize(x, gen) for x in args]
            kw = {k: _materialize(v, gen) for k, v in kwargs}
            func(*a, **kw)
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                func(*a, **kw)
                times.append(time.perf_counter() - t)
            out[group] += count * statistics.median(times)
    return dict(out)

