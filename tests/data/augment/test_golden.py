"""Golden digests: the augmentation, the loader engines and sampling give the same bytes as the
code they were recorded on.

A refactor that moves code around (issue #9 section 6: augmentation split into a package) must
not change one bit of a batch. Each case below builds its arrays from fixed seeds and compares
the sha256 of their bytes (with dtype and shape) with a digest recorded on the code before the
refactor. Covered: (a) ``two_view`` / ``two_view_frames`` with and without the extreme view,
blur, joint mask, tempos, normalisation none/frame/first, 2-D and 3-D; (b) the numpy twins and
the standalone ops; (c) the torch and DALI engines on a tiny corpus, pretraining and
finetuning windows; (d) ``gpu_augment`` on CPU tensors; (e) ``sscl.data.sampling``.

The digests hold on x86-64 Linux with the pinned numpy/numba (float32 kernels without
fastmath; ``math.exp``/``cos`` from the platform libm). When a change is *meant* to alter a
batch, rerun ``python tests/data/augment/test_golden.py`` and paste the printed table, saying why
in the commit message.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os

import numpy as np
import pytest
import torch

from sscl.data import augment as A
from sscl.data import gpu_augment, sampling
from sscl.data.corpus import CorpusHeader, CorpusWriter, Sequence
from sscl.data.layouts import get_layout
from sscl.data.loader import LoaderConfig, make_loader
from sscl.data.normalize import WindowNorm, sequence_references

DALI_INSTALLED = (
    importlib.util.find_spec("nvidia") is not None
    and importlib.util.find_spec("nvidia.dali") is not None
)


def digest(*arrays) -> str:
    """sha256 over dtype, shape and bytes of each array (nested tuples/lists/dicts flattened)."""
    h = hashlib.sha256()

    def add(a) -> None:
        if isinstance(a, dict):
            for k in sorted(a):
                h.update(str(k).encode())
                add(a[k])
        elif isinstance(a, (tuple, list)):
            for x in a:
                add(x)
        else:
            if isinstance(a, torch.Tensor):
                a = a.numpy()
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())

    add(arrays)
    return h.hexdigest()[:32]


# --------------------------------------------------------------------------- inputs


def windows(seed: int, n: int = 5, t: int = 40, v: int = 25, c: int = 3, m: int = 2):
    """Raw windows with untracked points, one empty window and one longer than T."""
    rng = np.random.default_rng(seed)
    valid = rng.random((n, t, v, m)) < 0.9
    raw = (0.5 + np.cumsum(0.02 * rng.standard_normal((n, t, v, c, m)), axis=1))
    raw = (raw * valid[:, :, :, None]).astype(np.float32)
    lengths = rng.integers(1, t + 1, n)
    lengths[0], lengths[-1] = 0, t + 7
    return raw, valid, lengths


def norm_for(raw, valid, mode: str) -> WindowNorm | None:
    if mode == "none":
        return None
    nj = A.normalization_joints(get_layout("ntu25"))
    centre, rot, _, _ = sequence_references(raw, valid, nj)
    return WindowNorm(centre, rot, nj.centre if mode == "frame" else -1)


CONFIGS = {
    "plain": dict(),
    "tempo_flip": dict(tempos=(1.0, 2.0), rotate_deg=(10.0, 20.0, 30.0), flip_prob=0.5,
                       swap_prob=0.5),
    "extreme_all": dict(joint_mask_p=0.2, blur_prob=1.0, noise_prob=1.0, axis_mask_prob=0.7,
                        tempos=(0.5, 1.0, 2.0), out_len=33),
    "no_blur": dict(blur_prob=0.0, noise_prob=0.0, axis_mask_prob=0.0, padding_ratio=0,
                    crop_range=(0.3, 0.9), min_crop=5),
}


def two_view_case(name: str, extreme: bool, mode: str, c: int = 3):
    raw, valid, lengths = windows(11, c=c)
    cfg = A.AugmentConfig(**CONFIGS[name])
    perm = get_layout("ntu25").flip_permutation()
    params = A.params_for(5, 2, np.arange(10, 10 + raw.shape[0]), cfg, extreme=extreme)
    norm = norm_for(raw, valid, mode) if c == 3 else None
    return raw, valid, lengths, params, cfg, perm, norm


TWO_VIEW_CASES = [
    (name, extreme, mode)
    for name in CONFIGS
    for extreme in (False, True)
    for mode in ("none", "frame", "first")
]


# --------------------------------------------------------------------------- (a) composed op


@pytest.mark.parametrize("name,extreme,mode", TWO_VIEW_CASES)
def test_two_view(name, extreme, mode):
    raw, valid, lengths, params, cfg, perm, norm = two_view_case(name, extreme, mode)
    got = A.two_view(raw, valid, lengths, params, cfg, flip_perm=perm, norm=norm)
    check(f"two_view/{name}/{extreme}/{mode}", got)


@pytest.mark.parametrize("extreme", [False, True])
def test_two_view_2d(extreme):
    raw, valid, lengths, params, cfg, perm, _ = two_view_case("extreme_all", extreme, "none", c=2)
    got = A.two_view(raw, valid, lengths, params, cfg, flip_perm=perm)
    check(f"two_view_2d/{extreme}", got)


@pytest.mark.parametrize("extreme,mode", [(False, "none"), (True, "frame"), (True, "first")])
def test_two_view_frames_chunked(extreme, mode):
    """A chunked frame table (chunks of 8 frames, shuffled in storage), stacked parameters."""
    raw, valid, lengths, _, cfg, perm, norm = two_view_case("extreme_all", extreme, mode)
    n, t = raw.shape[:2]
    chunk, shift = 8, 3
    per = -(-t // chunk)
    pad_t = per * chunk
    rawp = np.zeros((n, pad_t) + raw.shape[2:], np.float32)
    rawp[:, :t] = raw
    validp = np.zeros((n, pad_t) + valid.shape[2:], bool)
    validp[:, :t] = valid
    order = np.random.default_rng(3).permutation(n * per)  # storage slot of chunk k
    frames = np.empty((n * pad_t, 25, 3, 2), np.float32)
    vframes = np.empty((n * pad_t, 25, 2), bool)
    rowbase = np.empty((n, per), np.int64)
    for k, slot in enumerate(order):
        i, j = divmod(k, per)
        frames[slot * chunk:(slot + 1) * chunk] = rawp[i, j * chunk:(j + 1) * chunk]
        vframes[slot * chunk:(slot + 1) * chunk] = validp[i, j * chunk:(j + 1) * chunk]
        rowbase[i, j] = slot * chunk
    stacked = A.stacked_params_for(5, 2, np.arange(10, 10 + n), cfg, extreme=extreme)
    got = A.two_view_frames(frames, vframes, rowbase, np.zeros(n, np.int64), shift,
                            np.minimum(lengths, t), stacked, cfg, flip_perm=perm, norm=norm)
    check(f"two_view_frames/{extreme}/{mode}", got)


def test_params():
    cfg = A.AugmentConfig(**CONFIGS["extreme_all"], rotate_deg=(5.0, 5.0, 5.0), flip_prob=0.3)
    idx = np.array([0, 3, 99, 2**40, 7])
    got = [
        A.params_for(1, 0, idx, cfg, extreme=True).views,
        A.params_for(2**70 + 3, 9, idx, cfg, strong_key=True).views,
        A.stacked_params_for(1, 0, idx, cfg, extreme=True),
        A.draw_two_view_params(np.random.default_rng(0), 6, cfg, extreme=True).views,
        A.sample_keys(-4, 3, idx),
    ]
    flat = [[getattr(v, f) for f in A.ViewParams.__dataclass_fields__] if isinstance(
        v, A.ViewParams) else v for g in got for v in (g if isinstance(g, tuple) else (g,))]
    check("params", flat)


# --------------------------------------------------------------------------- (b) twins and ops


@pytest.mark.parametrize("extreme,mode", [(False, "none"), (True, "none"), (True, "first"),
                                          (True, "frame")])
def test_two_view_ref(extreme, mode):
    raw, valid, lengths, params, cfg, perm, norm = two_view_case("extreme_all", extreme, mode)
    got = A.two_view_ref(raw, valid, lengths, params, cfg, flip_perm=perm, norm=norm)
    check(f"two_view_ref/{extreme}/{mode}", got)


def test_params_ref():
    cfg = A.AugmentConfig(**CONFIGS["tempo_flip"])
    p = A.params_for_ref(3, 1, np.arange(7), cfg, extreme=True)
    check("params_ref", [[getattr(v, f) for f in A.ViewParams.__dataclass_fields__]
                   for v in p.views])


def op_inputs():
    rng = np.random.default_rng(21)
    n, c, t, v, m = 4, 3, 30, 25, 2
    valid = rng.random((n, t, v, m)) < 0.85
    x = (rng.standard_normal((n, c, t, v, m)) * valid[:, None]).astype(np.float32)
    mat = A.rotation_matrices(rng.uniform(-1, 1, (n, 3))) @ A.shear_matrices(
        rng.uniform(-0.5, 0.5, (n, 6)))
    seeds = rng.integers(0, 2**63, n).astype(np.uint64)
    return rng, x, valid, mat, seeds


@pytest.mark.parametrize("twin", [False, True])
def test_single_ops(twin):
    rng, x, valid, mat, seeds = op_inputs()
    n, v = x.shape[0], x.shape[3]
    raw, rvalid, lengths = windows(4)
    perm = get_layout("ntu25").flip_permutation()
    parents = get_layout("ntu25").parents
    std = np.array([0.0, 0.01, 0.1, 1.0])
    jp, sigma = np.array([0.0, 0.3, 0.5, 0.1]), np.array([0.0, 0.5, 2.0, 1.0])
    axis, flips = np.array([-1, 0, 2, 1]), np.array([False, True, True, False])
    swaps, tempo = np.array([True, False, True, False]), np.array([1, 2, 3, 1])
    frac, pos = rng.uniform(0.3, 1.0, 5), rng.random(5)
    speed = rng.choice([0.5, 1.0], 5)
    sfx = "_ref" if twin else ""

    def op(name):
        return getattr(A, name + sfx)

    got = [
        op("crop_resize")(raw, rvalid, lengths, frac, pos, speed, 37, 4, 3),
        op("linear_transform")(x, valid, mat),
        op("flip_swap")(x, valid, perm, flips, swaps),
        op("gaussian_noise")(x, valid, std, seeds),
        op("mask_blur")(x, valid, jp, seeds, sigma, axis, 9),
        op("tempo_change")(x, valid, tempo),
        op("bone_stream")(x, valid, parents),
        op("motion_stream")(x, valid),
        op("normalize_ntu")(raw, rvalid, tuple(A.normalization_joints(get_layout("ntu25"))),
                            "frame"),
        A.crop_windows(lengths, frac, pos, speed, 4, 3),
    ]
    assert v == 25 and n == 4
    check(f"single_ops/{twin}", got)


# --------------------------------------------------------------------------- (c) engines

LENGTHS = [30, 80, 200, 12, 120, 61, 45, 90, 33, 150]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    header = CorpusHeader(layout=get_layout("ntu25"), class_names=("a", "b"), fps=30.0,
                          persons=2, source_frame="synthetic random walk, metres")
    rng = np.random.default_rng(0)
    dest = tmp_path_factory.mktemp("golden") / "tiny.zarr"
    with CorpusWriter(dest, header) as w:
        for i, t in enumerate(LENGTHS):
            joints = 0.5 + np.cumsum(0.01 * rng.standard_normal((t, 25, 3, 2)), axis=0)
            w.append(Sequence(seq_id=f"s{i}", joints=joints.astype(np.float32),
                              source_file=f"f{i}", labels=rng.integers(-1, 3, t).astype(np.int16),
                              valid=(rng.random((t, 25, 2)) > 0.05) & (i != 3)))
    return str(dest)


def loader_config(task: str, **kw) -> LoaderConfig:
    base = dict(task=task, seed=7, batch_size=3, num_workers=0, prefetch=2, raw_length=64,
                max_length=50, overlap=10, train=task == "pretrain", shuffle=task == "pretrain")
    if task == "pretrain":
        base["augment"] = A.AugmentConfig(tempos=(1.0, 2.0), joint_mask_p=0.1)
        base["extreme"] = True
    else:
        base["normalize"] = "frame"
    base.update(kw)
    return LoaderConfig(**base)


def epoch(loader, epoch: int) -> list[dict[str, np.ndarray]]:
    return [{k: v.numpy().copy() for k, v in b.items()} for b in loader.epoch(epoch)]


@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_torch_engine(corpus, task):
    loader = make_loader(corpus, loader_config(task), engine="torch")
    assert loader.engine == "torch"
    check(f"engine/{task}", epoch(loader, 1))


@pytest.mark.skipif(not DALI_INSTALLED, reason="nvidia-dali not installed")
@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_dali_engine(corpus, task):
    loader = make_loader(corpus, loader_config(task), engine="dali")
    assert loader.engine == "dali"
    # The engines share BatchSource: DALI's batches are the torch engine's, bit for bit.
    check(f"engine/{task}", epoch(loader, 1))


# --------------------------------------------------------------------------- (d) gpu_augment


def test_gpu_augment_on_cpu():
    _, x, valid, mat, seeds = op_inputs()
    xt, vt = torch.from_numpy(x), torch.from_numpy(valid)
    cfg = A.AugmentConfig(noise_prob=1.0)
    view = A.params_for(3, 0, np.arange(4), cfg, extreme=True).extreme
    got = [
        gpu_augment.linear_transform(xt, vt, torch.from_numpy(mat)),
        gpu_augment.gaussian_noise(xt, vt, np.array([0.0, 0.01, 0.1, 1.0]), seeds),
        gpu_augment.apply_view(xt, vt, view),
    ]
    check("gpu_augment", got)


# --------------------------------------------------------------------------- (e) sampling


def test_sampling():
    lengths = np.array([30, 80, 200, 12, 120, 61, 45, 90, 33, 150])
    pre = sampling.pretrain_windows(lengths, 64, mode="dense", stride=40)
    fine = sampling.finetune_windows(lengths, 50, overlap=10)
    items = np.arange(len(pre))[::-1].copy()
    pos = np.arange(len(pre)) * 3 + 1
    plan = sampling.EpochPlan(seed=7, epoch=2, num_items=len(pre), world_size=2, batch_size=3)
    got = [
        sampling.sample_uniforms(7, 2, np.arange(100), sampling.STREAM_WINDOW),
        sampling.sample_uniforms(-1, 2**40, np.array([0, 2**62]), 5),
        [pre.seq, pre.start, pre.span, pre.length],
        [fine.seq, fine.start, fine.span, fine.length],
        pre.resolve_starts(items, pos, 7, 2),
        pre.resolve_starts_ref(items, pos, 7, 2),
        plan.items(),
        [plan.shard(r).batch(0) for r in range(2)],
        sampling.label_fraction_subset([f"s{i}" for i in range(10)], lengths > 40, 0.5, 3),
    ]
    check("sampling", got)


def check(key: str, *arrays) -> None:
    """Compare the digest of ``arrays`` with ``GOLDEN[key]``; with ``SSCL_GOLDEN_RECORD`` set to
    a file, append ``key: digest`` to it instead (``python tests/data/augment/test_golden.py``)."""
    got = digest(*arrays)
    record = os.environ.get("SSCL_GOLDEN_RECORD")
    if record:
        with open(record, "a") as f:
            f.write(f'    "{key}": "{got}",\n')
        return
    assert got == GOLDEN[key], f"{key}: digest {got}, recorded {GOLDEN[key]}"


GOLDEN: dict[str, str] = {
    "two_view/plain/False/none": "9caccd66a26adf026afa5fa7fadd2b7b",
    "two_view/plain/False/frame": "6841e48d146ed22fbfa2b1b2390bbf7f",
    "two_view/plain/False/first": "09f6dfd746e448a49479662d761b5352",
    "two_view/plain/True/none": "007ddf1a95c10a72eeee266dc41ee28c",
    "two_view/plain/True/frame": "42874841a7eca428c2a95a56d55505b6",
    "two_view/plain/True/first": "df25fcbe681aa1ebd0154e463eca9579",
    "two_view/tempo_flip/False/none": "d8097c0da68154092a9ac6c07dbec294",
    "two_view/tempo_flip/False/frame": "e4e313a4b2d4c181c411c48bcccb7d70",
    "two_view/tempo_flip/False/first": "9ca1a764172f25aa05652370d8c2fd3f",
    "two_view/tempo_flip/True/none": "79be5ac14f81459a3de1402fc09f0a96",
    "two_view/tempo_flip/True/frame": "a209bf089103dade498f3076576aa958",
    "two_view/tempo_flip/True/first": "67f6926cd82e6d10364cfb0aa0bc600a",
    "two_view/extreme_all/False/none": "61f35abe9fea83fa40b8589819223e02",
    "two_view/extreme_all/False/frame": "dc6922c5745247885ef9fc080893e951",
    "two_view/extreme_all/False/first": "aa9018499cacb113239391eacd96cc97",
    "two_view/extreme_all/True/none": "a23ea8c9fec13fbb91551b0a2de4321d",
    "two_view/extreme_all/True/frame": "dc60d9c2cef812b9ba47f4f50717708c",
    "two_view/extreme_all/True/first": "5b579a7700225d0b769539c5f90f2c95",
    "two_view/no_blur/False/none": "a16d53126fd4cbe8984e2a1bd01339fc",
    "two_view/no_blur/False/frame": "426dcef5c9f2b2f3d530f4499fdc96a4",
    "two_view/no_blur/False/first": "ef964cf8c55a2be5e3f8140e62929ebe",
    "two_view/no_blur/True/none": "6a21baefaaac73d168dbc09e2f434170",
    "two_view/no_blur/True/frame": "69eb1768b4777cf0001862fda34b2037",
    "two_view/no_blur/True/first": "1559ca45895fcbc37755d19a9cc5d8e8",
    "two_view_2d/False": "caed157a674a24afdbf2857ad22590a7",
    "two_view_2d/True": "8cc9fe189feab6ccee40cc92bb58d486",
    "two_view_frames/False/none": "61f35abe9fea83fa40b8589819223e02",
    "two_view_frames/True/frame": "dc60d9c2cef812b9ba47f4f50717708c",
    "two_view_frames/True/first": "5b579a7700225d0b769539c5f90f2c95",
    "params": "1814df50ff548e9b12b8572a88104621",
    "two_view_ref/False/none": "767014340957690ded03973c040a9c9e",
    "two_view_ref/True/none": "e5db933a0dcc1c24febcf9d8627c83d1",
    "two_view_ref/True/first": "841ccc32fcd300ab5a7a2105abfb40c8",
    "two_view_ref/True/frame": "5e6a9eb4b643c6edea892208ec1396e4",
    "params_ref": "0c4525c1defed1c8c7aac059bd6746c7",
    "single_ops/False": "2f37fd7ffc4b569d353b49a1b3a0c134",
    "single_ops/True": "f72778ab59acf3ff51b319e6d122c2af",
    "engine/pretrain": "4cccffd411c64c03fa182425f439864d",
    "engine/finetune": "26773aa8d1314a03d92ec4416eeb3f98",
    "gpu_augment": "1c9225429396e6a9b7f8b9de039edfcc",
    "sampling": "379debf3b08919bc628bcd1302265d4a",
}


if __name__ == "__main__":  # print the digest table of the code in this tree
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SSCL_GOLDEN_RECORD"] = table = os.path.join(tmp, "golden.txt")
        rc = pytest.main([__file__, "-q", "-p", "no:cacheprovider"])
        print("GOLDEN: dict[str, str] = {\n" + "".join(dict.fromkeys(open(table))) + "}")
    sys.exit(rc)
