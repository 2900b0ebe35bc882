"""Shared fixtures: the real datasets in ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
