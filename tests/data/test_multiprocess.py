"""Two gloo ranks read disjoint shards that cover the epoch, with the samples of one process.

The test runs this module as a script in a subprocess (``python -m tests.data.test_multiprocess``
from the repository root, so ``tests`` imports there too): ``torch.multiprocessing.spawn`` needs
the worker function importable by name in the children, which a pytest-imported test module is
not. Each rank runs both engines (torch in-process, DALI with one worker) and rank 0 writes what
the ranks gathered; the test compares it with a one-process run of the same global batch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from sscl.data.augment import AugmentConfig
from sscl.data.loader import make_loader
from sscl.data.loader_config import LoaderConfig
from tests.helpers.corpora import write_tiny_corpus

# find_spec("nvidia.dali") raises, not returns None, when no nvidia.* package is installed.
DALI_INSTALLED = (
    importlib.util.find_spec("nvidia") is not None
    and importlib.util.find_spec("nvidia.dali") is not None
)
# Process groups in subprocesses; the ranks' floats are compared with one process's.
pytestmark = [pytest.mark.slow, pytest.mark.isa]

ENGINES = ["torch"] + (["dali"] if DALI_INSTALLED else [])
BATCH = 3  # per rank; the one-process run uses 2 * BATCH
ROOT = Path(__file__).resolve().parents[2]  # the repository root: ``tests`` imports from here


def _records(loader, epoch: int) -> list[list]:
    """(position, window, weight, checksum of the query and key views) per sample."""
    out = []
    for b in loader.epoch(epoch):
        sums = b["query"].double().sum((1, 2, 3, 4)) + 3 * b["key"].double().sum((1, 2, 3, 4))
        out += [
            [int(p), int(i), float(w), float(s)]
            for p, i, w, s in zip(b["position"], b["index"], b["weight"], sums)
        ]
    return out


def _loader(corpus: str, rank: int, world: int, engine: str):
    cfg = LoaderConfig(
        task="pretrain",
        seed=3,
        batch_size=BATCH * 2 // world,
        num_workers=0 if engine == "torch" else 1,
        raw_length=64,
        augment=AugmentConfig(out_len=16),
    )
    loader = make_loader(corpus, cfg, rank, world, engine=engine)
    assert loader.engine == engine
    return loader


def _rank_main(rank: int, world: int, corpus: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["SSCL_TEST_PORT"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    for engine in ENGINES:
        gathered = [None] * world
        dist.all_gather_object(gathered, _records(_loader(corpus, rank, world, engine), epoch=1))
        if rank == 0:
            Path(out_dir, f"{engine}-{world}.json").write_text(json.dumps(gathered))
    dist.destroy_process_group()


def _script(corpus: str, out_dir: str, port: str) -> None:
    os.environ["SSCL_TEST_PORT"] = port
    mp.spawn(_rank_main, args=(2, corpus, out_dir), nprocs=2, join=True)
    one = _records(_loader(corpus, 0, 1, "torch"), epoch=1)
    Path(out_dir, "one-1.json").write_text(json.dumps([one]))


def test_two_gloo_ranks_cover_the_epoch_like_one_process(tmp_path):
    corpus = write_tiny_corpus(
        tmp_path / "tiny.zarr", lengths=[30, 80, 200, 12, 120, 61, 45]
    )
    port = str(29500 + os.getpid() % 2000)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.data.test_multiprocess", corpus, str(tmp_path), port],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    n_windows = 7
    for engine in ENGINES:
        two = json.loads((tmp_path / f"{engine}-2.json").read_text())
        (one,) = json.loads((tmp_path / "one-1.json").read_text())
        pos = [np.array([r[0] for r in shard]) for shard in two]
        assert not set(pos[0].tolist()) & set(pos[1].tolist())  # disjoint shards
        assert len(pos[0]) == len(pos[1])  # same number of steps on every rank
        merged = sorted(two[0] + two[1])
        real = sorted(r[1] for r in merged if r[2] == 1.0)
        assert real == list(range(n_windows))  # each real window exactly once
        assert merged == sorted(one)  # same samples, same augmentation, as one process


if __name__ == "__main__":
    _script(*sys.argv[1:4])
