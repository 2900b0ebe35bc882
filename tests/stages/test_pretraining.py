"""The pretraining stage: queue sizes from the corpus, and the shortcut diagnostics in a run."""

from __future__ import annotations

import logging
import statistics
from dataclasses import replace

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sscl import presets
from sscl.data.synthetic import SynthConfig, synthesize
from sscl.runlog import log
from sscl.stages.pretraining import distinct_windows, resolve_queue_sizes
from tests.helpers import trainrun as T


def _cfg(*overrides: str):
    return presets.resolve("demo", ["data.split=null", "data.loader.raw_length=100", *overrides])


def test_distinct_windows_count_content_not_reads():
    lengths = np.array([50, 100, 250, 1000])
    # Dense, stride = window: ceil(T / 100) windows a sequence, all distinct.
    assert distinct_windows(_cfg("data.loader.window_mode=dense"), lengths, None) == 1 + 1 + 3 + 10
    # Overlapping dense windows read frames twice: no more distinct than fit in a sequence.
    overlapping = _cfg("data.loader.window_mode=dense", "data.loader.dense_stride=25")
    assert distinct_windows(overlapping, lengths, None) == 15
    # One window a sequence.
    assert distinct_windows(_cfg("data.loader.window_mode=per_sequence"), lengths, None) == 4
    assert distinct_windows(_cfg("data.loader.window_mode=dense"), lengths, (2, 3)) == 13


def test_auto_queue_sizes_resolve_from_the_corpus_and_a_large_one_is_warned(tmp_path, caplog):
    corpus = tmp_path / "c.zarr"
    synthesize(corpus, SynthConfig(num_sequences=6, min_frames=300, max_frames=400, subjects=3),
               seed=0)
    cfg = _cfg(f"data.corpus={corpus}", "data.loader.window_mode=dense",
               "pretrain.queue_size=auto")
    n = distinct_windows(cfg, np.array([300] * 0), None)  # empty corpus: nothing
    assert n == 0
    log.propagate = True  # let caplog see the run's logger in this test
    try:
        with caplog.at_level(logging.INFO, logger="sscl"):
            resolved = resolve_queue_sizes(cfg)
            assert isinstance(resolved.pretrain.queue_size, int)
            assert resolved.pretrain.snippet_queue_size is None  # follows queue_size
            assert "pretrain.queue_size=auto" in caplog.text
            big = resolve_queue_sizes(replace(cfg, pretrain=replace(cfg.pretrain,
                                                                     queue_size=4096)))
            assert big.pretrain.queue_size == 4096
            assert "meet stale copies of their own clip" in caplog.text
            assert "set pretrain.queue_size=auto" in caplog.text
    finally:
        log.propagate = False
    windows = int(caplog.text.split(" distinct windows")[0].rsplit(" ", 1)[1])
    assert resolved.pretrain.queue_size == windows // 4


@pytest.fixture(scope="module")
def shortcut_corpus(tmp_path_factory):
    dest = tmp_path_factory.mktemp("shortcut") / "c40.zarr"
    synthesize(dest, SynthConfig(num_sequences=40, min_frames=300, max_frames=600, subjects=10),
               seed=3)
    return dest


def _diag(run, name: str) -> dict[int, float]:
    events = EventAccumulator(str(run / "pretrain" / "events"))
    events.Reload()
    return {e.step: e.value for e in events.Scalars(f"diag/{name}")}


@pytest.mark.slow
@pytest.mark.isa
def test_time_mean_negatives_are_solved_by_position_and_sampled_ones_are_not(shortcut_corpus,
                                                                              tmp_path):
    """METHOD.md section 8 on a small corpus, 60 steps. Content-free top-1 figures (noise: both
    views and the negatives made of noise; other video: the positive from another video against
    the real queue), measured here (AVX2, 2 cores): with time-mean negatives about 0.95 / 0.85 at
    every checkpoint, and the run warns once; with one sampled snippet per video the noise figure
    stays at 0.02-0.08 (chance 0.008; a pure position code would score 1/16), and nothing is said.

    The other-video figure of the sampled arm wanders: over seeds 0-7, each with ATen's batch
    norm and with the fused statistics (2026-12-07), it read 0.03-0.40 at step 60 with a mean of
    0.14, and went as high as 0.61 at one checkpoint of one run, then back to 0.16. So the claim
    is judged on the median of its three checkpoints (0.06-0.26 in those 16 runs), not on one.

    The key momentum is held at 0.999 from the first step: a low starting momentum (the demo's
    ramp from 0.99) adds a second content-free cue to the other-video figure, a positive fresher
    than the queue's stale keys (sampled arm: 0.46 at step 60 with the ramp); the noise figure,
    whose negatives are as fresh as its positive, stays at 0.06 with the ramp."""
    figures, other = {}, {}
    for negatives in ("mean", "sampled"):
        run = tmp_path / negatives
        T.run_train([
            "--set", f"data.corpus={shortcut_corpus}", "--set", "data.split=null",
            "--set", "data.loader.num_workers=0", "--set", "data.loader.batch_size=16",
            "--set", "data.loader.raw_length=96", "--set", "data.loader.augment.out_len=64",
            "--set", "data.engine=torch", "--set", "model.width=0.125",
            "--set", "pretrain.queue_size=512", "--set", "pretrain.num_snippets=8",
            "--set", f"pretrain.snippet_negatives={negatives}",
            "--set", "pretrain.diagnostics_every=20", "--set", "optim.max_steps=60",
            "--set", "optim.epochs=100", "--set", "optim.schedule=constant",
            "--set", "optim.warmup_epochs=0", "--set", "run.threads=2",
            "--set", "pretrain.momentum=0.999", "--set", "pretrain.momentum_start=null",
            "--set", "probe.corpus=null", "--set", "run.stage=pretrain", "--run-dir", str(run),
        ], cwd=tmp_path)
        figures[negatives] = _diag(run, "snippet_top1_noise")
        other[negatives] = _diag(run, "snippet_top1_other_video")
        warnings = (run / "train.log").read_text().count("solved without content")
        assert warnings == (1 if negatives == "mean" else 0), negatives
    assert sorted(figures["mean"]) == [20, 40, 60]
    # 128 snippets a figure: steps of 0.008; the margins are many steps wide on either side.
    assert figures["mean"][60] > 0.3 and other["mean"][60] > 0.5, (figures, other)
    assert figures["sampled"][60] < 0.1, (figures, other)
    assert statistics.median(other["sampled"].values()) < 0.3, (figures, other)
