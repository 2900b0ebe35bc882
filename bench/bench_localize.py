"""Finetuning and ``sscl predict`` against plain PyTorch on the same localizer, in the same run.

The localizer of the ``msrc12_localize`` preset (quarter-width ST-GCN, the preset's head, 13
logits a frame) twice: as sscl runs it (fused graph convolution, fused batch-norm statistics) and
as plain PyTorch would (`bench_backbone.plain_pytorch`: the einsum graph convolution, ATen's batch
norm), same weights.

- finetuning: the stage's training module (`FrameLoss`) on the preset's windows (batch 8 x 600
  frames), forward + backward + SGD, alternating rounds; the ratio is the median of the
  per-round ratios;
- predict: what ``sscl predict`` runs per recording (`sequence_probabilities`: the preset's
  600-frame windows with 150 frames of overlap, batch 8, stitched back), frames/s on one
  10,000-frame recording, alternating rounds.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_backbone import plain_pytorch
from benchutil import alternating_times

from sscl import presets
from sscl.data.corpus import cache_dir, open_corpus
from sscl.data.layouts import get_layout
from sscl.data.writer import CorpusHeader, Sequence, write_corpus
from sscl.localize.frame_scores import sequence_probabilities
from sscl.models import build_backbone
from sscl.models.localizer import Localizer, TrainedLocalizer
from sscl.stages.finetuning import FrameLoss

# 7 rounds: a finetuning step is about 0.6 s, and with 3 rounds one capped run read 1.11x where
# three 7-round reruns read 1.31-1.34x (bench/README "Finetuning and `sscl predict`").
ROUNDS = int(os.environ.get("SSCL_BENCH_ROUNDS", 7))
RECORDING = 10_000
CLASSES = 12


@pytest.fixture(scope="module")
def setting(request):
    smoke = request.config.getoption("benchmark_disable", False)
    cfg = presets.resolve("msrc12_localize", [])
    torch.manual_seed(0)
    layout = get_layout("kinect20")
    loc = Localizer(build_backbone(cfg.model, layout, 1), CLASSES, head=cfg.finetune.head,
                    embed_dim=cfg.finetune.embed_dim)
    return {"cfg": cfg, "ours": loc, "plain": plain_pytorch(loc), "layout": layout,
            "frames": 64 if smoke else cfg.finetune.max_length,
            "recording": 2_000 if smoke else RECORDING, "rounds": 1 if smoke else ROUNDS}


def test_finetune_step_vs_plain_pytorch(setting, ratios):
    cfg, T = setting["cfg"], setting["frames"]
    B = cfg.finetune.batch_size
    g = torch.Generator().manual_seed(0)
    batch = {"x": 0.3 * torch.randn(B, 3, T, 20, 1, generator=g),
             "mask": torch.ones(B, T, dtype=torch.bool),
             "labels": torch.randint(0, CLASSES + 1, (B, T), generator=g),
             "weight": torch.ones(B)}

    def step_of(localizer):
        module = FrameLoss(localizer.train())
        opt = torch.optim.SGD(module.parameters(), lr=1e-3, momentum=0.9)

        def step():
            loss, _ = module(batch, 0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    steps = {"ours": step_of(setting["ours"]), "plain": step_of(setting["plain"])}
    times = alternating_times(steps, setting["rounds"])
    ratio = statistics.median(p / o for o, p in zip(times["ours"], times["plain"]))
    detail = (f"batch {B} x {T} frames: ours {statistics.median(times['ours']) * 1e3:.0f} ms, "
              f"plain PyTorch {statistics.median(times['plain']) * 1e3:.0f} ms a step")
    print(f"\nfinetune step: {ratio:.2f}x ({detail})")
    ratios.add("finetuning step vs plain PyTorch", ratio, 1.2, detail)


@pytest.fixture(scope="module")
def recording(setting) -> str:
    frames = setting["recording"]
    dest = cache_dir() / "bench" / f"recording-kinect20-{frames}.zarr"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        x = rng.normal(0, 0.3, (1, 20, 3, 1)) + rng.normal(0, 0.004, (frames, 20, 3, 1)).cumsum(0)
        header = CorpusHeader(layout=setting["layout"], class_names=("a",), fps=30.0, persons=1,
                              source_frame="synthetic random walk, metres")
        write_corpus(dest, header, [Sequence("rec", x.astype(np.float32), "synthetic")])
    return str(dest)


def test_predict_vs_plain_pytorch(setting, recording, ratios):
    cfg = setting["cfg"]
    corpus = open_corpus(recording)
    meta = {"normalize": cfg.data.loader.normalize, "max_length": cfg.finetune.max_length,
            "overlap": cfg.finetune.overlap}
    runs = {name: TrainedLocalizer(setting[name].eval(), meta, Path(recording))
            for name in ("ours", "plain")}
    out: dict[str, list] = {}

    def predict(name):
        return lambda: out.__setitem__(name, sequence_probabilities(runs[name], corpus, (0,),
                                                                    "cpu", batch_size=8))

    times = alternating_times({name: predict(name) for name in runs}, setting["rounds"])
    np.testing.assert_allclose(out["ours"][0], out["plain"][0], atol=1e-4)  # same model
    frames = setting["recording"]
    fps = {k: frames / statistics.median(v) for k, v in times.items()}
    ratio = statistics.median(p / o for o, p in zip(times["ours"], times["plain"]))
    detail = (f"{frames}-frame recording, {cfg.finetune.max_length}-frame windows: ours "
              f"{fps['ours']:.0f} frames/s, plain PyTorch {fps['plain']:.0f} frames/s")
    print(f"\npredict: {ratio:.2f}x ({detail})")
    ratios.add("sscl predict vs plain PyTorch", ratio, 1.2, detail)
