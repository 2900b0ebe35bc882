"""A/B throughput of the augmentation between two git trees, in alternating rounds.

Not a pytest suite (no ``test_``/``bench_`` prefix): a script that answers "did this change make
the two-view augmentation or the torch-engine loader slower?" on a shared, noisy machine. It
makes a temporary ``git worktree`` of an old ref (default: the merge-base of HEAD with main,
i.e. the code before the branch), then runs rounds old/new, new/old... (``--rounds`` each,
at least 5), every case of every round in a fresh subprocess that imports exactly one tree:
``sscl`` from ``<tree>/sscl`` and ``sscl.data`` / ``sscl.kernels`` from ``<tree>/data`` /
``<tree>/kernels`` (the ``package_dir`` mapping of setup.py), with the editable install's
finder removed so it cannot redirect the import to this checkout. Each subprocess prints the
``__file__`` of the augmentation module it imported, as proof.

Measured per round, one Numba thread and one torch thread, after a warm-up call (Numba caches
compiled on disk; the first subprocess of each tree compiles and is not timed):

- two-view: ``augment.two_view`` on bench_augment.py's main case (batch of 64 raw windows of
  T=300, NTU-25 x 2, L=50, query + AimCLR strong view), samples/s over ~``--seconds``;
- loader: the torch engine, in process, pretraining windows with the extreme view over a
  synthetic 200-sequence corpus, samples/s over ~``--seconds``;
- frames: the loader's first ``augment.two_view_frames`` call, captured and replayed: the
  composed kernel on corpus frames without the sampling, packing and collation around it.

Rounds are ABBA-ordered (old first in odd rounds, new first in even ones).

Prints the per-round figures, the medians and new/old; exits 1 when any ratio is off by
more than ``--tolerance`` (default 3 %) in either direction (a large gain is as suspect as a
loss on a refactor meant to change nothing).

On a shared VM the wall clock may not resolve 3 %: run the script with ``--ref HEAD`` (an A/A
run, the same code on both sides) to see how far apart identical trees come out. With
``--instructions`` it counts instead of timing: each case runs under valgrind's cachegrind
(``--cache-sim=no``) once with zero and once with ``--calls`` timed-section calls after the
warm-up, and the difference divided by ``--calls`` is the instructions per call, which does not
depend on what else the machine runs. Instructions are not time (cache misses, branch
mispredictions and vector width are not in the count), but a refactor that does more work per
call shows there. The count of a whole process with a corpus reader in it varies by some 10^8
instructions between identical runs (probably the reader's background threads), hence the
default of 100 calls. Numba compiles for the CPU valgrind emulates (LLVM sees ``haswell``: AVX2
and FMA, no AVX-512), so the counts are of the AVX2 code. Needs valgrind (``apt install
valgrind``); 14 valgrind runs, about 17 minutes in all on a 2-core VM. Usage::

    python bench/ab_augment.py [--ref REF] [--rounds 5] [--seconds 2] [--tolerance 0.03]
    python bench/ab_augment.py --instructions [--ref REF] [--calls 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in the subprocess: import one tree, then time one case. argv: tree, corpus, seconds, case,
# and optionally a call count, which replaces the timed seconds by exactly that many calls.
CHILD = r'''
import importlib.util, json, sys, time
from pathlib import Path

tree, corpus, seconds, case = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
calls = int(sys.argv[5]) if len(sys.argv) > 5 else None
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in repr(h).lower()]


def package(name, directory):
    spec = importlib.util.spec_from_file_location(
        name, directory / "__init__.py", submodule_search_locations=[str(directory)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    return spec, module


root_spec, sscl = package("sscl", tree / "sscl")
for sub, directory in (("data", "data"), ("kernels", "kernels")):
    spec, module = package(f"sscl.{sub}", tree / directory)
    spec.loader.exec_module(module)
    setattr(sscl, sub, module)
root_spec.loader.exec_module(sscl)

import numba, numpy as np, torch
from sscl.data import augment as A
# sscl.data.loader: the path every tree exports LoaderConfig from (older ones lack loader_config).
from sscl.data.loader import LoaderConfig, make_loader

numba.set_num_threads(1)
torch.set_num_threads(1)
N, T, V, C, M, L = 64, 300, 25, 3, 2, 50
rng = np.random.default_rng(1)
lengths = rng.integers(100, T + 1, N)
valid = np.broadcast_to(np.arange(T)[None, :, None, None] < lengths[:, None, None, None],
                        (N, T, V, M)).copy()
valid[: N // 2, :, :, 1] = False
raw = rng.standard_normal((N, T, V, C, M)).astype(np.float32) * valid[:, :, :, None, :]
cfg = A.AugmentConfig(out_len=L, extreme_flip_prob=0.0, extreme_rotate_deg=(0.0, 0.0, 0.0))
p = A.params_for(0, 0, np.arange(N), cfg, extreme=True)
strong = A.TwoViewParams(query=p.query, key=p.extreme)
out = np.empty((2, N, C, L, V, M), np.float32)
out_valid = np.empty((2, N, L, V, M), bool)


def two_view():
    A.two_view(raw, valid, lengths, strong, cfg, None, out=out, out_valid=out_valid)
    return N


# The loader's own call of the composed kernel, captured once and replayed: the kernel and its
# Python wrapper without the sampling, packing and collation around it.
captured = []
_frames = A.two_view_frames


def _capture(*args, **kwargs):
    if not captured:
        captured.append((args, kwargs))
    return _frames(*args, **kwargs)


A.two_view_frames = _capture
# Built on first use, so that a two_view process has no corpus reader (nor its threads) in it.
loader = None
epochs = iter(range(1 << 30))
batches = iter(())


def load():
    global batches, loader
    if loader is None:
        loader = make_loader(corpus, LoaderConfig(
            task="pretrain", seed=3, batch_size=64, num_workers=0, raw_length=T, extreme=True,
            pin_memory=False, augment=A.AugmentConfig(out_len=L)), engine="torch")
        assert loader.engine == "torch"
    for b in batches:
        return b["query"].shape[0]
    batches = iter(loader.epoch(next(epochs)))
    return load()


def frames():
    args, kwargs = captured[0]
    _frames(*args, **kwargs)
    return args[3].shape[0]  # lo_N: one entry per window


def rate(step):
    step()  # warm: compiled code loaded, buffers allocated
    if calls is not None:  # counted, not timed (--instructions)
        for _ in range(calls):
            step()
        return float(calls)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        done += step()
    return done / (time.perf_counter() - t0)


steps = {"two_view": two_view, "loader": load, "frames": frames}
if case in ("frames", "all"):
    load()  # one batch, to capture the call
if case == "all":  # one call of each: loads or compiles every kernel for this CPU, untimed
    for step in steps.values():
        step()
    print(json.dumps({"file": A.__file__, "data": sscl.data.__file__}))
else:
    print(json.dumps({"file": A.__file__, "data": sscl.data.__file__, case: rate(steps[case])}))
'''


def run(cmd: list[str], **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout.strip()


def write_corpus(dest: Path) -> None:
    """200 random-walk NTU-25 x 2 sequences of 150..400 frames (this checkout's writer; the
    on-disk format is the same for both trees)."""
    import numpy as np

    from sscl.data.corpus import CorpusHeader, CorpusWriter, Sequence
    from sscl.data.layouts import get_layout

    header = CorpusHeader(layout=get_layout("ntu25"), class_names=("a", "b"), fps=30.0,
                          persons=2, source_frame="synthetic random walk, metres")
    rng = np.random.default_rng(0)
    with CorpusWriter(dest, header) as w:
        for i in range(200):
            t = int(rng.integers(150, 401))
            joints = 0.5 + np.cumsum(0.01 * rng.standard_normal((t, 25, 3, 2)), axis=0)
            w.append(Sequence(seq_id=f"s{i}", joints=joints.astype(np.float32),
                              source_file=f"f{i}", labels=np.zeros(t, np.int16),
                              valid=rng.random((t, 25, 2)) > 0.02))


CASES = ("two_view", "loader", "frames")


def child_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def child_cmd(tree: Path, corpus: Path, seconds: float, case: str, calls: int | None = None):
    extra = [] if calls is None else [str(calls)]
    return [sys.executable, "-c", CHILD, str(tree), str(corpus), str(seconds), case, *extra]


def measure(tree: Path, corpus: Path, seconds: float, case: str) -> dict:
    cmd = child_cmd(tree, corpus, seconds, case)
    return json.loads(run(cmd, env=child_env(), cwd=tempfile.gettempdir()).splitlines()[-1])


def verdict(what: str, old: float, new: float, tolerance: float) -> bool:
    """Prints new/old for one case; True when it is off by more than the tolerance."""
    ratio = new / old
    off = abs(ratio - 1.0) > tolerance
    print(f"{what}: old {old:,.0f}, new {new:,.0f}, new/old {ratio:.3f} "
          f"{'OFF by more than the tolerance' if off else 'ok'}", flush=True)
    return off


def instructions(tree: Path, corpus: Path, case: str, calls: int) -> int:
    """Instructions executed by one child process that makes `calls` calls of `case` after its
    warm-up, counted by cachegrind. The hash seed is fixed so that dict and set layouts, and
    with them the interpreter's work, are the same in every process."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
               f"--cachegrind-out-file={Path(tmp) / 'out'}",
               *child_cmd(tree, corpus, 0.0, case, None if case == "all" else calls)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp,
                              env=child_env() | {"PYTHONHASHSEED": "0"})
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"cachegrind run of {case} on {tree} failed (exit {proc.returncode}); "
                           f"its last output:\n{proc.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def count_instructions(trees: dict[str, Path], corpus: Path, calls: int, tolerance: float) -> bool:
    """Per-call instruction counts of every case in both trees; True when a ratio is off."""
    # Numba keys its cache on the CPU it sees, and valgrind's emulated CPU is not the host's
    # (no AVX-512): one untimed run per tree under valgrind compiles the kernels for it first.
    for tree in trees.values():
        instructions(tree, corpus, "all", 0)
    failed = False
    for case in CASES:
        per_call = {}
        for name, tree in trees.items():
            base, full = (instructions(tree, corpus, case, k) for k in (0, calls))
            per_call[name] = (full - base) / calls
            print(f"{case} {name}: {per_call[name]:,.0f} instructions per call "
                  f"({base:,} at 0 calls, {full:,} at {calls})", flush=True)
        failed |= verdict(f"{case} instructions per call", per_call["old"], per_call["new"],
                          tolerance)
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", help="old git ref (default: merge-base of HEAD and main)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per tree (>= 5)")
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per case")
    ap.add_argument("--tolerance", type=float, default=0.03, help="allowed |new/old - 1|")
    ap.add_argument("--instructions", action="store_true",
                    help="count instructions per call under cachegrind instead of timing")
    ap.add_argument("--calls", type=int, default=100,
                    help="calls counted per case (--instructions)")
    args = ap.parse_args()
    if args.rounds < 5:
        ap.error("--rounds must be >= 5")
    if args.calls < 1:
        ap.error(f"--calls must be >= 1, got {args.calls}")
    if args.instructions and shutil.which("valgrind") is None:
        ap.error("--instructions needs valgrind on PATH (apt install valgrind)")
    ref = args.ref or run(["git", "-C", str(ROOT), "merge-base", "HEAD", "main"])
    ref = run(["git", "-C", str(ROOT), "rev-parse", "--short", ref])
    with tempfile.TemporaryDirectory(prefix="ab_augment_") as tmp:
        old = Path(tmp) / "old"
        run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), ref])
        try:
            corpus = Path(tmp) / "corpus.zarr"
            write_corpus(corpus)
            trees = {"old": old, "new": ROOT}
            for name, tree in trees.items():  # compile and cache every case's kernels, untimed
                info = measure(tree, corpus, 0.0, "all")
                print(f"{name} ({ref if name == 'old' else 'HEAD'}): imports {info['file']}")
            if args.instructions:
                return 1 if count_instructions(trees, corpus, args.calls, args.tolerance) else 0
            rounds: dict[str, list[dict]] = {"old": [], "new": []}
            for i in range(args.rounds):
                # ABBA: the tree measured first alternates, so a drift within a round (a
                # neighbour's job starting, the CPU clocking down) does not favour one side.
                order = ("old", "new") if i % 2 == 0 else ("new", "old")
                for name in order:
                    # One process per case: what one case leaves behind (allocator state, caches,
                    # compiled specialisations) changed another's figure by up to 1.8x.
                    r = {}
                    for case in CASES:
                        r |= measure(trees[name], corpus, args.seconds, case)
                    rounds[name].append(r)
                    print(f"round {i + 1} {name}: "
                          + ", ".join(f"{case} {r[case]:8.0f}" for case in CASES)
                          + " samples/s", flush=True)
        finally:
            run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)])
    failed = False
    for case in CASES:
        med = {k: statistics.median(r[case] for r in v) for k, v in rounds.items()}
        failed |= verdict(f"{case} median samples/s", med["old"], med["new"], args.tolerance)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
