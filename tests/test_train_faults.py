"""The trainer's side of issue 12: a full disk, a dead rank, hostile files and non-finite input
cost nothing but a clear message.

- Full disk / write limit: RLIMIT_FSIZE (SIGXFSZ ignored) on a real training subprocess and an
  injected ENOSPC (at fsync, where delayed allocation reports it) in-process, while writing a
  checkpoint and a report: one ``DiskWriteError`` naming the file, exit 2 with one ``error:``
  line, the previous checkpoint intact and the one ``--resume auto`` picks, nothing partial
  under a final name.
- A rank SIGKILLed in a 2-process run: the survivor names it and everything ends in bounded time.
- Untrusted files: no unpickling anywhere in the package, hostile ``state.json`` is a
  CheckpointError, config-derived paths cannot escape.
- NaN in a corpus: refused with the count, or masked and trained on with a finite loss.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sscl import checkpoint as ckpt
from sscl.errors import CheckpointError, ConfigError, DiskWriteError
from tests.helpers import trainrun as T
from tests.helpers.localizers import make_localizer

ROOT = T.ROOT


def _errors(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if x.startswith("error:")]


def _leftovers(root: Path) -> list[str]:
    """Temporary files or directories anywhere under ``root``."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith(".tmp") or ".tmp-" in p.name)


# ----------------------------------------------------------------------------- full disk


def _fsize_limit(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.slow
def test_a_file_size_limit_during_a_checkpoint_is_one_error_and_the_previous_one_stays(
        tiny_corpus, tmp_path):
    run = tmp_path / "run"
    common = T.tiny_args(tiny_corpus, "--set", "run.checkpoint_every_s=100000",
                         "--run-dir", str(run))
    T.run_train([*common, "--set", "optim.max_steps=2"], cwd=tmp_path)
    ckpts = run / "pretrain" / "checkpoints"
    weights = (ckpts / "step-00000002" / "model.safetensors").stat().st_size
    (run / "pretrain" / "done.json").unlink()  # continue the stage: 2 more steps
    # Every file may grow to half the weights: the log, the events and the config fit, the
    # next checkpoint's weights do not.
    r = T.run_train([*common, "--set", "optim.max_steps=4", "--resume", "auto"], cwd=tmp_path,
                    check=False, preexec_fn=_fsize_limit(weights // 2))
    assert r.returncode == 2, r.stderr[-3000:]
    errors = _errors(r.stderr)
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "step-00000004.tmp/model.safetensors" in errors[0]
    assert "File too large" in errors[0] and "ulimit -f" in errors[0]
    assert "--resume auto" in errors[0]
    assert [p.name for p in ckpt.list_checkpoints(ckpts)] == ["step-00000002"]
    assert _leftovers(run) == []
    picked, notes = ckpt.latest(ckpts)  # what --resume auto continues from
    assert picked.state["step"] == 2 and not notes


class _FakeAccelerator:
    """What ``checkpoint.save`` uses of Accelerate, for one process."""

    is_main_process = True
    process_index = 0
    num_processes = 1
    scaler = None

    def wait_for_everyone(self) -> None:
        pass

    def unwrap_model(self, model):
        return model


def _fail_fsync(monkeypatch, after: int) -> None:
    """ENOSPC from the (after+1)-th fsync of a file on: a full disk seen at flush time."""
    real, calls = os.fsync, [0]

    def fsync(fd):
        if not os.path.isdir(f"/proc/self/fd/{fd}"):
            calls[0] += 1
            if calls[0] > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("after", [0, 1, 2])  # rng file, weights, optimizer
def test_injected_enospc_in_a_checkpoint_leaves_the_previous_one(tmp_path, monkeypatch, after):
    from sscl.config import Config
    from sscl.rundir import StageDir

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    rd, acc, cfg = StageDir(tmp_path), _FakeAccelerator(), Config()
    ckpt.save(acc, rd, cfg, model, opt, ckpt.TrainState(step=1), batch_size=2)
    _fail_fsync(monkeypatch, after)
    with pytest.raises(DiskWriteError, match=r"step-00000002\.tmp/.*No space left on device"):
        ckpt.save(acc, rd, cfg, model, opt, ckpt.TrainState(step=2), batch_size=2)
    monkeypatch.undo()
    assert [p.name for p in ckpt.list_checkpoints(rd.checkpoints)] == ["step-00000001"]
    assert _leftovers(tmp_path) == []
    picked, _ = ckpt.latest(rd.checkpoints)
    assert picked.state["step"] == 1
    assert torch.equal(picked.model["weight"], model.weight.detach())


_REPORT_INPUTS = """
import numpy as np
from sscl.localize.scoring import evaluate_sequences
from sscl.localize.postprocess import ARGMAX
rng = np.random.default_rng(0)
probs = [rng.dirichlet(np.ones(3), size=40) for _ in range(2)]
labels = [np.repeat([0, 1, 2, 1], 10).astype(np.int64) for _ in range(2)]
metrics = evaluate_sequences(probs, labels, ARGMAX, sequence_ids=["a", "b"])
names = ["x", "y"]
"""


def _report_inputs():
    scope: dict = {}
    exec(_REPORT_INPUTS, scope)
    return scope["metrics"], scope["names"]


def test_injected_enospc_in_a_report_keeps_the_previous_report(tmp_path, monkeypatch):
    from sscl.localize.report import write_report

    metrics, names = _report_inputs()
    write_report(tmp_path, metrics, names, title="first")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    _fail_fsync(monkeypatch, 0)
    with pytest.raises(DiskWriteError, match=r"report\.json failed: No space left on device; "
                                             r"nothing was left.*previous content is intact"):
        write_report(tmp_path, metrics, names, title="second")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert _leftovers(tmp_path) == []


_REPORT_CHILD = _REPORT_INPUTS + """
import sys
from sscl.errors import DiskWriteError
from sscl.localize.report import write_report
try:
    write_report(sys.argv[1], metrics, names, title="second")
except DiskWriteError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
"""


@pytest.mark.slow
def test_a_file_size_limit_during_a_report_is_one_error(tmp_path):
    from sscl.localize.report import write_report

    metrics, names = _report_inputs()
    write_report(tmp_path, metrics, names, title="first")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    limit = len(before["report.json"]) // 2
    r = subprocess.run([sys.executable, "-c", _REPORT_CHILD, str(tmp_path)], capture_output=True,
                       text=True, timeout=120, preexec_fn=_fsize_limit(limit))
    assert r.returncode == 2, r.stderr[-3000:]
    (line,) = _errors(r.stderr)
    assert "report.json failed: File too large" in line and "Traceback" not in r.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- a dead rank


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP"])
def test_a_dead_or_hung_rank_is_named_by_the_survivor_within_the_timeout(tiny_corpus, tmp_path,
                                                                          sig):
    """Rank 1 of a 2-process CPU run gets ``sig`` after step 1. SIGKILL: rank 0's next
    collective fails at once (the connection closes), it names rank 1 and the launcher ends
    within run.dist_timeout_s. SIGSTOP (a hung rank): rank 0's collective times out after
    run.dist_timeout_s and it says which rank did not answer (the launcher then waits its own
    30 s SIGTERM grace before it SIGKILLs the stopped rank; the test ends it earlier)."""
    timeout_s = 20 if sig == "SIGKILL" else 5
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", "2", "--main_process_port", str(T.free_port())]
    args = T.tiny_args(tiny_corpus, "--set", "run.cpu=true", "--set", "data.loader.batch_size=4",
                       "--set", f"run.dist_timeout_s={timeout_s}", "--run-dir",
                       str(tmp_path / "run"))
    env = {**os.environ, "SSCL_KILL_AT_STEP": "1", "SSCL_KILL_RANK": "1",
           "SSCL_KILL_SIGNAL": sig}
    p = subprocess.Popen([*launcher, str(T.TRAIN), *args], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ranks: dict[int, psutil.Process] = {}  # each rank runs in a session of its own

    def track() -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(p.pid).children(recursive=True):
                ranks.setdefault(child.pid, child)

    at: dict[str, float] = {}
    err: list[str] = []

    def read() -> None:
        for line in p.stderr:
            if f"SSCL_KILL_AT_STEP: {sig} to rank 1" in line:
                at.setdefault("signal", time.monotonic())
            if line.startswith("error: rank 0 "):
                at.setdefault("error", time.monotonic())
            err.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    try:
        while p.poll() is None and "error" not in at and time.monotonic() < deadline:
            track()
            time.sleep(0.2)
        if sig == "SIGKILL":
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
        ended = time.monotonic()
    finally:
        # The stopped rank would outlive the launcher (which waits 30 s before SIGKILL).
        track()
        for child in ranks.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        p.kill()
        p.wait(timeout=60)
        reader.join(timeout=10)
    stderr = "".join(err)
    assert "signal" in at and "error" in at, stderr[-4000:]
    print(f"{sig}: error line {at['error'] - at['signal']:.1f} s after the signal; "
          f"{'launcher exited' if sig == 'SIGKILL' else 'test stopped it'} "
          f"{ended - at['signal']:.1f} s after it")
    assert at["error"] - at["signal"] < timeout_s + 10, stderr[-4000:]
    # Rank 0 fails its collective, or the launcher's SIGTERM (it stops every rank when one
    # dies) comes first: either way one line names rank 1.
    (line,) = [x for x in stderr.splitlines() if x.startswith("error: rank 0 ")]
    assert "--resume auto" in line
    if sig == "SIGKILL":
        assert p.returncode != 0 and ended - at["signal"] < timeout_s + 10
        assert "rank(s) 1 died" in line
        assert ("lost contact" in line and f"run.dist_timeout_s={timeout_s}" in line) or \
            "stopped by SIGTERM (the launcher stops every rank when one fails" in line, line
    else:
        assert "rank(s) 1 did not answer" in line and f"run.dist_timeout_s={timeout_s}" in line


# ----------------------------------------------------------------------------- untrusted files


_UNPICKLING = [
    (re.compile(r"\btorch\.load\((?![^)]*weights_only\s*=\s*True)"), "torch.load without "
     "weights_only=True"),
    (re.compile(r"\b(c?pickle|dill|joblib|marshal|shelve)\.(load|loads|Unpickler|open)\b"),
     "unpickling"),
    (re.compile(r"allow_pickle\s*=\s*True"), "np.load(allow_pickle=True)"),
    (re.compile(r"\byaml\.(load|unsafe_load|full_load)\("), "yaml.load (not safe_load)"),
]


def test_nothing_in_the_package_unpickles_or_loads_unsafe_yaml():
    packages = [ROOT / d for d in ("sscl", "data", "kernels") if (ROOT / d).is_dir()]
    files = [f for d in packages for f in d.rglob("*.py")]
    assert len(files) > 30
    found = []
    for f in files:
        text = f.read_text()
        for pattern, what in _UNPICKLING:
            for m in pattern.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{f.relative_to(ROOT)}:{line}: {what}")
    assert not found, found


def test_the_scan_finds_what_it_looks_for():
    bad = ["torch.load(f)", "torch.load(f, map_location='cpu')", "pickle.load(f)",
           "np.load(p, allow_pickle=True)", "yaml.load(text)"]
    for text in bad:
        assert any(p.search(text) for p, _ in _UNPICKLING), text
    assert not any(p.search("torch.load(f, weights_only=True)") for p, _ in _UNPICKLING)


def _checkpoint(root: Path) -> Path:
    from sscl import presets
    from sscl.config import Config

    m = torch.nn.Linear(4, 3)
    tmp = ckpt.begin(root, 5)
    ckpt.write_rank_files(tmp, 0)
    ckpt.write_main(tmp, m.state_dict(), torch.optim.SGD(m.parameters(), lr=0.1).state_dict(), {
        "step": 5, "epoch": 0, "position": 40, "skipped": 0, "last_loss": 1.5, "knn": {},
        "scaler": None, "world_size": 1, "batch_size": 8,
        "config": presets.to_dict(Config())})
    ckpt.commit(tmp, ckpt.step_dir(root, 5), keep_last=3)
    return ckpt.step_dir(root, 5)


HOSTILE = {
    "step is text": (lambda s: s.update(step="5"), "step = '5' is not a count"),
    "huge position": (lambda s: s.update(position=10**40), "position = .* is not a count"),
    "negative epoch": (lambda s: s.update(epoch=-1), "epoch = '-1'"),
    "bool world size": (lambda s: s.update(world_size=True), "world_size = 'True'"),
    "no step": (lambda s: s.pop("step"), "lacks step"),
    "loss is a list": (lambda s: s.update(last_loss=[1]), "last_loss"),
    "knn nonsense": (lambda s: s.update(knn={"a": "b"}), "knn is not a mapping"),
    "optimizer groups": (lambda s: s["optimizer"].update(param_groups="x"), "optimizer is not"),
    "optimizer index": (lambda s: s["optimizer"]["scalars"].update(x={}), "optimizer is not"),
    "config unknown key": (lambda s: s["config"]["run"].update(evil=1),
                           "unknown config key 'run.evil'"),
    "config wrong type": (lambda s: s["config"]["model"].update(width="wide"),
                          "model.width: expected a number"),
    "config escaping name": (lambda s: s["config"]["run"].update(name="../../x"),
                             "run.name must be one folder name"),
    "config not a mapping": (lambda s: s.update(config=[1, 2]), "config is not a mapping"),
    "state is a list": (lambda s: (s.clear(), s.update(_list=True)), "format"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_state_json_is_a_checkpoint_error(tmp_path, case):
    path = _checkpoint(tmp_path)
    state = json.loads((path / "state.json").read_text())
    change, message = HOSTILE[case]
    change(state)
    doc = [1, 2] if state.get("_list") else state
    (path / "state.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=message):
        ckpt.check_state(ckpt.load(path).state, path, ckpt.TRAINING_KEYS)
    picked, notes = ckpt.latest(tmp_path)  # --resume auto: skipped with a note, never a crash
    assert picked is None and len(notes) == 1 and "step-00000005" in notes[0]


def test_a_hostile_rng_or_optimizer_state_is_a_checkpoint_error(tmp_path):
    from safetensors.torch import save

    path = _checkpoint(tmp_path)
    (path / "rng-rank0.safetensors").write_bytes(
        save({"torch": torch.zeros(3, dtype=torch.uint8)}, metadata={"meta": '{"numpy": 7}'}))
    with pytest.raises(CheckpointError):
        m = torch.nn.Linear(4, 3)
        ckpt.restore(_FakeAccelerator(), m, torch.optim.SGD(m.parameters(), lr=0.1),
                     ckpt.load(path), ckpt.TrainState())


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "", "/etc"])
def test_a_run_name_that_is_a_path_is_refused(name):
    from sscl import presets

    with pytest.raises(ConfigError, match="run.name must be one folder name"):
        presets.resolve(None, [f"run.name={name!r}" if name else "run.name=''"])


def test_evaluation_folder_names_stay_inside_the_eval_directory(tmp_path):
    from sscl.rundir import RunDir

    run = RunDir(tmp_path)
    for corpus, split in [("../../c.zarr", "../../../etc"), ("/x/ntu.zarr", "a/../../b"),
                          ("..", ".."), ("demo", "xsub:test")]:
        out = run.report_dir(corpus, split)
        assert out.resolve().parent == (tmp_path / "eval").resolve(), (corpus, split)
        assert "/" not in out.name and out.name not in (".", ".."), (corpus, split)
    assert run.report_dir("/x/ntu.zarr", "xsub:test").name == "ntu-xsub_test"


# ----------------------------------------------------------------------------- non-finite input


@pytest.fixture(scope="module")
def nan_corpus(tiny_corpus, tmp_path_factory) -> tuple[Path, int]:
    """The tiny corpus with every valid joint of its first 200 frames set to NaN (as a foreign
    writer without checksums could leave it); returns (path, NaN joints)."""
    import zarr

    dest = tmp_path_factory.mktemp("nan") / "nan.zarr"
    shutil.copytree(tiny_corpus, dest)
    meta = json.loads((dest / "zarr.json").read_text())
    meta["attributes"].pop("checksums", None)
    (dest / "zarr.json").write_text(json.dumps(meta))
    g = zarr.open_group(dest, mode="r+")
    rows = g["joints"][:200]
    valid = g["valid"][:200]
    rows[np.broadcast_to(valid[:, :, None, :], rows.shape)] = np.nan
    g["joints"][:200] = rows
    return dest, int(valid.sum())


@pytest.mark.slow
def test_nan_in_the_corpus_is_refused_with_its_count(nan_corpus, tmp_path):
    path, _ = nan_corpus
    r = T.run_train(T.tiny_args(path, "--set", "optim.max_steps=2", "--set",
                                "data.split=null", "--run-dir", str(tmp_path / "run")),
                    cwd=tmp_path, check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    (line,) = _errors(r.stderr)
    assert re.search(r"\d+ valid joint.s. with a NaN", line), line


@pytest.mark.slow
def test_nan_in_the_corpus_masked_trains_with_a_finite_loss(nan_corpus, tmp_path):
    path, _ = nan_corpus
    run = tmp_path / "run"
    r = T.run_train(T.tiny_args(path, "--set", "optim.max_steps=3", "--set", "data.split=null",
                                "--set", "data.loader.nonfinite=mask", "--set",
                                "run.max_nonfinite=0", "--run-dir", str(run)), cwd=tmp_path)
    done = json.loads((run / "pretrain" / "done.json").read_text())
    assert done["step"] == 3 and done["skipped"] == 0 and np.isfinite(done["loss"])
    assert "non-finite" not in r.stderr


def test_an_unknown_nonfinite_policy_is_a_config_error():
    from sscl import presets

    with pytest.raises(ConfigError, match="loader.nonfinite must be 'refuse' or 'mask'"):
        presets.resolve(None, ["data.loader.nonfinite=ignore"])


# ----------------------------------------------------------------------------- fuzzing predict

# Examples per fuzz test: SSCL_FUZZ_EXAMPLES (default 60 for the .npz reader; a third of it for
# the localizer, whose examples build a model and score a sequence, ~0.3 s each).
_EXAMPLES = int(os.environ.get("SSCL_FUZZ_EXAMPLES", 60))
_HEALTH = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
FUZZ = settings(max_examples=_EXAMPLES, deadline=None, suppress_health_check=_HEALTH)
FUZZ_SLOW = settings(max_examples=max(1, _EXAMPLES // 3), deadline=None,
                     suppress_health_check=_HEALTH)
FPS = 10.0


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory with an exported, untrained localizer; its 10 fps corpus)."""
    from sscl.data.synthetic import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("predict")
    corpus = root / "syn.zarr"
    synthesize(corpus, SynthConfig(num_sequences=6, min_frames=100, max_frames=120, subjects=3,
                                   fps=FPS), seed=1)
    make_localizer(root / "run" / "finetune", corpus)
    return root / "run", corpus


def _predict(run: Path, source: Path, out: Path, *extra: str) -> int:
    """``sscl predict`` in-process: 0 or 2 (an SsclError); anything else escapes."""
    from sscl.cli import main

    return main(["predict", str(run), str(source), "--decoder", "argmax", "--out", str(out),
                 "--device", "cpu", *extra])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10)


def _mutate_bytes(data: bytes, draw) -> bytes:
    how = draw(st.sampled_from(["truncate", "flip", "insert"]))
    if how == "truncate":
        return data[:draw(st.integers(0, max(0, len(data) - 1)))]
    pos = draw(st.integers(0, len(data) - 1))
    if how == "flip":
        return data[:pos] + bytes([data[pos] ^ draw(st.integers(1, 255))]) + data[pos + 1:]
    return data[:pos] + draw(st.binary(min_size=1, max_size=16)) + data[pos:]


def _mutate_json(doc, draw):
    """Replace, delete or add one entry somewhere in ``doc`` (a copy)."""
    doc = json.loads(json.dumps(doc))
    node = doc
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, (dict, list)) and child and draw(st.booleans()):
            node = child
            continue
        what = draw(st.sampled_from(["replace", "delete", "add"]))
        if what == "replace":
            node[key] = draw(json_values)
        elif what == "delete":
            del node[key]
        elif isinstance(node, dict):
            node[draw(st.text(max_size=8))] = draw(json_values)
        else:
            node.append(draw(json_values))
        break
    return doc


@FUZZ_SLOW
@given(data=st.data(), mode=st.sampled_from(["bytes", "json", "weights"]))
def test_predict_on_a_damaged_localizer_raises_only_typed_errors(trained_run, tmp_path_factory,
                                                                 data, mode):
    run, corpus = trained_run
    work = tmp_path_factory.mktemp("fz")
    shutil.copytree(run, work / "run")
    meta = work / "run" / "finetune" / "localizer.json"
    weights = meta.with_suffix(".safetensors")
    if mode == "bytes":
        meta.write_bytes(_mutate_bytes(meta.read_bytes(), data.draw))
    elif mode == "json":
        meta.write_text(json.dumps(_mutate_json(json.loads(meta.read_text()), data.draw)))
    else:
        weights.write_bytes(_mutate_bytes(weights.read_bytes(), data.draw))
    assert _predict(work / "run", corpus, work / "p.json", "--sequence", "0") in (0, 2)


def _base_npz(rng) -> dict:
    return {"joints": rng.normal(size=(30, 25, 3)).astype(np.float32),
            "valid": rng.random((30, 25)) > 0.1}


arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.complex64,
                           np.dtype("U3"), np.dtype("S3")]),
    shape=hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6))


@FUZZ
@given(data=st.data(), mode=st.sampled_from(["bytes", "arrays", "keys"]))
def test_predict_on_a_damaged_generic_npz_raises_only_typed_errors(trained_run,
                                                                   tmp_path_factory, data, mode):
    import io

    run, _ = trained_run
    work = tmp_path_factory.mktemp("fz")
    raw = work / "raw"
    raw.mkdir()
    base = _base_npz(np.random.default_rng(data.draw(st.integers(0, 2**16))))
    if mode == "arrays":
        base[data.draw(st.sampled_from(["joints", "valid", "labels", "fps", "subject"]))] = \
            data.draw(arrays)
    elif mode == "keys":
        base = {data.draw(st.text(min_size=1, max_size=8).filter(str.isidentifier)): v
                for v in base.values()}
    buf = io.BytesIO()
    np.savez(buf, **base)
    blob = buf.getvalue()
    if mode == "bytes":
        blob = _mutate_bytes(blob, data.draw)
    (raw / "take.npz").write_bytes(blob)
    assert _predict(run, raw, work / "p.json", "--format", "generic", "--layout", "ntu25",
                    "--fps", str(FPS)) in (0, 2)


def test_the_fuzzed_inputs_predict_when_undamaged(trained_run, tmp_path):
    """The fuzz tests start from inputs that work: their errors come from the damage."""
    import io

    run, corpus = trained_run
    assert _predict(run, corpus, tmp_path / "a.json", "--sequence", "0") == 0
    raw = tmp_path / "raw"
    raw.mkdir()
    buf = io.BytesIO()
    np.savez(buf, **_base_npz(np.random.default_rng(0)))
    (raw / "take.npz").write_bytes(buf.getvalue())
    assert _predict(run, raw, tmp_path / "b.json", "--format", "generic", "--layout", "ntu25",
                    "--fps", str(FPS)) == 0
    assert json.loads((tmp_path / "b.json").read_text())["sequences"][0]["frames"] == 30


@pytest.mark.slow
def test_sigterm_ends_a_run_with_one_error_line(tiny_corpus, tmp_path):
    r = T.run_train(T.tiny_args(tiny_corpus, "--set", "optim.max_steps=3", "--run-dir",
                                str(tmp_path / "run")), cwd=tmp_path, check=False,
                    env={"SSCL_KILL_AT_STEP": "1", "SSCL_KILL_SIGNAL": "SIGTERM"})
    assert r.returncode == 143 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert _errors(r.stderr) == ["error: stopped by SIGTERM; checkpoints written so far are "
                                 "complete: continue with --resume auto"]


@pytest.mark.parametrize("damage", [b"(30, 25, 3(", b"(30, 25, 3,", b"(30, 25, 3]"])
def test_a_damaged_npy_header_in_a_generic_npz_is_a_format_error(trained_run, tmp_path, damage):
    """Found by the fuzz test above: numpy parses a header with ast/tokenize, so an unclosed
    bracket was a TokenError or SyntaxError escaping ``sscl predict``."""
    import io

    from sscl.data.formats._npz import npz_header
    from sscl.errors import FormatError

    run, _ = trained_run
    raw = tmp_path / "raw"
    raw.mkdir()
    buf = io.BytesIO()
    np.savez(buf, **_base_npz(np.random.default_rng(0)))
    blob = buf.getvalue()
    assert blob.count(b"(30, 25, 3)") == 1
    (raw / "take.npz").write_bytes(blob.replace(b"(30, 25, 3)", damage))
    with pytest.raises(FormatError, match="cannot read the npz member 'joints'"):
        npz_header(raw / "take.npz", "joints")
    assert _predict(run, raw, tmp_path / "p.json", "--format", "generic", "--layout", "ntu25",
                    "--fps", str(FPS)) == 2
