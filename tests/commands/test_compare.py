"""``sscl compare``: runs paired by seed, arms told apart by their config, refusals named."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from sscl import presets
from sscl.cli import main
from sscl.commands.compare import compare, table
from sscl.config import Config
from sscl.errors import ConfigError


def make_run(root: Path, name: str, seed: int, value: float, knn: float | None = None,
             **changes) -> Path:
    """A run directory with a config.yaml and an evaluation report (no training)."""
    cfg = presets.resolve("demo", [f"run.seed={seed}", f"run.name={name}",
                                   *[f"{k}={v}" for k, v in changes.items()]])
    run = root / f"{name}-s{seed}"
    (run / "eval" / "demo-test").mkdir(parents=True)
    (run / "config.yaml").write_text(presets.dumps(cfg))
    (run / "eval" / "demo-test" / "report.json").write_text(
        json.dumps({"metrics": {"average_mAP": value, "frame_accuracy": 50.0}}))
    if knn is not None:
        (run / "pretrain").mkdir()
        (run / "pretrain" / "done.json").write_text(json.dumps({"knn_last": knn}))
    return run


def test_pairs_by_seed_and_reports_mean_sd_and_signs(tmp_path, capsys):
    runs = []
    for seed, (a, b, c) in enumerate([(0.40, 0.50, 0.30), (0.42, 0.49, 0.45), (0.38, 0.52, 0.36)]):
        runs.append(make_run(tmp_path, "mean", seed, a, **{"pretrain.snippet_negatives": "mean"}))
        runs.append(make_run(tmp_path, "sampled", seed, b,
                             **{"pretrain.snippet_negatives": "sampled"}))
        runs.append(make_run(tmp_path, "ref", seed, c,
                             **{"pretrain.snippet_negatives": "reference"}))
    doc = compare([str(r) for r in runs])
    assert doc["compared_keys"] == ["pretrain.snippet_negatives"]
    assert doc["arms"][0]["label"] == "pretrain.snippet_negatives=mean"  # first seen: control
    sampled, ref = doc["differences"]
    assert sampled["per_seed"] == pytest.approx([0.10, 0.07, 0.14])
    assert sampled["mean"] == pytest.approx(0.10333333)
    assert sampled["sd"] == pytest.approx(0.0351188, abs=1e-6)  # n - 1 in the denominator
    assert sampled["positive"] == 3 and ref["positive"] == 1 and ref["n"] == 3
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out
    assert "+0.1033 +- 0.0351 (3/3 positive)" in out and "| 2 | 0.3800 |" in out
    assert main(["compare", "--json", *map(str, runs)]) == 0
    assert json.loads(capsys.readouterr().out)["seeds"] == [0, 1, 2]


def test_settings_that_change_no_result_do_not_split_an_arm(tmp_path):
    runs = [make_run(tmp_path, "a", 0, 0.4), make_run(tmp_path, "b", 0, 0.5, **{
                "finetune.label_fraction": 0.2}),
            make_run(tmp_path, "c", 1, 0.41, **{"run.threads": 1, "data.loader.num_workers": 0}),
            make_run(tmp_path, "d", 1, 0.52, **{"finetune.label_fraction": 0.2,
                                                "evaluate.timelines": 0})]
    doc = compare([str(r) for r in runs])
    assert doc["compared_keys"] == ["finetune.label_fraction"]
    assert doc["differences"][0]["per_seed"] == pytest.approx([0.1, 0.11])


def test_refusals_name_the_problem(tmp_path, capsys):
    a0, a1 = make_run(tmp_path, "a", 0, 0.4), make_run(tmp_path, "a", 1, 0.4)
    b0 = make_run(tmp_path, "b", 0, 0.5, **{"optim.lr": 0.2})
    c0 = make_run(tmp_path, "c", 0, 0.5, **{"optim.lr": 0.2, "model.width": 0.5})
    b1 = make_run(tmp_path, "b", 1, 0.5, **{"optim.lr": 0.2})
    partial = compare([str(a0), str(a1), str(b0)])  # an unfinished arm pairs on what it has
    assert partial["differences"][0]["seeds"] == [0] and partial["unpaired"] == [str(a1)]
    assert f"unpaired, left out of the differences (1): {a1}" in table(partial)
    other_seed = make_run(tmp_path / "y", "b", 5, 0.5, **{"optim.lr": 0.2})
    with pytest.raises(ConfigError, match=r"arm optim.lr=0.2 has seeds \[5\], the control "
                                          r"\[0, 1\]: no seed to pair on"):
        compare([str(a0), str(a1), str(other_seed)])
    with pytest.raises(ConfigError, match="differ in 2 keys .*model.width.*optim.lr"):
        compare([str(a0), str(c0)])
    with pytest.raises(ConfigError, match="differ in model.width besides the compared optim.lr"):
        compare([str(a0), str(c0)], keys=["optim.lr"])
    assert compare([str(a0), str(c0)], keys=["optim", "model"])["differences"][0]["n"] == 1
    with pytest.raises(ConfigError, match="same config: nothing to compare"):
        compare([str(a0), str(a1)])
    dup = make_run(tmp_path / "x", "a", 0, 0.3)
    with pytest.raises(ConfigError, match="two runs of one arm have the same seed"):
        compare([str(a0), str(dup), str(b0)])
    with pytest.raises(ConfigError, match="no kNN top-1"):
        compare([str(a0), str(b0)], metric="knn")
    with pytest.raises(ConfigError, match="no metric 'f1_50'; numbers there: average_mAP"):
        compare([str(a0), str(b0)], metric="f1_50")
    assert main(["compare", str(a0), str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert compare([str(a0), str(b0), str(a1), str(b1)])["seeds"] == [0, 1]


def test_finetuning_runs_are_told_apart_by_how_their_encoder_was_pretrained(tmp_path):
    """Two pretraining arms, each finetuned per seed from its own encoder (finetune.encoder=PATH):
    the finetuning configs are equal but for the encoder path; the encoder.json tells the arms
    apart."""
    runs = []
    for seed in (0, 1):
        for arm, neg in (("m", "mean"), ("s", "sampled")):
            enc = tmp_path / f"pre-{arm}-{seed}" / "pretrain" / "encoder.safetensors"
            enc.parent.mkdir(parents=True)
            pre = replace(Config().pretrain, snippet_negatives=neg)
            enc.with_suffix(".json").write_text(json.dumps(
                {"pretrain": presets.to_dict(pre), "seed": seed, "corpus": "demo"}))
            runs.append(make_run(tmp_path, f"ft-{arm}", seed, 0.4 + 0.1 * (arm == "s"),
                                 **{"finetune.encoder": str(enc)}))
    doc = compare([str(r) for r in runs])
    assert doc["compared_keys"] == ["encoder.pretrain.snippet_negatives"]
    assert doc["differences"][0]["per_seed"] == pytest.approx([0.1, 0.1])
    scratch = [make_run(tmp_path, "scratch", s, 0.3, **{"finetune.protocol": "scratch"})
               for s in (0, 1)]
    with pytest.raises(ConfigError, match="name the compared ones with --key"):
        compare([*map(str, scratch), *map(str, runs[::2])])
    doc = compare([*map(str, scratch), *map(str, runs[::2])], keys=["finetune.protocol",
                                                                     "encoder"])
    assert doc["differences"][0]["per_seed"] == pytest.approx([0.1, 0.1])
    # Labels name what tells the arms apart: the scratch arm lacks the encoder section.
    three = compare([*map(str, scratch), *map(str, runs)], keys=["finetune.protocol", "encoder"])
    assert [a["label"] for a in three["arms"]] == [
        "finetune.protocol=scratch, encoder=-",
        "encoder.pretrain.snippet_negatives=mean, finetune.protocol=full",
        "encoder.pretrain.snippet_negatives=sampled, finetune.protocol=full"]
