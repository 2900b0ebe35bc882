"""Pretraining throughput of the whole stack against a reference stack, in the same run.

- whole stack: our loader (torch engine, compiled crop + augmentation, shared-memory ring),
  ``sscl.models.STGCN`` on the fused graph convolution, the contrastive method;
- reference stack: the per-sample feeder (``per_sample_baseline``, CTR-GCN valid_crop_resize
  style) in a plain DataLoader over an ``np.memmap``, the SkeletonCLR-lineage einsum ST-GCN
  (``reference_stgcn.ReferenceSTGCN.like`` ours: same plan, same parameter count), the same
  contrastive method.

Both fp32, the demo setting (quarter-width ST-GCN, 100-frame views, N = 19 snippets, queue 4096,
batch 64, 2 workers), SGD steps timed in alternating rounds after a warm-up; the ratio is the
median of the per-round samples/s ratios. Reported beside it: each stack's data-wait share, the
step's GFLOP/s (FLOPs of one step counted on the reference model with ``FlopCounterMode``: the
same arithmetic) and fp32 matmul GFLOP/s measured in the same run.

``test_snippet_share`` reports the snippet branch's share of a step (model only, synthetic
views): at the demo setting and at the paper setting (T = 200, N = 19, queues 32768; the paper's
full-width AGCN at batch 8 to keep it to seconds here).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import statistics
import time

import ceiling
import per_sample_baseline
import pytest
import torch
from bench_pipeline import WORKERS, _memmap, _synthetic, _worker_init  # noqa: F401
from benchutil import SHARED
from reference_stgcn import ReferenceSTGCN

from sscl.config import ContrastiveConfig
from sscl.contrastive import Pretrainer
from sscl.data.augment import AugmentConfig
from sscl.data.corpus import cache_dir
from sscl.data.loader import make_loader
from sscl.data.loader_config import LoaderConfig
from sscl.data.worker_threads import single_threaded_children
from sscl.models import AGCN, STGCN

ROUNDS = int(os.environ.get("SSCL_BENCH_ROUNDS", 3))
STEPS = int(os.environ.get("SSCL_BENCH_TRAIN_STEPS", 6))
FRAMES = int(os.environ.get("SSCL_BENCH_PIPELINE_FRAMES", 300_000))
BATCH, OUT_LEN, RAW = 64, 100, 300
METHOD = ContrastiveConfig(method="skeletonclr", queue_size=4096, snippet=True, num_snippets=19)


@pytest.fixture(scope="module")
def corpus() -> str:
    src = SHARED / "msrc12"
    dest = cache_dir() / "bench" / ("msrc12.zarr" if src.is_dir() else f"train-synth-{FRAMES}.zarr")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            from sscl.data.formats import convert

            convert("msrc12", src, dest, progress=False)
        else:
            _synthetic(dest, FRAMES)
    return str(dest)


def _reference_batches(corpus_path: str, batch: int = BATCH, out_len: int = OUT_LEN):
    loader = torch.utils.data.DataLoader(
        per_sample_baseline.PerSampleFeeder(str(_memmap(corpus_path).filename), 1 << 40,
                                            out_len=out_len), batch_size=batch,
        sampler=torch.utils.data.RandomSampler(range(1 << 20), replacement=True,
                                               num_samples=1 << 40),
        num_workers=WORKERS, worker_init_fn=_worker_init, multiprocessing_context="fork",
        persistent_workers=True)
    with single_threaded_children():
        it = iter(loader)
    ones = torch.ones(batch)
    for q, k in it:  # the feeder's views are float64, as the published feeders' np.dot gives
        yield {"query": q.float(), "key": k.float(), "weight": ones,
               "position": torch.arange(batch)}


def _our_batches(corpus_path: str, batch: int = BATCH, out_len: int = OUT_LEN):
    cfg = LoaderConfig(task="pretrain", seed=0, batch_size=batch, num_workers=WORKERS,
                       raw_length=RAW, window_mode="dense", strong_key=True,
                       augment=AugmentConfig(out_len=out_len), pin_memory=False)
    loader = make_loader(corpus_path, cfg, engine="torch")
    e = 0
    while True:
        for b in loader.epoch(e):
            yield {k: v.clone() for k, v in b.items()}
        e += 1


def _stack(backbone_fn, batches, method: ContrastiveConfig = METHOD):
    torch.manual_seed(0)
    model = Pretrainer(method, backbone_fn)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01,
                          momentum=0.9)
    state = {"wait": 0.0}

    def step():
        t = time.perf_counter()
        batch = next(batches)
        state["wait"] += time.perf_counter() - t
        loss, _ = model(batch, 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.momentum_update()

    return model, step, state


def _rounds(stacks: dict, batch: int, rounds: int, steps: int):
    """Samples/s and data-wait share per round of each stack, in alternating rounds."""
    per_round = {name: [] for name in stacks}
    wait_share = {name: [] for name in stacks}
    for _ in range(rounds):
        for name, (_, step, st) in stacks.items():
            st["wait"] = 0.0
            t = time.perf_counter()
            for _ in range(steps):
                step()
            dt = time.perf_counter() - t
            per_round[name].append(steps * batch / dt)
            wait_share[name].append(st["wait"] / dt)
    return per_round, wait_share


def _close(feeds) -> None:
    """Close the batch generators, which stops their loaders' worker processes: run before
    anything is timed alone (the ceiling's ops, the matmul rate). Workers still refilling their
    prefetch queues take CPU from it: a capped paper-setting run read its convolutions alone at
    5.3 s where three in-memory replays read 3.6-3.9 s, putting the step at 120 % of its
    "ceiling"."""
    for feed in feeds:
        feed.close()
    gc.collect()
    left = multiprocessing.active_children()  # joins the workers that have exited
    if left:
        raise RuntimeError(f"loader workers still running after their feeds closed: {left}")


def _ceiling(ops, batch: int) -> tuple[float, dict[str, float]]:
    """Samples/s of the step whose ``ops`` were captured (``ceiling.capture``) if only its
    convolutions, matmuls and fused graph convolutions cost time, each at its speed alone
    (`ceiling.py`), and the seconds of each group."""
    groups = ceiling.replay(ops)
    return batch / sum(groups.values()), groups


def _matmul_gflops() -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    t = time.perf_counter()
    for _ in range(10):
        a @ b
    return 10 * 2 * 1024**3 / (time.perf_counter() - t) / 1e9


def _step_flops(model: torch.nn.Module, batch: dict) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        loss, _ = model(batch, 0)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def test_whole_stack_vs_reference_stack(corpus, ratios):
    from sscl.data.corpus import open_corpus

    c = open_corpus(corpus, memory_budget=0)
    layout, persons = c.layout, c.persons

    def ours_backbone():
        return STGCN(layout, num_persons=persons, width=0.25)

    def ref_backbone():
        return ReferenceSTGCN.like(STGCN(layout, num_persons=persons, width=0.25))

    feeds = (_our_batches(corpus), _reference_batches(corpus))
    ours = _stack(ours_backbone, feeds[0])
    ref = _stack(ref_backbone, feeds[1])
    for _, step, _ in (ours, ref):  # warm-up: workers, compilation, allocator
        step()
        step()
    per_round, wait_share = _rounds({"ours": ours, "ref": ref}, BATCH, ROUNDS, STEPS)
    ratio = statistics.median(o / r for o, r in zip(per_round["ours"], per_round["ref"]))
    sample = next(feeds[1])
    ops = ceiling.capture(ours[1])
    _close(feeds)
    flops = _step_flops(ref[0], sample)
    mm = _matmul_gflops()
    sps_o, sps_r = statistics.median(per_round["ours"]), statistics.median(per_round["ref"])
    detail = (f"ours {sps_o:.1f} samples/s (data wait {statistics.median(wait_share['ours']):.0%}"
              f", {flops * sps_o / BATCH / 1e9:.1f} GFLOP/s), reference {sps_r:.1f} samples/s "
              f"(data wait {statistics.median(wait_share['ref']):.0%}, "
              f"{flops * sps_r / BATCH / 1e9:.1f} GFLOP/s); step {flops / 1e9:.1f} GFLOP; fp32 "
              f"matmul {mm:.0f} GFLOP/s; {torch.get_num_threads()} threads")
    # The ceiling: >= 2x is the target unless our step's own arithmetic, each op alone, rules it
    # out; then the target is 90 % of the ceiling (issue 20).
    ceil_sps, groups = _ceiling(ops, BATCH)
    ceil_ratio = ceil_sps / sps_r
    target = min(2.0, 0.9 * ceil_ratio)
    detail += (f"; ceiling {ceil_sps:.1f} samples/s = {ceil_ratio:.2f}x the reference ("
               + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in sorted(groups.items()))
               + f" a step alone), ours at {sps_o / ceil_sps:.0%} of it")
    print(f"\nbench_train: {detail}")
    ratios.add("pretraining step, whole stack vs reference stack", ratio, target, detail)


def test_paper_stack_vs_reference_stack(ratios, request):
    """Full-width AGCN, T = 200, batch 16, on a two-person NTU-25 corpus: our stack against the
    same model as plain PyTorch (einsum graph convolution, ATen batch norm; 2s-AGCN's
    formulation) fed by the per-sample feeder in a plain DataLoader. Under
    ``--benchmark-disable`` (the CI smoke run) the same code runs at batch 2, T = 64."""
    from bench_backbone import plain_pytorch
    from capacity import ntu_corpus

    smoke = request.config.getoption("benchmark_disable", False)
    batch, out_len = (2, 64) if smoke else (16, 200)
    rounds, steps = (1, 1) if smoke else (ROUNDS, 1)
    dest = ntu_corpus()
    method = ContrastiveConfig(method="skeletonclr", queue_size=32768, snippet=True,
                               num_snippets=19 if not smoke else 4)

    def ours_backbone():
        return AGCN("ntu25", num_persons=2, width=1.0)

    def ref_backbone():
        return plain_pytorch(AGCN("ntu25", num_persons=2, width=1.0))

    feeds = (_our_batches(str(dest), batch, out_len),
             _reference_batches(str(dest), batch, out_len))
    ours = _stack(ours_backbone, feeds[0], method)
    ref = _stack(ref_backbone, feeds[1], method)
    for _, step, _ in (ours, ref):
        step()
    per_round, wait_share = _rounds({"ours": ours, "ref": ref}, batch, rounds, steps)
    ratio = statistics.median(o / r for o, r in zip(per_round["ours"], per_round["ref"]))
    sps_o, sps_r = statistics.median(per_round["ours"]), statistics.median(per_round["ref"])
    ops = ceiling.capture(ours[1])
    _close(feeds)
    ceil_sps, groups = _ceiling(ops, batch)
    detail = (f"batch {batch}, T={out_len}: ours {sps_o:.2f} samples/s (data wait "
              f"{statistics.median(wait_share['ours']):.0%}), reference {sps_r:.2f} samples/s "
              f"(data wait {statistics.median(wait_share['ref']):.0%}); ceiling {ceil_sps:.2f} "
              f"samples/s = {ceil_sps / sps_r:.2f}x the reference ("
              + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(groups.items()))
              + f" a step alone), ours at {sps_o / ceil_sps:.0%} of it")
    print(f"\nbench_train paper: {ratio:.2f}x; {detail}")
    ratios.add("pretraining step, paper setting (AGCN, T=200, batch 16) vs reference", ratio,
               1.3, detail)


@pytest.mark.parametrize("setting", ["demo", "paper"])
def test_snippet_share(setting, ratios):
    from sscl.data.layouts import get_layout

    layout = get_layout("ntu25")
    if setting == "demo":
        T, B, queue = 100, 64, 4096

        def backbone():
            return STGCN(layout, num_persons=2, width=0.25)
    else:
        T, B, queue = 200, 8, 32768

        def backbone():
            return AGCN(layout, num_persons=2, width=1.0)
    g = torch.Generator().manual_seed(0)
    batch = {"query": torch.randn(B, 3, T, 25, 2, generator=g),
             "key": torch.randn(B, 3, T, 25, 2, generator=g), "weight": torch.ones(B),
             "position": torch.arange(B)}
    steps = {}
    for snippet in (False, True):
        torch.manual_seed(0)
        cfg = ContrastiveConfig(method="skeletonclr", queue_size=queue, snippet=snippet,
                                num_snippets=19)
        model = Pretrainer(cfg, backbone)

        def step(model=model):
            loss, _ = model(batch, 0)
            loss.backward()
            model.zero_grad(set_to_none=True)

        step()  # warm-up
        steps[snippet] = step
    # Alternating rounds (without, with, without, ...): a busy machine slows both sides alike.
    rounds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(max(5, ROUNDS)):
        for snippet in (False, True):
            t = time.perf_counter()
            steps[snippet]()
            rounds[snippet].append(time.perf_counter() - t)
    times = {k: statistics.median(v) for k, v in rounds.items()}
    share = (times[True] - times[False]) / times[True]
    detail = (f"T={T}, N=19, queues {queue}, batch {B}: step {times[False] * 1e3:.0f} ms "
              f"without, {times[True] * 1e3:.0f} ms with the snippet branch")
    print(f"\nsnippet share ({setting}): {share:.1%} ({detail})")
    ratios.add(f"snippet branch share of a step ({setting})", share, 0.10 if setting == "paper"
               else None, detail, higher_is_better=False)
