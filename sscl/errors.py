"""Typed user-facing errors.

Every message names the file, field or value that was wrong, what was expected, and the fix.
`assert` is kept for internal invariants only (HOUSE_STYLE.md "Errors").
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path


class SsclError(Exception):
    """Base class of every error a user can cause."""


class ConfigError(SsclError, ValueError):
    """A config key or value is wrong."""


class LayoutError(SsclError, ValueError):
    """An unknown skeleton layout, or a layout whose joint/bone description is inconsistent."""


class CorpusError(SsclError, ValueError):
    """A corpus on disk is malformed, or data handed to the writer breaks the schema."""


class DestinationExistsError(SsclError, FileExistsError):
    """An output path already exists and would be overwritten."""


class FormatError(SsclError, ValueError):
    """A raw source file does not follow its published format.

    Args:
        path: the offending file.
        message: what was wrong and what was expected.
        line: 1-based line number, when the error is tied to one line.
    """

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class CheckpointError(SsclError, ValueError):
    """A checkpoint is missing, damaged, or does not fit the model or config it is loaded into."""


class RunDirError(SsclError, FileExistsError):
    """A run directory exists and neither --resume nor --overwrite was given."""


class NonFiniteError(SsclError, FloatingPointError):
    """Too many consecutive training steps had a non-finite loss or gradient."""


class EvaluationError(SsclError, ValueError):
    """Predictions or ground truth handed to a metric are malformed or leave it undefined."""


class CorpusWriteError(CorpusError):
    """Writing a corpus failed (disk full, a file size limit, an I/O error); nothing was left
    under the destination name and any previous corpus there is intact."""


class DiskWriteError(SsclError, OSError):
    """A file could not be written for lack of space, a quota or a file size limit (ENOSPC,
    EDQUOT, EFBIG). Nothing was left under the file's final name; what was there before is
    intact. Also an ``OSError`` (with the cause's ``errno``), so callers that handle I/O
    errors keep doing so.

    Args:
        path: the file (or checkpoint directory) being written.
        cause: the operating system's error.
        kept: what stays usable, for the message (e.g. "the previous checkpoint is intact").
    """

    def __init__(self, path: str | Path, cause: OSError, kept: str = ""):
        self.path = str(path)
        reason = os.strerror(cause.errno) if cause.errno else str(cause)
        super().__init__(
            f"writing {self.path} failed: {reason}; nothing was left under that name"
            f"{'; ' + kept if kept else ''}. Free disk space (or raise the quota / the file "
            f"size limit, `ulimit -f`) and run again")
        self.errno = cause.errno


class SsclWarning(UserWarning):
    """Something the user should know that is not an error (applied defaults, unused input,
    cleaned-up leftovers)."""


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (see :func:`sigterm_raises`) so that the program
    unwinds: context managers remove what they were writing, and one line says why it stopped.
    A BaseException, so ``except Exception`` does not swallow it."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block, SIGTERM raises :class:`Terminated` in the main thread of this process.

    A process forked from it (a data-loader worker) that receives SIGTERM dies of it as it
    would without the handler, instead of raising inside the worker's loop.
    """
    main_pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
