"""Tests of the input engines: DALI and the plain torch loader yield identical, exact epochs."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest
import torch

from sscl.data.augment import AugmentConfig
from sscl.data.loader import LoaderConfig, batch_keys, make_loader
from sscl.errors import ConfigError
from tests.helpers.corpora import write_tiny_corpus

# find_spec("nvidia.dali") raises, not returns None, when no nvidia.* package is installed.
DALI_INSTALLED = (
    importlib.util.find_spec("nvidia") is not None
    and importlib.util.find_spec("nvidia.dali") is not None
)
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("pipeline") / "tiny.zarr")


def config(task: str, **kw) -> LoaderConfig:
    base = dict(
        task=task,
        seed=7,
        batch_size=3,
        num_workers=1,
        prefetch=2,
        raw_length=64,
        max_length=50,
        overlap=10,
        train=False,
    )
    base.update(kw)
    return LoaderConfig(**base)


def collect(loader, epoch: int, position: int = 0) -> list[dict[str, np.ndarray]]:
    # The DALI iterator may reuse its tensors: copy before the next batch (see pipeline docs).
    return [{k: v.numpy().copy() for k, v in b.items()} for b in loader.epoch(epoch, position)]


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k].dtype == y[k].dtype and np.array_equal(x[k], y[k]), k


def test_in_process_loader_equals_worker_loader(corpus):
    inproc = make_loader(corpus, config("pretrain", num_workers=0, extreme=True), engine="torch")
    workers = make_loader(corpus, config("pretrain", extreme=True), engine="torch")
    got = collect(workers, 1)
    assert {"extreme", "extreme_valid"} <= got[0].keys()
    assert_same(collect(inproc, 1), got)


@pytest.mark.skipif(not DALI_INSTALLED, reason="nvidia-dali not installed")
@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_dali_and_torch_engines_yield_identical_batches(corpus, task):
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    from sscl.data.pipeline import DaliLoader

    # Normalised ("frame" for finetuning, the default "first" for pretraining) and with two
    # tempos: the engines share BatchSource, so the batches must agree bit for bit.
    kw = {"normalize": "frame"} if task == "finetune" else {
        "augment": AugmentConfig(tempos=(1.0, 2.0))}
    cfg = config(task, shuffle=task == "pretrain", train=task == "pretrain", **kw)
    dali = make_loader(corpus, cfg, engine="dali")
    plain = make_loader(
        corpus, config(task, num_workers=0, shuffle=cfg.shuffle, train=cfg.train, **kw),
        engine="torch",
    )
    assert dali.engine == "dali" and plain.engine == "torch"
    assert isinstance(dali, DaliLoader)
    for epoch in (0, 1):  # the second epoch exercises the DALI reset and the epoch offset
        got = collect(dali, epoch)
        assert list(got[0]) == list(batch_keys(cfg))
        # The batches really came out of a DALI iterator.
        assert isinstance(dali._iter, DALIGenericIterator)
        assert_same(got, collect(plain, epoch))
        assert len(got) == dali.num_steps(epoch)
    # A mid-epoch resume rebuilds the pipeline and continues exactly.
    full = collect(plain, 3)
    assert_same(collect(plain, 3, position=2 * cfg.batch_size), full[2:])
    assert_same(collect(dali, 3, position=2 * cfg.batch_size), full[2:])


@pytest.mark.skipif(not DALI_INSTALLED, reason="nvidia-dali not installed")
@pytest.mark.parametrize("group", [1, 3, 64])
def test_dali_group_changes_no_batch(corpus, group):
    """Several batches per DALI sample (the last one of an epoch partial, resumes starting
    mid-group) hand out exactly the batches of the plain loader, in order."""
    cfg = config("pretrain", shuffle=True, dali_group=group)
    dali = make_loader(corpus, cfg, engine="dali")
    plain = make_loader(corpus, config("pretrain", shuffle=True, num_workers=0), engine="torch")
    steps = dali.num_steps(0)
    assert steps % 3 and steps < 64  # groups of 3 end partial; one group of 64 holds the epoch
    for epoch in (0, 1):
        assert_same(collect(dali, epoch), collect(plain, epoch))
    full = collect(plain, 2)
    for skip in (1, 2):
        assert_same(collect(dali, 2, position=skip * cfg.batch_size), full[skip:])
    with pytest.raises(ConfigError, match="dali_group must be >= 1"):
        config("pretrain", dali_group=0)


def test_auto_engine_is_the_measured_faster_torch_engine(corpus):
    """bench/README.md has the torch engine ahead of DALI in every case, so "auto" picks it
    whether or not DALI is installed."""
    loader = make_loader(corpus, config("pretrain", num_workers=0), engine="auto")
    assert loader.engine == "torch" and loader.info.engine == "torch"
    if not DALI_INSTALLED:
        with pytest.raises(ConfigError, match="nvidia-dali"):
            make_loader(corpus, config("pretrain"), engine="dali")


@pytest.mark.parametrize("task", ["pretrain", "finetune"])
@pytest.mark.parametrize("locality", [0, 2])
def test_epoch_is_exact_with_zero_weight_padding(corpus, task, locality):
    loader = make_loader(corpus, config(task, num_workers=0, locality=locality), engine="torch")
    batches = collect(loader, 0)
    weight = np.concatenate([b["weight"] for b in batches])
    index = np.concatenate([b["index"] for b in batches])
    assert np.array_equal(np.sort(index[weight == 1]), np.arange(len(loader.windows)))
    assert (weight == 0).sum() == len(batches) * 3 - len(loader.windows)


def test_pretrain_views_short_untracked_windows_and_invalid_joints(corpus):
    loader = make_loader(
        corpus, config("pretrain", num_workers=0, extreme=True, shuffle=False), engine="torch"
    )
    batches = collect(loader, 0)
    for b in batches:
        for view in ("query", "key", "extreme"):
            x, valid = b[view], b[f"{view}_valid"]
            assert x.dtype == np.float32 and x.shape == (3, 3, 50, 25, 2)
            assert valid.shape == (3, 50, 25, 2) and np.isfinite(x).all()
            assert np.all(x.transpose(0, 2, 3, 4, 1)[~valid] == 0)  # invalid joints stay 0
    # Window 3 is the untracked 12-frame sequence (shorter than raw_length): all-zero views.
    b = batches[1]
    row = int(np.flatnonzero(b["index"] == 3)[0])
    assert not b["query_valid"][row].any() and not np.any(b["query"][row])
    assert loader.windows.length[3] == 12


def test_finetune_batches_stitch_back_to_sequences(corpus):
    from sscl.data.corpus import open_corpus
    from sscl.data.sampling import stitch

    c = open_corpus(corpus)
    loader = make_loader(corpus, config("finetune", num_workers=0, shuffle=False, normalize="none"),
                         engine="torch")
    per_window = {}
    for b in collect(loader, 0):
        for i in np.flatnonzero(b["weight"]):
            n = int(b["mask"][i].sum())
            # A per-frame "model": the frame's x coordinate of joint 0, person 0.
            per_window[int(b["index"][i])] = b["x"][i, 0, :n, 0, 0, None].astype(np.float64)
            assert np.all(b["labels"][i, n:] == -1)
    scores = [per_window[w] for w in range(len(loader.windows))]
    for s, got in enumerate(stitch(scores, loader.windows, c.lengths)):
        joints, _, _ = c.read_sequence(s)
        assert np.array_equal(got[:, 0], joints[:, 0, 0, 0].astype(np.float64))


def test_bad_engine_and_rank(corpus):
    with pytest.raises(ConfigError, match="engine"):
        make_loader(corpus, config("pretrain"), engine="ffcv")
    with pytest.raises(ConfigError, match="rank"):
        make_loader(corpus, config("pretrain"), rank=2, world_size=2)
    with pytest.raises(ConfigError, match="task"):
        make_loader(corpus, config("detect"))


def test_device_ops_match_augment_numpy_twins():
    from sscl.data import augment, gpu_augment

    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 3, 20, 25, 2)).astype(np.float32)
    valid = rng.random((4, 20, 25, 2)) > 0.1
    x[~valid.repeat(3, 0).reshape(4, 3, 20, 25, 2)] = 0
    params = augment.params_for(
        5, 2, np.arange(10, 14), augment.AugmentConfig(noise_prob=1.0), extreme=True
    )
    view = params.extreme
    assert np.all(view.noise_std > 0)
    want = augment.gaussian_noise_ref(
        augment.linear_transform_ref(x, valid, view.mat), valid, view.noise_std, view.noise_seed
    )
    xt, vt = torch.from_numpy(x), torch.from_numpy(valid)
    got = gpu_augment.apply_view(xt, vt, view).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    # The noise alone, in float64: the same counter-hash normals bit for bit up to rounding.
    noise = gpu_augment.gaussian_noise(xt.double(), vt, view.noise_std, view.noise_seed).numpy()
    ref = augment.gaussian_noise_ref(x, valid, view.noise_std, view.noise_seed)
    np.testing.assert_allclose(noise, ref, rtol=0, atol=1e-6)
    assert np.all(got[~valid.repeat(3, 0).reshape(4, 3, 20, 25, 2)] == 0)


def test_strong_key_is_the_extreme_recipe_on_the_key_view(corpus):
    strong = collect(make_loader(corpus, config("pretrain", num_workers=0, strong_key=True),
                                 engine="torch"), 0)
    three = collect(make_loader(corpus, config("pretrain", num_workers=0, extreme=True),
                                engine="torch"), 0)
    assert set(batch_keys(config("pretrain", strong_key=True))) == set(strong[0])
    for s, t in zip(strong, three):
        np.testing.assert_array_equal(s["query"], t["query"])
        np.testing.assert_array_equal(s["key"], t["extreme"])
        assert not np.array_equal(s["key"], t["key"])
    with pytest.raises(ConfigError, match="choose one"):
        config("pretrain", strong_key=True, extreme=True)


def test_ring_slot_and_oversized_fallback_carry_the_same_batch(corpus):
    from sscl.data.corpus import open_corpus
    from sscl.data.loader import BatchSource, _StepDataset, build_windows, unpack_batch

    cfg = config("pretrain", num_workers=0)
    c = open_corpus(corpus)
    source = BatchSource(corpus, cfg, build_windows(c.lengths, cfg), 0, 1)
    expected = source(0, 1)
    big = torch.zeros((2, 1 << 20), dtype=torch.uint8)
    buf, layout, slot = _StepDataset(source, big)[(0, 1, 1)]
    assert buf is None and slot == 1  # written into the ring
    got = unpack_batch(big[1], layout)
    tiny = torch.zeros((2, 64), dtype=torch.uint8)
    buf2, layout2, slot2 = _StepDataset(source, tiny)[(0, 1, 1)]
    assert buf2 is not None and slot2 == -1 and not tiny.any()  # too big: its own tensor
    got2 = unpack_batch(buf2, layout2)
    for k, v in expected.items():
        np.testing.assert_array_equal(got[k].numpy(), v)
        np.testing.assert_array_equal(got2[k].numpy(), v)


@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_mapped_and_chunked_corpora_give_the_same_batches(corpus, task):
    from sscl.data.corpus import open_corpus

    budget = 50_000  # valid masks (41.5 kB) fit, joints + valid (540 kB) do not
    assert open_corpus(corpus, memory_budget=budget).mode == "mapped"
    assert open_corpus(corpus, memory_budget=budget, map_joints=False).mode == "chunked"
    got = {
        m: collect(make_loader(corpus, config(task, num_workers=0, memory_budget=budget,
                                              map_joints=m, window_mode="dense"),
                               engine="torch"), 1)
        for m in (True, False)
    }
    assert_same(got[True], got[False])


@pytest.mark.parametrize("views", ["strong_key", "extreme"])
def test_pretrain_batch_computed_into_a_buffer_equals_the_returned_batch(corpus, views):
    from sscl.data.loader import pretrain_batch_layout

    loader = make_loader(corpus, config("pretrain", num_workers=0, **{views: True}),
                         engine="torch")
    src = loader.source
    layout, nbytes = pretrain_batch_layout(src.cfg, src.corpus.frame_shape)
    buf = np.full(nbytes + 5, 0xAB, np.uint8)  # stale bytes must all be overwritten
    for step in range(src.num_steps(2)):
        want = src(2, step)
        got = src(2, step, dest=buf)
        assert set(got) >= set(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
            assert np.shares_memory(got[k], buf)
        buf[:] = 0xAB


@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_loader_info_from_the_header(corpus, task):
    cfg = config(task, num_workers=0, batch_size=2, extreme=True,
                 augment=AugmentConfig(out_len=20, tempos=(1.0, 2.0)))
    loader = make_loader(corpus, cfg, rank=1, world_size=2, engine="torch")
    info = loader.info
    assert loader.source._corpus is None  # nothing reopened in the training process
    assert info.layout.name == "ntu25" and info.num_persons == 2 and info.frame_shape == (25, 3, 2)
    assert info.class_names == ("a", "b") and info.num_classes == 2 and info.fps == 30.0
    assert info.units == "metres" and info.normalize == "first" and info.engine == "torch"
    assert (info.batch_size, info.world_size, info.rank, info.task) == (2, 2, 1, task)
    assert info.windows is loader.windows is loader.source.windows
    views = ("query", "key", "extreme") if task == "pretrain" else ()
    assert info.views == views and info.tempos == (1.0, 2.0) and info.out_len == 20
    for epoch in (0, 3):
        assert info.num_steps(epoch) == loader.num_steps(epoch) == -(-len(info.windows) // 4)
    batches = collect(loader, 0)
    assert len(batches) == info.num_steps(0)
    if task == "pretrain":
        tempo = np.concatenate([b[f"{v}_tempo"] for b in batches for v in views])
        assert tempo.dtype == np.float32 and set(tempo.tolist()) == {1.0, 2.0}
        assert batches[0]["query"].shape == (2, 3, 20, 25, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.batch_size = 3


def test_pinned_batches_come_from_the_ring(corpus, monkeypatch):
    """With CUDA (faked here) and pin_memory, workers still write into the shared ring, and the
    training process hands out a pinned copy of each slot (its own buffer, kept past the next
    batch) with exactly the batch of the unpinned path."""
    import sscl.data.loader as loader_mod

    copies = []

    def fake_pinned(nbytes):
        copies.append(nbytes)
        return torch.empty(nbytes, dtype=torch.uint8)

    plain = collect(make_loader(corpus, config("pretrain", num_workers=0), engine="torch"), 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(loader_mod, "pinned_empty", fake_pinned)
    loader = make_loader(corpus, config("pretrain", pin_memory=True), engine="torch")
    assert loader._ring is not None and loader.pin_from_ring
    assert not loader._loader.pin_memory  # no second pinning pass in the DataLoader
    kept = list(loader.epoch(0))  # no copy: each batch must survive the next ones
    assert len(copies) == len(kept) == len(plain)
    ring = loader._ring.numpy()
    for got, want in zip(kept, plain):
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k].numpy(), want[k], err_msg=k)
            assert not np.shares_memory(got[k].numpy(), ring)
