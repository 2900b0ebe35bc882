"""The entry points make idle OpenMP threads sleep before torch loads its runtime.

Spinning threads on a machine whose cores other jobs share cost the demo step a third of its
speed (bench/README.md "Threads under contention"); the setting only works when it is in the
environment before torch's OpenMP runtime starts, so these tests record the environment at the
moment ``torch`` is first imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = '''
import os, sys
class _Probe:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "SEEN" not in os.environ:
            os.environ["SEEN"] = "1"
            with open(os.environ["PROBE_OUT"], "w") as f:
                f.write(os.environ.get("OMP_WAIT_POLICY", "<unset>"))
        return None
sys.meta_path.insert(0, _Probe())
'''


def _policy_when_torch_loads(tmp_path: Path, argv: list[str], user: str | None) -> str:
    (tmp_path / "sitecustomize.py").write_text(HOOK)
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env |= {"PYTHONPATH": os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]),
            "PROBE_OUT": str(tmp_path / "policy.txt")}
    if user is not None:
        env["OMP_WAIT_POLICY"] = user
    r = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return (tmp_path / "policy.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ["sscl/train.py", "--help"],
    ["-c", "import sscl.cli, torch"],  # the console script's order: cli first, commands later
], ids=["train.py", "cli"])
def test_passive_before_torch_loads_and_a_user_choice_is_kept(tmp_path, argv):
    assert _policy_when_torch_loads(tmp_path, argv, None) == "PASSIVE"
    (tmp_path / "user").mkdir()
    assert _policy_when_torch_loads(tmp_path / "user", argv, "ACTIVE") == "ACTIVE"
