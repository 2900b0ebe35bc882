"""The embedded demo corpus: synthesized once under ``$SSCL_CACHE``, named ``demo`` in configs.

``corpus_location("demo")`` is its path (synthesized on first use); any other name is a corpus
path or URL and comes back as given.
"""

from __future__ import annotations

from pathlib import Path

from sscl.data.corpus import cache_dir
from sscl.data.synthetic import SynthConfig, synthesize

DEMO = "demo"


def demo_corpus(progress: bool = False) -> Path:
    """The demo corpus's path, synthesized first if the cache lacks it."""
    dest = cache_dir() / "demo" / "synthetic.zarr"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        if progress:
            print(f"synthesizing the demo corpus into {dest} (once; cached under $SSCL_CACHE)")
        synthesize(dest, SynthConfig(), seed=0, progress=progress)
    return dest


def corpus_location(corpus: str) -> str:
    """``demo`` -> the demo corpus's path; anything else as given."""
    return str(demo_corpus()) if corpus == DEMO else corpus
