"""Checkpoint files: safetensors + JSON round trips, atomic directories, damage is named."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from sscl import checkpoint as ckpt
from sscl.errors import CheckpointError


def _write(root, step, model_state, opt_state, extra=None):
    tmp = ckpt.begin(root, step)
    ckpt.write_rank_files(tmp, 0)
    ckpt.write_main(tmp, model_state, opt_state, {"step": step, **(extra or {})})
    ckpt.commit(tmp, ckpt.step_dir(root, step), keep_last=2)


def _model_and_opt():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    m(torch.randn(5, 4)).sum().backward()
    opt.step()
    return m, opt


def test_round_trip_model_optimizer_rng(tmp_path):
    m, opt = _model_and_opt()
    torch.manual_seed(123)
    _write(tmp_path, 7, m.state_dict(), opt.state_dict())
    expected_draw = torch.rand(3)
    loaded = ckpt.load(ckpt.step_dir(tmp_path, 7))
    for k, v in m.state_dict().items():
        assert torch.equal(loaded.model[k], v)
    m2, opt2 = _model_and_opt()
    opt2.load_state_dict(loaded.optimizer)
    before, after = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert sorted(before) == sorted(after)
    for idx, a in before.items():
        for k in a:
            assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(after[idx][k]))
    torch.manual_seed(999)
    ckpt.set_rng_state(*loaded.rng)
    assert torch.equal(torch.rand(3), expected_draw)
    assert loaded.state["step"] == 7


def test_keep_last_and_latest(tmp_path):
    m, opt = _model_and_opt()
    for s in (1, 2, 3):
        _write(tmp_path, s, m.state_dict(), opt.state_dict())
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    # Damage the newest: latest() falls back to the previous one and says why.
    (ckpt.step_dir(tmp_path, 3) / "model.safetensors").write_bytes(b"garbage")
    got, notes = ckpt.latest(tmp_path)
    assert got.state["step"] == 2
    assert len(notes) == 1 and "damaged" in notes[0] and "step-00000003" in notes[0]
    os.remove(ckpt.step_dir(tmp_path, 2) / "state.json")
    with pytest.raises(CheckpointError, match="incomplete.*state.json"):
        ckpt.load(ckpt.step_dir(tmp_path, 2))


@pytest.mark.slow
@pytest.mark.parametrize("point", ckpt.FAULT_POINTS)
def test_a_kill_during_the_write_leaves_the_previous_checkpoint(tmp_path, point):
    m, opt = _model_and_opt()
    _write(tmp_path, 1, m.state_dict(), opt.state_dict())
    script = textwrap.dedent(f"""
        import torch
        from sscl import checkpoint as ckpt
        m = torch.nn.Linear(4, 3)
        tmp = ckpt.begin({str(tmp_path)!r}, 2)
        ckpt.write_rank_files(tmp, 0)
        ckpt.write_main(tmp, m.state_dict(), None, {{"step": 2}})
        ckpt.commit(tmp, ckpt.step_dir({str(tmp_path)!r}, 2), keep_last=2)
    """)
    r = subprocess.run([sys.executable, "-c", script], env={**os.environ, "SSCL_FAULT": point})
    assert r.returncode == -9
    got, notes = ckpt.latest(tmp_path)
    assert got.state["step"] == 1 and not notes
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000001"]
    assert ckpt.stale_temporaries(tmp_path)  # the unfinished one is visible, never picked


def test_nothing_is_unpickled(tmp_path):
    m, opt = _model_and_opt()
    _write(tmp_path, 1, m.state_dict(), opt.state_dict())
    names = sorted(p.name for p in ckpt.step_dir(tmp_path, 1).iterdir())
    assert names == ["model.safetensors", "optimizer.safetensors", "rng-rank0.safetensors",
                     "state.json"]
