"""The corpus reader fuzzed like the converters (tests/data/test_formats_fuzz.py): random byte
flips, truncations, appended bytes and deletions of the chunk, index and metadata files of a
tiny corpus. Nothing escapes but typed errors (SsclError subclasses), ``validate`` always
returns a list, and whatever reads without an error reads exactly what was written."""

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
    header = CorpusHeader(layout=get_layout("ntu25"), class_names=("a", "b"), fps=30.0,
                          persons=2, source_frame="fuzz")
    path = root / "c.zarr"
    write_corpus(path, header, seqs, chunk_frames=64, chunks_per_shard=8)
    assert sum(len(s.joints) for s in seqs) > 1024
    files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
    c = open_corpus(path)
    assert c.mode == "in-RAM" and open_corpus(path, **MODES["mapped"]).mode == "mapped"
    want = [c.read_sequence(i) for i in range(c.num_sequences)]
    yield path, files, want
    shutil.rmtree(root, ignore_errors=True)


def _check(path: Path, want, mode: str) -> None:
    """Open, read every sequence and validate: only typed errors; an unflagged read is exact."""
    try:
        c = open_corpus(path, **MODES[mode])
        assert c.num_sequences == len(want)
        for i, (j, v, lab) in enumerate(want):
            got = c.read_sequence(i)
            np.testing.assert_array_equal(got[0], j)
            np.testing.assert_array_equal(got[1], v)
            np.testing.assert_array_equal(got[2], lab)
    except SsclError:
        pass
    problems = validate(path)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)


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
        b = bytearray(f.read_bytes())
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            k = data.draw(st.integers(0, len(b) - 1), label="at")
            b[k] ^= data.draw(st.integers(1, 255), label="xor")
        f.write_bytes(bytes(b))
        _check(d, want, mode)
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
        _check(d, want, mode)
    finally:
        shutil.rmtree(d.parent, ignore_errors=True)
