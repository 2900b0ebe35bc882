"""Where a corpus lives: local paths, ``file://`` and fsspec URLs, zip files, the cache root.

The writer (sscl.data.writer) and the readers (sscl.data.reader, sscl.data.validation) name a
corpus the same ways; this module turns such a name into what zarr and the chunk reader
(sscl.data.chunks) need. It imports nothing of the corpus modules, so each of them can import it.
"""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import zarr

from sscl.errors import CorpusError


def is_url(path: str | os.PathLike) -> bool:
    """True for fsspec URLs (``memory://``, ``s3://``, ...), False for local paths."""
    return "://" in str(path) and not str(path).startswith("file://")


def local_path(path: str | os.PathLike) -> Path:
    """The local path of ``path``, a ``file://`` URL or a plain path."""
    s = str(path)
    return Path(s[len("file://"):] if s.startswith("file://") else s)


def cache_dir() -> Path:
    """Root for generated corpora and caches: ``$SSCL_CACHE`` or ``~/.cache/sscl``."""
    return Path(os.environ.get("SSCL_CACHE", Path.home() / ".cache" / "sscl"))


def open_store(path: str | os.PathLike) -> tuple[object, object | None, str]:
    """The store of an existing corpus, for reading.

    Args:
        path: local directory, ``file://`` URL, ``*.zip`` file, or any fsspec URL.

    Returns:
        (what ``zarr.open_group`` takes: a path, URL or ``ZipStore``; the fsspec filesystem,
        None for a local directory; the root of the corpus in that filesystem).

    Raises:
        CorpusError: nothing there (no directory, no zip file, no ``zarr.json`` at the URL).
    """
    s = str(path)
    s = s[len("file://"):] if s.startswith("file://") else s
    if s.endswith(".zip") and "://" not in s:
        if not os.path.isfile(s):
            raise CorpusError(f"{s}: no such zip file")
        return zarr.storage.ZipStore(s, mode="r"), fsspec.filesystem("zip", fo=s), ""
    if "://" in s:
        fs, root = fsspec.core.url_to_fs(s)
        if not fs.exists(f"{root}/zarr.json"):
            raise CorpusError(f"{s}: no corpus there (no zarr.json)")
        return s, fs, root.rstrip("/")
    if not os.path.isdir(s):
        raise CorpusError(f"{s}: no corpus there (not a directory); create one with `sscl data "
                          "synth` or `sscl data convert`")
    return s, None, os.path.abspath(s)
