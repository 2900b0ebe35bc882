"""The corpus reader and ``validate`` fuzzed like the converters (tests/data/formats/test_fuzz.py):
random byte flips, truncations, appended bytes and deletions of the chunk, index and metadata
files of a tiny corpus. Nothing escapes but typed errors (SsclError subclasses), whatever reads
without an error reads exactly what was written, an undamaged corpus has no problem, and
``validate`` reports each kind of damage naming the array it hit:

- any damage to a shard file of ``joints``, ``valid`` or ``labels`` (every stored chunk and the
  shard's size are recorded), and any truncation or deletion of any file;
- a flipped byte or appended bytes in a small array's chunk (zstd: a flip in an unused header
  bit decodes to the same bytes) or in a ``zarr.json`` (a flip or appended bytes inside white
  space) are reported the same way unless the corpus still reads exactly as written.

A problem with the group's own ``zarr.json`` names the group (not a readable group, attributes
failing their crc32c, ...), or an array when the damaged attribute is its checksum record.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sscl.data.corpus import CorpusHeader, Sequence, open_corpus, validate, write_corpus
from sscl.data.layouts import get_layout
from sscl.errors import SsclError

# 100 examples each in CI (~25 s together); SSCL_FUZZ_EXAMPLES=1000 for a longer run
FUZZ = settings(max_examples=int(os.environ.get("SSCL_FUZZ_EXAMPLES", 100)), deadline=None,
                derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])
MODES = {"in-RAM": {}, "chunked": {"memory_budget": 0}, "mapped": {"memory_budget": 200_000}}
SHARDED = ("joints", "valid", "labels")  # every stored chunk and each shard's size recorded
CLASSES = ("a", "b")


@pytest.fixture(scope="module")
def corpus():
    """(path, files, expected per-sequence arrays) of a tiny corpus: 64-frame chunks, 8 a shard
    (307,200 bytes: whole pages, mappable), ~1,100 frames in 3 shards of raw joints and blosc
    valid/labels."""
    root = Path(tempfile.mkdtemp(prefix="sscl-fuzz-"))
    rng = np.random.default_rng(9)
    seqs = []
    for i in range(8):
        T = int(rng.integers(60, 220))
        j = rng.standard_normal((T, 25, 3, 2)).astype(np.float32)
        j[:, :, :, 1][rng.random((T, 25)) < 0.3] = 0.0
        seqs.append(Sequence(f"s{i}", j, f"{i}.txt", labels=rng.integers(-1, 3, T)))
    header = CorpusHeader(layout=get_layout("ntu25"), class_names=CLASSES, fps=30.0,
                          persons=2, source_frame="fuzz")
    path = root / "c.zarr"
    write_corpus(path, header, seqs, chunk_frames=64, chunks_per_shard=8)
    assert sum(len(s.joints) for s in seqs) > 1024
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    c = open_corpus(path)
    assert c.mode == "in-RAM" and open_corpus(path, **MODES["mapped"]).mode == "mapped"
    want = [c.read_sequence(i) for i in range(c.num_sequences)]
    assert validate(path) == []
    yield path, files, want
    shutil.rmtree(root, ignore_errors=True)


def _reads_exactly(path: Path, want, mode: str) -> bool:
    """Open and read every sequence: False on a typed error; an unflagged read must be exact
    (sequences, their arrays, and the attributes they are read by)."""
    try:
        c = open_corpus(path, **MODES[mode])
        got = [c.read_sequence(i) for i in range(c.num_sequences)]
    except SsclError:
        return False
    assert len(got) == len(want) and c.class_names == CLASSES and c.fps == 30.0
    assert [m["seq_id"] for m in c.meta] == [f"s{i}" for i in range(len(want))]
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)
    return True


def _check(path: Path, want, mode: str, name: str, how: str) -> None:
    """``validate`` names the damaged array (the module docstring says when it must)."""
    exact = _reads_exactly(path, want, mode)
    problems = validate(path)
    assert all(isinstance(p, str) for p in problems)
    array = name.split("/")[0] if "/" in name else None  # None: the group's zarr.json
    if how == "none":
        assert problems == [] and exact
        return
    shard = array in SHARDED and not name.endswith("zarr.json")
    must = shard or how in ("truncate", "delete")  # appended white space keeps JSON valid
    if not problems:
        assert exact and not must, (name, how)
        return
    if array is not None:
        assert any(f"'{array}'" in p for p in problems), (name, how, problems)
    elif how != "flip":
        assert "not a readable Zarr v3 group" in problems[0], problems


@pytest.mark.parametrize("mode", sorted(MODES))
def test_an_undamaged_corpus_has_no_problem(corpus, mode):
    path, _, want = corpus
    assert validate(path) == [] and _reads_exactly(path, want, mode)


def _damaged_copy(src: Path) -> Path:
    dst = Path(tempfile.mkdtemp(prefix="sscl-fuzz-case-")) / "c.zarr"
    shutil.copytree(src, dst)
    return dst


@FUZZ
@given(data=st.data(), mode=st.sampled_from(sorted(MODES)))
def test_flipped_bytes(corpus, data, mode):
    path, files, want = corpus
    name = data.draw(st.sampled_from(files), label="file")
    d = _damaged_copy(path)
    try:
        f = d / name
        f_orig = f.read_bytes()
        b = bytearray(f_orig)
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            k = data.draw(st.integers(0, len(b) - 1), label="at")
            b[k] ^= data.draw(st.integers(1, 255), label="xor")
        f.write_bytes(bytes(b))
        _check(d, want, mode, name, "flip" if b != f_orig else "none")  # flips may cancel
    finally:
        shutil.rmtree(d.parent, ignore_errors=True)


@FUZZ
@given(data=st.data(), mode=st.sampled_from(sorted(MODES)),
       how=st.sampled_from(["truncate", "append", "delete"]))
def test_truncated_extended_or_deleted_files(corpus, data, mode, how):
    path, files, want = corpus
    name = data.draw(st.sampled_from(files), label="file")
    d = _damaged_copy(path)
    try:
        f = d / name
        if how == "delete":
            f.unlink()
        elif how == "truncate":
            with open(f, "r+b") as fh:
                fh.truncate(data.draw(st.integers(0, max(0, f.stat().st_size - 1)), label="to"))
        else:
            with open(f, "ab") as fh:
                fh.write(data.draw(st.binary(min_size=1, max_size=64), label="tail"))
        _check(d, want, mode, name, how)
    finally:
        shutil.rmtree(d.parent, ignore_errors=True)
