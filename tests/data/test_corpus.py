"""The Zarr corpus: round trips in both reader modes, atomic writes, locations, bad input."""

from __future__ import annotations

import gc
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from sscl.data.corpus import (
    CorpusWriter,
    Sequence,
    Skipped,
    open_corpus,
    validate,
    write_corpus,
)
from sscl.errors import CorpusError, DestinationExistsError
from tests.helpers.corpora import drop_checksums, header, random_sequences


def small_writer(dest, **kw):
    # Tiny chunks so a few hundred frames span several chunks and shards.
    return CorpusWriter(dest, header(), chunk_frames=16, chunks_per_shard=4, **kw)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 12))
def test_round_trip_both_modes(tmp_path_factory, seed, n):
    rng = np.random.default_rng(seed)
    seqs = random_sequences(rng, n)
    dest = tmp_path_factory.mktemp("c") / "c.zarr"
    with small_writer(dest) as w:
        w.extend(seqs)
    for budget in (None, 0):  # whole arrays in RAM; chunk cache holding ~one chunk
        c = open_corpus(dest, memory_budget=budget)
        assert c.in_ram == (budget is None)
        assert c.num_sequences == n and c.num_frames == sum(len(s.joints) for s in seqs)
        for i, s in enumerate(seqs):
            j, v, lab = c.read_sequence(i)
            np.testing.assert_array_equal(j, s.joints)
            np.testing.assert_array_equal(v, (s.joints != 0).any(axis=2))
            np.testing.assert_array_equal(lab, s.labels)
            T = len(s.joints)
            a = int(rng.integers(0, T))
            L = int(rng.integers(1, T - a + 1))
            wj, wv, wl = c.read_window(i, a, L)
            np.testing.assert_array_equal(wj, s.joints[a:a + L])
        assert c.meta[n - 1]["extra"] == {"i": n - 1}


def test_read_windows_batch_and_ownership(tmp_path):
    rng = np.random.default_rng(1)
    seqs = random_sequences(rng, 6, max_len=200)
    write_corpus(tmp_path / "c.zarr", header(), seqs, chunk_frames=16, chunks_per_shard=4)
    for budget in (None, 0):
        c = open_corpus(tmp_path / "c.zarr", memory_budget=budget)
        L = int(min(len(s.joints) for s in seqs))
        starts = np.array([len(s.joints) - L for s in seqs])
        j, v, lab = c.read_windows(np.arange(6), starts, L)
        for k, s in enumerate(seqs):
            np.testing.assert_array_equal(j[k], s.joints[starts[k]:starts[k] + L])
            np.testing.assert_array_equal(lab[k], s.labels[starts[k]:starts[k] + L])
        j[:] = 7.0  # the caller owns the result: the corpus must not change
        np.testing.assert_array_equal(c.read_sequence(0)[0], seqs[0].joints)


@pytest.mark.parametrize("joints_codec", [
    None,  # raw (default): preadv into the cache buffer
    {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"},  # blosc decompress
    {"cname": "lz4", "clevel": 5, "shuffle": "noshuffle"},  # noise is stored verbatim (memcpyed)
])
def test_chunk_reader_matches_zarr(tmp_path, joints_codec):
    rng = np.random.default_rng(2)
    seqs = random_sequences(rng, 20, max_len=400)
    write_corpus(tmp_path / "c.zarr", header(), seqs, chunk_frames=32, chunks_per_shard=8,
                 joints_codec=joints_codec)
    c = open_corpus(tmp_path / "c.zarr", memory_budget=10_000)
    g = zarr.open_group(tmp_path / "c.zarr", mode="r")
    for a in rng.integers(0, c.num_frames - 50, 30):
        out = np.empty((50, 25, 3, 2), np.float32)
        out_v = np.empty((50, 25, 2), bool)
        c.cache.read_into({"joints": out, "valid": out_v}, int(a), int(a) + 50)
        np.testing.assert_array_equal(out, g["joints"][a:a + 50])
        np.testing.assert_array_equal(out_v, g["valid"][a:a + 50])
    assert c.cache.num_slots == 1  # a slot (32 frames of joints + valid) exceeds the budget
    assert c.cache.nbytes <= 32 * 25 * 2 * (3 * 4 + 1)  # bounded by one slot


def _table_windows(t, n, length):
    """Materialise windows of a WindowTable by its row formula (the kernels' addressing)."""
    r = np.arange(length)[None, :]
    g = t.lo[:, None] + r
    rows = np.take_along_axis(t.rowbase, g >> t.shift, axis=1) + (g & ((1 << t.shift) - 1))
    return t.joints[rows], t.valid[rows]


@pytest.mark.parametrize("budget", [None, 2_000_000, 1_000])  # in RAM, slab cache, copy fallback
def test_window_table_addresses_the_same_frames_as_read_windows(tmp_path, budget):
    rng = np.random.default_rng(4)
    seqs = random_sequences(rng, 30, max_len=300)
    write_corpus(tmp_path / "c.zarr", header(), seqs, chunk_frames=32, chunks_per_shard=4)
    c = open_corpus(tmp_path / "c.zarr", memory_budget=budget)
    assert c.in_ram is (budget is None)
    for length in (1, 20, 70):  # within a chunk, across two, across three or more
        ok = np.flatnonzero(c.lengths >= length)
        seq = rng.choice(ok, 12)
        starts = np.array([rng.integers(0, c.lengths[i] - length + 1) for i in seq])
        t = c.window_table(seq, starts, length)
        # in place (no copy) except when the cache cannot hold the batch's chunks at once
        assert t.shift == {None: 62, 2_000_000: 5, 1_000: 62}[budget]
        joints, valid = _table_windows(t, len(seq), length)
        want_j, want_v, _ = c.read_windows(seq, starts, length)
        np.testing.assert_array_equal(joints, want_j)
        np.testing.assert_array_equal(valid, want_v)
    # per-window lengths: every window maps its own frames
    lengths = np.minimum(c.lengths[:5], 40)
    t = c.window_table(np.arange(5), np.zeros(5, np.int64), lengths)
    for k in range(5):
        j, v = _table_windows(
            type(t)(t.joints, t.valid, t.rowbase[k:k + 1], t.lo[k:k + 1], t.shift), 1,
            int(lengths[k]))
        np.testing.assert_array_equal(j[0], c.read_window(k, 0, int(lengths[k]))[0])
    with pytest.raises(CorpusError, match="does not fit"):
        c.window_table([0], [int(c.lengths[0])], 1)


def test_metadata_summary_and_splits(tmp_path):
    seqs = random_sequences(np.random.default_rng(3), 5)
    with small_writer(tmp_path / "c.zarr") as w:
        w.extend(seqs)
        w.skip(Skipped("src/bad.txt", "all-zero clip"))
    c = open_corpus(tmp_path / "c.zarr")
    assert c.skipped == [{"source_file": "src/bad.txt", "reason": "all-zero clip"}]
    np.testing.assert_array_equal(c.split("xsub:train"), [1, 3])
    with pytest.raises(CorpusError, match="known tags"):
        c.split("xview:train")
    counts = c.class_frame_counts()
    assert sum(counts.values()) == c.num_frames
    text = c.summary()
    assert "skipped     1" in text and "all-zero clip" in text and "walk" in text


def test_invalid_joints_stored_as_zero(tmp_path):
    j = np.ones((4, 25, 3, 1), np.float32)
    valid = np.ones((4, 25, 1), bool)
    valid[2, 5, 0] = False
    j[2, 5, :, 0] = np.nan  # an untracked joint may hold garbage; it is stored as 0
    write_corpus(tmp_path / "c.zarr", header(persons=1), [Sequence("a", j, "a", valid=valid)])
    jj, vv, _ = open_corpus(tmp_path / "c.zarr").read_sequence(0)
    assert (jj[2, 5] == 0).all() and not vv[2, 5, 0] and vv.sum() == 4 * 25 - 1
    assert validate(tmp_path / "c.zarr") == []


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(joints=np.ones((5, 24, 3, 2), np.float32)), r"joints must be \(T, V=25"),
        (dict(joints=np.ones((0, 25, 3, 2), np.float32)), "empty sequence"),
        (dict(joints=np.full((5, 25, 3, 2), np.nan, np.float32)),
         "250 joint.s. with a NaN or infinite coordinate"),
        (dict(labels=np.array([0, 1, 2, 3, 0])), "label 3 at frame 3 is outside -1..2"),
        (dict(labels=np.zeros(4)), r"labels must be \(T=5,\)"),
        (dict(extra={"x": object()}), "not JSON-serialisable"),
        (dict(joints=np.ones((5, 25, 3, 2), np.int32)), "floating point"),
    ],
)
def test_bad_sequences_name_the_problem(tmp_path, change, match):
    base = dict(seq_id="s1", joints=np.ones((5, 25, 3, 2), np.float32), source_file="x.txt")
    base.update(change)
    with pytest.raises(CorpusError, match=match) as e:
        with small_writer(tmp_path / "c.zarr") as w:
            w.append(Sequence(**base))
    assert "'s1'" in str(e.value)
    assert not (tmp_path / "c.zarr").exists()
    assert os.listdir(tmp_path) == []  # nothing half-written


def test_duplicate_ids_rejected(tmp_path):
    s = Sequence("dup", np.ones((3, 25, 3, 2), np.float32), "a")
    with pytest.raises(CorpusError, match="duplicate seq_id"):
        write_corpus(tmp_path / "c.zarr", header(), [s, s])


def test_dest_exists_overwrite_and_interrupted_overwrite(tmp_path):
    dest = tmp_path / "c.zarr"
    first = random_sequences(np.random.default_rng(4), 3)
    write_corpus(dest, header(), first)
    with pytest.raises(DestinationExistsError, match="--overwrite"):
        write_corpus(dest, header(), first)

    def interrupted():
        yield from random_sequences(np.random.default_rng(5), 2)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_corpus(dest, header(), interrupted(), overwrite=True)
    c = open_corpus(dest)  # the previous corpus is intact
    assert c.num_sequences == 3
    np.testing.assert_array_equal(c.read_sequence(2)[0], first[2].joints)
    assert sorted(os.listdir(tmp_path)) == ["c.zarr"]
    write_corpus(dest, header(), first[:1], overwrite=True)
    assert open_corpus(dest).num_sequences == 1


def test_incomplete_corpus_refused(tmp_path):
    dest = tmp_path / "c.zarr"
    write_corpus(dest, header(), random_sequences(np.random.default_rng(6), 2))
    zarr.open_group(dest, mode="r+").attrs["complete"] = False
    with pytest.raises(CorpusError, match="incomplete"):
        open_corpus(dest)
    with pytest.raises(CorpusError, match="not a directory"):
        open_corpus(tmp_path / "nothing.zarr")


def test_append(tmp_path):
    dest = tmp_path / "c.zarr"
    a = random_sequences(np.random.default_rng(7), 3)
    b = [Sequence("extra", np.ones((40, 25, 3, 2), np.float32), "e")]
    write_corpus(dest, header(), a, chunk_frames=16, chunks_per_shard=4)
    write_corpus(dest, header(), b, append=True)
    c = open_corpus(dest, memory_budget=0)
    assert c.num_sequences == 4 and c.meta[3]["seq_id"] == "extra"
    np.testing.assert_array_equal(c.read_sequence(3)[0], b[0].joints)
    np.testing.assert_array_equal(c.read_sequence(1)[0], a[1].joints)
    with pytest.raises(CorpusError, match="cannot append"):
        write_corpus(dest, header(persons=1), [], append=True)
    with pytest.raises(CorpusError, match="duplicate"):
        write_corpus(dest, header(), b, append=True)


def test_fsspec_memory_zip_and_file_url(tmp_path):
    seqs = random_sequences(np.random.default_rng(8), 4)
    write_corpus("memory://sscl-test/c.zarr", header(), seqs, chunk_frames=16, chunks_per_shard=4)
    local = tmp_path / "c.zarr"
    write_corpus(local, header(), seqs, chunk_frames=16, chunks_per_shard=4)
    zpath = tmp_path / "c.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_STORED) as z:
        for root, _, files in os.walk(local):
            for f in files:
                full = os.path.join(root, f)
                z.write(full, os.path.relpath(full, local))
    for where in ("memory://sscl-test/c.zarr", str(zpath), f"file://{local}"):
        for budget in (None, 0):
            c = open_corpus(where, memory_budget=budget)
            np.testing.assert_array_equal(c.read_window(2, 0, 1)[0], seqs[2].joints[:1])
            np.testing.assert_array_equal(c.read_sequence(3)[0], seqs[3].joints)


def test_pickle_reopens_lazily(tmp_path):
    write_corpus(tmp_path / "c.zarr", header(), random_sequences(np.random.default_rng(9), 2))
    c = open_corpus(tmp_path / "c.zarr")
    blob = pickle.dumps(c)
    assert len(blob) < 2000  # the path, not the arrays
    c2 = pickle.loads(blob)
    np.testing.assert_array_equal(c2.read_sequence(1)[0], c.read_sequence(1)[0])


def test_window_out_of_range(tmp_path):
    write_corpus(tmp_path / "c.zarr", header(), random_sequences(np.random.default_rng(10), 2))
    c = open_corpus(tmp_path / "c.zarr")
    n = int(c.lengths[0])
    with pytest.raises(CorpusError, match=f"start \\+ length <= {n}"):
        c.read_window(0, 1, n)
    with pytest.raises(CorpusError, match="sequence index 5"):
        c.read_window(5, 0, 1)


@pytest.mark.parametrize("checksums", [True, False])
def test_validate_finds_corruption(tmp_path, checksums):
    dest = tmp_path / "c.zarr"
    seqs = random_sequences(np.random.default_rng(11), 3)
    write_corpus(dest, header(), seqs)
    if not checksums:
        drop_checksums(dest)
    assert validate(dest) == []
    g = zarr.open_group(dest, mode="r+")
    g["labels"][3] = 9
    valid = g["valid"][10]
    v, m = np.argwhere(~valid)[0]
    g["joints"][10, v, 0, m] = 1.5
    problems = validate(dest)
    if checksums:  # any write behind the writer's back fails the chunks' crc32c
        assert any("array 'labels', shard 0" in p for p in problems)
        assert any("array 'joints', shard 0" in p and "chunk 0 (frames 0.." in p
                   for p in problems)
    else:
        assert any("label 9 outside -1..2" in p for p in problems)
        assert any("non-zero coordinate(s) where invalid, the first at frame 10" in p
                   for p in problems)
    g["lengths"][0] = g["lengths"][0] + 1
    assert any("'lengths' fails its crc32c" if checksums else "offsets" in p
               for p in validate(dest))
    shutil.rmtree(dest)


def test_mapped_mode_reads_what_the_chunk_cache_reads(tmp_path):
    # 64 frames x 8 chunks x 600 bytes: shards of whole pages, so the raw joints can be mapped.
    rng = np.random.default_rng(5)
    seqs = random_sequences(rng, 40, max_len=300)
    write_corpus(tmp_path / "c.zarr", header(), seqs, chunk_frames=64, chunks_per_shard=8)
    mapped = open_corpus(tmp_path / "c.zarr", memory_budget=1_000_000)  # valid masks fit
    chunked = open_corpus(tmp_path / "c.zarr", memory_budget=1_000_000, map_joints=False)
    assert (mapped.mode, chunked.mode) == ("mapped", "chunked")
    assert not mapped.in_ram and not mapped._joints.flags.writeable
    assert pickle.loads(pickle.dumps(mapped)).mode == "mapped"
    ok = np.flatnonzero(mapped.lengths >= 50)
    seq = rng.choice(ok, 30)
    starts = np.array([rng.integers(0, mapped.lengths[i] - 49) for i in seq])
    for a, b in zip(mapped.read_windows(seq, starts, 50), chunked.read_windows(seq, starts, 50)):
        np.testing.assert_array_equal(a, b)
    t = mapped.window_table(seq, starts, 50)
    j, v = _table_windows(t, len(seq), 50)
    want_j, want_v, _ = chunked.read_windows(seq, starts, 50)
    np.testing.assert_array_equal(j, want_j)
    np.testing.assert_array_equal(v, want_v)
    # The mapping lives as long as any array over it, not as long as the corpus object.
    frames = t.joints
    del mapped, t
    gc.collect()
    assert np.array_equal(frames[int(chunked.offsets[seq[0]] + starts[0])], want_j[0, 0])


@pytest.mark.parametrize("why", ["compressed", "omitted_chunk", "unaligned_shards"])
def test_mapped_mode_falls_back_to_the_chunk_cache(tmp_path, why):
    rng = np.random.default_rng(6)
    seqs = random_sequences(rng, 20, max_len=300)
    kw = {"chunk_frames": 64, "chunks_per_shard": 8}
    if why == "compressed":
        kw["joints_codec"] = {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}
    elif why == "omitted_chunk":  # an all-zero chunk is not stored (zarr skips fill chunks)
        zeros = np.zeros((200, 25, 3, 2), np.float32)
        seqs.insert(0, Sequence("zeros", zeros, "src/z.txt", valid=np.zeros((200, 25, 2), bool)))
    else:
        kw = {"chunk_frames": 32, "chunks_per_shard": 4}  # 76,800-byte shards: not whole pages
    write_corpus(tmp_path / "c.zarr", header(), seqs, **kw)
    c = open_corpus(tmp_path / "c.zarr", memory_budget=1_000_000)
    assert c.num_frames * 25 * 2 <= 1_000_000 < c.decoded_nbytes  # valid fits, joints do not
    assert c.mode == "chunked"
    g = zarr.open_group(tmp_path / "c.zarr", mode="r")
    j, _, _ = c.read_windows([1, 2], [0, 0], 1)
    np.testing.assert_array_equal(j[0, 0], g["joints"][int(c.offsets[1])])
