"""Corpus reader throughput, as ratios against baselines measured in the same run.

Targets (issue "Foundation", section 3), counted in window frames delivered per second:

- in-RAM mode, random windows: >= 0.9x copying the same windows out of in-RAM numpy arrays;
- chunked mode (corpus larger than the budget), random windows: at most 1.5x the bare cost of
  decoding the chunks each window touches (raw bytes already in memory) plus the copy;
- chunked mode, block-shuffled windows: >= 0.3x the in-RAM copy rate, peak RSS reported.

Also reported: per-window zarr reads, an uncompressed np.memmap, compression ratios and the
codec/chunk-size measurements behind data/README.md. Corpus size: $SSCL_BENCH_FRAMES
(default 300k frames of NTU-25 x 2 persons, ~195 MB decoded).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import numpy as np
import pytest
import zarr
from benchutil import SHARED, median_time
from numcodecs import blosc

from sscl.data.corpus import CorpusHeader, Sequence, open_corpus, write_corpus
from sscl.data.layouts import get_layout

FRAMES = int(os.environ.get("SSCL_BENCH_FRAMES", 300_000))
L = 128  # window length (frames)
N_WIN = 1500


def _motion(rng, T):
    """Smooth random-walk skeleton motion: compresses like real mocap, unlike white noise."""
    base = rng.normal(0, 0.3, (1, 25, 3, 2))
    steps = rng.normal(0, 0.004, (T, 25, 3, 2)).cumsum(axis=0)
    x = (base + steps).astype(np.float32)
    x[:, :, :, 1][rng.random((T, 25)) < 0.02] = 0  # a few untracked joints
    return x


@pytest.fixture(scope="module")
def corpus_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    header = CorpusHeader(layout=get_layout("ntu25"), class_names=("a", "b"), fps=30.0,
                          persons=2, source_frame="random walk")
    lengths = []
    while sum(lengths) < FRAMES:
        lengths.append(int(rng.integers(300, 3000)))

    def seqs():
        for i, T in enumerate(lengths):
            yield Sequence(f"s{i}", _motion(rng, T), "bench", labels=rng.integers(-1, 3, T))

    path = tmp_path_factory.mktemp("corpus") / "bench.zarr"
    write_corpus(path, header, seqs())
    return path


def _random_windows(c, n, seed=1):
    rng = np.random.default_rng(seed)
    ok = np.flatnonzero(c.lengths >= L)
    seq = rng.choice(ok, n)
    starts = (rng.random(n) * (c.lengths[seq] - L + 1)).astype(np.int64)
    return seq, starts


def _block_shuffled_windows(c, block_frames, seed=2):
    """Each sequence cut into L-frame windows; windows grouped by the block of their first frame;
    blocks in shuffled order, windows shuffled inside a block: each frame read once a pass."""
    rng = np.random.default_rng(seed)
    seq, starts = [], []
    for i, n in enumerate(c.lengths):
        s = np.arange(0, int(n) - L + 1, L)
        seq.append(np.full(len(s), i))
        starts.append(s)
    seq, starts = np.concatenate(seq), np.concatenate(starts)
    block = (c.offsets[seq] + starts) // block_frames
    order = []
    for b in rng.permutation(np.unique(block)):
        idx = np.flatnonzero(block == b)
        order.append(rng.permutation(idx))
    order = np.concatenate(order)
    return seq[order], starts[order]


def _copy_from_ram(J, Vd, Lab, c, seq, starts, out):
    oj, ov, ol = out
    for k in range(len(seq)):
        a = int(c.offsets[seq[k]] + starts[k])
        oj[k] = J[a:a + L]
        ov[k] = Vd[a:a + L]
        ol[k] = Lab[a:a + L]


def _alloc(c, n):
    V, C, M = c.frame_shape
    return (np.empty((n, L, V, C, M), np.float32), np.empty((n, L, V, M), bool),
            np.empty((n, L), np.int16))


def test_in_ram_random_windows(benchmark, ratios, corpus_path):
    c = open_corpus(corpus_path, memory_budget=1 << 40)
    assert c.in_ram
    seq, starts = _random_windows(c, N_WIN)
    out = _alloc(c, N_WIN)
    J, Vd, Lab = c._joints.copy(), c._valid.copy(), c.labels.copy()
    base = median_time(lambda: _copy_from_ram(J, Vd, Lab, c, seq, starts, out), repeat=7)
    benchmark(c.read_windows, seq, starts, L, out=out)
    ours = benchmark.stats.stats.median if benchmark.stats else base
    fps = N_WIN * L / ours
    benchmark.extra_info.update(frames_per_s=fps, baseline_frames_per_s=N_WIN * L / base)
    ratios.add("corpus in-RAM random windows vs numpy copy", base / ours, 0.9,
               f"{fps / 1e6:.1f}M frames/s vs {N_WIN * L / base / 1e6:.1f}M")


def _bare_decode_and_copy(raw, rd_j, rd_v, Lab, c, seq, starts, out):
    """Baseline: decode every chunk a window touches from in-memory bytes into a new buffer, then
    copy the window out."""
    oj, ov, ol = out
    cf = rd_j.chunk_frames
    # Decoding a raw chunk is materialising it: one copy of its bytes into a new buffer.
    decode_j = bytearray if rd_j.raw else blosc.decompress
    for k in range(len(seq)):
        a = int(c.offsets[seq[k]] + starts[k])
        b = a + L
        pos = 0
        for ch in range(a // cf, (b - 1) // cf + 1):
            lo, hi = max(a, ch * cf) - ch * cf, min(b, (ch + 1) * cf) - ch * cf
            dj = np.frombuffer(decode_j(raw["joints", ch]), np.float32)
            dv = np.frombuffer(blosc.decompress(raw["valid", ch]), bool)
            oj[k, pos:pos + hi - lo] = dj.reshape((cf,) + rd_j.row_shape)[lo:hi]
            ov[k, pos:pos + hi - lo] = dv.reshape((cf,) + rd_v.row_shape)[lo:hi]
            pos += hi - lo
        ol[k] = Lab[a:b]


def test_chunked_random_windows(benchmark, ratios, corpus_path):
    full = open_corpus(corpus_path, memory_budget=0).decoded_nbytes
    c = open_corpus(corpus_path, memory_budget=full // 16, map_joints=False)
    assert c.mode == "chunked"
    seq, starts = _random_windows(c, N_WIN // 3)
    out = _alloc(c, len(seq))
    rd_j, rd_v = c._readers["joints"], c._readers["valid"]
    raw = {(n, ch): r.raw_chunk_bytes(ch) for n, r in (("joints", rd_j), ("valid", rd_v))
           for ch in range(r.num_chunks)}
    base = median_time(lambda: _bare_decode_and_copy(raw, rd_j, rd_v, c.labels, c, seq, starts,
                                                     out), repeat=5)

    def ours():
        c.cache.clear()
        c.read_windows(seq, starts, L, out=out)

    benchmark(ours)
    t = benchmark.stats.stats.median if benchmark.stats else base
    ratios.add("corpus chunked random windows vs bare decode+copy", t / base, 1.5,
               f"{len(seq) * L / t / 1e6:.2f}M frames/s; baseline "
               f"{len(seq) * L / base / 1e6:.2f}M", higher_is_better=False)


def _block_pass(path, budget, seq, starts, q, map_joints=False):
    """Three passes in a fresh process; the steady-state time is the median of passes 2-3 (the
    first also pays for allocating the cache and opening the shards), the RSS covers all."""
    c = open_corpus(path, memory_budget=budget, map_joints=map_joints)
    assert c.mode == ("mapped" if map_joints else "chunked")
    out = _alloc(c, 256)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for k in range(0, len(seq), 256):
            s, st = seq[k:k + 256], starts[k:k + 256]
            c.read_windows(s, st, L, out=tuple(o[:len(s)] for o in out))
        times.append(time.perf_counter() - t)
    q.put((float(np.median(times[1:])), times[0], _peak_rss()))


def _peak_rss() -> int:
    """This process's peak RSS in bytes (VmHWM; ru_maxrss survives exec and would report the
    parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def test_chunked_block_shuffled(ratios, corpus_path):
    c = open_corpus(corpus_path, memory_budget=1 << 40)
    budget = min(32 << 20, c.decoded_nbytes // 4)
    seq, starts = _block_shuffled_windows(c, block_frames=16 * 1024)
    J, Vd, Lab = c._joints, c._valid, c.labels
    out = _alloc(c, 256)

    def ram_pass():
        for k in range(0, len(seq), 256):
            s, st = seq[k:k + 256], starts[k:k + 256]
            _copy_from_ram(J, Vd, Lab, c, s, st, tuple(o[:len(s)] for o in out))

    base = median_time(ram_pass, repeat=3)
    ctx = mp.get_context("spawn")  # a fresh process: its peak RSS is the reader's alone
    frames = len(seq) * L
    # The chunk cache (every decoded byte inside the budget; the target), then the mapped mode
    # (raw joints memory-mapped: its RSS counts the page-cache pages it maps; reported).
    for map_joints in (False, True):
        q = ctx.Queue()
        p = ctx.Process(target=_block_pass,
                        args=(str(corpus_path), budget, seq, starts, q, map_joints))
        p.start()
        ours, first, rss = q.get()
        p.join()
        what = "mapped joints" if map_joints else "chunked"
        ratios.add(f"corpus {what} block-shuffled vs in-RAM copy", base / ours,
                   None if map_joints else 0.3,
                   f"{frames / ours / 1e6:.1f}M frames/s (first pass "
                   f"{frames / first / 1e6:.1f}M); peak RSS {rss / 2**20:.0f} MiB with a "
                   f"{budget >> 20} MiB budget on a {c.decoded_nbytes / 2**20:.0f} MiB corpus")


def test_reference_points(ratios, corpus_path, tmp_path):
    """Report-only: per-window zarr reads, an uncompressed memmap, compression ratio."""
    c = open_corpus(corpus_path, memory_budget=1 << 40)
    seq, starts = _random_windows(c, 200)
    g = zarr.open_group(corpus_path, mode="r")
    out = _alloc(c, len(seq))

    def zarr_reads():
        for k in range(len(seq)):
            a = int(c.offsets[seq[k]] + starts[k])
            out[0][k] = g["joints"][a:a + L]
            out[1][k] = g["valid"][a:a + L]

    mm_path = tmp_path / "joints.f32"
    mm = np.memmap(mm_path, np.float32, "w+", shape=c._joints.shape)
    mm[:] = c._joints
    mm.flush()
    mm = np.memmap(mm_path, np.float32, "r", shape=c._joints.shape)

    def memmap_reads():
        for k in range(len(seq)):
            a = int(c.offsets[seq[k]] + starts[k])
            out[0][k] = mm[a:a + L]

    ram = median_time(lambda: _copy_from_ram(c._joints, c._valid, c.labels, c, seq, starts, out))
    tz = median_time(zarr_reads, repeat=3)
    tm = median_time(memmap_reads)
    stored = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(corpus_path)
                 for f in fs)
    ratios.add("zarr per-window reads vs in-RAM copy", ram / tz, None,
               f"{tz / len(seq) * 1e3:.2f} ms/window")
    ratios.add("np.memmap (uncompressed, page cache) vs in-RAM copy", ram / tm, None,
               f"{tm / len(seq) * 1e6:.0f} us/window")
    ratios.add("compression ratio (decoded / stored)", c.decoded_nbytes / stored, None,
               f"{stored / 2**20:.0f} MiB stored for {c.decoded_nbytes / 2**20:.0f} MiB")


@pytest.mark.parametrize("cname,clevel", [("lz4", 5), ("zstd", 3), ("zstd", 7)])
@pytest.mark.parametrize("chunk", [256, 1024, 4096])
def test_codec_choice(ratios, corpus_path, cname, clevel, chunk):
    """Report-only: decode throughput and compression ratio per codec and chunk size."""
    c = open_corpus(corpus_path, memory_budget=1 << 40)
    x = np.ascontiguousarray(c._joints[: 64 * chunk])
    codec_id = blosc.SHUFFLE
    raw = [blosc.compress(x[i:i + chunk].tobytes(), cname.encode(), clevel, codec_id)
           for i in range(0, len(x), chunk)]
    t = median_time(lambda: [blosc.decompress(r) for r in raw], repeat=3)
    ratio = x.nbytes / sum(len(r) for r in raw)
    ratios.add(f"codec {cname}:{clevel} chunk {chunk}", ratio, None,
               f"decode {x.nbytes / t / 1e9:.2f} GB/s, compression {ratio:.2f}x")


@pytest.mark.parametrize("cname,clevel", [("lz4", 5), ("zstd", 3)])
def test_codec_on_real_mocap(ratios, cname, clevel):
    """Report-only: how real float32 skeleton data compresses (CMU mocap, 19k frames)."""
    root = SHARED / "cmu_mocap6" / "joints"
    if not root.is_dir():
        pytest.skip(f"{root} absent (a user's clone has no ../shared)")
    x = np.concatenate([np.load(p)["joints"] for p in sorted(root.glob("*.npz"))])
    x = np.ascontiguousarray(x.astype(np.float32))
    chunk = 1024
    raw = [blosc.compress(x[i:i + chunk].tobytes(), cname.encode(), clevel, blosc.SHUFFLE)
           for i in range(0, len(x), chunk)]
    t = median_time(lambda: [blosc.decompress(r) for r in raw], repeat=3)
    ratio = x.nbytes / sum(len(r) for r in raw)
    ratios.add(f"codec {cname}:{clevel} on CMU mocap joints", ratio, None,
               f"decode {x.nbytes / t / 1e9:.2f} GB/s, compression {ratio:.2f}x")


def _alternating(fa, fb, repeat: int) -> tuple[float, float]:
    """Median seconds of ``fa`` and ``fb``, run alternately (a busy machine slows both alike)."""
    ta, tb = [], []
    for _ in range(repeat):
        for f, out in ((fa, ta), (fb, tb)):
            t = time.perf_counter()
            f()
            out.append(time.perf_counter() - t)
    return float(np.median(ta)), float(np.median(tb))


def test_integrity_cost(ratios, corpus_path, tmp_path):
    """Report-only: what the integrity check costs the read path (issue 12).

    Ours: the writer records a crc32c per stored chunk; a reader checks each chunk once, on
    its first decode in the process (later decodes of that chunk skip it). Rows: one decode
    pass over joints + valid by fresh readers with the record vs without it (the first-pass
    cost; the steady state pays nothing), and opening the corpus in RAM with vs without the
    record. The alternative, zarr's crc32c codec inside each shard (bytes -> crc32c), is
    checked by zarr on every read of every chunk: a zarr read of the same joints with and
    without it.
    """
    import json
    import shutil

    from zarr.codecs import Crc32cCodec

    from sscl.data.chunks import ShardedArrayReader

    g = zarr.open_group(corpus_path, mode="r")
    record = g.attrs["checksums"]["arrays"]
    root = os.path.abspath(corpus_path)

    def decode_pass(checked: bool) -> None:
        for name in ("joints", "valid"):
            r = ShardedArrayReader(name, g[name].metadata.to_dict(), g[name].dtype, None, root,
                                   checksums=record[name] if checked else None)
            buf = np.empty(r.chunk_shape, r.dtype)
            for ch in range(r.num_chunks):
                r.decode_into(ch, buf)
            r.close()

    checked, plain = _alternating(lambda: decode_pass(True), lambda: decode_pass(False), 7)
    nbytes = open_corpus(corpus_path, memory_budget=0).decoded_nbytes
    ratios.add("integrity: first decode of every chunk, crc32c checked vs unchecked",
               plain / checked, None,
               f"{nbytes / checked / 1e9:.2f} GB/s checked vs {nbytes / plain / 1e9:.2f} GB/s; "
               "later decodes of a chunk: unchecked")
    legacy = tmp_path / "legacy.zarr"  # the same corpus without the record
    shutil.copytree(corpus_path, legacy)
    meta = json.loads((legacy / "zarr.json").read_text())
    del meta["attributes"]["checksums"]
    (legacy / "zarr.json").write_text(json.dumps(meta))
    t_rec, t_leg = _alternating(lambda: open_corpus(corpus_path, memory_budget=1 << 40),
                                lambda: open_corpus(legacy, memory_budget=1 << 40), 5)
    ratios.add("integrity: open in RAM with the record vs without", t_leg / t_rec, None,
               f"{t_rec * 1e3:.0f} ms vs {t_leg * 1e3:.0f} ms for {nbytes / 2**20:.0f} MiB")
    joints = g["joints"][:]
    shape = joints.shape
    arrays = {}
    for label, comp in (("plain", None), ("crc32c", [Crc32cCodec()])):
        a = zarr.create_array(str(tmp_path / f"{label}.zarr"), shape=shape, dtype="float32",
                              chunks=(1024,) + shape[1:], shards=(65536,) + shape[1:],
                              compressors=comp, fill_value=0.0)
        a[:] = joints
        arrays[label] = a
    t_crc, t_plain = _alternating(lambda: arrays["crc32c"][:], lambda: arrays["plain"][:], 5)
    ratios.add("zarr crc32c codec alternative: zarr read with vs without it", t_plain / t_crc,
               None, f"{t_crc * 1e3:.0f} ms vs {t_plain * 1e3:.0f} ms per full read; paid on "
               "every read, and chunks no longer sit at k * chunk_nbytes, so the mapped mode "
               "and the one-pread raw path are lost")
