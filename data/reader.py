"""Reading a skeleton corpus: whole sequences and random windows, fast.

The reader is built around chunks, not calls: zarr's per-call overhead (1-4 ms here) would
dominate reading one window. Three modes (``Corpus.mode``), picked by the memory budget:

- **in-RAM**: when ``joints`` + ``valid`` fit the budget, both arrays are decoded once (a single
  zarr read each) and windows are plain numpy slice copies.
- **mapped**: otherwise, when the joints are stored raw in a local store and ``map_joints`` is
  on (the default), the joints are one read-only array over the memory-mapped shard files
  (``sscl.data.mapping``: page-cache pages shared by all processes, nothing copied) and the
  valid masks (1/12 of the size) are decoded in RAM, if they fit the budget.
- **chunked**: otherwise windows are assembled from decoded 1024-frame chunks held in a
  byte-bounded LRU of slots (``sscl.data.chunks``), read straight from the shard files; every
  decoded byte stays inside the budget.

``labels``, offsets, lengths and metadata are always in RAM (2 bytes a frame).
Every array ``read_*`` returns is a fresh copy the caller owns; ``window_table`` addresses
windows in place.

The corpus is validated once when opened (schema, shapes, offsets; HOUSE_STYLE "validate once
at the boundary"); ``validate`` runs the full content check (checksums, finite values, zeros
where invalid, label range) chunk by chunk.

Integrity: the writer records a crc32c of every stored chunk, of the offsets, lengths and
metadata, and each shard file's size (attribute ``checksums``). Opening checks the small
arrays, every shard file's presence and size and every shard index (its own crc32c, offsets
inside the file); each chunk is checked against its crc32c the first time this process reads
it (in RAM: at open; chunked: on its first decode; mapped: before the first window of its
shard). Damage of any kind raises CorpusError naming the array, shard file and chunk. NaN or
infinity at a valid joint is refused (``nonfinite="refuse"``, default) or masked (``"mask"``).
The checks themselves: sscl.data.integrity; ``validate``: sscl.data.validation.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import zarr

from sscl.data.chunks import ShardedArrayReader, SlabCache, crc32c, decode_all
from sscl.data.integrity import check_attributes, check_schema, read_array, read_small
from sscl.data.layouts import Layout
from sscl.data.mapping import map_frames
from sscl.data.store import open_store
from sscl.errors import CorpusError

DEFAULT_MEMORY_BUDGET = 2 << 30  # bytes; override with memory_budget= or $SSCL_MEMORY_BUDGET


def _budget(memory_budget: int | None) -> int:
    if memory_budget is not None:
        return int(memory_budget)
    env = os.environ.get("SSCL_MEMORY_BUDGET")
    return int(float(env)) if env else DEFAULT_MEMORY_BUDGET


@dataclass(frozen=True)
class WindowTable:
    """Windows addressed in place: frame r of window n is row
    ``rowbase[n, (lo[n] + r) >> shift] + ((lo[n] + r) & (2**shift - 1))`` of ``joints`` /
    ``valid`` (see ``sscl.data.augment.two_view_frames``).

    Attributes:
        joints: (F, V, C, M) float32 frame table (the corpus in RAM, or the cache's slab).
        valid: (F, V, M) bool.
        rowbase: (N, S) int64 first row of each chunk a window touches.
        lo: (N,) int64 offset of each window in its first chunk.
        shift: log2 of the chunk length (62: rows are contiguous per window).
    """

    joints: np.ndarray
    valid: np.ndarray
    rowbase: np.ndarray
    lo: np.ndarray
    shift: int


@dataclass
class Corpus:
    """An opened corpus. Use :func:`open_corpus`.

    Attributes:
        path: where it was opened from.
        layout: the skeleton layout.
        class_names: K action classes; label K is background.
        fps, persons: corpus frame rate and persons per frame (M).
        offsets, lengths: (S,) int64 first frame and length of each sequence.
        labels: (F,) int16 per-frame labels, in RAM.
        meta: per-sequence dicts (seq_id, subject, camera, setup, source_file, fps, split_tags,
            extra).
        skipped: source items not converted, with reasons.
        attrs: all group attributes (provenance, source frame, label rule, ...).
    """

    path: str
    layout: Layout
    class_names: tuple[str, ...]
    fps: float
    persons: int
    offsets: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    meta: list[dict]
    skipped: list[dict]
    attrs: dict
    memory_budget: int
    _group: zarr.Group = field(repr=False)
    _fs: object = field(repr=False)
    _root: str = field(repr=False)
    _joints: np.ndarray | None = field(default=None, repr=False)
    _valid: np.ndarray | None = field(default=None, repr=False)
    _readers: dict = field(default_factory=dict, repr=False)
    _mapped: object = field(default=None, repr=False)  # MappedFrames in the mapped mode
    map_joints: bool = True
    cache: SlabCache | None = field(default=None, repr=False)
    nonfinite: str = "refuse"
    nonfinite_masked: int = 0  # valid joints masked for a NaN/inf coordinate since opening
    _clean: np.ndarray | None = field(default=None, repr=False)  # chunks/shards found finite

    # -- sizes -------------------------------------------------------------------------------

    @property
    def num_sequences(self) -> int:
        return len(self.lengths)

    @property
    def num_frames(self) -> int:
        return int(self.labels.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(V, C, M) of one frame."""
        return (self.layout.num_joints, self.layout.channels, self.persons)

    @property
    def decoded_nbytes(self) -> int:
        """Bytes of ``joints`` + ``valid`` decoded: what the in-RAM mode needs."""
        V, C, M = self.frame_shape
        return self.num_frames * V * M * (4 * C + 1)

    @property
    def in_ram(self) -> bool:
        """Joints and valid masks decoded in this process's memory."""
        return self.mode == "in-RAM"

    @property
    def mode(self) -> str:
        """``"in-RAM"``, ``"mapped"`` (joints memory-mapped from the raw shards, valid masks
        decoded in RAM) or ``"chunked"`` (both through the chunk cache)."""
        if self._joints is None:
            return "chunked"
        return "mapped" if self._mapped is not None else "in-RAM"

    @property
    def has_checksums(self) -> bool:
        """The corpus carries the writer's checksum record (corpora written before it do not:
        damage to their chunks' contents cannot be detected)."""
        return isinstance(self.attrs.get("checksums"), dict)

    def __getstate__(self):
        # Picklable for worker processes: reopen lazily there, never ship decoded arrays.
        return {"path": self.path, "memory_budget": self.memory_budget, "map": self.map_joints,
                "nonfinite": self.nonfinite}

    def __setstate__(self, state):
        other = open_corpus(state["path"], memory_budget=state["memory_budget"],
                            map_joints=state.get("map", True),
                            nonfinite=state.get("nonfinite", "refuse"))
        self.__dict__.update(other.__dict__)

    # -- mode --------------------------------------------------------------------------------

    def _setup_mode(self) -> None:
        rj, rv = self._readers["joints"], self._readers["valid"]
        if self.decoded_nbytes <= self.memory_budget:
            self._joints = decode_all(rj)
            self._valid = decode_all(rv)
            self._nonfinite_frames(self._joints, self._valid, 0)
            return
        V, _, M = self.frame_shape
        if self.map_joints and self.num_frames * V * M <= self.memory_budget:
            mapped = map_frames(rj)
            if mapped is not None:
                self._joints, self._mapped = mapped.frames, mapped
                self._valid = decode_all(rv)
                self._clean = np.zeros(rj.num_shards, bool)
                return
        self._clean = np.zeros(rj.num_chunks, bool)
        self.cache = SlabCache({"joints": rj, "valid": rv}, self.memory_budget,
                               on_load=self._check_chunk)

    # -- non-finite values and mapped checks ---------------------------------------------------

    def _nonfinite_frames(self, joints: np.ndarray, valid: np.ndarray, first: int) -> bool:
        """Refuse or mask (in place) NaN/inf at valid joints of frames ``first + i``; True when
        the frames are clean."""
        if np.isfinite(joints).all():  # flat: ~100x faster than the per-joint reduction
            return True
        bad = valid & ~np.isfinite(joints).all(axis=2)
        if not bad.any():
            return True
        n = int(bad.sum())
        if self.nonfinite != "mask" or not joints.flags.writeable:
            f = first + int(np.argwhere(bad)[0][0])
            i = int(np.searchsorted(self.offsets, f, side="right")) - 1
            seq = f"sequence {i}, {self.meta[i]['seq_id']!r}" if i >= 0 else "no sequence"
            how = ("open it with nonfinite='mask' to mark them missing" if joints.flags.writeable
                   else "the memory-mapped joints cannot be masked; open with map_joints=False "
                   "and nonfinite='mask'")
            raise CorpusError(
                f"{self.path}: array 'joints': {n} valid joint(s) with a NaN or infinite "
                f"coordinate in frames {first}..{first + len(joints) - 1}, the first at frame "
                f"{f} ({seq}); {how}, "
                "or convert again")
        valid[bad] = False
        joints[np.broadcast_to(bad[:, :, None, :], joints.shape)] = 0
        self.nonfinite_masked += n
        return False

    def _check_chunk(self, c: int, parts: dict[str, np.ndarray]) -> None:
        """SlabCache hook: a freshly decoded chunk's non-finite check (skipped for chunks found
        clean before; masked chunks are masked again on every decode)."""
        if not self._clean[c]:
            cf = self.cache.chunk_frames
            n = min(cf, self.num_frames - c * cf)
            self._clean[c] = self._nonfinite_frames(parts["joints"][:n], parts["valid"][:n],
                                                    c * cf)

    def _check_mapped(self, first: np.ndarray, last: np.ndarray) -> None:
        """Before frames of a mapped shard are first used: its chunks' crc32c, sizes and
        finite values (the mapping itself is never written)."""
        rj = self._readers["joints"]
        sf = rj.shard_frames
        shards = np.unique(np.concatenate((np.asarray(first) // sf, np.asarray(last) // sf)))
        region = np.asarray(self._mapped._region)
        for s in shards[~self._clean[shards]].tolist():
            if rj.checksums is not None:
                cf, cps = rj.chunk_frames, rj.chunks_per_shard
                for c in range(s * cps, min(rj.num_chunks, (s + 1) * cps)):
                    if rj._verified[c]:
                        continue
                    crc = crc32c(region[c * cf:(c + 1) * cf])
                    if crc != rj.checksums[c]:
                        raise CorpusError(f"{rj._where(s, c - s * cps)}: the chunk's bytes fail "
                                          f"their crc32c (written {rj.checksums[c]:#010x}, read "
                                          f"{crc:#010x}); restore the file or convert again")
                    rj._verified[c] = True
            a, b = s * sf, min(self.num_frames, (s + 1) * sf)
            self._nonfinite_frames(self._joints[a:b], self._valid[a:b], a)
            self._clean[s] = True

    # -- reading -----------------------------------------------------------------------------

    def _span(self, i: int, start: int, length: int) -> tuple[int, int]:
        if not 0 <= i < self.num_sequences:
            raise CorpusError(
                f"{self.path}: sequence index {i} out of range 0..{self.num_sequences - 1}"
            )
        n = int(self.lengths[i])
        if length <= 0 or start < 0 or start + length > n:
            raise CorpusError(
                f"{self.path}: window start={start} length={length} does not fit sequence {i} "
                f"({self.meta[i]['seq_id']!r}, {n} frames); expected 0 <= start and "
                f"start + length <= {n}"
            )
        o = int(self.offsets[i]) + start
        return o, o + length

    def _copy_frames(self, a: int, b: int, joints: np.ndarray, valid: np.ndarray) -> None:
        if self._mapped is not None:
            self._check_mapped(np.array([a]), np.array([b - 1]))
        if self._joints is not None:
            joints[...] = self._joints[a:b]
            valid[...] = self._valid[a:b]
        else:
            self.cache.read_into({"joints": joints, "valid": valid}, a, b)

    def read_window(self, i: int, start: int, length: int):
        """Frames [start, start + length) of sequence ``i``.

        Returns:
            joints (L, V, C, M) float32, valid (L, V, M) bool, labels (L,) int16, all new arrays.

        Raises:
            CorpusError: the window does not fit inside the sequence.
        """
        a, b = self._span(i, start, length)
        V, C, M = self.frame_shape
        joints = np.empty((length, V, C, M), np.float32)
        valid = np.empty((length, V, M), bool)
        self._copy_frames(a, b, joints, valid)
        return joints, valid, self.labels[a:b].copy()

    def read_sequence(self, i: int):
        """The whole sequence ``i``: joints (T,V,C,M), valid (T,V,M), labels (T,)."""
        return self.read_window(i, 0, int(self.lengths[i]))

    def _first_frames(self, seq_idx: np.ndarray, starts: np.ndarray, lengths: np.ndarray
                      ) -> np.ndarray:
        """Corpus frame of each window's first frame, after checking every window fits (the
        first bad one raises, as :meth:`_span` words it); in the mapped mode the shards the
        windows touch get their page tables filled."""
        bad = (seq_idx < 0) | (seq_idx >= self.num_sequences)
        if bad.any():
            self._span(int(seq_idx[np.argmax(bad)]), 0, 1)
        bad = (starts < 0) | (starts + lengths > self.lengths[seq_idx]) | (lengths <= 0)
        if bad.any():
            k = int(np.argmax(bad))
            self._span(int(seq_idx[k]), int(starts[k]), int(lengths[k]))
        firsts = self.offsets[seq_idx] + starts
        if self._mapped is not None:
            self._check_mapped(firsts, firsts + lengths - 1)
            self._mapped.ensure(firsts, firsts + lengths - 1)
        return firsts

    def read_windows(self, seq_idx, starts, length: int, out=None):
        """A batch of equal-length windows.

        Args:
            seq_idx: (N,) sequence indices.
            starts: (N,) start frames within each sequence.
            length: window length L.
            out: optional preallocated (joints (N,L,V,C,M), valid (N,L,V,M), labels (N,L)).

        Returns:
            (joints, valid, labels) as above.
        """
        seq_idx = np.asarray(seq_idx, np.int64)
        starts = np.asarray(starts, np.int64)
        n = len(seq_idx)
        V, C, M = self.frame_shape
        if out is None:
            out = (np.empty((n, length, V, C, M), np.float32), np.empty((n, length, V, M), bool),
                   np.empty((n, length), np.int16))
        joints, valid, labels = out
        # Check every window at once; the copy loop below then does nothing but copy.
        firsts = self._first_frames(seq_idx, starts, np.full(n, length, np.int64)).tolist()
        lab = self.labels
        if self._joints is not None:
            J, Vd = self._joints, self._valid
            for k, a in enumerate(firsts):
                joints[k] = J[a:a + length]
                valid[k] = Vd[a:a + length]
                labels[k] = lab[a:a + length]
        else:
            cache = self.cache
            sj, sv = cache.slab("joints"), cache.slab("valid")
            cf = cache.chunk_frames
            slot_of = cache.slot  # bound once: this loop runs per window
            for k, a in enumerate(firsts):
                c, lo = divmod(a, cf)
                if lo + length <= cf:  # the common case: one chunk holds the whole window
                    slot = slot_of(c)
                    joints[k] = sj[slot, lo:lo + length]
                    valid[k] = sv[slot, lo:lo + length]
                else:
                    cache.read_into({"joints": joints[k], "valid": valid[k]}, a, a + length)
                labels[k] = lab[a:a + length]
        return joints, valid, labels

    def window_table(self, seq_idx, starts, lengths) -> WindowTable:
        """Windows addressed in place, for kernels that gather their frames themselves.

        In RAM the table is the corpus itself. Chunked, the chunks the windows touch are made
        resident together in the cache's slabs and the table is those slabs: nothing is
        copied. When the cache has fewer slots than the batch touches chunks, the windows are
        copied into a table of their own instead (same result, one copy).

        Args:
            seq_idx: (N,) sequence indices.
            starts: (N,) start frames within each sequence.
            lengths: (N,) window lengths (or one length for all); each window must fit.

        Returns:
            A :class:`WindowTable`, valid until the next read from this corpus.

        Raises:
            CorpusError: a window does not fit inside its sequence.
        """
        seq_idx = np.asarray(seq_idx, np.int64)
        starts = np.asarray(starts, np.int64)
        n = len(seq_idx)
        lengths = np.broadcast_to(np.asarray(lengths, np.int64), (n,))
        firsts = self._first_frames(seq_idx, starts, lengths)
        V, C, M = self.frame_shape
        if self._joints is not None:
            return WindowTable(self._joints, self._valid, firsts[:, None],
                               np.zeros(n, np.int64), 62)
        cache = self.cache
        cf = cache.chunk_frames
        if n and cf & (cf - 1) == 0:
            c0 = firsts // cf
            c1 = (firsts + lengths - 1) // cf  # last chunk each window touches
            span = int((c1 - c0).max()) + 1
            ids = np.minimum(c0[:, None] + np.arange(span)[None, :], c1[:, None])
            uniq, inverse = np.unique(ids, return_inverse=True)
            if len(uniq) <= cache.num_slots:
                slots = cache.slots(uniq)
                return WindowTable(
                    cache.slab("joints").reshape((-1, V, C, M)),
                    cache.slab("valid").reshape((-1, V, M)),
                    (slots * cf)[inverse.reshape(ids.shape)],
                    firsts - c0 * cf,
                    int(cf).bit_length() - 1,
                )
        lmax = int(lengths.max()) if n else 1
        joints = np.zeros((n, lmax, V, C, M), np.float32)
        valid = np.zeros((n, lmax, V, M), bool)
        for k in range(n):
            t = int(lengths[k])
            a, b = int(firsts[k]), int(firsts[k]) + t
            self._copy_frames(a, b, joints[k, :t], valid[k, :t])
        return WindowTable(joints.reshape((-1, V, C, M)), valid.reshape((-1, V, M)),
                           (np.arange(n, dtype=np.int64) * lmax)[:, None],
                           np.zeros(n, np.int64), 62)

    # -- selections --------------------------------------------------------------------------

    def split(self, tag: str) -> np.ndarray:
        """Indices of the sequences carrying split tag ``tag`` (e.g. "xsub:train")."""
        idx = [i for i, m in enumerate(self.meta) if tag in m["split_tags"]]
        if not idx:
            known = sorted({t for m in self.meta for t in m["split_tags"]})
            raise CorpusError(
                f"{self.path}: no sequence has split tag {tag!r}; known tags: {known}"
            )
        return np.asarray(idx, np.int64)

    def class_frame_counts(self) -> dict[str, int]:
        """Frames per class name, plus "background" and "unlabelled"."""
        K = len(self.class_names)
        counts = np.bincount(self.labels.astype(np.int64) + 1, minlength=K + 2)
        out = {"unlabelled": int(counts[0])}
        out.update({name: int(counts[k + 1]) for k, name in enumerate(self.class_names)})
        out["background"] = int(counts[K + 1])
        return out

    def summary(self) -> str:
        """Human-readable summary (`sscl data info`)."""
        prov = self.attrs.get("provenance", {})
        tags: dict[str, int] = {}
        for m in self.meta:
            for t in m["split_tags"]:
                tags[t] = tags.get(t, 0) + 1
        lines = [
            f"corpus      {self.path}",
            f"converter   {prov.get('converter', '?')} v{prov.get('converter_version', '?')}"
            + (f"  source {prov['source']}" if "source" in prov else ""),
            f"layout      {self.layout.name} ({self.layout.num_joints} joints, "
            f"{self.layout.channels}-D), {self.persons} person(s)",
            f"sequences   {self.num_sequences}   frames {self.num_frames}   fps {self.fps:g}"
            f"   ({self.num_frames / self.fps / 3600:.2f} h)",
            f"lengths     min {int(self.lengths.min()) if len(self.lengths) else 0}  "
            f"median {int(np.median(self.lengths)) if len(self.lengths) else 0}  "
            f"max {int(self.lengths.max()) if len(self.lengths) else 0}",
            "splits      " + (", ".join(f"{t}: {n}" for t, n in sorted(tags.items())) or "none"),
            f"skipped     {len(self.skipped)}",
        ]
        reasons: dict[str, int] = {}
        for s in self.skipped:
            reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
        lines += [f"  {n:6d}  {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1])]
        lines.append("classes     frames")
        counts = self.class_frame_counts()
        lines += [f"  {k:3d} {name:24s} {counts[name]:10d}" for k, name in
                  enumerate(self.class_names)]
        lines.append(f"  {len(self.class_names):3d} {'background':24s} {counts['background']:10d}")
        lines.append(f"   -1 {'unlabelled':24s} {counts['unlabelled']:10d}")
        if self.attrs.get("label_rule"):
            lines.append(f"label rule  {self.attrs['label_rule']}")
        lines.append(f"source frame {self.attrs.get('source_frame', '')}")
        return "\n".join(lines)


def open_corpus(
    path: str | os.PathLike, *, memory_budget: int | None = None, map_joints: bool = True,
    nonfinite: str = "refuse",
) -> Corpus:
    """Open a corpus and check its schema and integrity (module docstring).

    Args:
        path: local directory, ``file://`` URL, ``*.zip`` file, or any fsspec URL
            (``memory://``, ``s3://``, ...).
        memory_budget: bytes the reader may hold decoded (default 2 GiB or
            ``$SSCL_MEMORY_BUDGET``). A corpus whose joints + valid fit is loaded whole.
        map_joints: for a corpus larger than the budget, memory-map raw joints from a local
            store (``sscl.data.mapping``; the valid masks, 1/12 of the size, are decoded if
            they fit the budget) instead of reading both through the chunk cache. The mapped
            pages are the shared page cache, not this process's memory; False keeps every
            decoded byte inside the budget.
        nonfinite: a NaN or infinite coordinate at a valid joint (which the writer never stores:
            damage or a foreign writer): ``"refuse"`` (default) raises CorpusError with the
            count, ``"mask"`` marks the joint invalid and 0 and counts it in
            ``nonfinite_masked``.

    Raises:
        CorpusError: not a corpus, incomplete (an interrupted write), inconsistent or damaged
            (naming the array, the shard file and the chunk).
    """
    path = str(path)
    if nonfinite not in ("refuse", "mask"):
        raise CorpusError(f"nonfinite must be 'refuse' or 'mask', got {nonfinite!r}")
    store, fs, root = open_store(path)
    try:
        group = zarr.open_group(store, mode="r")
        attrs = group.attrs.asdict()
    except Exception as e:  # zarr raises several types for "not a group" or a damaged zarr.json
        raise CorpusError(f"{path}: not a readable Zarr v3 group ({type(e).__name__}: {e})") from e
    if attrs.get("sscl_corpus") is None:
        raise CorpusError(f"{path}: not an sscl corpus (no 'sscl_corpus' attribute)")
    if attrs["sscl_corpus"] != 1:
        raise CorpusError(f"{path}: corpus schema {attrs['sscl_corpus']} is not supported (1)")
    if not attrs.get("complete"):
        raise CorpusError(f"{path}: incomplete corpus (its write was interrupted); convert again")
    arrays = {name: read_array(group, name, path)
              for name in ("joints", "valid", "labels", "offsets", "lengths", "meta")}
    record = attrs.get("checksums")
    if record is not None and not (isinstance(record, dict) and isinstance(
            record.get("arrays"), dict)):
        raise CorpusError(f"{path}: the 'checksums' attribute is damaged; convert again")
    check_attributes(attrs, path)
    offsets = read_small(arrays["offsets"], "offsets", path, record, np.int64)
    lengths = read_small(arrays["lengths"], "lengths", path, record, np.int64)
    blob = read_small(arrays["meta"], "meta", path, record, np.uint8)
    try:
        meta = json.loads(blob.tobytes().decode())
        seqs, skipped = meta["sequences"], meta["skipped"]
        if not isinstance(seqs, list) or not all(isinstance(m, dict) and "seq_id" in m
                                                 and "split_tags" in m for m in seqs):
            raise ValueError("'sequences' is not a list of sequence records")
    except (ValueError, KeyError, TypeError) as e:  # UnicodeDecodeError, JSONDecodeError too
        raise CorpusError(f"{path}: array 'meta' (per-sequence metadata) is damaged ({e}); "
                          "convert again") from e
    try:
        layout = Layout.from_dict(attrs["layout"])
        class_names, fps, persons = (tuple(attrs["class_names"]), float(attrs["fps"]),
                                     int(attrs["persons"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CorpusError(f"{path}: damaged group attributes ({type(e).__name__}: {e})") from e
    readers = {}
    for name in ("joints", "valid", "labels"):
        arr = arrays[name]
        rec = None if record is None else record["arrays"].get(name)
        if record is not None and rec is None:
            raise CorpusError(f"{path}: no checksum record for array {name!r}; convert again")
        readers[name] = ShardedArrayReader(name, arr.metadata.to_dict(), arr.dtype, fs, root,
                                           checksums=rec)
        readers[name].check_shards()
    c = Corpus(
        path=path, layout=layout, class_names=class_names, fps=fps, persons=persons,
        offsets=offsets, lengths=lengths,
        labels=decode_all(readers["labels"]).astype(np.int16, copy=False),
        meta=seqs, skipped=skipped, attrs=attrs,
        memory_budget=_budget(memory_budget), _group=group, _fs=fs, _root=root,
        _readers=readers, map_joints=map_joints, nonfinite=nonfinite,
    )
    check_schema(c, group)
    c._setup_mode()
    return c
