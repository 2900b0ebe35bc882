"""Helpers of the trainer's subprocess tests.

Every run is a real ``sscl/train.py`` subprocess on a tiny model (width 0.125, 32-frame views,
4 snippets) so the tests stay within their CI budget; the corpus is ``conftest.tiny_corpus``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "sscl" / "train.py"


def tiny_args(corpus: Path, *extra: str) -> list[str]:
    return [
        "--set", f"data.corpus={corpus}", "--set", "data.loader.num_workers=0",
        "--set", "data.loader.batch_size=8", "--set", "data.loader.raw_length=48",
        "--set", "data.loader.augment.out_len=32", "--set", "data.engine=torch",
        "--set", "model.width=0.125", "--set", "pretrain.queue_size=40",
        "--set", "pretrain.num_snippets=4", "--set", "optim.epochs=3",
        "--set", "run.threads=1", "--set", "probe.corpus=null", "--set", "run.log_every=1",
        "--set", "run.stage=pretrain", *extra,
    ]


def run_train(args: list[str], cwd: Path, env: dict | None = None, launcher: list[str] | None
              = None, check: bool = True, timeout: float = 300, preexec_fn=None
              ) -> subprocess.CompletedProcess:
    cmd = (launcher or [sys.executable]) + [str(TRAIN), *args]
    r = subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                       text=True, timeout=timeout, preexec_fn=preexec_fn)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}\n{r.stdout[-3000:]}\n"
                             f"{r.stderr[-5000:]}")
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
