"""bench/gpu_run.py on the CPU, as the lent GPU machine would run it: without zarr and DALI.

The script's every section (the gpu tests' collection, the trainer rows of both settings, both
precisions, both stacks, device-side augmentation) runs at tiny shapes and must finish without
an error; a script that only passes where no GPU is would prove nothing, so without CUDA and
without ``--device cpu`` it must refuse.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sscl.kernels import graph_conv_path

BENCH = Path(__file__).resolve().parent
# What the lent machine lacks (its image: /work/.library/device/KINDS.md); imported anyway, they
# fail here as they would there.
BLOCK = '''
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "zarr" or name.startswith("nvidia.dali"):
            raise ImportError(f"{name} is not installed on the lent GPU machine")
sys.meta_path.insert(0, _Absent())
'''


def _env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK)  # inherited by the pytest child too
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(BENCH.parent)]),
            "OPENBLAS_NUM_THREADS": "1"}


@pytest.mark.slow
def test_cpu_run_covers_every_section_without_zarr_or_dali(tmp_path):
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, str(BENCH / "gpu_run.py"), "--device", "cpu", "--out",
                        str(out)], env=_env(tmp_path), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "gpu_report.json").read_text())
    assert report["errors"] == []
    assert "skipped" in report["cuda_tests"]["summary"], report["cuda_tests"]
    assert report["cuda_tests"]["rc"] == 0
    rows = {(x["setting"], x["precision"], x["stack"]): x for x in report["train"]}
    assert set(rows) == {(s, p, k) for s in ("tiny", "tiny_paper") for p in ("fp32", "bf16")
                         for k in ("ours", "reference")}
    for x in rows.values():
        assert x["steps"] == 6 and x["samples_per_s"] > 0 and math.isfinite(x["final_loss"])
        assert 0 <= x["data_wait"] < 1
        assert x["graph_conv"] == (graph_conv_path("cpu") if x["stack"] == "ours"
                                   else "einsum reference")
    (aug,) = report["augment"]
    assert aug["augment_share"] > 0 and aug["samples_per_s"] > 0
    (op,) = report["ops"]
    assert op["fused_ms"] > 0 and op["ratio"] > 0 and op["best_unfused"] != "fused"
    md = (out / "gpu_report.md").read_text()
    assert "| tiny_paper | fp32 | ours |" in md and "device-side augmentation" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_it_refuses_instead_of_passing(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH / "gpu_run.py"), "--out", str(tmp_path)],
                       env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "no CUDA device" in r.stderr and "--device cpu" in r.stderr


@pytest.mark.slow
def test_a_spent_budget_records_every_unstarted_row_and_fails(tmp_path):
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, str(BENCH / "gpu_run.py"), "--device", "cpu",
                        "--budget-s", "0.001", "--out", str(out)], env=_env(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads((out / "gpu_report.json").read_text())
    assert report["train"] == [] and report["ops"] == []
    where = [e["where"] for e in report["errors"]]
    assert "tiny/fp32/ours" in where and "ops/torch.float32" in where
    assert all("budget is spent" in e["error"] for e in report["errors"])
