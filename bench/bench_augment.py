"""Augmentation speed, ratios measured in one run on one core.

(a) Each Numba kernel of ``sscl.data.augment`` against its vectorised numpy twin (``<op>_ref``,
whole-batch array code), on a batch of 64 windows (raw: T=300, model layout: L=50, V=25,
M=2). Noise is RNG-bound: its row also gives the cost of drawing the same normals with
``np.random.Generator.standard_normal``, and ``params`` compares the counter-hash
``params_for`` with one SeedSequence-seeded Generator per sample.
(b) The composed two-view augmentation (``two_view``, serial kernel, query view + strong view with
noise, blur and axis mask) against the per-sample feeder's augmentation in the CTR-GCN
``valid_crop_resize`` style (``bench/per_sample_baseline.py``) on (3, 300, 25, 2) float32
samples, torch and Numba on one thread. Target: >= 10x. Beside it, no target: the AimCLR
feeder's per-sample augmentation (``bench/aimclr_feeder.py``) of the same samples resized
beforehand to 50-frame clips (mirror-padded slice, no interpolation).
(c) What the NTU normalisation costs on the batch path (``sscl.data.normalize``): the composed
three-view kernel with the normalisation folded in ("first" and "frame") against the same
kernel without it, and the finetuning windows' normalising transpose against the plain
transpose, each in the same run; and whole epochs of ``BatchSource`` batches (in process,
a synthetic NTU-25 x 2 corpus in RAM) with ``normalize="first"`` against ``"none"``, the first
epoch of a fresh source (each sequence's references computed on its first window) and a later
one. Ratios are speeds (none / normalised): 1.0 is free.

Run ``pytest bench/bench_augment.py`` (pytest-benchmark times the fast path; both sides are
also timed in CPU time in the same test, and the ratio goes to the shared ratio table and
``extra_info``; targets: kernels >= 1x, two views >= 10x) or ``python bench/bench_augment.py``
for the table alone. Both take well under a minute once Numba's cache is warm.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import pytest
import torch

from sscl.data import augment as A
from sscl.data.batch_source import BatchSource
from sscl.data.corpus import CorpusHeader, Sequence, open_corpus, write_corpus
from sscl.data.layouts import get_layout
from sscl.data.loader import build_windows
from sscl.data.loader_config import LoaderConfig
from sscl.data.normalize import WindowNorm, normalize_windows

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ is not a package
import aimclr_feeder  # noqa: E402
import per_sample_baseline  # noqa: E402

N, T, V, C, M, L = 64, 300, 25, 3, 2, 50


def _batch(seed: int = 0):
    """Raw windows with NTU-like valid lengths (100..300) and a second person in half of them."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(100, T + 1, N)
    valid = np.arange(T)[None, :, None, None] < lengths[:, None, None, None]
    valid = np.broadcast_to(valid, (N, T, V, M)).copy()
    valid[: N // 2, :, :, 1] = False
    raw = rng.standard_normal((N, T, V, C, M)).astype(np.float32) * valid[:, :, :, None, :]
    return rng, raw, valid, lengths


def _best(fn: Callable[[], object], repeat: int) -> float:
    """Best CPU time of the process over ``repeat`` calls (after one warm-up call).

    CPU time, not wall time: on a shared machine wall time mostly measures the neighbours, and
    both sides run on one thread, so CPU time is the work done.
    """
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times)


# Rows that time something other than the same op on both sides carry no target.
INFO_ONLY = {"noise vs Generator draw alone"}


def cases() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name -> (fast path, baseline) closures over one shared batch."""
    rng, raw, valid, lengths = _batch()
    cfg = A.AugmentConfig(
        out_len=L,
        rotate_deg=(15, 15, 15),
        flip_prob=0.5,
        swap_prob=0.5,
        noise_prob=1.0,
        blur_prob=1.0,
        axis_mask_prob=1.0,
        joint_mask_p=0.1,
    )
    perm = get_layout("ntu25").flip_permutation()
    p = A.params_for(0, 0, np.arange(N), cfg, extreme=True)
    e = p.extreme
    # The per-point ops' input: the first L frames of each window in the model layout.
    x = np.ascontiguousarray(raw[:, :L].transpose(0, 3, 1, 2, 4))
    xv = np.ascontiguousarray(valid[:, :L])
    x_out = np.empty_like(x)
    views = (np.empty((3, *x.shape), np.float32), np.empty((3, *xv.shape), bool))
    std = np.full(N, 0.01)
    mat32, zero32 = e.mat.astype(np.float32), np.float32(0.0)

    def numpy_noise():
        z = rng.standard_normal(x.shape)
        return np.where(xv[:, None], x + std[:, None, None, None, None] * z, 0.0).astype(np.float32)

    def seedsequence_params():
        for i in range(N):
            A.draw_two_view_params(np.random.default_rng([0, 0, i]), 1, cfg, extreme=True)

    return {
        "linear (rotate@shear)": (
            lambda: A.linear_transform(x, xv, e.mat, out=x_out),
            # float32 batched matmul beats the float64 twin; the stronger one is the baseline
            lambda: np.where(xv[:, None], (mat32 @ x.reshape(N, C, -1)).reshape(x.shape), zero32),
        ),
        "noise (hash normals)": (
            lambda: A.gaussian_noise(x, xv, std, e.noise_seed, out=x_out),
            lambda: A.gaussian_noise_ref(x, xv, std, e.noise_seed),
        ),
        "noise vs Generator draws": (
            lambda: A.gaussian_noise(x, xv, std, e.noise_seed, out=x_out),
            numpy_noise,
        ),
        "noise vs Generator draw alone": (
            lambda: A.gaussian_noise(x, xv, std, e.noise_seed, out=x_out),
            lambda: rng.standard_normal(x.shape),
        ),
        "two_view, 3 views": (
            lambda: A.two_view(raw, valid, lengths, p, cfg, perm, out=views[0], out_valid=views[1]),
            lambda: A.two_view_ref(raw, valid, lengths, p, cfg, perm),
        ),
        "params_for vs SeedSequence": (
            lambda: A.params_for(0, 0, np.arange(N), cfg, extreme=True),
            seedsequence_params,
        ),
    }


def composed() -> tuple[Callable[[], object], Callable[[], object], Callable[[], object]]:
    """(ours, per-sample baseline, AimCLR feeder) for the two-view augmentation of a batch of N."""
    rng, raw, valid, lengths = _batch(1)
    samples = np.ascontiguousarray(
        raw.transpose(0, 3, 1, 2, 4)
    )  # the feeder's (N, C, T, V, M) memmap
    # AimCLR's strong view has no flip and no rotation in this two-view form.
    cfg = A.AugmentConfig(out_len=L, extreme_flip_prob=0.0, extreme_rotate_deg=(0.0, 0.0, 0.0))
    p = A.params_for(0, 0, np.arange(N), cfg, extreme=True)
    # The baseline's two views: a normal one and one with noise, blur and axis mask.
    strong = A.TwoViewParams(query=p.query, key=p.extreme)
    out = np.empty((2, N, C, L, V, M), np.float32)
    out_valid = np.empty((2, N, L, V, M), bool)

    def baseline():
        for i in range(N):
            per_sample_baseline.two_views(samples[i], rng, L)

    clips = aimclr_feeder.resize_clips(samples, L)  # AimCLR's offline step, not timed

    def aimclr():
        for i in range(N):
            aimclr_feeder.two_views(clips[i], rng)

    return (
        lambda: A.two_view(raw, valid, lengths, strong, cfg, None, out=out, out_valid=out_valid)
    ), baseline, aimclr


def normalization_cases() -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name -> (normalised, plain) closures: the fused views and the finetuning transpose."""
    rng, raw, valid, lengths = _batch(2)
    raw += np.float32(2.0)  # centring has work to do (the corpus keeps invalid points at 0)
    raw *= valid[:, :, :, None, :]
    cfg = A.AugmentConfig(out_len=L, rotate_deg=(15, 15, 15), flip_prob=0.5, swap_prob=0.5)
    perm = get_layout("ntu25").flip_permutation()
    p = A.params_for(0, 0, np.arange(N), cfg, extreme=True)
    views = (np.empty((3, N, C, L, V, M), np.float32), np.empty((3, N, L, V, M), bool))
    q, _ = np.linalg.qr(rng.standard_normal((N, 3, 3)))
    centre = rng.standard_normal((N, 3))
    first, frame = WindowNorm(centre, q, -1), WindowNorm(centre, q, 1)
    x = np.empty((N, C, T, V, M), np.float32)

    def fused(norm):
        return lambda: A.two_view(raw, valid, lengths, p, cfg, perm, out=views[0],
                                  out_valid=views[1], norm=norm)

    return {
        "3 views, normalize first vs none": (fused(first), fused(None)),
        "3 views, normalize frame vs none": (fused(frame), fused(None)),
        "finetune x (T=300), normalize vs transpose": (
            lambda: normalize_windows(raw, valid, first, out=x),
            lambda: np.copyto(x, raw.transpose(0, 3, 1, 2, 4)),
        ),
    }


@pytest.fixture(scope="module", autouse=True)
def _one_core():
    threads = (numba.get_num_threads(), torch.get_num_threads())
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    yield
    numba.set_num_threads(threads[0])
    torch.set_num_threads(threads[1])


@pytest.mark.parametrize("name", list(cases()))
def test_kernel_vs_numpy(benchmark, ratios, name):
    """pytest-benchmark's table shows the Numba side (wall time); the ratio uses CPU time."""
    fast, base = cases()[name]
    benchmark.pedantic(fast, rounds=10, warmup_rounds=1)
    fast_s, base_s = _best(fast, 20), _best(base, 5)
    benchmark.extra_info.update(fast_cpu_s=fast_s, baseline_cpu_s=base_s, speedup=base_s / fast_s)
    ratios.add(
        f"augment: {name}" if " vs " in name else f"augment: {name} vs numpy",
        base_s / fast_s,
        None if name in INFO_ONLY else 1.0,
        f"numba {fast_s * 1e3:.2f} ms, numpy {base_s * 1e3:.2f} ms per batch of {N}, 1 core",
    )


def test_two_view_vs_per_sample_one_core(benchmark, ratios):
    fast, base, _ = composed()
    benchmark.pedantic(fast, rounds=5, warmup_rounds=1)
    fast_s, base_s = _best(fast, 10), _best(base, 5)
    benchmark.extra_info.update(
        fast_cpu_s=fast_s,
        baseline_cpu_s=base_s,
        speedup=base_s / fast_s,
        samples_per_s=N / fast_s,
        baseline_samples_per_s=N / base_s,
    )
    ratios.add(
        "augment: two views vs per-sample feeder",
        base_s / fast_s,
        10.0,
        f"{N / fast_s:,.0f} vs {N / base_s:,.0f} samples/s, 1 core",
    )


def test_two_view_vs_aimclr_feeder_one_core(ratios):
    """Reported, no target: the AimCLR feeder works on 50-frame clips resized beforehand."""
    fast, _, aimclr = composed()
    fast_s, aimclr_s = _best(fast, 10), _best(aimclr, 5)
    ratios.add(
        "augment: two views vs AimCLR feeder (50-frame clips)",
        aimclr_s / fast_s,
        None,
        f"{N / fast_s:,.0f} vs {N / aimclr_s:,.0f} samples/s, 1 core",
    )


@pytest.mark.parametrize("name", list(normalization_cases()))
def test_normalization_cost(benchmark, ratios, name):
    """Speed with the normalisation relative to without it (1.0: free), alternating rounds."""
    norm, plain = normalization_cases()[name]
    benchmark.pedantic(norm, rounds=5, warmup_rounds=1)
    rel = []
    for _ in range(3):
        n_s, p_s = _best(norm, 10), _best(plain, 10)
        rel.append(p_s / n_s)
    ratio = float(np.median(rel))
    benchmark.extra_info.update(normalized_cpu_s=n_s, plain_cpu_s=p_s, relative_speed=ratio)
    ratios.add(f"normalize: {name}", ratio, None,
               f"{n_s * 1e3:.2f} vs {p_s * 1e3:.2f} ms per batch of {N} (last round), 1 core; "
               f"rounds {', '.join(f'{r:.2f}' for r in rel)}")


def _corpus(dest: Path, sequences: int = 200) -> str:
    rng = np.random.default_rng(0)
    header = CorpusHeader(layout=get_layout("ntu25"), class_names=("a",), fps=30.0, persons=2,
                          source_frame="synthetic random walk, metres")

    def seqs():
        for i in range(sequences):
            t = int(rng.integers(150, 450))
            x = rng.normal(0, 0.3, (1, V, C, M)) + rng.normal(0, 0.004, (t, V, C, M)).cumsum(0)
            yield Sequence(f"s{i}", (x + 2.0).astype(np.float32), "synthetic",
                           valid=rng.random((t, V, M)) > 0.02)

    write_corpus(dest, header, seqs())
    return str(dest)


def test_batch_source_normalization_cost(ratios, tmp_path_factory):
    """Whole epochs of batches, normalised against not: cold (references computed) and warm."""
    path = _corpus(tmp_path_factory.mktemp("norm") / "synth.zarr")
    lengths = open_corpus(path).lengths

    def epochs(mode: str) -> tuple[float, float]:
        cfg = LoaderConfig(batch_size=N, raw_length=100, window_mode="dense", extreme=True,
                           augment=A.AugmentConfig(out_len=L), normalize=mode, num_workers=0)
        src = BatchSource(path, cfg, build_windows(lengths, cfg), 0, 1)
        _ = src.corpus  # opened (decoded in RAM) outside the timing
        out = []
        for e in (0, 1):
            t0 = time.process_time()
            for step in range(src.num_steps(e)):
                src(e, step)
            out.append(time.process_time() - t0)
        return out[0], out[1]

    epochs("first")  # warm-up (compilation)
    cold, warm = [], []
    for _ in range(3):
        (nc, nw), (pc, pw) = epochs("first"), epochs("none")
        cold.append(pc / nc)
        warm.append(pw / nw)
    steps = -(-len(build_windows(lengths, LoaderConfig(raw_length=100, window_mode="dense")))
              // N)
    for name, rel, n_s, p_s in (("first epoch", cold, nc, pc), ("later epoch", warm, nw, pw)):
        ratios.add(f"normalize: BatchSource {name}, first vs none", float(np.median(rel)), None,
                   f"{n_s / steps * 1e3:.2f} vs {p_s / steps * 1e3:.2f} ms a batch of {N} "
                   f"(3 views, last round), 200 sequences, 1 core; rounds "
                   f"{', '.join(f'{r:.2f}' for r in rel)}")


def main() -> None:
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    print(f"one core; batch N={N}, raw T={T}, L={L}, V={V}, M={M}; best CPU time of repeated runs")
    print(f"{'op':28s} {'numba ms':>9s} {'numpy ms':>9s} {'ratio':>7s}")
    for name, (fast, base) in cases().items():
        f, b = _best(fast, 20), _best(base, 5)
        print(f"{name:28s} {f * 1e3:9.3f} {b * 1e3:9.3f} {b / f:7.1f}")
    fast, base, aimclr = composed()
    f, b, a = _best(fast, 10), _best(base, 5), _best(aimclr, 5)
    print(
        f"two views per sample: ours {f / N * 1e6:.1f} us ({N / f:,.0f} samples/s), "
        f"per-sample baseline {b / N * 1e6:.1f} us ({N / b:,.0f} samples/s), x{b / f:.1f}, "
        f"AimCLR feeder {a / N * 1e6:.1f} us ({N / a:,.0f} samples/s), x{a / f:.1f}"
    )
    print(f"{'normalisation cost':44s} {'norm ms':>8s} {'plain ms':>8s} {'speed':>6s}")
    for name, (norm, plain) in normalization_cases().items():
        f, b = _best(norm, 10), _best(plain, 10)
        print(f"{name:44s} {f * 1e3:8.3f} {b * 1e3:8.3f} {b / f:6.2f}")


if __name__ == "__main__":
    main()
