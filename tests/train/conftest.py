"""Fixtures of the trainer's tests: a tiny synthetic corpus (helpers: ``trainrun.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """12 synthetic sequences of 300-330 frames, 6 subjects (seeded)."""
    from sscl.data.synthetic import SynthConfig, synthesize

    dest = tmp_path_factory.mktemp("corpus") / "tiny.zarr"
    synthesize(dest, SynthConfig(num_sequences=12, min_frames=300, max_frames=330, subjects=6),
               seed=3)
    return dest
