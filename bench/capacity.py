"""Capacity on paper: input-pipeline samples/s per CPU core, a GPU's step rate, cores per GPU.

For each setting (the demo preset; the paper preset at batch 16 on a two-person NTU-25 corpus):

1. **Pipeline per core** (measured here): the trainer's own loader config
   (``sscl.inputs.pretrain_loader_config`` of the preset), torch engine, ONE worker process with
   one compute thread, batches drained as fast as they come for ``--seconds`` after a warm-up:
   samples/s of that one core.
2. **FLOPs of a training step** per sample, counted by ``FlopCounterMode`` on the trainer's
   module (``Pretrainer`` with the preset's backbone: forward + backward of the query encoder,
   forward of the key encoder(s)) at batch 2, with the graph convolution on its einsum oracle
   (the fused custom op is invisible to the counter; the arithmetic is the same).
3. **One GPU's step rate**: measured on a lent GPU when ``--gpu-report`` names a
   ``bench/gpu_run.py`` report; otherwise derived as FLOPs against the GPU's dense bf16 peak at
   an efficiency anchored on the only whole step measured on a Hopper GPU so far (the AGCN step
   of bench/README.md "On a GPU": N=32, T=64, M=2, full width, bf16 autocast, 23.1 ms on an H200,
   graph_conv_auto), whose FLOPs this script counts the same way.
4. **Cores per GPU** to keep data wait under 5 %: the GPU's samples/s over one core's, plus one
   core for the training process itself.

Run: python bench/capacity.py [--seconds 8] [--gpu-report gpu_report.json]
(about a minute on 2 cores; the synthetic NTU corpus is written once under $SSCL_CACHE/bench).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: Numba stalls otherwise

import torch  # noqa: E402
from bench_backbone import _with_impl  # noqa: E402
from bench_pipeline import _synthetic  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from sscl import presets  # noqa: E402
from sscl.config import Config  # noqa: E402
from sscl.contrastive import Pretrainer  # noqa: E402
from sscl.data.corpus import cache_dir  # noqa: E402
from sscl.data.demo import demo_corpus  # noqa: E402
from sscl.data.loader import make_loader  # noqa: E402
from sscl.inputs import open_corpus_of, pretrain_loader_config, split_indices  # noqa: E402
from sscl.kernels import graph_conv_ref  # noqa: E402
from sscl.models import AGCN, build_backbone  # noqa: E402

H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM datasheet, dense (no sparsity)
H200_BF16_DENSE_TFLOPS = 989.0  # same Hopper compute as the H100 SXM
ANCHOR = {"n": 32, "t": 64, "persons": 2, "ms": 23.1}  # bench/README.md, "On a GPU"
NTU_FRAMES = 200_000


def ntu_corpus() -> Path:
    """The two-person NTU-25 synthetic corpus of the paper setting (written once, cached)."""
    ntu = cache_dir() / "bench" / f"capacity-ntu25x2-{NTU_FRAMES}.zarr"
    if not ntu.exists():
        ntu.parent.mkdir(parents=True, exist_ok=True)
        _synthetic(ntu, NTU_FRAMES)
    return ntu


def settings() -> dict[str, Config]:
    ntu = ntu_corpus()
    common = ("data.loader.num_workers=1", "pretrain.queue_size=4096",
              "pretrain.snippet_queue_size=4096", "probe.corpus=null")
    return {
        "demo": presets.resolve("demo", [*common, f"data.corpus={demo_corpus()}"]),
        "paper": presets.resolve("paper_pretrain", [
            *common, f"data.corpus={ntu}", "data.loader.batch_size=16"]),
    }


def pipeline_per_core(cfg: Config, seconds: float) -> float:
    corpus = open_corpus_of(cfg.data.corpus)
    loader = make_loader(corpus, pretrain_loader_config(cfg, split_indices(corpus,
                                                                           cfg.data.split)),
                         engine="torch")
    items, t0, warm, epoch = 0, None, 0, 0
    while True:
        for batch in loader.epoch(epoch):
            warm += 1
            if warm == 3:  # worker started, kernels compiled, ring full
                t0 = time.perf_counter()
            elif t0 is not None:
                items += int(batch["weight"].shape[0])
                if time.perf_counter() - t0 > seconds:
                    return items / (time.perf_counter() - t0)
        epoch += 1


def flops_of(step) -> float:
    with FlopCounterMode(display=False) as fc:
        step()
    return float(fc.get_total_flops())


def trainer_flops(cfg: Config, persons: int, b: int = 2) -> float:
    """FLOPs per sample of one pretraining step of ``cfg``'s module."""
    backbone = _with_impl(build_backbone(cfg.model, "ntu25", persons), graph_conv_ref)
    module = Pretrainer(cfg.pretrain, backbone)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, b, 3, cfg.data.loader.augment.out_len, 25, persons, generator=g)
    batch = {"query": x[0], "key": x[1], "weight": torch.ones(b), "position": torch.arange(b)}
    return flops_of(lambda: module(batch, 0)[0].backward()) / b


def anchor_flops(b: int = 2) -> float:
    """FLOPs of bench_backbone's AGCN step at the anchor's shape (linear in the batch)."""
    model = _with_impl(AGCN("ntu25", num_persons=ANCHOR["persons"], width=1.0), graph_conv_ref)
    x = torch.randn(b, 3, ANCHOR["t"], 25, ANCHOR["persons"])
    return flops_of(lambda: model.embed(x).pow(2).mean().backward()) * ANCHOR["n"] / b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--gpu-report", type=Path, default=None,
                    help="a bench/gpu_run.py gpu_report.json: measured GPU rates instead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    anchor_tflops = anchor_flops() / (ANCHOR["ms"] * 1e-3) / 1e12
    efficiency = anchor_tflops / H200_BF16_DENSE_TFLOPS
    measured = {}
    if args.gpu_report is not None:
        rep = json.loads(args.gpu_report.read_text())
        measured = {r["setting"]: r["samples_per_s"] for r in rep["train"]
                    if r["precision"] == "bf16" and r["stack"] == "ours"}
    print(f"anchor: AGCN step N={ANCHOR['n']} T={ANCHOR['t']} M={ANCHOR['persons']} bf16 "
          f"{ANCHOR['ms']} ms on an H200 = {anchor_tflops:.1f} TFLOP/s = {efficiency:.1%} of "
          f"the {H200_BF16_DENSE_TFLOPS:.0f} TFLOP/s bf16 dense peak")
    rows = []
    for name, cfg in settings().items():
        persons = 1 if name == "demo" else 2
        per_core = pipeline_per_core(cfg, args.seconds)
        flops = trainer_flops(cfg, persons)
        if name in measured:
            gpu_sps, how = measured[name], "measured (gpu_run)"
        else:
            gpu_sps = H100_BF16_DENSE_TFLOPS * 1e12 * efficiency / flops
            how = f"derived: {efficiency:.1%} of H100 bf16 peak"
        cores = math.ceil(gpu_sps / (0.95 * per_core)) + 1
        rows.append((name, per_core, flops, gpu_sps, how, cores))
    print("| setting | pipeline samples/s per core | step GFLOP per sample | H100 samples/s | "
          "how | CPU cores per GPU (data wait < 5 %) |")
    print("|---|---:|---:|---:|---|---:|")
    for name, per_core, flops, gpu_sps, how, cores in rows:
        print(f"| {name} | {per_core:,.0f} | {flops / 1e9:.2f} | {gpu_sps:,.0f} | {how} | "
              f"{cores} |")


if __name__ == "__main__":
    main()
