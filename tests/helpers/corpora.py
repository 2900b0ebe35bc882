"""Tiny corpora written in ``tmp_path`` by the data, trainer and CLI tests."""

from __future__ import annotations

import json

import numpy as np

from sscl.data.corpus import CorpusHeader, CorpusWriter, Sequence
from sscl.data.layouts import get_layout

LENGTHS = [30, 80, 200, 12, 120, 61, 45, 90, 33, 150]


def write_tiny_corpus(dest, lengths=LENGTHS, seed: int = 0) -> str:
    """Random-walk NTU-25 corpus, 2 persons, some untracked joints, mixed frame labels.

    Sequence 3 (12 frames, shorter than the 64-frame raw window) is entirely untracked.
    """
    header = CorpusHeader(
        layout=get_layout("ntu25"),
        class_names=("a", "b"),
        fps=30.0,
        persons=2,
        source_frame="synthetic random walk, metres",
    )
    rng = np.random.default_rng(seed)
    with CorpusWriter(dest, header) as w:
        for i, t in enumerate(lengths):
            joints = 0.5 + np.cumsum(0.01 * rng.standard_normal((t, 25, 3, 2)), axis=0)
            w.append(
                Sequence(
                    seq_id=f"s{i}",
                    joints=joints.astype(np.float32),
                    source_file=f"f{i}",
                    labels=rng.integers(-1, 3, t).astype(np.int16),
                    valid=(rng.random((t, 25, 2)) > 0.05) & (i != 3),
                )
            )
    return str(dest)


LAYOUT = get_layout("ntu25")


def header(persons: int = 2, classes=("walk", "wave")) -> CorpusHeader:
    return CorpusHeader(layout=LAYOUT, class_names=tuple(classes), fps=30.0, persons=persons,
                        source_frame="test data, metres, y up")


def random_sequences(rng, n, persons=2, max_len=300):
    out = []
    for i in range(n):
        T = int(rng.integers(1, max_len))
        j = rng.standard_normal((T, 25, 3, persons)).astype(np.float32)
        untracked = rng.random((T, 25, persons)) < 0.2
        j[np.broadcast_to(untracked[:, :, None, :], j.shape)] = 0.0
        out.append(Sequence(f"seq{i:03d}", j, f"src/{i}.txt", labels=rng.integers(-1, 3, T),
                            subject=f"P{i % 3}",
                            split_tags=("xsub:train" if i % 2 else "xsub:test",),
                            extra={"i": i}))
    return out


def drop_checksums(dest) -> None:
    """Make ``dest`` look like a corpus written before checksums were recorded."""
    meta = json.loads((dest / "zarr.json").read_text())
    del meta["attributes"]["checksums"]
    (dest / "zarr.json").write_text(json.dumps(meta))
