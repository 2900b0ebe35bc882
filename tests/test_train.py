"""The main job end to end on a tiny corpus: entry points, run directory, kill and exact resume,
two processes, two "machines" on localhost, the non-finite guard.

Every run here is a real `sscl/train.py` subprocess on a tiny model (width 0.125, 32-frame views,
4 snippets) so these stay within the CI budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers import trainrun as T

ROOT, TRAIN, tiny_args, run_train = T.ROOT, T.TRAIN, T.tiny_args, T.run_train
# Every test here starts sscl/train.py in a subprocess.
pytestmark = [pytest.mark.slow]

_free_port = T.free_port


def final_weights(run_dir: Path) -> dict:
    ckpts = sorted((run_dir / "pretrain" / "checkpoints").glob("step-*"))
    return load_file(str(ckpts[-1] / "model.safetensors"))


def test_help_lists_presets_from_a_script_path(tmp_path):
    r = run_train(["--help"], cwd=tmp_path)
    for name in ("demo", "paper_pretrain", "aimclr_stgcn"):
        assert name in r.stdout
    assert "--resume" in r.stdout and "--set" in r.stdout


def test_no_sscl_module_shadows_the_standard_library():
    names = {p.stem for p in (ROOT / "sscl").iterdir() if p.suffix == ".py" or p.is_dir()}
    assert not names & set(sys.stdlib_module_names), names & set(sys.stdlib_module_names)


def test_pretrain_writes_a_run_directory_and_refuses_to_overwrite(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    # Gradient accumulation over 2 micro-batches and clipping on: 7 batches an epoch make
    # 4 optimizer steps (the last one a single micro-batch), 12 in 3 epochs.
    r = run_train(tiny_args(tiny_corpus, "--run-dir", str(run), "--set", "optim.accumulate=2",
                            "--set", "optim.clip_norm=1.0"), cwd=tmp_path)
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("final: pretrain step ")
    assert (run / "config.yaml").is_file() and (run / "train.log").is_file()
    assert (run / "pretrain" / "encoder.safetensors").is_file()
    assert any((run / "pretrain" / "events").iterdir())
    state = json.loads((run / "pretrain" / "done.json").read_text())
    assert state["step"] == 12
    log = (run / "train.log").read_text()
    assert "torch thread(s)" in log and "precision fp32" in log
    again = run_train(tiny_args(tiny_corpus, "--run-dir", str(run)), cwd=tmp_path, check=False)
    assert again.returncode == 2
    assert "--resume auto" in again.stderr and "--overwrite" in again.stderr
    # An unknown key fails before anything runs and lists the valid ones.
    bad = run_train(tiny_args(tiny_corpus, "--set", "optim.lrr=1"), cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "valid keys of optim" in bad.stderr


@pytest.mark.isa
def test_killed_runs_resume_bitwise_identical(tiny_corpus, tmp_path):
    """SIGKILL at 5 seeded steps (mid-epoch included), `--resume auto` each time: the final
    weights, queues and optimizer state equal an uninterrupted run's bit for bit."""
    common = tiny_args(tiny_corpus, "--set", "run.checkpoint_every_steps=2",
                       "--set", "run.checkpoint_every_s=100000")
    straight = tmp_path / "straight"
    run_train([*common, "--run-dir", str(straight)], cwd=tmp_path)
    total = json.loads((straight / "pretrain" / "done.json").read_text())["step"]
    import numpy as np

    kills = sorted(np.random.default_rng(7).choice(np.arange(1, total), size=5, replace=False))
    killed = tmp_path / "killed"
    resume: list[str] = []
    for k in kills:
        r = run_train([*common, "--run-dir", str(killed), *resume], cwd=tmp_path,
                      env={"SSCL_KILL_AT_STEP": str(k)}, check=False)
        assert r.returncode == -9, r.stderr[-2000:]
        resume = ["--resume", "auto"]
    r = run_train([*common, "--run-dir", str(killed), *resume], cwd=tmp_path)
    assert "resumed from" in r.stderr
    a, b = final_weights(straight), final_weights(killed)
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), key


def test_a_kill_inside_a_checkpoint_write_keeps_the_previous_one(tiny_corpus, tmp_path):
    common = tiny_args(tiny_corpus, "--set", "run.checkpoint_every_steps=3",
                       "--set", "run.checkpoint_every_s=100000")
    run = tmp_path / "run"
    # The first checkpoint (step 3) is written; the second (step 6) dies after its weights.
    r = run_train([*common, "--run-dir", str(run)], cwd=tmp_path,
                  env={"SSCL_FAULT": "after_weights", "SSCL_FAULT_SKIP": "1"}, check=False)
    assert r.returncode == -9
    names = [p.name for p in (run / "pretrain" / "checkpoints").iterdir()]
    assert "step-00000003" in names and "step-00000006" not in names
    r = run_train([*common, "--run-dir", str(run), "--resume", "auto"], cwd=tmp_path)
    assert "step-00000003" in r.stderr and "removing an unfinished checkpoint" in r.stderr


def test_a_changed_model_is_refused_on_resume(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    common = tiny_args(tiny_corpus, "--set", "optim.max_steps=2")
    run_train([*common, "--run-dir", str(run)], cwd=tmp_path)
    (run / "pretrain" / "done.json").unlink()
    r = run_train([*common, "--set", "model.width=0.25", "--run-dir", str(run),
                   "--resume", "auto"], cwd=tmp_path, check=False)
    assert r.returncode == 2
    assert "model.width: checkpoint 0.125, now 0.25" in r.stderr


def test_nan_loss_trips_the_guard(tiny_corpus, tmp_path):
    r = run_train(tiny_args(tiny_corpus, "--set", "optim.lr=1e30", "--set", "run.max_nonfinite=2",
                            "--run-dir", str(tmp_path / "run")), cwd=tmp_path, check=False)
    assert r.returncode == 2
    assert "non-finite" in r.stderr and "run.max_nonfinite=2" in r.stderr


@pytest.mark.isa
def test_two_processes_on_one_cpu_match_one_process(tiny_corpus, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` with run.cpu: two ranks of batch 4 train
    the same model as one process of batch 8 with the same BN grouping (bn_splits=2)."""
    common = tiny_args(tiny_corpus, "--set", "optim.max_steps=3", "--set", "run.cpu=true",
                       "--set", "pretrain.bn_splits=1")
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", "2", "--main_process_port", str(_free_port())]
    two = tmp_path / "two"
    r = run_train([*common, "--set", "data.loader.batch_size=4", "--run-dir", str(two)],
                  cwd=tmp_path, launcher=launcher)
    assert "2 process(es)" in r.stderr
    one = tmp_path / "one"
    run_train([*common, "--set", "pretrain.bn_splits=2", "--run-dir", str(one)], cwd=tmp_path)
    a, b = final_weights(one), final_weights(two)
    for key in a:
        if "queue" in key:
            assert (a[key] - b[key]).abs().max() < 1e-4, key


def test_accelerate_cpu_flag_with_two_processes_is_detected(tiny_corpus, tmp_path):
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes",
                "2", "--main_process_port", str(_free_port())]
    r = run_train(tiny_args(tiny_corpus, "--set", "optim.max_steps=1", "--run-dir",
                            str(tmp_path / "r")), cwd=tmp_path, launcher=launcher)
    assert "started ONE process" in r.stderr and "--multi_gpu --num_processes" in r.stderr


@pytest.mark.isa
def test_two_machines_on_localhost_train_one_model(tiny_corpus, tmp_path):
    port = str(_free_port())
    args = tiny_args(tiny_corpus, "--set", "optim.max_steps=2", "--set", "run.cpu=true",
                     "--run-dir", str(tmp_path / "run"))
    procs = []
    for rank in (0, 1):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
               "--main_process_ip", "127.0.0.1", "--main_process_port", port,
               str(TRAIN), *args]
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
    assert "2 process(es)" in outs[0][1]
    assert outs[0][0].strip().splitlines()[-1].startswith("final: pretrain step 2")
