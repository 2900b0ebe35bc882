"""The corpus writer: sequences in, one atomic Zarr v3 corpus out.

The corpus schema (arrays, attributes) is the one ``sscl.data.corpus`` states and
``data/README.md`` documents, with the chunking measurements behind the defaults here.

The writer streams: frames are buffered up to one shard and flushed, so memory stays bounded for
corpora larger than RAM. It is atomic: a corpus is built under a temporary name beside its
destination and renamed into place on success, so an interrupted conversion leaves either
nothing or the previous corpus intact. A failed write removes its temporary build only once
zarr's I/O loop has no write left in flight (:func:`settle_zarr_io`): zarr writes sibling keys
with ``asyncio.gather``, which raises at the first failure and leaves the others running.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import os
import shutil
import signal
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync as zarr_sync

from sscl.data.chunks import ShardedArrayReader, chunk_checksums, crc32c
from sscl.data.integrity import attributes_crc32c
from sscl.data.layouts import Layout
from sscl.data.store import is_url, local_path
from sscl.data.tmpbuilds import OWNER_FILE, clean_stale_builds, write_owner
from sscl.errors import CorpusError, CorpusWriteError, DestinationExistsError, SsclWarning

SCHEMA_VERSION = 1

# Chosen by measurement (bench/bench_corpus.py, numbers in data/README.md): 1024-frame chunks keep
# one chunk near 600 kB for NTU-25 x 2 persons (fits L2/L3) while amortising the per-chunk cost.
# Real float32 skeleton coordinates do not compress (CMU mocap: lz4+shuffle 1.00x, zstd 1.08x),
# so `joints` is stored raw by default and a chunk read is one pread into the cache; the `valid`
# masks and labels compress well and use lz4 + shuffle. 64 chunks per shard: ~65k frames a file.
CHUNK_FRAMES = 1024
CHUNKS_PER_SHARD = 64
CODEC = {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"}
JOINTS_CODEC: dict | None = None  # raw; pass a blosc dict (like CODEC) to compress joints
NONFINITE = ("refuse", "mask")  # what the writer does with NaN/inf at a valid joint
# errno values that mean "the disk or a limit is full": one clear message, not a traceback
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# How long a failed write waits for zarr's writes still in flight: a shard (39 MiB by default) on
# a slow disk takes seconds; a hung network store must not hang the error path for ever.
SETTLE_TIMEOUT_S = 120.0


async def _others_done() -> None:
    me = asyncio.current_task()
    while pending := [t for t in asyncio.all_tasks() if t is not me]:
        await asyncio.wait(pending)


def settle_zarr_io(timeout: float = SETTLE_TIMEOUT_S) -> None:
    """Wait until every task on zarr's I/O loop has finished.

    zarr 3 runs each synchronous call as a coroutine on its own event loop thread and writes
    sibling keys (an array's zarr.json and its group's, the shards of one write) with
    ``asyncio.gather``, each in a worker thread (``asyncio.to_thread``). When one write fails,
    gather raises at once and the others keep running: a late one re-creates its parent
    folders (``LocalStore``'s ``mkdir(parents=True)``) after the build was removed. A task
    awaiting ``to_thread`` ends only when its thread's write has, so no task left means no
    write left.

    Raises:
        TimeoutError: tasks still running after ``timeout`` seconds.
    """
    zarr_sync(_others_done(), timeout=timeout)




@dataclass
class Sequence:
    """One sequence handed to the writer.

    Attributes:
        seq_id: unique within the corpus.
        joints: (T, V, C, M) float, metres, right-handed, y up.
        source_file: path of the source file, relative to the source root.
        labels: (T,) integers; -1 unlabelled, 0..K-1 classes, K background. None: all -1.
        valid: (T, V, M) bool. None: a joint is valid unless all its coordinates are exactly 0.
        subject, camera, setup: free-form identifiers from the source.
        fps: frame rate when it differs from the corpus fps.
        split_tags: e.g. ("xsub:train", "xview:test").
        extra: JSON-serialisable per-sequence extras (e.g. action points).
    """

    seq_id: str
    joints: np.ndarray
    source_file: str
    labels: np.ndarray | None = None
    valid: np.ndarray | None = None
    subject: str = ""
    camera: str = ""
    setup: str = ""
    fps: float | None = None
    split_tags: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)


@dataclass
class Skipped:
    """A source item that did not become a sequence, and why."""

    source_file: str
    reason: str


@dataclass
class CorpusHeader:
    """What a converter declares before streaming sequences."""

    layout: Layout
    class_names: tuple[str, ...]
    fps: float
    persons: int
    source_frame: str
    label_rule: str = ""
    converter: str = ""
    converter_version: str = "1"


# ----------------------------------------------------------------------------- writer


class CorpusWriter:
    """Streams sequences into a new corpus and commits it atomically.

    Use as a context manager: the corpus is committed on a clean exit; on an exception the
    temporary build is removed and any previous corpus at ``dest`` is left untouched.

    Args:
        dest: local directory (``*.zarr`` by convention) or fsspec URL.
        header: layout, classes, fps, persons and provenance text from the converter.
        overwrite: replace an existing corpus at ``dest`` (only once the new one is complete).
        provenance: extra provenance (source path, checksum, ...) stored in the attributes.
        append: add to the existing corpus at ``dest`` (same layout, classes and persons).
        chunk_frames, chunks_per_shard: chunking (defaults measured; see data/README.md).
        codec: blosc settings of ``valid`` and ``labels`` (default ``CODEC``).
        joints_codec: blosc settings of ``joints``; None (default) stores them raw.
        nonfinite: NaN/inf at a valid joint: ``"refuse"`` (default) raises with their count,
            ``"mask"`` marks those joints invalid (stored as 0) and counts them
            (``nonfinite_masked``, kept in the attributes).

    Temporary builds of earlier writes to the same destination that were killed (SIGKILL,
    power loss) are removed when their writer process is gone, with a warning naming them;
    others (a write in progress, another host) are named in a warning and left alone.

    Raises:
        DestinationExistsError: ``dest`` exists and neither ``overwrite`` nor ``append`` is set.
        CorpusError: ``append`` to a missing or incompatible corpus (checked before anything
            is copied).
        CorpusWriteError: the disk or a file size limit filled up, or another I/O error; the
            temporary build is removed and ``dest`` is untouched.
    """

    def __init__(
        self,
        dest: str | os.PathLike,
        header: CorpusHeader,
        *,
        overwrite: bool = False,
        provenance: dict | None = None,
        append: bool = False,
        chunk_frames: int = CHUNK_FRAMES,
        chunks_per_shard: int = CHUNKS_PER_SHARD,
        codec: dict | None = None,
        joints_codec: dict | None = JOINTS_CODEC,
        nonfinite: str = "refuse",
    ):
        if nonfinite not in NONFINITE:
            raise CorpusError(f"nonfinite must be one of {', '.join(NONFINITE)}, got {nonfinite!r}")
        self.nonfinite = nonfinite
        self.nonfinite_masked = 0  # coordinates of valid joints masked for being NaN/inf
        self.dest = str(dest)
        self.header = header
        self.provenance = dict(provenance or {})
        self._url = is_url(dest)
        if self._url:
            self._fs, self._dest_root = fsspec.core.url_to_fs(self.dest)
            exists = self._fs.exists(self._dest_root)
        else:
            exists = local_path(dest).exists()
        if exists and not (overwrite or append):
            raise DestinationExistsError(
                f"{self.dest} already exists; pass overwrite=True (--overwrite) to replace it "
                "or append=True (--append) to add to it"
            )
        if append and not exists:
            raise CorpusError(f"{self.dest}: cannot append, no corpus there")
        self._append = append
        self._old_attrs: dict = {}
        if append:
            self._old_attrs = self._read_attrs(self.dest)
            self._check_append_compatible(self._old_attrs)
        self._new = 0  # sequences appended by this writer
        self._tmp = self._tmp_location()
        self._shard_frames = chunk_frames * chunks_per_shard
        self._chunk_frames = chunk_frames
        self._codec = dict(codec or CODEC)
        self._joints_codec = joints_codec
        self._meta: list[dict] = []
        self._skipped: list[dict] = []
        self._ids: set[str] = set()
        self._lengths: list[int] = []
        self._frames = 0  # frames already flushed to the arrays
        self._buf: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._buf_frames = 0
        self._closed = False
        if not self._url:
            clean_stale_builds(local_path(self.dest))
        with self._guard():
            self._open_group()

    # -- locations -------------------------------------------------------------------------

    def _tmp_location(self) -> str:
        tag = f".tmp-{uuid.uuid4().hex[:8]}"
        if self._url:
            return self.dest.rstrip("/") + tag
        p = local_path(self.dest)
        return str(p.parent / f".{p.name}{tag}")

    @contextlib.contextmanager
    def _guard(self):
        """Any failure removes the temporary build; a full disk, a file size limit or another
        I/O error becomes one CorpusWriteError."""
        try:
            yield
        except OSError as e:
            self.abort()
            if isinstance(e, FileExistsError | FileNotFoundError | PermissionError) or \
                    e.errno not in _FULL | {errno.EIO}:
                raise CorpusWriteError(f"{self.dest}: writing failed ({e}); nothing was left "
                                       "under that name and any previous corpus there is "
                                       "intact") from e
            raise CorpusWriteError(
                f"{self.dest}: writing failed, {os.strerror(e.errno)} ({e}); nothing was left "
                "under that name and any previous corpus there is intact. Free space (or raise "
                "the file size limit) and convert again") from e
        except BaseException:
            self.abort()
            raise

    def _read_attrs(self, where: str) -> dict:
        try:
            return zarr.open_group(where, mode="r").attrs.asdict()
        except Exception as e:
            raise CorpusError(f"{where}: cannot append, not a readable corpus ({e})") from e

    def _open_group(self) -> None:
        V, C, M = self.header.layout.num_joints, self.header.layout.channels, self.header.persons
        if self._append:
            self._copy(self.dest, self._tmp)
            self._write_owner()
            self.group = zarr.open_group(self._tmp, mode="r+")
            arr = self.group["joints"]
            self._frames = int(arr.shape[0])
            old = json.loads(bytes(self.group["meta"][:]).decode())
            self._meta, self._skipped = old["sequences"], old["skipped"]
            self._ids = {m["seq_id"] for m in self._meta}
            self._lengths = [int(n) for n in self.group["lengths"][:]]
            return
        self.group = zarr.open_group(self._tmp, mode="w")
        self._write_owner()
        jc = self._joints_codec
        codec = None if jc is None else BloscCodec(typesize=4, **jc)
        cf, sf = self._chunk_frames, self._shard_frames
        self.group.create_array(
            "joints", shape=(0, V, C, M), dtype="float32", chunks=(cf, V, C, M),
            shards=(sf, V, C, M), compressors=codec, fill_value=0.0,
        )
        self.group.create_array(
            "valid", shape=(0, V, M), dtype="bool", chunks=(cf, V, M), shards=(sf, V, M),
            compressors=BloscCodec(typesize=1, **self._codec), fill_value=False,
        )
        self.group.create_array(
            # Labels are tiny: fewer, larger chunks; chunk size divides the shard size.
            "labels", shape=(0,), dtype="int16", chunks=(cf * math.gcd(16, sf // cf),),
            shards=(sf,),
            compressors=BloscCodec(typesize=2, **self._codec), fill_value=-1,
        )

    def _write_owner(self) -> None:
        if not self._url:
            write_owner(local_path(self._tmp))

    def _check_append_compatible(self, attrs: dict) -> None:
        h = self.header
        mine = (h.layout.to_dict(), list(h.class_names), h.persons)
        theirs = (attrs.get("layout"), attrs.get("class_names"), attrs.get("persons"))
        if json.dumps(mine, sort_keys=True) != json.dumps(theirs, sort_keys=True):
            raise CorpusError(
                f"{self.dest}: cannot append, the existing corpus has layout "
                f"{attrs.get('layout', {}).get('name')!r}, {len(attrs.get('class_names', []))} "
                f"classes and {attrs.get('persons')} persons; the new data has layout "
                f"{h.layout.name!r}, {len(h.class_names)} classes and {h.persons} persons"
            )

    def _copy(self, src: str, dst: str) -> None:
        if self._url:
            self._fs.copy(self._fs._strip_protocol(src), self._fs._strip_protocol(dst),
                          recursive=True)
        else:
            shutil.copytree(local_path(src), local_path(dst))

    # -- appending -------------------------------------------------------------------------

    def append(self, seq: Sequence) -> None:
        """Validate one sequence and buffer it (flushed to the arrays a shard at a time).

        Raises:
            CorpusError: naming ``seq.seq_id`` and the bad field, for wrong shapes, non-finite
                valid coordinates, labels outside -1..K, an empty or duplicate sequence.
        """
        joints, valid, labels = self._check(seq)
        self._ids.add(seq.seq_id)
        self._meta.append({
            "seq_id": seq.seq_id, "source_file": str(seq.source_file), "subject": str(seq.subject),
            "camera": str(seq.camera), "setup": str(seq.setup),
            "fps": float(seq.fps if seq.fps is not None else self.header.fps),
            "split_tags": list(seq.split_tags), "extra": seq.extra,
        })
        try:
            json.dumps(self._meta[-1])
        except TypeError as e:
            self._meta.pop()
            self._ids.discard(seq.seq_id)
            raise CorpusError(
                f"sequence {seq.seq_id!r}: metadata is not JSON-serialisable ({e})"
            ) from e
        self._lengths.append(len(joints))
        self._new += 1
        self._buf.append((joints, valid, labels))
        self._buf_frames += len(joints)
        if self._buf_frames >= self._shard_frames:
            with self._guard():
                self._flush(final=False)

    def skip(self, item: Skipped) -> None:
        """Record a source item that was not converted, with its reason."""
        self._skipped.append({"source_file": str(item.source_file), "reason": item.reason})

    def extend(self, items: Iterable[Sequence | Skipped]) -> None:
        for item in items:
            if isinstance(item, Skipped):
                self.skip(item)
            else:
                self.append(item)

    @property
    def num_sequences(self) -> int:
        return len(self._lengths)

    @property
    def num_skipped(self) -> int:
        return len(self._skipped)

    def _check(self, seq: Sequence) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        h = self.header
        V, C, M, K = h.layout.num_joints, h.layout.channels, h.persons, len(h.class_names)
        where = f"sequence {seq.seq_id!r} (from {seq.source_file})"
        if not isinstance(seq.seq_id, str) or not seq.seq_id:
            raise CorpusError(f"{where}: seq_id must be a non-empty string")
        if seq.seq_id in self._ids:
            raise CorpusError(f"{where}: duplicate seq_id; sequence ids must be unique")
        joints = np.asarray(seq.joints)
        if joints.ndim != 4 or joints.shape[1:] != (V, C, M):
            raise CorpusError(
                f"{where}: joints must be (T, V={V}, C={C}, M={M}) for layout "
                f"{h.layout.name!r} with {M} persons, got {joints.shape}"
            )
        T = joints.shape[0]
        if T == 0:
            raise CorpusError(f"{where}: empty sequence (0 frames); report it as Skipped instead")
        if not np.issubdtype(joints.dtype, np.floating):
            raise CorpusError(f"{where}: joints must be floating point, got {joints.dtype}")
        joints = joints.astype(np.float32, copy=True)
        all_finite = bool(np.isfinite(joints).all())  # flat: the per-joint pass only if not
        finite = np.ones((T, V, M), bool) if all_finite else np.isfinite(joints).all(axis=2)
        if seq.valid is None:
            if all_finite:
                valid = (joints != 0).any(axis=2)
            else:
                valid = finite & (np.where(finite[:, :, None, :], joints, 0) != 0).any(axis=2)
            bad = ~finite
        else:
            valid = np.asarray(seq.valid)
            if valid.shape != (T, V, M):
                raise CorpusError(
                    f"{where}: valid must be (T={T}, V={V}, M={M}), got {valid.shape}"
                )
            valid = valid.astype(bool)
            bad = valid & ~finite
        if bad.any():
            n = int(bad.sum())
            if self.nonfinite == "refuse":
                t, v, m = np.argwhere(bad)[0]
                raise CorpusError(
                    f"{where}: {n} joint(s) with a NaN or infinite coordinate where valid, the "
                    f"first at frame {t}, joint {v}, person {m}; fix the source, mark them "
                    "invalid through `valid`, or pass nonfinite='mask' (--nonfinite mask) to "
                    "store them as missing joints"
                )
            self.nonfinite_masked += n
            valid = valid & finite
        joints = np.where(valid[:, :, None, :], joints, np.float32(0))  # stored as exact zeros
        if seq.labels is None:
            labels = np.full(T, -1, dtype=np.int16)
        else:
            labels = np.asarray(seq.labels)
            if labels.shape != (T,):
                raise CorpusError(f"{where}: labels must be (T={T},), got {labels.shape}")
            if labels.size and (labels.min() < -1 or labels.max() > K):
                bad_t = int(np.argmax((labels < -1) | (labels > K)))
                raise CorpusError(
                    f"{where}: label {int(labels[bad_t])} at frame {bad_t} is outside -1..{K} "
                    f"(-1 unlabelled, 0..{K - 1} classes, {K} background)"
                )
            labels = labels.astype(np.int16)
        return joints, valid, labels

    def _flush(self, final: bool) -> None:
        if not self._buf:
            return
        joints = np.concatenate([b[0] for b in self._buf])
        valid = np.concatenate([b[1] for b in self._buf])
        labels = np.concatenate([b[2] for b in self._buf])
        n = len(joints) if final else (len(joints) // self._shard_frames) * self._shard_frames
        # Write whole shards only (no read-modify-write); keep the tail for the next flush.
        rest = (joints[n:], valid[n:], labels[n:])
        start, stop = self._frames, self._frames + n
        for name, data in (("joints", joints[:n]), ("valid", valid[:n]), ("labels", labels[:n])):
            arr = self.group[name]
            arr.resize((stop,) + arr.shape[1:])
            arr[start:stop] = data
        self._frames = stop
        self._buf = [rest] if len(rest[0]) else []
        self._buf_frames = len(rest[0])

    # -- commit ----------------------------------------------------------------------------

    def commit(self) -> str:
        """Flush, write metadata, checksums and attributes, and rename the corpus into place.

        Raises:
            CorpusError: no sequence was added (every source item skipped: the reasons are
                counted in the message); nothing is written.
            CorpusWriteError: a full disk, a file size limit or an I/O error; nothing is left
                under ``dest`` and a previous corpus there is intact.
        """
        if self._closed:
            raise CorpusError(f"{self.dest}: writer already closed")
        if self._new == 0:
            self.abort()
            reasons: dict[str, int] = {}
            for sk in self._skipped:
                reasons[sk["reason"]] = reasons.get(sk["reason"], 0) + 1
            top = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1])
                            [:5])
            raise CorpusError(
                f"{self.dest}: no sequence to write ({len(self._skipped)} source item(s) skipped"
                + (f": {top}" if top else "") + "); nothing was written. Check the source "
                "folder and the converter's options")
        with self._guard():
            self._commit()
        return self.dest

    def _commit(self) -> None:
        self._flush(final=True)
        lengths = np.asarray(self._lengths, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        for name, data in (("offsets", offsets), ("lengths", lengths)):
            if name in self.group:
                del self.group[name]
            self.group.create_array(name, shape=data.shape, dtype="int64",
                                    chunks=(max(1, len(data)),), fill_value=0)[:] = data
        blob = np.frombuffer(
            json.dumps({"sequences": self._meta, "skipped": self._skipped}).encode(), np.uint8
        )
        if "meta" in self.group:
            del self.group["meta"]
        self.group.create_array("meta", shape=blob.shape, dtype="uint8",
                                chunks=(max(1, len(blob)),), fill_value=0)[:] = blob
        checksums = {
            "algorithm": "crc32c",
            "arrays": {name: chunk_checksums(self._reader(name))
                       for name in ("joints", "valid", "labels")},
            "offsets": crc32c(offsets.astype("<i8").tobytes()),
            "lengths": crc32c(lengths.astype("<i8").tobytes()),
            "meta": crc32c(blob.tobytes()),
        }
        h = self.header
        prov = dict(self.provenance)
        prov.setdefault("converter", h.converter)
        prov.setdefault("converter_version", h.converter_version)
        attrs: dict[str, Any] = {
            "sscl_corpus": SCHEMA_VERSION,
            "layout": h.layout.to_dict(),
            "class_names": list(h.class_names),
            "fps": float(h.fps),
            "persons": int(h.persons),
            "source_frame": h.source_frame,
            "label_rule": h.label_rule,
            "provenance": prov,
            "num_sequences": len(lengths),
            "num_frames": int(lengths.sum()),
            "num_skipped": len(self._skipped),
            "nonfinite_masked": int(self.nonfinite_masked
                                    + self._old_attrs.get("nonfinite_masked", 0)),
            "checksums": checksums,
            "complete": True,  # written last: readers refuse a corpus without it
        }
        # recorded over what the group will hold: an appended corpus keeps any older key
        checksums["attributes"] = attributes_crc32c({**self.group.attrs.asdict(), **attrs})
        self.group.attrs.update(attrs)
        if not self._url:
            (local_path(self._tmp) / OWNER_FILE).unlink(missing_ok=True)
        self._closed = True
        self._swap_into_place()

    def _reader(self, name: str) -> ShardedArrayReader:
        arr = self.group[name]
        if self._url:
            fs, root = self._fs, self._fs._strip_protocol(self._tmp).rstrip("/")
        else:
            fs, root = None, os.path.abspath(local_path(self._tmp))
        return ShardedArrayReader(name, arr.metadata.to_dict(), arr.dtype, fs, root)

    def _swap_into_place(self) -> None:
        if self._url:
            fs = self._fs
            old = self._dest_root + ".old-" + uuid.uuid4().hex[:8]
            tmp = fs._strip_protocol(self._tmp)
            if fs.exists(self._dest_root):
                fs.mv(self._dest_root, old, recursive=True)
            fs.mv(tmp, self._dest_root, recursive=True)
            if fs.exists(old):
                fs.rm(old, recursive=True)
            return
        dest, tmp = local_path(self.dest), local_path(self._tmp)
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            # SIGINT/SIGTERM wait until both renames are done: between them no corpus is in
            # place (SIGKILL still can strike there; the next write names the .old- folder)
            blocked = {signal.SIGINT, signal.SIGTERM}
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
            try:
                os.replace(dest, old)
                os.replace(tmp, dest)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            shutil.rmtree(old)
        else:
            os.replace(tmp, dest)

    def abort(self) -> None:
        """Remove the temporary build once no write to it is in flight; the destination is
        untouched."""
        self._closed = True
        try:
            settle_zarr_io(SETTLE_TIMEOUT_S)
        except TimeoutError:
            warnings.warn(f"{self.dest}: zarr writes still running after {SETTLE_TIMEOUT_S:g} s; "
                          f"removing the temporary build {self._tmp} anyway; if a late write "
                          "brings it back, remove it by hand", SsclWarning, stacklevel=2)
        if self._url:
            tmp = self._fs._strip_protocol(self._tmp)
            if self._fs.exists(tmp):
                self._fs.rm(tmp, recursive=True)
        else:
            shutil.rmtree(local_path(self._tmp), ignore_errors=True)

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()  # aborts on failure
        else:
            self.abort()


def write_corpus(
    dest: str | os.PathLike,
    header: CorpusHeader,
    items: Iterable[Sequence | Skipped],
    **kwargs: Any,
) -> str:
    """Write ``items`` into a new corpus at ``dest`` (see CorpusWriter for kwargs)."""
    with CorpusWriter(dest, header, **kwargs) as w:
        w.extend(items)
    return str(dest)

