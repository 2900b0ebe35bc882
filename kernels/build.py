"""Build-on-first-use of the fused graph-convolution extensions, cached across processes.

Based on `torch.utils.cpp_extension.load` (ninja): the first call compiles `csrc/` into a shared
library under the extensions cache and later processes reuse it (torch rebuilds only when a source
file changes). The libraries register their kernels as internal torch ops (`sscl_cpu::*`,
`sscl_cuda::*`) with `TORCH_LIBRARY`, so they compile against ATen and `torch/library.h` only (no
pybind11, no `torch/extension.h`), which keeps the first build short.

When no compiler is usable, or `SSCL_GRAPH_CONV_BACKEND=reference` forces it, the op falls back to
the einsum reference and logs ONE warning per process and device type.

The CPU library holds one copy of the aggregation kernel per instruction set (`generic`, `avx2`,
`avx512`; `csrc/graph_conv_cpu.cpp`) and runs the highest one the CPU supports.
`SSCL_GRAPH_CONV_MAX_ISA` (`generic`, `avx2` or `avx512`, unset = `avx512`) caps it: at build time
it leaves the copies above it out of the library (a separate build, cached under its own name),
at call time it keeps a library that has them from running them. `cpu_isa()` says which copy
runs.

Its float32 tile GEMMs run on ATen's BLAS or on oneDNN's matmul (`SSCL_GRAPH_CONV_GEMM` = `auto`,
`blas` or `onednn`; auto takes oneDNN for layers of 32 channels and more on AMD CPUs running the
avx512 copy, where MKL falls back to its AVX2 code). `cpu_gemm()` says which.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
from torch.utils import cpp_extension

from sscl.errors import ConfigError

log = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
FORCE_ENV = "SSCL_GRAPH_CONV_BACKEND"
MAX_ISA_ENV = "SSCL_GRAPH_CONV_MAX_ISA"
ISAS = ("generic", "avx2", "avx512")  # the kernel's instruction-set variants, lowest first

# device type -> True (ops loaded), False (fell back, warning already logged)
_state: dict[str, bool] = {}
# SSCL_GRAPH_CONV_MAX_ISA value -> the CPU kernel variant that runs under it
_isa_used: dict[str, str] = {}


def extensions_dir() -> Path:
    """Where compiled extensions are cached.

    `TORCH_EXTENSIONS_DIR` (torch's own variable) wins; otherwise `~/.cache/sscl/torch_extensions`
    (under `$XDG_CACHE_HOME` when set). It deliberately does not follow `SSCL_CACHE`: the test
    suite points that at a fresh temporary directory per run, which would recompile every run.
    """
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    if env:
        return Path(env)
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "sscl" / "torch_extensions"


def _forced_reference() -> bool:
    return os.environ.get(FORCE_ENV, "").strip().lower() == "reference"


def max_isa() -> str:
    """`SSCL_GRAPH_CONV_MAX_ISA`, validated: the highest kernel variant allowed ("avx512" if unset).

    Raises:
        ConfigError: the variable holds something other than generic, avx2 or avx512.
    """
    value = os.environ.get(MAX_ISA_ENV, "").lower() or ISAS[-1]
    if value not in ISAS:
        raise ConfigError(
            f"{MAX_ISA_ENV}={os.environ[MAX_ISA_ENV]!r} is not a kernel variant: set it to one of "
            f"{', '.join(ISAS)}, or unset it to allow all"
        )
    return value


def _load(name: str, sources: list[Path], cuda: bool, defines: tuple[str, ...] = ()) -> None:
    # one directory per torch build (2.13.0+cpu and 2.13.0+cu130 must not share objects)
    build_dir = extensions_dir() / f"{name}_torch{torch.__version__.replace('+', '_')}"
    build_dir.mkdir(parents=True, exist_ok=True)
    # cpp_extension picks the C++ standard that matches the installed torch. No --use_fast_math:
    # the fp32 path must match the reference to 1e-5 norm-wise.
    cuda_flags = ["-O3"] if cuda else None
    cpp_extension.load(
        name=name,
        sources=[str(s) for s in sources],
        # -fopenmp is what turns at::parallel_for (a header template) into an OpenMP region in
        # this library; the libgomp it links resolves to the one torch already loaded.
        extra_cflags=["-O3", "-fopenmp", *defines],
        extra_ldflags=["-fopenmp"],
        extra_cuda_cflags=cuda_flags,
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=False,
    )


def ensure_loaded(device_type: str) -> bool:
    """Build (first time) and load the fused kernels for `device_type`; False means fall back.

    Args:
        device_type: "cpu" or "cuda".

    Returns:
        True when `torch.ops.sscl_<device_type>` holds the fused kernels.
    """
    if device_type in _state:
        return _state[device_type]
    ok = False
    reason = ""
    if _forced_reference():
        reason = f"{FORCE_ENV}=reference is set"
    elif device_type == "cpu":
        if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
            reason = "no C++ compiler (c++/g++) on PATH"
        else:
            # The variant cap is part of the library's name, so each cap has its own cached build
            # (raises ConfigError on a bad value, before any build is tried).
            cap = max_isa()
            name = "sscl_graph_conv_cpu" + ("" if cap == ISAS[-1] else f"_max_{cap}")
            define = f"-DSSCL_GRAPH_CONV_MAX_ISA_BUILD={ISAS.index(cap)}"
            try:
                _load(name, [CSRC / "graph_conv_cpu.cpp", CSRC / "batch_norm_cpu.cpp"], cuda=False,
                      defines=(define,))
                ok = True
            except Exception as exc:  # a failed build must not make the op unusable
                reason = f"the C++ build failed: {exc}"
    elif device_type == "cuda":
        if cpp_extension.CUDA_HOME is None:
            reason = "no CUDA toolkit (nvcc) found"
        else:
            try:
                _load("sscl_graph_conv_cuda", [CSRC / "graph_conv_cuda.cu"], cuda=True)
                ok = True
            except Exception as exc:
                reason = f"the CUDA build failed: {exc}"
    else:
        reason = f"no fused kernel for device type {device_type!r}"
    if not ok:
        log.warning(
            "sscl::graph_conv on %s falls back to the einsum reference (slower, same results): %s",
            device_type,
            reason,
        )
    _state[device_type] = ok
    return ok


def backend(device: str | torch.device = "cpu") -> str:
    """Which implementation `sscl::graph_conv` runs for tensors on `device`.

    Builds the extension on first call. Returns "fused-cpu", "fused-cuda" or "reference".
    """
    device_type = torch.device(device).type
    if ensure_loaded(device_type):
        return f"fused-{device_type}"
    return "reference"


def cpu_isa() -> str:
    """The instruction-set variant of the fused CPU kernel that runs now.

    A fixed rule, never a timing: the highest of generic < avx2 < avx512 that the library was
    built with, this CPU supports and `SSCL_GRAPH_CONV_MAX_ISA` allows. "none" when the fused CPU
    kernel is not available (the op runs the einsum reference). Builds the extension on first call.
    """
    if not ensure_loaded("cpu"):
        return "none"
    cap = max_isa()  # a bad value is a ConfigError here, not a RuntimeError from the library
    if cap not in _isa_used:  # the models ask per call: one library query per cap
        _isa_used[cap] = torch.ops.sscl_cpu.graph_conv_isa()[0]
    return _isa_used[cap]


def cpu_isa_details() -> dict[str, str]:
    """`cpu_isa()` with its inputs: {"used", "cpu", "compiled", "max_isa_env"} and the tile-GEMM
    backend ("gemm", see `cpu_gemm`) (for benchmarks)."""
    if not ensure_loaded("cpu"):
        return {"used": "none", "cpu": "unknown", "compiled": "none", "max_isa_env": max_isa(),
                "gemm": "none"}
    used, cpu, compiled = torch.ops.sscl_cpu.graph_conv_isa()
    return {"used": used, "cpu": cpu, "compiled": compiled, "max_isa_env": max_isa(),
            "gemm": cpu_gemm()}


GEMM_ENV = "SSCL_GRAPH_CONV_GEMM"
GEMMS = ("blas", "onednn")


def cpu_gemm(channels: int = 32) -> str:
    """The backend of the fused CPU kernel's float32 tile GEMMs now, for a layer whose narrower
    side has ``channels`` channels: "blas" (ATen's BLAS, MKL in the x86 wheels) or "onednn"
    (oneDNN's matmul, linked into torch); "none" without the kernel.

    A fixed rule, never a timing: `SSCL_GRAPH_CONV_GEMM=blas|onednn` picks one; unset or `auto`
    takes oneDNN for layers of 32 channels or more in and out where the avx512 copy runs on an
    AMD CPU (MKL runs its AVX2 code there: about 95 against 150-220 GFLOP/s a core at the tiles'
    shapes; at 16 channels oneDNN's per-call cost loses, bench/README), else the BLAS. Float64
    always runs the BLAS.

    Raises:
        ConfigError: the variable holds something other than auto, blas or onednn.
    """
    value = os.environ.get(GEMM_ENV, "").lower() or "auto"
    if value not in ("auto", *GEMMS):
        raise ConfigError(f"{GEMM_ENV}={os.environ[GEMM_ENV]!r} is not a tile-GEMM backend: set "
                          "auto, blas or onednn, or unset it")
    if not ensure_loaded("cpu"):
        return "none"
    return torch.ops.sscl_cpu.graph_conv_gemm(channels)[0]


def onednn_gemm_failure() -> str:
    """Why oneDNN's float32 matmul cannot run the tile GEMMs here ("" where it can): it needs
    AVX-512 BW/VL/DQ (not capped away by ``ONEDNN_MAX_CPU_ISA``) and a torch that accepts float32
    there. ``SSCL_GRAPH_CONV_GEMM=onednn`` then fails with this reason; auto keeps the BLAS."""
    if not ensure_loaded("cpu"):
        return "the fused CPU kernel is not available"
    return torch.ops.sscl_cpu.graph_conv_gemm(0)[1]


def cpu_gemm_calls() -> dict[str, int]:
    """Fused CPU forward + backward calls so far per tile-GEMM backend (tests check the path)."""
    if not ensure_loaded("cpu"):
        return dict.fromkeys(GEMMS, 0)
    return dict(zip(GEMMS, torch.ops.sscl_cpu.graph_conv_gemm_calls()))


def cpu_kernel_calls() -> dict[str, int]:
    """Fused CPU forward + backward calls so far per variant (tests check the path taken)."""
    if not ensure_loaded("cpu"):
        return dict.fromkeys(ISAS, 0)
    return dict(zip(ISAS, torch.ops.sscl_cpu.graph_conv_calls()))


def reset_for_tests() -> None:
    """Forget which backends were loaded, so a test can exercise the fallback warning again."""
    _state.clear()
    _isa_used.clear()
