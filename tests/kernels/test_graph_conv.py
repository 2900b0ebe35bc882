"""Tests of the fused `sscl::graph_conv` op against its einsum oracle `graph_conv_ref`.

Parity is judged norm-wise (||out - ref|| / ||ref||) against the oracle evaluated in float64 on
the same inputs; low precision is judged as flash-attention does (the fused error against
float64 is at most twice the oracle's own error at that precision).
"""

from __future__ import annotations

import hashlib
import logging
import platform
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from sscl.kernels import GraphConvInputError, backend, build, graph_conv, graph_conv_ref

# The fused kernels are judged against the einsum oracle: floats across implementations and ISAs.
pytestmark = [pytest.mark.isa]

CSRC = Path(build.__file__).resolve().parent / "csrc"


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.double() - ref.double()).norm() / ref.double().norm()).item()


def make_inputs(
    n: int, c: int, o: int, t: int, v: int, k: int = 3, *, per_sample: bool = False,
    bias: bool = True, dtype: torch.dtype = torch.float32, seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, t, v, generator=g, dtype=dtype)
    w = torch.randn(k, o, c, generator=g, dtype=dtype) / c**0.5
    b = torch.randn(o, generator=g, dtype=dtype) if bias else None
    a = torch.rand(*((n,) if per_sample else ()), k, v, v, generator=g, dtype=dtype) / v**0.5
    return x, w, b, a


def fwd_bwd(fn, args, grad_y=None):
    """Output and gradients of every non-None argument for grad_y (random if None)."""
    leaves = [None if a is None else a.detach().requires_grad_() for a in args]
    y = fn(*leaves)
    if grad_y is None:
        grad_y = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    grads = torch.autograd.grad(y, [a for a in leaves if a is not None], grad_y.to(y.dtype))
    return y, grads, grad_y


def ref64(args):
    return [None if a is None else a.detach().double() for a in args]


@pytest.fixture(scope="module", autouse=True)
def _fused_backend():
    """Build (or load from the cache) the CPU extension once for this module."""
    build.reset_for_tests()
    yield backend("cpu")


@pytest.mark.slow
def test_cpu_backend_is_fused_where_a_compiler_exists():
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler on PATH: the fallback is expected here")
    assert backend("cpu") == "fused-cpu", "the fused CPU kernel did not build/load"


CASES = [
    # n, c, o, t, v, k, per_sample, bias
    (2, 6, 10, 7, 25, 3, False, True),
    (1, 5, 4, 9, 15, 3, False, False),
    (3, 8, 8, 13, 20, 2, True, True),
    (2, 7, 12, 11, 31, 3, True, False),
    (1, 3, 16, 33, 25, 3, False, True),
    (2, 12, 5, 5, 25, 1, False, True),
    (1, 4, 4, 3, 70, 2, True, True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "n{}c{}o{}t{}v{}k{}{}{}".format(
    *c[:6], "-ps" if c[6] else "", "" if c[7] else "-nobias"))
def test_parity_fp32_forward_backward(case):
    n, c, o, t, v, k, per_sample, bias = case
    args = make_inputs(n, c, o, t, v, k, per_sample=per_sample, bias=bias, seed=sum(case))
    y, grads, gy = fwd_bwd(graph_conv, args)
    y_ref, grads_ref, _ = fwd_bwd(graph_conv_ref, ref64(args), gy.double())
    assert y.dtype == torch.float32 and y.is_contiguous()
    assert rel_err(y, y_ref) <= 1e-5
    for name, g, g_ref in zip(("x", "weight", "bias", "adjacency"), grads, grads_ref):
        assert g.shape == g_ref.shape, name
        assert rel_err(g, g_ref) <= 1e-5, name


def test_parity_non_contiguous_inputs():
    x0, w0, b0, a0 = make_inputs(2, 6, 9, 11, 25, 3, per_sample=True, seed=3)
    x = x0.transpose(2, 3).contiguous().transpose(2, 3)           # (N, C, T, V) with V-major
    w = w0.transpose(1, 2).contiguous().transpose(1, 2)           # (K, O, C) stored as (K, C, O)
    b = torch.stack([b0, b0], 1)[:, 0]                            # stride 2
    a = a0.transpose(-1, -2).contiguous().transpose(-1, -2)
    x_strided = torch.randn(2, 12, 11, 25)[:, ::2]                # channel stride 2
    for args in ((x, w, b, a), (x_strided, w, b, a)):
        assert not args[0].is_contiguous()
        y, grads, gy = fwd_bwd(graph_conv, args)
        y_ref, grads_ref, _ = fwd_bwd(graph_conv_ref, ref64(args), gy.double())
        assert rel_err(y, y_ref) <= 1e-5
        for g, g_ref in zip(grads, grads_ref):
            assert rel_err(g, g_ref) <= 1e-5


def test_only_requested_gradients_are_computed():
    x, w, b, a = make_inputs(2, 4, 6, 5, 25, seed=5)
    w.requires_grad_()
    y = graph_conv(x, w, b, a)
    (gw,) = torch.autograd.grad(y.square().sum(), [w])
    w_ref = w.detach().double().requires_grad_()
    (gw_ref,) = torch.autograd.grad(
        graph_conv_ref(x.double(), w_ref, b.double(), a.double()).square().sum(), [w_ref]
    )
    assert rel_err(gw, gw_ref) <= 1e-5


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_gradcheck_float64(per_sample, bias):
    args = make_inputs(2, 3, 4, 3, 5, 2, per_sample=per_sample, bias=bias, dtype=torch.float64)
    leaves = tuple(None if a is None else a.requires_grad_() for a in args)
    assert torch.autograd.gradcheck(graph_conv, leaves)


@pytest.mark.parametrize("per_sample", [False, True])
def test_opcheck(per_sample):
    args = make_inputs(2, 3, 5, 4, 6, 2, per_sample=per_sample, seed=7)
    torch.library.opcheck(torch.ops.sscl.graph_conv.default, args)
    leaves = tuple(a.requires_grad_() for a in args)
    torch.library.opcheck(torch.ops.sscl.graph_conv.default, leaves)
    no_bias = (args[0], args[1], None, args[3])
    torch.library.opcheck(torch.ops.sscl.graph_conv.default, no_bias)


def test_bf16_error_at_most_twice_the_reference_error():
    args = make_inputs(2, 32, 48, 17, 25, per_sample=False, seed=11)
    exact_y, exact_g, gy = fwd_bwd(graph_conv_ref, ref64(args))
    low = [a.to(torch.bfloat16) for a in args]
    # both sides see the same bf16-rounded inputs; exact is float64 on those inputs
    exact_y, exact_g, _ = fwd_bwd(graph_conv_ref, ref64(low), gy)
    ref_y, ref_g, _ = fwd_bwd(graph_conv_ref, low, gy)
    y, g, _ = fwd_bwd(graph_conv, low, gy)
    assert y.dtype == torch.bfloat16
    assert rel_err(y, exact_y) <= 2 * rel_err(ref_y, exact_y) + 1e-6
    for name, gf, gr, ge in zip(("x", "weight", "bias", "adjacency"), g, ref_g, exact_g):
        assert gf.dtype == torch.bfloat16, name
        assert rel_err(gf, ge) <= 2 * rel_err(gr, ge) + 1e-6, name


def test_autocast_cpu_bf16():
    args = make_inputs(2, 8, 8, 9, 25, seed=13)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = graph_conv(*args)
        y_op = torch.ops.sscl.graph_conv(*args)
    assert y.dtype == torch.bfloat16 and y_op.dtype == torch.bfloat16
    y_ref = graph_conv_ref(*ref64(args))
    assert rel_err(y, y_ref) <= 2e-2
    x64 = [a.double() for a in args]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert graph_conv(*x64).dtype == torch.float64  # float64 is never downcast


BAD = [
    ("x", lambda x, w, b, a: (x[0], w, b, a), "x must be (N, C, T, V)"),
    ("weight", lambda x, w, b, a: (x, w[:, :, :3], b, a), "weight must be (K, C', C)"),
    ("adjacency", lambda x, w, b, a: (x, w, b, a[:, :24, :24]), "adjacency must be (K, V, V)"),
    ("adjacency-k", lambda x, w, b, a: (x, w, b, a[:2]), "adjacency must be"),
    ("adjacency-n", lambda x, w, b, a: (x, w, b, a.expand(3, 3, 25, 25)), "adjacency must be"),
    ("bias", lambda x, w, b, a: (x, w, b[:5], a), "bias must be (C',)"),
    ("dtype", lambda x, w, b, a: (x, w.double(), b, a), "weight has dtype torch.float64"),
    ("int", lambda x, w, b, a: (x.long(), w, b, a), "x must be float16"),
    ("device", lambda x, w, b, a: (x, w, b, a.to("meta")), "adjacency is on meta"),
]


@pytest.mark.parametrize("name,mutate,message", BAD, ids=[b[0] for b in BAD])
def test_bad_arguments_are_named(name, mutate, message):
    args = mutate(*make_inputs(2, 4, 6, 5, 25))
    with pytest.raises(GraphConvInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        graph_conv(*args)


def test_cpp_kernel_checks_name_the_argument():
    if backend("cpu") != "fused-cpu":
        pytest.skip("the fused CPU kernel is not available")
    x, w, b, a = make_inputs(2, 4, 6, 5, 25)
    with pytest.raises(RuntimeError, match=r"adjacency must be \(K, V, V\) or \(N, K, V, V\)"):
        torch.ops.sscl_cpu.graph_conv_fwd(x, w, b, a[:, :24, :24])
    with pytest.raises(RuntimeError, match=r"grad_y must be \(N, C', T, V\)"):
        torch.ops.sscl_cpu.graph_conv_bwd(x, x, w, a, True, True, True, True)


def test_fallback_logs_one_warning(monkeypatch, caplog):
    monkeypatch.setenv(build.FORCE_ENV, "reference")
    build.reset_for_tests()
    try:
        args = make_inputs(2, 4, 6, 5, 25, seed=17)
        with caplog.at_level(logging.WARNING, logger=build.__name__):
            y1 = graph_conv(*args)
            y2 = graph_conv(*args)
            assert backend("cpu") == "reference"
        warnings = [r for r in caplog.records if "falls back to the einsum reference" in r.message]
        assert len(warnings) == 1
        assert build.FORCE_ENV in warnings[0].getMessage()
        assert rel_err(y1, graph_conv_ref(*ref64(args))) <= 1e-5
        assert torch.equal(y1, y2)
    finally:
        monkeypatch.delenv(build.FORCE_ENV)
        build.reset_for_tests()


def _nvcc_command(out: Path, stub_dir: Path) -> list[str]:
    from torch.utils.cpp_extension import include_paths

    incs = [f"-I{p}" for p in include_paths()] + [f"-I{stub_dir}"]
    return [
        "nvcc", "-c", "-std=c++20", "-O3", "-Xcompiler", "-fPIC",
        "-gencode", "arch=compute_90,code=sm_90", *incs,
        str(CSRC / "graph_conv_cuda.cu"), "-o", str(out),
    ]


@pytest.mark.slow
def test_cuda_source_compiles_with_nvcc(tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not on PATH")
    from torch.utils.cpp_extension import include_paths

    # CPU wheels of torch ship the c10/cuda headers without this generated one.
    stub_dir = tmp_path / "stub"
    generated = "c10/cuda/impl/cuda_cmake_macros.h"
    if not any((Path(p) / generated).exists() for p in include_paths()):
        (stub_dir / generated).parent.mkdir(parents=True)
        (stub_dir / generated).write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        (CSRC / "graph_conv_cuda.cu").read_bytes() + version.encode() + torch.__version__.encode()
    ).hexdigest()[:16]
    # A successful compile of these exact bytes with this nvcc and torch is remembered (the
    # compile takes about a minute on a small CI machine).
    marker = build.extensions_dir() / "nvcc_check" / f"graph_conv_cuda-{key}.ok"
    if marker.exists():
        return
    obj = tmp_path / "graph_conv_cuda.o"
    proc = subprocess.run(_nvcc_command(obj, stub_dir), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert obj.stat().st_size > 0
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(" ".join(_nvcc_command(obj, stub_dir)) + "\n")


@pytest.mark.gpu
@pytest.mark.parametrize("per_sample", [False, True])
def test_cuda_parity(per_sample):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    assert backend("cuda") == "fused-cuda"
    cpu_args = make_inputs(3, 20, 40, 19, 25, per_sample=per_sample, seed=23)
    args = [a.cuda() for a in cpu_args]
    y, grads, gy = fwd_bwd(graph_conv, args, torch.randn(3, 40, 19, 25, device="cuda"))
    y_ref, grads_ref, _ = fwd_bwd(graph_conv_ref, ref64(args), gy.double())
    assert rel_err(y, y_ref) <= 1e-5
    for g, g_ref in zip(grads, grads_ref):
        assert rel_err(g, g_ref) <= 1e-5
    for dtype in (torch.float16, torch.bfloat16):
        low = [a.to(dtype) for a in args]
        exact_y, exact_g, _ = fwd_bwd(graph_conv_ref, ref64(low), gy.double())
        ref_y, ref_g, _ = fwd_bwd(graph_conv_ref, low, gy)
        y, g, _ = fwd_bwd(graph_conv, low, gy)
        assert y.dtype == dtype
        assert rel_err(y, exact_y) <= 2 * rel_err(ref_y, exact_y) + 1e-6
        for gf, gr, ge in zip(g, ref_g, exact_g):
            assert rel_err(gf, ge) <= 2 * rel_err(gr, ge) + 1e-6
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert graph_conv(*args).dtype == torch.bfloat16


def _isa_from_cpuinfo() -> str | None:
    """This CPU's kernel variant read from /proc/cpuinfo, independently of the library's own
    detection (x86-64-v3 / -v4 feature sets); None where it cannot be read."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "generic"
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    lines = [ln for ln in text.splitlines() if ln.startswith("flags")]
    if not lines:
        return None
    flags = set(lines[0].split(":", 1)[1].split())
    v3 = {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm", "xsave"} <= flags
    v4 = v3 and {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= flags
    return "avx512" if v4 else ("avx2" if v3 else "generic")


def _expected_isa() -> str:
    """The variant the rule must pick here: this CPU's, capped by SSCL_GRAPH_CONV_MAX_ISA."""
    found = _isa_from_cpuinfo()
    if found is None:
        pytest.skip("cannot read this CPU's features (/proc/cpuinfo) to know the expected variant")
    return build.ISAS[min(build.ISAS.index(found), build.ISAS.index(build.max_isa()))]


def _needs_fused_cpu() -> None:
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler on PATH: the fallback is expected here")
    assert backend("cpu") == "fused-cpu", "the fused CPU kernel did not build/load"


def test_graph_conv_auto_runs_the_fused_kernel_variant_of_this_cpu():
    """The models' default on the CPU: the fused C++ kernel, in the variant this CPU's features
    call for, must actually run (its call counter moves), forward and backward."""
    from sscl.kernels import cpu_isa, graph_conv_auto, graph_conv_path

    _needs_fused_cpu()
    isa = _expected_isa()
    assert cpu_isa() == isa
    fast = isa in ("avx2", "avx512")
    assert graph_conv_path("cpu") == (f"fused-cpu/{isa}" if fast else "mix_first")
    args = make_inputs(2, 5, 7, 9, 25, seed=29)
    before = build.cpu_kernel_calls()
    y, grads, gy = fwd_bwd(graph_conv_auto, args)
    after = build.cpu_kernel_calls()
    ran = {k: after[k] - before[k] for k in after}
    # forward and backward, both in this CPU's variant; none when the unfused path is the rule
    assert ran == {k: (2 if fast and k == isa else 0) for k in build.ISAS}
    y_ref, grads_ref, _ = fwd_bwd(graph_conv_ref, ref64(args), gy.double())
    assert rel_err(y, y_ref) <= 1e-5
    for g, g_ref in zip(grads, grads_ref):
        assert rel_err(g, g_ref) <= 1e-5


def test_mix_first_and_auto_agree_with_the_oracle():
    from sscl.kernels import graph_conv_auto, graph_conv_mix_first

    g = torch.Generator().manual_seed(3)
    x, w, b = (torch.randn(*s, generator=g, dtype=torch.float64)
               for s in ((2, 5, 7, 25), (3, 4, 5), (4,)))
    for a in (torch.rand(3, 25, 25, generator=g, dtype=torch.float64),
              torch.rand(2, 3, 25, 25, generator=g, dtype=torch.float64)):
        want = graph_conv_ref(x, w, b, a)
        torch.testing.assert_close(graph_conv_mix_first(x, w, b, a), want)
        torch.testing.assert_close(graph_conv_auto(x, w, b, a), want)
    with pytest.raises(GraphConvInputError):
        graph_conv_auto(x, w[:, :, :3], b, a)


def test_portable_variant_sends_graph_conv_auto_to_the_unfused_formulation(monkeypatch):
    from sscl.kernels import cpu_isa, graph_conv_auto, graph_conv_path

    _needs_fused_cpu()
    monkeypatch.setenv(build.MAX_ISA_ENV, "generic")
    assert cpu_isa() == "generic"
    assert graph_conv_path("cpu") == "mix_first"
    args = make_inputs(1, 4, 6, 5, 25, seed=31)
    before = build.cpu_kernel_calls()
    y = graph_conv_auto(*args)
    assert build.cpu_kernel_calls() == before  # no fused call
    assert rel_err(y, graph_conv_ref(*ref64(args))) <= 1e-5


def test_graph_conv_path_on_cuda_is_mix_first_unless_fused_is_asked_for(monkeypatch):
    from sscl.kernels import graph_conv_path

    monkeypatch.delenv("SSCL_GRAPH_CONV_CUDA", raising=False)
    assert graph_conv_path("cuda") == "mix_first"
    monkeypatch.setenv("SSCL_GRAPH_CONV_CUDA", "fused")
    assert graph_conv_path("cuda:0") == "fused-cuda"
    assert graph_conv_path("meta") == "sscl-op"


def test_bad_max_isa_is_a_config_error(monkeypatch):
    from sscl.errors import ConfigError
    from sscl.kernels import cpu_isa

    _needs_fused_cpu()
    monkeypatch.setenv(build.MAX_ISA_ENV, "sse9")
    with pytest.raises(ConfigError, match="SSCL_GRAPH_CONV_MAX_ISA='sse9' is not a kernel"):
        cpu_isa()
    with pytest.raises(RuntimeError, match="SSCL_GRAPH_CONV_MAX_ISA=sse9 is not one of"):
        torch.ops.sscl_cpu.graph_conv_fwd(*make_inputs(1, 2, 2, 3, 5))


TILE_CASES = [
    # n, c, o, t, v, k, per_sample, dtype, tile_t: tiles of the frame axis
    (2, 6, 10, 13, 25, 3, False, torch.float32, 4),   # aggregate-first, tiles 4+4+4+1
    (1, 12, 5, 11, 25, 3, True, torch.float32, 3),    # mix-first, tiles 3+3+3+2
    (1, 64, 64, 41, 25, 3, False, torch.float32, 0),  # own tiling: 14+14+13 frames
    (1, 5, 7, 9, 70, 2, True, torch.float32, 4),      # wide graph: several column blocks
    (2, 5, 4, 7, 40, 2, False, torch.float64, 3),     # float64, 3 vectors of 64 bytes
    (1, 3, 5, 10, 17, 3, True, torch.float64, 4),
]


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
@pytest.mark.parametrize("case", TILE_CASES, ids=lambda c: "n{}c{}o{}t{}v{}k{}{}-{}-tile{}".format(
    *c[:6], "-ps" if c[6] else "", str(c[7]).removeprefix("torch."), c[8] or "own"))
def test_parity_over_tiles_and_remainders_per_variant(monkeypatch, isa, case):
    """Several frame tiles, a shorter last tile, row and column remainders of the register
    blocks, in every kernel variant this machine runs (SSCL_GRAPH_CONV_MAX_ISA picks it)."""
    _needs_fused_cpu()
    if build.ISAS.index(isa) > build.ISAS.index(_expected_isa()):
        pytest.skip(f"the {isa} variant is above this machine's {_expected_isa()} (CPU features, "
                    f"capped by {build.MAX_ISA_ENV})")
    n, c, o, t, v, k, per_sample, dtype, tile_t = case
    monkeypatch.setenv(build.MAX_ISA_ENV, isa)
    if tile_t:
        monkeypatch.setenv("SSCL_GRAPH_CONV_TILE_T", str(tile_t))
    else:
        monkeypatch.delenv("SSCL_GRAPH_CONV_TILE_T", raising=False)
    args = make_inputs(n, c, o, t, v, k, per_sample=per_sample, dtype=dtype, seed=t + v)
    before = build.cpu_kernel_calls()[isa]
    y, grads, gy = fwd_bwd(graph_conv, args)
    assert build.cpu_kernel_calls()[isa] - before == 2  # forward and backward in this variant
    y_ref, grads_ref, _ = fwd_bwd(graph_conv_ref, ref64(args), gy.double())
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert rel_err(y, y_ref) <= tol
    for name, g, g_ref in zip(("x", "weight", "bias", "adjacency"), grads, grads_ref):
        assert rel_err(g, g_ref) <= tol, name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graph_conv_auto_on_cuda_matches_the_oracle(monkeypatch):
    from sscl.kernels import graph_conv_auto

    g = torch.Generator().manual_seed(4)
    x, w, b, a = (torch.randn(*s, generator=g, dtype=torch.float64).cuda()
                  for s in ((2, 8, 9, 25), (3, 6, 8), (6,), (3, 25, 25)))
    want = graph_conv_ref(x, w, b, a)
    torch.testing.assert_close(graph_conv_auto(x, w, b, a), want)
    monkeypatch.setenv("SSCL_GRAPH_CONV_CUDA", "fused")
    torch.testing.assert_close(graph_conv_auto(x, w, b, a), want)


GEMM_CASES = [
    # n, c, o, t, v, k, per_sample, tile_t: both mixing orders, several tiles, per-sample graphs
    (2, 40, 36, 13, 25, 3, False, 4),   # mix-first (C > C'), tiles 4+4+4+1
    (1, 32, 48, 11, 25, 3, True, 3),    # aggregate-first, per-sample graphs, tiles 3+3+3+2
    (1, 64, 64, 41, 25, 3, False, 0),   # own tiling
]


@pytest.mark.parametrize("gemm", ["blas", "onednn"])
@pytest.mark.parametrize("case", GEMM_CASES, ids=lambda c: "n{}c{}o{}t{}{}-tile{}".format(
    *c[:4], "-ps" if c[6] else "", c[7] or "own"))
def test_parity_per_tile_gemm_backend(monkeypatch, gemm, case):
    """The float32 tile GEMMs on either backend (SSCL_GRAPH_CONV_GEMM forces it) against the
    float64 oracle, and the backend that ran (a call counter). oneDNN's products round
    differently from the BLAS's, so the bound is float32's 1e-5, as for every fp32 case."""
    _needs_fused_cpu()
    n, c, o, t, v, k, per_sample, tile_t = case
    monkeypatch.setenv(build.GEMM_ENV, gemm)
    args = make_inputs(n, c, o, t, v, k, per_sample=per_sample, seed=c + o)
    if gemm == "onednn" and build.onednn_gemm_failure():
        # e.g. under the AVX2 cap: forcing it must fail with the reason, before any work
        with pytest.raises(RuntimeError, match="SSCL_GRAPH_CONV_GEMM=onednn but this torch's"):
            graph_conv(*args)
        return
    if tile_t:
        monkeypatch.setenv("SSCL_GRAPH_CONV_TILE_T", str(tile_t))
    else:
        monkeypatch.delenv("SSCL_GRAPH_CONV_TILE_T", raising=False)
    assert build.cpu_gemm() == gemm
    before = build.cpu_gemm_calls()
    y, grads, gy = fwd_bwd(graph_conv, args)
    after = build.cpu_gemm_calls()
    assert {b: after[b] - before[b] for b in build.GEMMS} == {
        b: (2 if b == gemm else 0) for b in build.GEMMS}  # forward and backward on it
    y_ref, grads_ref, _ = fwd_bwd(graph_conv_ref, ref64(args), gy.double())
    assert rel_err(y, y_ref) <= 1e-5
    for name, g, g_ref in zip(("x", "weight", "bias", "adjacency"), grads, grads_ref):
        assert rel_err(g, g_ref) <= 1e-5, name


def _amd_avx512() -> bool:
    """The avx512 copy runs here and /proc/cpuinfo names an AMD CPU."""
    if _expected_isa() != "avx512":
        return False
    text = Path("/proc/cpuinfo").read_text()
    return any(ln.split(":", 1)[1].strip() == "AuthenticAMD"
               for ln in text.splitlines() if ln.startswith("vendor_id"))


def test_auto_gemm_rule(monkeypatch):
    """auto: oneDNN for 32+ channels in and out where the avx512 copy runs on an AMD CPU, the
    BLAS everywhere else (narrow layers, Intel, the AVX2 cap, float64)."""
    _needs_fused_cpu()
    monkeypatch.delenv(build.GEMM_ENV, raising=False)
    wide = "onednn" if _amd_avx512() and not build.onednn_gemm_failure() else "blas"
    assert build.cpu_gemm(32) == wide and build.cpu_gemm(16) == "blas"
    cases = [((1, 32, 40, 5, 25), torch.float32, wide), ((1, 16, 64, 5, 25), torch.float32, "blas"),
             ((1, 32, 40, 5, 25), torch.float64, "blas")]
    for shape, dtype, want in cases:
        before = build.cpu_gemm_calls()
        fwd_bwd(graph_conv, make_inputs(*shape, dtype=dtype))
        after = build.cpu_gemm_calls()
        assert {b: after[b] - before[b] for b in build.GEMMS} == {
            b: (2 if b == want else 0) for b in build.GEMMS}, (shape, dtype)
    monkeypatch.setenv(build.MAX_ISA_ENV, "avx2")  # the cap keeps the BLAS (numerics as before)
    assert build.cpu_gemm(64) == "blas"


def test_bad_gemm_backend_is_a_config_error(monkeypatch):
    from sscl.errors import ConfigError

    _needs_fused_cpu()
    monkeypatch.setenv(build.GEMM_ENV, "cublas")
    with pytest.raises(ConfigError, match="SSCL_GRAPH_CONV_GEMM='cublas' is not a tile-GEMM"):
        build.cpu_gemm()
    with pytest.raises(RuntimeError, match="SSCL_GRAPH_CONV_GEMM=cublas is not one of auto"):
        torch.ops.sscl_cpu.graph_conv_fwd(*make_inputs(1, 2, 2, 3, 5))
