"""What a surviving rank says about a dead or hung peer (the runs that produce these messages
are in ``test_train_faults.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

from sscl import peers


def test_the_survivors_messages_name_the_dead_rank(monkeypatch):
    """Both messages a surviving rank can print, with rank 1's process gone and rank 2's alive
    (the peer table as gathered at start)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = peers._host_hash()
    monkeypatch.setattr(peers, "_peers", {"rank": 0, "timeout_s": 7.0, "table": [
        (os.getpid(), here), (gone.pid, here), (os.getppid(), here)]})
    msg = peers.collective_failure(RuntimeError("[gloo/pair.cc:537] Read error: Connection "
                                                  "reset by peer"))
    assert msg.startswith("rank 0 lost contact") and f"rank(s) 1 died (process {gone.pid}" in msg
    assert "run.dist_timeout_s=7 s" in msg
    assert "rank(s) 1 died" in peers.terminated_message()
    assert peers.collective_failure(RuntimeError("CUDA out of memory")) is None
    assert peers.collective_failure(ValueError("gloo")) is None
    monkeypatch.setattr(peers, "_peers", {"rank": 1, "timeout_s": 7.0, "table": [
        (os.getppid(), here), (os.getpid(), here)]})
    msg = peers.collective_failure(RuntimeError("Timed out waiting 7000ms for recv"))
    assert "rank(s) 0 did not answer" in msg
    assert "by the launcher or the scheduler" in peers.terminated_message()
