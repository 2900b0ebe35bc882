"""Shared fixtures: the real datasets in ../shared/data (skipped with a reason when absent), a
tiny synthetic corpus for trainer runs, and a private corpus cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sscl.data.synthetic import SynthConfig, synthesize

SHARED_DATA = Path(
    os.environ.get("SSCL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def _shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(
            f"real dataset {path} absent (a user's clone has no ../shared); set SSCL_SHARED_DATA"
        )
    return path


@pytest.fixture
def shared_dataset():
    """Callable: shared_dataset("kard") -> Path of ../shared/data/kard, or skip with the reason."""
    return _shared_dataset


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep generated corpora out of the user's ~/.cache during tests."""
    monkeypatch.setenv("SSCL_CACHE", str(tmp_path_factory.getbasetemp() / "sscl-cache"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """12 synthetic sequences of 300-330 frames, 6 subjects (seeded): the trainer tests' corpus
    (runs through ``tests.helpers.trainrun``)."""
    dest = tmp_path_factory.mktemp("corpus") / "tiny.zarr"
    synthesize(dest, SynthConfig(num_sequences=12, min_frames=300, max_frames=330, subjects=6),
               seed=3)
    return dest
