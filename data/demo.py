"""The embedded demo corpus: synthesized once under ``$SSCL_CACHE``, named ``demo`` in configs.

A harder corpus than the synthetic defaults, so that a localizer trained on a few labelled
sequences does not saturate: 40 subjects (body proportions, tempo, handedness), views within
+-90 degrees of the camera, 2 cm sensor noise, actions at 0.6 of their default length. The
cache name carries a digest of the generator's config and seed (``synthetic-<digest>.zarr``), so
a corpus cached by another version of the demo is never reused.

``corpus_location("demo")`` is its path (synthesized on first use); any other name is a corpus
path or URL and comes back as given.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from sscl.data.corpus import cache_dir
from sscl.data.synthetic import SynthConfig, synthesize

DEMO = "demo"
DEMO_SEED = 0
DEMO_CONFIG = SynthConfig(num_sequences=120, min_frames=1000, max_frames=2000, subjects=40,
                          noise_std=0.02, view_yaw_deg=90.0, action_scale=0.6)


def demo_path() -> Path:
    """Where the demo corpus is cached (the name changes with its config and seed)."""
    digest = hashlib.sha256(json.dumps([asdict(DEMO_CONFIG), DEMO_SEED], sort_keys=True).encode())
    return cache_dir() / "demo" / f"synthetic-{digest.hexdigest()[:12]}.zarr"


def demo_corpus(progress: bool = False) -> Path:
    """The demo corpus's path, synthesized first if the cache lacks it."""
    dest = demo_path()
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"synthesizing the demo corpus into {dest} (once; cached under $SSCL_CACHE)")
        synthesize(dest, DEMO_CONFIG, seed=DEMO_SEED, progress=progress)
    return dest


def corpus_location(corpus: str) -> str:
    """``demo`` -> the demo corpus's path; anything else as given."""
    return str(demo_corpus()) if corpus == DEMO else corpus
