"""Everything a lent GPU should measure, in one call that fits its budget.

A GPU is lent rarely (at most 15 minutes in all, start-up included; no package registry; at most
64 MiB of files come along), so this one script is prepared beforehand and proven on the CPU:

1. ``env``: card, torch and CUDA versions, the graph convolution's path on this device.
2. ``cuda_tests``: every ``gpu``-marked test (fused graph_conv parity against its oracle, the
   localizer under CUDA autocast, device-side augmentation), in a subprocess with a time limit
   (the first one builds the CUDA extension). On a CPU they are collected and skipped, which
   shows that their imports need nothing the lent machine lacks.
3. ``train``: the trainer itself (``sscl.engine.fit``: Accelerate, autocast, clipping, the
   optimizer, the key encoder's EMA) for ``--steps`` steps per row, at two settings:

   - ``demo``: the demo preset as the main job runs it (quarter-width ST-GCN, 50-frame views,
     batch 64, snippet branch with sampled negatives, queues 408 = its ``auto`` value on the
     demo corpus);
   - ``paper``: the paper preset (full-width AGCN, RVTCLR + snippet loss, 400-frame views whose
     halves give 200-frame clips, queues 32768) at batch 16;

   in bf16 autocast and in fp32, for three stacks on the same GPU: ``ours`` (the models' default,
   ``graph_conv_auto``: cuDNN/cuBLAS on CUDA), ``fused`` (the same with the fused CUDA kernel,
   ``SSCL_GRAPH_CONV_CUDA=fused``: the kernel against cuDNN/cuBLAS inside a whole step) and
   ``reference`` (demo: the SkeletonCLR-lineage einsum ST-GCN of ``reference_stgcn.py``; paper:
   the AGCN as plain PyTorch, ``bench_backbone.plain_pytorch``). Each row: samples/s over the
   steps after a warm-up, the data-wait share, peak GPU memory, the final loss.
4. ``augment``: the demo step fed views whose rotation/shear and noise are made on the GPU by
   ``sscl.data.gpu_augment`` (from crops kept on the device) against pre-made host views: what
   the device-side augmentation costs inside a step.
5. ``ops``: the fused graph convolution alone (forward + backward) against the fastest unfused
   formulation at the AGCN layer shapes, fp32 and bf16 (last: the budget may cut it).

What stays unmeasured: zarr and DALI are not installed on the lent machine, so the corpus reader
and the DALI engine cannot run there; every row is fed in-memory batches (pinned host tensors
copied each step, as the loader's would be). The report says so.

The JSON (``gpu_report.json``) and markdown (``gpu_report.md``) reports are rewritten atomically
after every result, so a run cut short still returns what it measured. ``--smoke`` (at most a
minute: demo rows only, 20 steps, no extension build, no tests) shows that the script works on
the device before the full run spends its time.

Run on a GPU (the lent machine's image has torch, accelerate, numba, tensorboard, safetensors,
pytest and setuptools; sscl itself is installed editable, offline, in seconds):

    python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . &&
        PYTHONUNBUFFERED=1 python3 bench/gpu_run.py --out "$OUT"   # full, about 5 minutes
    ... python3 bench/gpu_run.py --smoke --out "$OUT"               # about 1 minute

On a CPU:      python bench/gpu_run.py --device cpu --out DIR (tiny shapes, same code paths;
               CI runs it through bench/test_gpu_run.py and fails on any error)

Without CUDA and without ``--device cpu`` the script refuses (exit 2): a run that exits 0
without a GPU must not pass for a GPU check.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import torch
from accelerate.state import AcceleratorState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_backbone import plain_pytorch  # noqa: E402
from bench_graph_conv import agg_first, conv_first, forward_flops  # noqa: E402
from reference_stgcn import ReferenceSTGCN  # noqa: E402

from sscl import presets  # noqa: E402
from sscl.atomic import write_bytes_atomic  # noqa: E402
from sscl.config import Config  # noqa: E402
from sscl.contrastive import Pretrainer  # noqa: E402
from sscl.data import gpu_augment  # noqa: E402
from sscl.data.augment import params_for  # noqa: E402
from sscl.data.layouts import get_layout  # noqa: E402
from sscl.engine import Job, fit  # noqa: E402
from sscl.kernels import (  # noqa: E402
    graph_conv,
    graph_conv_mix_first,
    graph_conv_path,
    graph_conv_ref,
)
from sscl.kernels.graph_conv import CUDA_IMPL_ENV  # noqa: E402
from sscl.machine import make_accelerator  # noqa: E402
from sscl.models import build_backbone  # noqa: E402
from sscl.rundir import RunDir  # noqa: E402

T0 = time.perf_counter()
UNMEASURED = ("zarr and DALI are not installed on the lent GPU machine: the corpus reader and the "
              "DALI engine did not run there; every row is fed in-memory batches (pinned host "
              "tensors copied to the device each step, as the loader's batches are).")


@dataclass(frozen=True)
class Setting:
    """One training setting: a preset, its overrides, and the batches' shape."""

    name: str
    preset: str
    overrides: tuple[str, ...]
    layout: str
    persons: int


SETTINGS = {
    "demo": Setting("demo", "demo", ("pretrain.queue_size=408", "pretrain.snippet_queue_size=408"),
                    "ntu25", 1),
    "paper": Setting("paper", "paper_pretrain", ("data.loader.batch_size=16",), "ntu25", 2),
    # CPU proof: the demo's code paths at shapes that take seconds.
    "tiny": Setting("tiny", "demo", (
        "pretrain.queue_size=32", "pretrain.snippet_queue_size=32", "data.loader.batch_size=4",
        "data.loader.augment.out_len=24", "pretrain.num_snippets=4", "model.width=0.125"),
        "ntu25", 1),
    "tiny_paper": Setting("tiny_paper", "paper_pretrain", (
        "pretrain.queue_size=32", "pretrain.snippet_queue_size=32", "data.loader.batch_size=4",
        "data.loader.augment.out_len=64", "pretrain.num_snippets=4", "model.width=0.125"),
        "ntu25", 2),
}


class Report:
    """Results as they come, rewritten atomically (JSON and markdown) after each one."""

    def __init__(self, out: Path, mode: str) -> None:
        self.out = out
        self.data: dict = {"mode": mode, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "unmeasured": UNMEASURED, "env": {}, "cuda_tests": None,
                           "train": [], "augment": [], "ops": [], "errors": []}

    def save(self) -> None:
        self.data["elapsed_s"] = round(time.perf_counter() - T0, 1)
        write_bytes_atomic(self.out / "gpu_report.json",
                           json.dumps(self.data, indent=1).encode())
        write_bytes_atomic(self.out / "gpu_report.md", self.markdown().encode())

    def markdown(self) -> str:
        d = self.data
        env = ", ".join(f"{k} {v}" for k, v in d["env"].items())
        lines = [f"# gpu_run ({d['mode']}), {d['started']}, {d['elapsed_s']} s", "", env, "",
                 f"Not measured: {d['unmeasured']}", ""]
        tests = d["cuda_tests"]
        if tests is not None:
            lines += [f"CUDA tests: {tests['summary']} (rc {tests['rc']}, {tests['seconds']} s)",
                      ""]
        if d["train"]:
            lines += ["| setting | precision | stack | graph conv | samples/s | vs reference "
                      "| data wait | peak MiB | steps | final loss |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for r in d["train"]:
                ref = next((x for x in d["train"] if x["setting"] == r["setting"]
                            and x["precision"] == r["precision"] and x["stack"] == "reference"),
                           None)
                vs = f"{r['samples_per_s'] / ref['samples_per_s']:.2f}x" if ref else "-"
                peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
                lines.append(
                    f"| {r['setting']} | {r['precision']} | {r['stack']} | {r['graph_conv']} | "
                    f"{r['samples_per_s']:.1f} | {vs} | {r['data_wait']:.1%} | {peak} | "
                    f"{r['steps']} | {r['final_loss']:.4f} |")
            lines.append("")
        for r in d["augment"]:
            lines.append(f"device-side augmentation ({r['setting']}, {r['precision']}): "
                         f"{r['samples_per_s']:.1f} samples/s against {r['host_samples_per_s']:.1f}"
                         f" with pre-made host views ({r['ratio']:.2f}x), augmentation "
                         f"{r['augment_share']:.1%} of the step")
        if d["ops"]:
            lines += ["", "| op dtype | N,C->O,T | fused ms | best unfused | its ms | ratio | "
                      "fused TFLOP/s |", "|---|---|---|---|---|---|---|"]
            for r in d["ops"]:
                n, c, o, t = r["shape"]
                lines.append(f"| {r['dtype']} | {n},{c}->{o},{t} | {r['fused_ms']:.3f} | "
                             f"{r['best_unfused']} | {r['best_ms']:.3f} | {r['ratio']:.2f} | "
                             f"{r['fused_tflops']:.2f} |")
        for e in d["errors"]:
            lines += ["", f"ERROR in {e['where']}: {e['error']}"]
        return "\n".join(lines) + "\n"



class MemoryLoader:
    """The trainer's ``Loader`` over a few batches held in memory, timing its own waits.

    ``position`` counts global items, so the sampled-negative hash and RVTCLR's tempo draw see
    fresh items every step. With ``augment`` (a callable batch -> batch run on the device), the
    views are finished there each step, and that time counts as data wait.
    """

    def __init__(self, pool: list[dict[str, torch.Tensor]], steps: int,
                 augment: Callable[[dict], dict] | None = None) -> None:
        self.pool, self.steps, self.augment = pool, steps, augment
        self.batch = len(pool[0]["weight"])
        self.stamps: list[float] = []  # when the loop asked for batch i
        self.waits: list[float] = []  # seconds the loop waited for batch i
        self.aug_s: list[float] = []

    def num_steps(self, epoch: int) -> int:
        return self.steps

    def epoch(self, epoch: int, position: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        for i in range(position // self.batch, self.steps):
            t = time.perf_counter()
            self.stamps.append(t)
            batch = dict(self.pool[i % len(self.pool)])
            batch["position"] = torch.arange(i * self.batch, (i + 1) * self.batch)
            if self.augment is not None:
                a = time.perf_counter()
                batch = self.augment(batch)
                self.aug_s.append(time.perf_counter() - a)
            self.waits.append(time.perf_counter() - t)
            yield batch

    def rate(self, warmup: int) -> tuple[float, float, float]:
        """(samples/s, data-wait share, augmentation share) over the steps after ``warmup``."""
        n = len(self.stamps)
        if n - warmup < 2:
            raise RuntimeError(f"{n} steps are too few to time after {warmup} warm-up steps")
        span = self.stamps[-1] - self.stamps[warmup]
        steps = n - 1 - warmup
        wait = sum(self.waits[warmup:-1]) / span
        aug = sum(self.aug_s[warmup:-1]) / span if self.aug_s else 0.0
        return steps * self.batch / span, wait, aug


def config_of(setting: Setting, precision: str, steps: int, device: str) -> Config:
    return presets.resolve(setting.preset, [
        *setting.overrides, f"run.precision={precision}", f"optim.max_steps={steps}",
        "optim.epochs=1", f"run.cpu={'true' if device == 'cpu' else 'false'}",
        "run.checkpoint_every_s=1000000", "run.log_every=1000000", "probe.corpus=null",
        "run.threads=1" if device == "cpu" else "run.threads=auto"])


def host_pool(cfg: Config, setting: Setting, size: int, device: str
              ) -> list[dict[str, torch.Tensor]]:
    """Batches shaped as the loader's (views (B, 3, T, V, M) float32), pinned on a GPU host."""
    B, T = cfg.data.loader.batch_size, cfg.data.loader.augment.out_len
    V = get_layout(setting.layout).num_joints
    g = torch.Generator().manual_seed(0)
    pool = []
    for _ in range(size):
        b = {"query": 0.3 * torch.randn(B, 3, T, V, setting.persons, generator=g),
             "key": 0.3 * torch.randn(B, 3, T, V, setting.persons, generator=g),
             "weight": torch.ones(B)}
        if device == "cuda":
            b = {k: v.pin_memory() for k, v in b.items()}
        pool.append(b)
    return pool


def backbone_of(cfg: Config, setting: Setting, stack: str) -> torch.nn.Module:
    model = build_backbone(cfg.model, setting.layout, setting.persons)
    if stack != "reference":
        return model
    if cfg.model.backbone == "stgcn":
        return ReferenceSTGCN.like(model)
    return plain_pytorch(model)  # AGCN: the einsum graph convolution, ATen's batch norm


def train_row(setting: Setting, precision: str, stack: str, steps: int, device: str,
              workdir: Path, augment: bool = False) -> dict:
    """``steps`` trainer steps of one (setting, precision, stack); the row of the report."""
    t_row = time.perf_counter()
    cfg = config_of(setting, precision, steps, device)
    AcceleratorState._reset_state(reset_partial_state=True)  # a fresh Accelerator per row
    acc, resolved = make_accelerator(cfg)
    if resolved != {"bf16": "bf16", "fp32": "no"}[precision]:
        raise RuntimeError(f"asked for {precision}, the trainer resolved {resolved!r}")
    torch.manual_seed(0)
    with mock.patch.dict(os.environ):  # the fused CUDA kernel for this row only
        if stack == "fused":
            os.environ[CUDA_IMPL_ENV] = "fused"
        else:
            os.environ.pop(CUDA_IMPL_ENV, None)
        module = Pretrainer(cfg.pretrain, backbone_of(cfg, setting, stack))
        pool = host_pool(cfg, setting, 4, device)
        loader = MemoryLoader(pool, steps, device_augment(cfg, acc.device) if augment else None)
        run = RunDir(workdir / f"{setting.name}-{precision}-{stack}{'-aug' if augment else ''}")
        stage = run.pretrain
        stage.root.mkdir(parents=True, exist_ok=True)
        job = Job(name=f"{setting.name}/{precision}/{stack}", module=module, loader=loader,
                  batch_size=loader.batch, optim=cfg.optim, resume_fixed=())
        if acc.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        state = fit(cfg, job, stage, acc, resume=None)
        path = graph_conv_path(acc.device) if stack != "reference" else "einsum reference"
    peak = (torch.cuda.max_memory_allocated() / 2**20) if acc.device.type == "cuda" else None
    warmup = max(1, min(20, steps // 4))
    sps, wait, aug = loader.rate(warmup)
    if not math.isfinite(state.last_loss):
        raise RuntimeError(f"non-finite loss {state.last_loss} after {state.step} steps")
    return {"setting": setting.name, "precision": precision, "stack": stack, "graph_conv": path,
            "samples_per_s": sps, "data_wait": wait, "augment_share": aug, "peak_mib": peak,
            "steps": state.step, "final_loss": state.last_loss, "batch": loader.batch,
            "device": str(acc.device), "seconds": round(time.perf_counter() - t_row, 1)}


def device_augment(cfg: Config, device: torch.device) -> Callable[[dict], dict]:
    """Views finished on the device: the crops stay there, rotation/shear and noise per step."""
    aug = cfg.data.loader.augment
    resident: dict[int, dict[str, torch.Tensor]] = {}

    def finish(batch: dict) -> dict:
        key = id(batch["query"])
        if key not in resident:  # the crops, moved once (as a device-side pipeline keeps them)
            resident[key] = {n: batch[n].to(device) for n in ("query", "key")}
        crops = resident[key]
        p = params_for(cfg.run.seed, 0, batch["position"].numpy(), aug)
        out = dict(batch)
        for n, view in (("query", p.query), ("key", p.key)):
            x = crops[n]
            valid = torch.ones(x.shape[0], x.shape[2], x.shape[3], x.shape[4], dtype=torch.bool,
                               device=device)
            out[n] = gpu_augment.apply_view(x, valid, view)
        return out

    return finish


OP_SHAPES = [(16, 64, 64, 300), (64, 64, 64, 64), (16, 128, 128, 150), (16, 256, 256, 75)]


def op_rows(device: str, dtype: torch.dtype, shapes: list[tuple[int, int, int, int]],
            rounds: int) -> list[dict]:
    """Median ms of forward + backward: the fused op against every unfused formulation."""
    V, K = 25, 3
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    impls = {"fused": graph_conv, "einsum_ref": graph_conv_ref, "conv_first": conv_first,
             "agg_first": agg_first, "mix_first": graph_conv_mix_first}
    rows = []
    for n, c, o, t in shapes:
        g = torch.Generator(device=device).manual_seed(0)
        x, w, b, a, gy = (torch.randn(*sh, generator=g, device=device, dtype=dtype)
                          for sh in ((n, c, t, V), (K, o, c), (o,), (K, V, V), (n, o, t, V)))
        args = [x.requires_grad_(), (w / c**0.5).requires_grad_(), b.requires_grad_(),
                (a / V).requires_grad_()]
        ms = {}
        for name, fn in impls.items():
            for _ in range(2):
                fn(*args).backward(gy)
            times = []
            for _ in range(rounds):
                sync()
                t0 = time.perf_counter()
                fn(*args).backward(gy)
                sync()
                times.append(1e3 * (time.perf_counter() - t0))
            ms[name] = sorted(times)[len(times) // 2]
        best = min((k for k in ms if k != "fused"), key=ms.__getitem__)
        rows.append({"dtype": str(dtype).removeprefix("torch."), "shape": [n, c, o, t],
                     "fused_ms": ms["fused"], "best_unfused": best, "best_ms": ms[best],
                     "ratio": ms[best] / ms["fused"],
                     "fused_tflops": 3 * forward_flops(n, c, o, t) / (ms["fused"] * 1e-3) / 1e12,
                     "all_ms": ms})
    return rows


def cuda_tests(timeout: float) -> dict:
    files = ["tests/kernels/test_graph_conv.py", "tests/models/test_localizer.py",
             "tests/data/test_gpu_augment.py"]
    t = time.perf_counter()
    try:
        # --noconftest: tests/conftest.py builds corpora (zarr), which the lent machine lacks;
        # the gpu tests use none of its fixtures.
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-m", "gpu",
                            "--noconftest", "-p", "no:cacheprovider", *files], cwd=ROOT,
                           capture_output=True, text=True, timeout=timeout)
        tail = (r.stdout + r.stderr).strip().splitlines()
        summary, rc = (tail[-1] if tail else "no output"), r.returncode
    except subprocess.TimeoutExpired:
        summary, rc = f"timed out after {timeout:.0f} s", 124
    return {"files": files, "summary": summary, "rc": rc,
            "seconds": round(time.perf_counter() - t, 1)}


def plan(device: str, smoke: bool) -> list[tuple[str, str, str]]:
    """(setting, precision, stack) rows, most informative first (a cut-short run keeps them)."""
    if device == "cpu":
        return [(s, p, k) for s in ("tiny", "tiny_paper") for p in ("fp32", "bf16")
                for k in ("ours", "reference")] + [("tiny", "fp32", "ours+augment")]
    if smoke:
        return [("demo", p, k) for p in ("bf16", "fp32") for k in ("ours", "reference")]
    stacks = ("ours", "reference", "fused")
    return [(s, "bf16", k) for s in ("demo", "paper") for k in stacks] + [
        ("demo", "bf16", "ours+augment")] + [
        (s, "fp32", k) for s in ("demo", "paper") for k in stacks]


def record_error(report: Report, where: str, e: BaseException | str) -> None:
    """An error (or a row the budget did not start) into the report; the exit status fails."""
    if isinstance(e, str):
        report.data["errors"].append({"where": where, "error": e})
        return
    report.data["errors"].append({"where": where, "error": f"{type(e).__name__}: {e}",
                                  "traceback": traceback.format_exc()[-4000:]})
    print(f"{where} FAILED: {e}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--smoke", action="store_true", help="demo rows only, 20 steps, no tests")
    ap.add_argument("--steps", type=int, default=None, help="steps per row (default 200; "
                    "smoke 20; cpu 6)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop starting rows after this many seconds (default 270; smoke 55)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-report")))
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_run: no CUDA device visible to torch; run it on a GPU, or with --device cpu "
              "to prove its code paths at tiny shapes", file=sys.stderr)
        return 2
    cpu = args.device == "cpu"
    steps = args.steps or (6 if cpu else 20 if args.smoke else 200)
    budget = args.budget_s or (55.0 if args.smoke else 270.0)
    mode = "cpu" if cpu else "smoke" if args.smoke else "full"
    if cpu:  # a proof of the code paths, not a measurement: one thread never oversubscribes
        torch.set_num_threads(1)
    report = Report(args.out, mode)
    env = {"python": platform.python_version(), "torch": torch.__version__}
    if not cpu:
        env |= {"card": torch.cuda.get_device_name(), "cuda": torch.version.cuda,
                "capability": ".".join(map(str, torch.cuda.get_device_capability()))}
    env["graph conv path"] = graph_conv_path(args.device)
    report.data["env"] = env
    report.save()
    print(f"gpu_run ({mode}): {env}", flush=True)
    tests_failed = False
    if not args.smoke:  # on a CPU they are collected and skipped: the device's imports suffice
        report.data["cuda_tests"] = cuda_tests(timeout=150)
        tests_failed = report.data["cuda_tests"]["rc"] != 0
        report.save()
        print(f"cuda tests: {report.data['cuda_tests']['summary']}", flush=True)
    rows = plan(args.device, args.smoke)
    spent = f"not started: the {budget:.0f} s budget is spent"
    with tempfile.TemporaryDirectory(prefix="gpu_run-") as tmp:
        for name, precision, stack in rows:
            if time.perf_counter() - T0 > budget:
                record_error(report, f"{name}/{precision}/{stack}", spent)
                report.save()
                continue
            try:
                if stack == "ours+augment":
                    row = train_row(SETTINGS[name], precision, "ours", steps, args.device,
                                    Path(tmp), augment=True)
                    host = next(r for r in report.data["train"] if r["setting"] == name
                                and r["precision"] == precision and r["stack"] == "ours")
                    row |= {"host_samples_per_s": host["samples_per_s"],
                            "ratio": row["samples_per_s"] / host["samples_per_s"]}
                    report.data["augment"].append(row)
                else:
                    row = train_row(SETTINGS[name], precision, stack, steps, args.device,
                                    Path(tmp))
                    report.data["train"].append(row)
                print(f"{name}/{precision}/{stack}: {row['samples_per_s']:.1f} samples/s, data "
                      f"wait {row['data_wait']:.1%}, peak {row['peak_mib']} MiB, "
                      f"{row['seconds']} s", flush=True)
            except Exception as e:  # noqa: BLE001 - recorded, reported, and the exit code fails
                record_error(report, f"{name}/{precision}/{stack}", e)
            report.save()
    op_plan = ([(torch.float32, [(2, 8, 8, 16)], 3)] if cpu else [] if args.smoke else
               [(dt, OP_SHAPES, 20) for dt in (torch.float32, torch.bfloat16)])
    for dtype, shapes, rounds in op_plan:
        if time.perf_counter() - T0 > budget:
            record_error(report, f"ops/{dtype}", spent)
        else:
            try:
                report.data["ops"] += op_rows(args.device, dtype, shapes, rounds)
            except Exception as e:  # noqa: BLE001 - recorded, reported, and the exit code fails
                record_error(report, f"ops/{dtype}", e)
        report.save()
    print(report.markdown())
    print(f"reports: {args.out / 'gpu_report.json'}, {args.out / 'gpu_report.md'}")
    return 1 if tests_failed or report.data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
