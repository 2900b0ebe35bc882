"""The real-data presets of docs/RESULTS.md (``kard_knn``, ``msrc12_localize``): they resolve,
state their convert command, and run 2 steps on the real files (KARD whole, a few MSRC-12
recordings of both splits) through ``python sscl/train.py``. Skipped without ../shared/data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sscl.presets import resolve

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "sscl" / "train.py"
SMALL = ["optim.max_steps=2", "finetune.optim.max_steps=2", "data.loader.batch_size=8",
         "data.loader.num_workers=0", "data.engine=torch", "finetune.num_workers=0",
         "finetune.batch_size=2", "finetune.embed_dim=32", "evaluate.timelines=1",
         "probe.max_clips=40", "run.threads=1"]


def _header(name: str) -> str:
    text = (ROOT / "sscl" / "configs" / f"{name}.yaml").read_text()
    return "\n".join(line for line in text.splitlines() if line.startswith("#"))


def _train(preset: str, run_dir: Path, corpus: Path, extra: list[str] = ()) -> str:
    args = [sys.executable, str(TRAIN), "--config", preset, "--run-dir", str(run_dir),
            "--set", f"data.corpus={corpus}", "--set", f"probe.corpus={corpus}"]
    for item in SMALL + list(extra):
        args += ["--set", item]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, f"{preset}: {proc.stderr[-3000:]}"
    return proc.stdout


def test_presets_state_how_to_convert_and_the_protocol():
    for name, fmt in (("kard_knn", "kard"), ("msrc12_localize", "msrc12")):
        assert f"sscl data convert {fmt}" in _header(name)
        cfg = resolve(name)
        assert cfg.data.split == "xsub:train"  # pretraining never sees the test persons
    assert resolve("kard_knn").run.stage == "pretrain"
    ft = resolve("msrc12_localize").finetune
    assert (ft.label_fraction, ft.protocol, ft.test_split) == (0.2, "full", "xsub:test")


@pytest.mark.slow
def test_kard_knn_smoke(shared_dataset, tmp_path):
    from sscl.cli import main

    corpus = tmp_path / "kard.zarr"
    assert main(["data", "convert", "kard", str(shared_dataset("kard")), str(corpus),
                 "--quiet"]) == 0
    out = _train("kard_knn", tmp_path / "run", corpus)
    assert "final: pretrain step 2" in out and "random init" in out


@pytest.mark.slow
def test_msrc12_localize_smoke(shared_dataset, tmp_path):
    from sscl.cli import main

    src = tmp_path / "msrc12"
    src.mkdir()
    # two training persons (odd) and one test person (even), different gestures
    for stem in ("P1_1_10_p19", "P1_1_1_p19", "P1_1_2_p19", "P1_1_10_p06", "P1_1_1_p06"):
        for suffix in (".csv.xz", ".tagstream"):
            found = list((shared_dataset("msrc12") / "data").glob(stem + suffix))
            assert found, f"{stem}{suffix} not in ../shared/data/msrc12/data"
            shutil.copy(found[0], src / found[0].name)
    corpus = tmp_path / "msrc12.zarr"
    assert main(["data", "convert", "msrc12", str(src), str(corpus), "--quiet"]) == 0
    out = _train("msrc12_localize", tmp_path / "run", corpus, ["finetune.label_fraction=1.0",
                                                               "finetune.val_fraction=0.0"])
    assert "average mAP" in out
