"""A damaged corpus or a failed write costs a clear message (issue 12): every damage case
raises CorpusError naming the array, shard file and chunk, ``sscl data validate`` exits 1,
a missing chunk never reads as fill values, and writes leave nothing behind."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarr.storage._local as local

from sscl.cli import main
from sscl.data import writer
from sscl.data.chunks import crc32c
from sscl.data.corpus import CorpusWriter, Sequence, Skipped, open_corpus, validate, write_corpus
from sscl.errors import CorpusError, CorpusWriteError, SsclWarning
from tests.helpers.corpora import drop_checksums, header, random_sequences

MISSING = 2**64 - 1
# 64 frames a chunk, 8 chunks a shard: shards of 307,200 bytes (whole pages: mappable)
CHUNKING = {"chunk_frames": 64, "chunks_per_shard": 8}
CPS = CHUNKING["chunks_per_shard"]
MODES = ({}, {"memory_budget": 0}, {"memory_budget": 200_000})  # in RAM, chunked, mapped


def make(dest: Path, checksums: bool = True) -> list[Sequence]:
    seqs = random_sequences(np.random.default_rng(3), 10, max_len=250)
    assert sum(len(s.joints) for s in seqs) > 2 * 512  # 3 shards
    write_corpus(dest, header(), seqs, **CHUNKING)
    if not checksums:
        drop_checksums(dest)
    return seqs


def flip(path: Path, at: int, n: int = 1) -> None:
    b = bytearray(path.read_bytes())
    for k in range(at, at + n):
        b[k] ^= 0xFF
    path.write_bytes(bytes(b))


def drop_index_entry(path: Path, inner: int, chunks_per_shard: int) -> None:
    """Mark inner chunk ``inner`` absent in a shard's index and fix the index's crc32c: the
    chunk is gone as if it had never been stored (what a deleted chunk looks like)."""
    b = bytearray(path.read_bytes())
    size = 16 * chunks_per_shard + 4
    idx = np.frombuffer(bytes(b[-size:-4]), "<u8").copy().reshape(-1, 2)
    idx[inner] = MISSING
    raw = idx.tobytes()
    b[-size:] = raw + crc32c(raw).to_bytes(4, "little")
    path.write_bytes(bytes(b))


def _joints_shard(d: Path, s: int = 0) -> Path:
    return d / "joints" / "c" / str(s) / "0" / "0" / "0"


def _truncate(p: Path, n: int) -> None:
    with open(p, "r+b") as f:
        f.truncate(n)


def _edit_group_json(d: Path, old: str, new: str) -> None:
    """A change of meaning that leaves valid JSON: nothing but the attributes' crc32c sees it."""
    text = (d / "zarr.json").read_text()
    assert old in text
    (d / "zarr.json").write_text(text.replace(old, new, 1))


# damage, the array it must name, and whether it names a chunk (else a shard / the array)
DAMAGE = {
    "joints shard deleted": (lambda d: _joints_shard(d, 1).unlink(), "array 'joints', shard 1"),
    "labels chunk deleted": (lambda d: drop_index_entry(d / "labels" / "c" / "1", 0, 1),
                             "array 'labels', shard 1"),
    "16 bytes flipped in joints": (lambda d: flip(_joints_shard(d), 70_000, 16),
                                   "array 'joints', shard 0"),
    "shard truncated to half": (lambda d: _truncate(_joints_shard(d), 153_600),
                                "array 'joints', shard 0"),
    "shard truncated by one byte": (lambda d: _truncate(_joints_shard(d),
                                                        _joints_shard(d).stat().st_size - 1),
                                    "array 'joints', shard 0"),
    "shard truncated to 10 bytes": (lambda d: _truncate(_joints_shard(d), 10),
                                    "array 'joints', shard 0"),
    "byte flipped in valid": (lambda d: flip(d / "valid" / "c" / "0" / "0" / "0", 20),
                              "array 'valid', shard 0"),
    "byte flipped in labels": (lambda d: flip(d / "labels" / "c" / "0", 20),
                               "array 'labels', shard 0"),
    "byte flipped in meta": (lambda d: flip(d / "meta" / "c" / "0", 30), "array 'meta'"),
    "meta zarr.json damaged": (lambda d: flip(d / "meta" / "zarr.json", 5), "array 'meta'"),
    "class name changed": (lambda d: _edit_group_json(d, '"walk"', '"talk"'),
                           "the group attributes"),
    "fps changed": (lambda d: _edit_group_json(d, '"fps": 30.0', '"fps": 38.0'),
                    "the group attributes"),
}


def _recut(d: Path) -> None:
    g = zarr.open_group(d, mode="r+")
    lengths, offsets = g["lengths"][:], g["offsets"][:]
    lengths[0] += 5
    lengths[1] -= 5
    offsets[1] += 5
    g["lengths"][:] = lengths
    g["offsets"][:] = offsets


DAMAGE["offsets and lengths moved consistently"] = (_recut, "array 'offsets'")
# damage inside a chunk's bytes shows when the chunk is read (chunked mode, validate), so
# `sscl data info`, which reads no chunk, does not see it; everything else is caught at open
FOUND_ON_READ = {"16 bytes flipped in joints", "byte flipped in valid"}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_every_damage_is_a_typed_error_and_validate_finds_it(tmp_path, case, capsys):
    dest = tmp_path / "c.zarr"
    make(dest)
    make(tmp_path / "ok.zarr")
    damage, names = DAMAGE[case]
    damage(dest)
    modes = [open_corpus(tmp_path / "ok.zarr", **kw).mode for kw in MODES]
    assert modes == ["in-RAM", "chunked", "mapped"]
    for kw in MODES:
        with pytest.raises(CorpusError) as e:
            c = open_corpus(dest, **kw)
            for i in range(c.num_sequences):  # chunked: damage inside a chunk shows on read
                c.read_sequence(i)
        assert names in str(e.value), (kw, str(e.value))
        if "shard" in names:
            assert str(dest) in str(e.value)  # the file path
    problems = validate(dest)
    assert problems and any(names in p for p in problems), problems
    assert main(["data", "validate", str(dest)]) == 1
    if case not in FOUND_ON_READ:
        assert main(["data", "info", str(dest)]) == 2
        assert "error: " in capsys.readouterr().err


def test_chunk_level_damage_names_the_chunk_and_its_frames(tmp_path):
    dest = tmp_path / "c.zarr"
    make(dest)
    flip(_joints_shard(dest), 2 * 64 * 600 + 7)  # inside chunk 2 of shard 0
    with pytest.raises(CorpusError, match=r"chunk 2 \(frames 128..191\).*crc32c"):
        open_corpus(dest)
    c = open_corpus(dest, memory_budget=0)  # chunked: opens, the chunk fails when read
    c.read_window(0, 0, 1)
    a = int(np.searchsorted(c.offsets, 128, side="right")) - 1
    with pytest.raises(CorpusError, match="chunk 2"):
        c.read_window(a, 128 - int(c.offsets[a]), 1)


@pytest.mark.parametrize("case", ["shard truncated to half", "shard truncated by one byte",
                                  "byte flipped in valid", "byte flipped in labels",
                                  "labels chunk deleted"])
def test_without_checksums_the_index_and_codecs_still_give_typed_errors(tmp_path, case):
    # a corpus written before checksums: the shard index's own crc32c, its bounds and the
    # blosc header catch what they can, never an untyped error
    dest = tmp_path / "c.zarr"
    make(dest, checksums=False)
    DAMAGE[case][0](dest)
    try:
        c = open_corpus(dest, memory_budget=0)
        for i in range(c.num_sequences):
            c.read_sequence(i)
    except CorpusError as e:
        assert DAMAGE[case][1] in str(e)
    else:  # only a deleted chunk can pass unseen without a record; validate says so
        assert case == "labels chunk deleted"


@pytest.mark.slow
def test_truncated_shard_cannot_kill_the_mapped_reader(tmp_path):
    # Before: SIGBUS (exit 135) when a mapped shard was shorter than its index claims.
    dest = tmp_path / "c.zarr"
    make(dest, checksums=False)
    shard = _joints_shard(dest)
    size = shard.stat().st_size
    tail = shard.read_bytes()[-(16 * CPS + 4):]
    _truncate(shard, 4096)
    with open(shard, "ab") as f:  # a short file that still ends with a valid-looking index
        f.write(tail)
    code = ("import sys; from sscl.data.corpus import open_corpus\n"
            "from sscl.errors import CorpusError\n"
            "try:\n"
            f"    c = open_corpus({str(dest)!r}, memory_budget=200_000)\n"
            "    c.read_windows([0, 1], [0, 0], 1)\n"
            "except CorpusError as e:\n"
            "    print('typed:', e); sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    assert "array 'joints', shard 0" in r.stdout and size > 4096


def test_a_missing_chunk_never_reads_as_fill_values(tmp_path):
    dest = tmp_path / "c.zarr"
    make(dest)
    drop_index_entry(_joints_shard(dest), 1, CPS)
    for budget in (None, 0):
        with pytest.raises(CorpusError, match="array 'joints', shard 0.*chunk 1.*missing"):
            open_corpus(dest, memory_budget=budget)
    # an all-fill chunk zarr never stored is recorded as such and still reads as fill
    seqs = [Sequence("z", np.zeros((300, 25, 3, 2), np.float32), "z.txt",
                     valid=np.zeros((300, 25, 2), bool))]
    write_corpus(tmp_path / "z.zarr", header(), seqs, **CHUNKING)
    c = open_corpus(tmp_path / "z.zarr", memory_budget=0)
    assert (c.read_sequence(0)[0] == 0).all() and validate(tmp_path / "z.zarr") == []


# ----------------------------------------------------------------------------- writes


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_refused_append_leaves_no_copy(tmp_path):
    dest = tmp_path / "c.zarr"
    make(dest)
    for h in (header(classes=("a", "b", "c")), header(persons=1)):
        with pytest.raises(CorpusError, match="cannot append"):
            CorpusWriter(dest, h, append=True, **CHUNKING)
    assert _leftovers(tmp_path) == []
    assert validate(dest) == []


def test_all_skipped_is_an_error_and_writes_nothing(tmp_path):
    dest = tmp_path / "c.zarr"
    with pytest.raises(CorpusError, match=r"no sequence to write \(2 source item\(s\) skipped: "
                       r"2 x empty"):
        write_corpus(dest, header(), [Skipped("a", "empty"), Skipped("b", "empty")])
    assert not dest.exists() and _leftovers(tmp_path) == []


def _generic_source(root: Path, n: int = 3) -> Path:
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        np.savez(root / f"s{i}.npz", joints=rng.standard_normal((40, 25, 3)).astype(np.float32))
    return root


_SLOW_CHILD = """
import pathlib, sys, time
from sscl.data import corpus
orig = corpus.CorpusWriter.append
def slow(self, seq):
    orig(self, seq)
    pathlib.Path(sys.argv[3]).touch()
    time.sleep(60)
corpus.CorpusWriter.append = slow
from sscl.cli import main
sys.exit(main(["data", "convert", "generic", sys.argv[1], sys.argv[2], "--layout", "ntu25",
               "--quiet", "--overwrite"]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_conversion_leaves_nothing_under_the_final_name(tmp_path, sig):
    src = _generic_source(tmp_path / "src")
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "c.zarr"
    make(dest)  # a previous corpus: must survive intact
    before = validate(dest)
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, "-c", _SLOW_CHILD, str(src), str(dest), str(ready)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not ready.exists():
        assert p.poll() is None and time.monotonic() - t0 < 90, p.communicate()
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert before == [] and validate(dest) == [] and open_corpus(dest).num_sequences == 10
    if sig == signal.SIGTERM:
        assert p.returncode == 143 and "terminated" in err
        assert _leftovers(out) == []
        return
    assert p.returncode == -signal.SIGKILL
    (stale,) = _leftovers(out)
    assert stale.startswith(".c.zarr.tmp-")
    # the next write to the same name removes the dead writer's build and says so
    with pytest.warns(SsclWarning, match=r"removed 1 leftover.*\.c\.zarr\.tmp-"):
        write_corpus(dest, header(), random_sequences(np.random.default_rng(1), 2),
                     overwrite=True)
    assert _leftovers(out) == []


def test_a_running_writers_build_is_named_not_removed(tmp_path):
    dest = tmp_path / "c.zarr"
    w = CorpusWriter(dest, header())  # alive: this process
    with pytest.warns(SsclWarning, match="may still be running"):
        w2 = CorpusWriter(tmp_path / "c.zarr", header(), overwrite=True)
    w2.abort()
    w.abort()
    assert _leftovers(tmp_path) == []


def test_injected_enospc_is_one_clear_error_and_the_old_corpus_stays(tmp_path, monkeypatch):
    dest = tmp_path / "c.zarr"
    make(dest)
    real, calls = local._put, [0]

    def put(path, value, exclusive=False):
        calls[0] += 1
        if calls[0] > 6:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, value, exclusive)

    monkeypatch.setattr(local, "_put", put)
    with pytest.raises(CorpusWriteError, match="No space left on device.*previous corpus"):
        write_corpus(dest, header(), random_sequences(np.random.default_rng(2), 6),
                     overwrite=True, **CHUNKING)
    monkeypatch.setattr(local, "_put", real)
    assert _leftovers(tmp_path) == [] and validate(dest) == []
    assert open_corpus(dest).num_sequences == 10


def _hold_back_a_write(monkeypatch, seconds: float) -> None:
    """Creating the 'labels' array writes labels/zarr.json and the group's zarr.json together
    (zarr's asyncio.gather, each in a thread): hold the first back for ``seconds`` and fail the
    second with ENOSPC while it is held."""
    real, started, exclusive_puts = local._put, threading.Event(), [0]

    def put(path, value, exclusive=False):
        if path.parent.name == "labels" and path.name == "zarr.json":
            started.set()
            time.sleep(seconds)
        elif exclusive:  # the group's zarr.json, written beside each new array's
            exclusive_puts[0] += 1
            if exclusive_puts[0] == 3:  # beside 'labels', the third array
                assert started.wait(10)
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, value, exclusive)

    monkeypatch.setattr(local, "_put", put)


def test_a_write_still_in_flight_at_the_error_is_waited_for_before_removal(tmp_path,
                                                                          monkeypatch):
    """When one of zarr's gathered writes fails, gather raises at once and the others keep
    going: removed before they finished, the build came back (a late write re-makes its parent
    folders). The writer now waits for them (sscl.data.writer.settle_zarr_io)."""
    _hold_back_a_write(monkeypatch, 0.5)
    with pytest.raises(CorpusWriteError, match="No space left on device"):
        CorpusWriter(tmp_path / "c.zarr", header())
    assert _leftovers(tmp_path) == []
    time.sleep(1.0)  # the held-back write would have landed by now
    assert _leftovers(tmp_path) == []


def test_a_write_outlasting_the_wait_is_named(tmp_path, monkeypatch):
    _hold_back_a_write(monkeypatch, 1.0)
    monkeypatch.setattr(writer, "SETTLE_TIMEOUT_S", 0.1)
    with pytest.warns(SsclWarning, match=r"zarr writes still running after 0\.1 s; removing "
                      r"the temporary build .*\.c\.zarr\.tmp-.*remove it by hand"):
        with pytest.raises(CorpusWriteError, match="No space left on device"):
            CorpusWriter(tmp_path / "c.zarr", header())
    time.sleep(1.5)  # the late write lands: that is what the warning is for
    (late,) = _leftovers(tmp_path)
    assert (tmp_path / late / "labels" / "zarr.json").is_file()


_FSIZE_CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
from sscl.cli import main
sys.exit(main(["data", "convert", "generic", sys.argv[1], sys.argv[2], "--layout", "ntu25",
               "--quiet", "--overwrite"]))
"""


@pytest.mark.slow
def test_file_size_limit_is_one_clear_error_and_the_old_corpus_stays(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    np.savez(src / "big.npz", joints=rng.standard_normal((1500, 25, 3)).astype(np.float32))
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "c.zarr"
    make(dest)
    r = subprocess.run([sys.executable, "-c", _FSIZE_CHILD, str(src), str(dest)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and "File too large" in errors[0] and "Traceback" not in r.stderr
    assert _leftovers(out) == [] and validate(dest) == []


# ----------------------------------------------------------------------------- non-finite


def test_nonfinite_refused_or_masked_at_conversion_and_at_read(tmp_path):
    seqs = random_sequences(np.random.default_rng(4), 3)
    seqs[1].joints[2, 3, 0, 0] = np.nan
    seqs[1].joints[5, 4, 1, 1] = np.inf
    with pytest.raises(CorpusError, match="2 joint.s. with a NaN or infinite.*--nonfinite mask"):
        write_corpus(tmp_path / "r.zarr", header(), seqs)
    assert not (tmp_path / "r.zarr").exists()
    with CorpusWriter(tmp_path / "m.zarr", header(), nonfinite="mask") as w:
        w.extend(seqs)
    assert w.nonfinite_masked == 2
    c = open_corpus(tmp_path / "m.zarr")
    assert c.attrs["nonfinite_masked"] == 2
    j, v, _ = c.read_sequence(1)
    assert not v[2, 3, 0] and not v[5, 4, 1] and np.isfinite(j).all()
    # a corpus holding NaN at valid joints (no checksums: a foreign writer) is refused or masked
    dest = tmp_path / "f.zarr"
    write_corpus(dest, header(), random_sequences(np.random.default_rng(4), 3), **CHUNKING)
    drop_checksums(dest)
    g = zarr.open_group(dest, mode="r+")
    row = g["joints"][0]
    row[np.broadcast_to(g["valid"][0][:, None, :], row.shape)] = np.nan
    g["joints"][0] = row
    n = int(g["valid"][0].sum())
    for budget in (None, 0):
        with pytest.raises(CorpusError, match=f"{n} valid joint.s. with a NaN"):
            c = open_corpus(dest, memory_budget=budget)
            c.read_window(0, 0, 1)
        c = open_corpus(dest, memory_budget=budget, nonfinite="mask")
        j, v, _ = c.read_window(0, 0, 1)
        assert not v[0].any() and (j == 0).all() and c.nonfinite_masked == n
    assert any(f"{3 * n} NaN/inf coordinate(s) where valid" in p for p in validate(dest))
