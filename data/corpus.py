"""The skeleton corpus API: write, open, validate. Import it from here.

A corpus is one Zarr v3 group holding every frame of every sequence, concatenated:

==============  =================  ==========================================================
array           shape / dtype      meaning
==============  =================  ==========================================================
``joints``      (F, V, C, M) f4    coordinates in metres, right-handed, y up; 0 where invalid
``valid``       (F, V, M) bool     joint tracked / present
``labels``      (F,) int16         -1 unlabelled, 0..K-1 classes, K background
``offsets``     (S,) int64         first frame of each sequence
``lengths``     (S,) int64         frames of each sequence
``meta``        (B,) uint8         UTF-8 JSON: per-sequence metadata and skipped items
==============  =================  ==========================================================

Group attributes hold the schema version, the layout, class names, fps, persons, the source
frame, the label rule, provenance and ``complete: true`` (written last). The format, with the
chunking measurements behind the defaults, is documented in ``data/README.md``.

Where each part lives (none of them imports this module):

- sscl.data.writer: :class:`CorpusWriter`, :func:`write_corpus` and what they take
  (:class:`Sequence`, :class:`Skipped`, :class:`CorpusHeader`);
- sscl.data.reader: :func:`open_corpus` and the :class:`Corpus` it returns;
- sscl.data.validation: :func:`validate`, the full content check;
- sscl.data.store: where a corpus lives (paths, URLs, zip files, :func:`cache_dir`).
"""

from __future__ import annotations

from sscl.data.reader import Corpus, open_corpus
from sscl.data.store import cache_dir
from sscl.data.validation import validate
from sscl.data.writer import (
    CHUNK_FRAMES,
    CHUNKS_PER_SHARD,
    CODEC,
    JOINTS_CODEC,
    CorpusHeader,
    CorpusWriter,
    Sequence,
    Skipped,
    write_corpus,
)

__all__ = [
    "Corpus", "CorpusHeader", "CorpusWriter", "Sequence", "Skipped", "open_corpus", "validate",
    "write_corpus", "cache_dir", "CHUNK_FRAMES", "CHUNKS_PER_SHARD", "CODEC", "JOINTS_CODEC",
]
