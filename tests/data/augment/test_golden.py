"""Golden values: the augmentation, the loader engines and sampling give the results of the code
they were recorded on.

A refactor that moves code around (issue #9 section 6: augmentation split into a package) must
not change one bit of a batch. Each case builds its inputs from fixed seeds, without libm or
BLAS (so they are the same on every CPU), and compares its outputs with a recorded value of one
of two kinds (HOUSE_STYLE.md: a digest is for bit-exact results only):

- A digest (sha256 of dtype, shape and bytes; table ``GOLDEN``) where the computation is
  bit-exact on every x86-64 CPU the project runs on (AVX2 or AVX-512, with FMA): integer and
  hash code (sampling, the parameter draws, the noise table) and the Numba kernels. Those are
  compiled without fastmath, so LLVM neither contracts a multiply-add into an FMA nor reorders
  a sum: the same IEEE operations in the same order whatever ISA it targets (the file passes
  with ``NUMBA_CPU_NAME=generic``, ``haswell`` and the native CPU). The kernels' libm calls
  (``math.exp`` of the blur weights, ``math.cos``/``sin`` of the rotations) go to glibc, which
  runs the same FMA implementation on every CPU with AVX2 and FMA; its SSE2 fallback, for CPUs
  without FMA, rounds about 0.07% of results differently in the last bit, which no case here
  hits (checked with ``GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-FMA``). The numpy twins'
  elementwise float64 chains (+, *, /, sqrt) are IEEE-exact and numpy's einsum has no per-ISA
  variant, so twins without exp/cos/matmul are digested too.
- Stored arrays (``golden/<case>.npz``) compared at a tolerance where the floats come from code
  that picks its implementation by CPU: numpy's float64 ``exp``/``cos``/``sin`` (its own
  AVX-512 code on X86_V4 CPUs, glibc elsewhere: ``numpy.lib.introspect.opt_func_info``), numpy
  matmul (OpenBLAS picks a kernel per CPU: ``OPENBLAS_CORETYPE=Sandybridge`` changes the
  bits) and torch's CPU kernels (ATen picks one per ISA: ``ATEN_CPU_CAPABILITY``). Each case
  states its tolerance and why beside it.

Covered: (a) ``two_view`` / ``two_view_frames`` with and without the extreme view, blur, joint
mask, tempos, normalisation none/frame/first, 2-D and 3-D, and the parameters; (b) the numpy
twins and the standalone linear map and noise; (c) the torch and DALI engines on a tiny
corpus, pretraining and finetuning windows; (d) ``gpu_augment`` on CPU tensors; (e)
``sscl.data.sampling``.

When a change is *meant* to alter results, run ``python -m tests.data.augment.test_golden`` from
the repository root: it prints the digest table to paste over ``GOLDEN`` and rewrites the stored
arrays; say why in the commit message.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sscl.data import augment as A
from sscl.data import gpu_augment, sampling
from sscl.data.layouts import get_layout
from sscl.data.loader import make_loader
from sscl.data.loader_config import LoaderConfig
from sscl.data.normalize import WindowNorm, sequence_references
from tests.helpers.corpora import write_tiny_corpus

DALI_INSTALLED = (
    importlib.util.find_spec("nvidia") is not None
    and importlib.util.find_spec("nvidia.dali") is not None
)
GOLDEN_DIR = Path(__file__).with_name("golden")

# Every case compares with stored values; CI reruns the file with the CPU capped to AVX2.
pytestmark = pytest.mark.isa


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


def two_view_case(name: str, extreme: bool, mode: str, c: int = 3, n: int = 5, t: int = 40,
                  **overrides):
    raw, valid, lengths = windows(11, n=n, t=t, c=c)
    cfg = A.AugmentConfig(**{**CONFIGS[name], **overrides})
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


@pytest.fixture(scope="module")
def op_in() -> SimpleNamespace:
    """Inputs of the single ops: model-layout points with untracked joints, per-sample linear
    maps (drawn directly: no libm, no matmul), seeds and draws, and raw windows to crop."""
    rng = np.random.default_rng(21)
    n, c, t, v, m = 4, 3, 16, 25, 2
    valid = rng.random((n, t, v, m)) < 0.85
    x = (rng.standard_normal((n, c, t, v, m)) * valid[:, None]).astype(np.float32)
    raw, rvalid, lengths = windows(4)
    return SimpleNamespace(
        x=x, valid=valid, mat=rng.uniform(-1.0, 1.0, (n, 3, 3)),
        seeds=rng.integers(0, 2**63, n).astype(np.uint64),
        raw=raw, rvalid=rvalid, lengths=lengths,
        frac=rng.uniform(0.3, 1.0, 5), pos=rng.random(5), speed=rng.choice([0.5, 1.0], 5),
        std=np.array([0.0, 0.01, 0.1, 1.0]), flips=np.array([False, True, True, False]),
        swaps=np.array([True, False, True, False]), jp=np.array([0.0, 0.3, 0.5, 0.1]),
        sigma=np.array([0.0, 0.5, 2.0, 1.0]), axis=np.array([-1, 0, 2, 1]),
        perm=get_layout("ntu25").flip_permutation(),
    )


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
    flat = [[getattr(v, f) for f in A.ViewParams._fields] if isinstance(
        v, A.ViewParams) else v for g in got for v in (g if isinstance(g, tuple) else (g,))]
    check("params", flat)


# --------------------------------------------------------------------------- (b) numpy twins


def test_two_view_ref_without_blur():
    """No extreme view, so no blur: the twin's chain is elementwise float64, bit-exact."""
    raw, valid, lengths, params, cfg, perm, _ = two_view_case("extreme_all", False, "none")
    check("two_view_ref/False/none", A.two_view_ref(raw, valid, lengths, params, cfg, perm))


@pytest.mark.parametrize("mode", ["none", "first", "frame"])
def test_two_view_ref_with_blur(mode):
    raw, valid, lengths, params, cfg, perm, norm = two_view_case(
        "extreme_all", True, mode, n=3, t=20, out_len=10)
    x, x_valid = A.two_view_ref(raw, valid, lengths, params, cfg, flip_perm=perm, norm=norm)
    # The blur weights are numpy's float64 exp (numpy's own code on AVX-512 CPUs, glibc's
    # elsewhere, up to an ulp apart) rounded to float32: a differing weight moves an output by
    # a few float32 ulps of coordinates below ~2 (ulp(2) = 2.4e-7).
    check_close(f"two_view_ref/True/{mode}", {"x": x, "valid": x_valid}, rtol=1e-6, atol=1e-6)


def test_params_ref():
    cfg = A.AugmentConfig(**CONFIGS["tempo_flip"])
    p = A.params_for_ref(3, 1, np.arange(7), cfg, extreme=True)
    views = {f"{f}_{r}": getattr(v, f) for r, v in enumerate(p.views)
             for f in A.ViewParams._fields}
    # ``mat`` is numpy's cos/sin (own AVX-512 code on X86_V4 CPUs) times a numpy matmul
    # (OpenBLAS's kernel for the CPU): float64 entries of magnitude <= 2, a few ulps apart.
    # The other float fields are exact and pass at any tolerance.
    check_close("params_ref", views, rtol=0, atol=1e-14)


# The standalone compiled linear map and noise (Numba: bit-exact, see the module docstring).
OPS = {
    "linear_transform": lambda i: A.linear_transform(i.x, i.valid, i.mat),
    "gaussian_noise": lambda i: A.gaussian_noise(i.x, i.valid, i.std, i.seeds),
}


@pytest.mark.parametrize("name", list(OPS))
def test_op(op_in, name):
    check(f"ops/{name}", OPS[name](op_in))


# The twins whose chain is elementwise float64, integer or hash code: bit-exact.
TWINS = {
    "crop_windows": lambda i: A.crop_windows(i.lengths, i.frac, i.pos, i.speed, 4, 3),
    "crop_resize_ref": lambda i: A.crop_resize_ref(i.raw, i.rvalid, i.lengths, i.frac, i.pos,
                                                   i.speed, 37, 4, 3),
    "linear_transform_ref": lambda i: A.linear_transform_ref(i.x, i.valid, i.mat),
    "flip_swap_ref": lambda i: A.flip_swap_ref(i.x, i.valid, i.perm, i.flips, i.swaps),
    "gaussian_noise_ref": lambda i: A.gaussian_noise_ref(i.x, i.valid, i.std, i.seeds),
}


@pytest.mark.parametrize("name", list(TWINS))
def test_twin(op_in, name):
    check(f"twins/{name}", TWINS[name](op_in))


def test_mask_blur_ref(op_in):
    i = op_in
    y, y_valid = A.mask_blur_ref(i.x, i.valid, i.jp, i.seeds, i.sigma, i.axis, 9)
    # numpy's float64 exp of the blur weights (see test_two_view_ref_with_blur), rounded to
    # float32; |x| < 5 here (ulp(4) = 4.8e-7).
    check_close("twins/mask_blur_ref", {"x": y, "valid": y_valid}, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- (c) engines

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("golden") / "tiny.zarr")


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


# The engines' floats are the Numba kernels' (the views, the finetuning normalisation); torch
# only moves bytes, so their batches are digested.
@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_torch_engine(corpus, task):
    loader = make_loader(corpus, loader_config(task), engine="torch")
    assert loader.engine == "torch"
    check(f"engine/{task}", epoch(loader, 1))


@pytest.mark.slow
@pytest.mark.skipif(not DALI_INSTALLED, reason="nvidia-dali not installed")
@pytest.mark.parametrize("task", ["pretrain", "finetune"])
def test_dali_engine(corpus, task):
    loader = make_loader(corpus, loader_config(task), engine="dali")
    assert loader.engine == "dali"
    # The engines share BatchSource: DALI's batches are the torch engine's, bit for bit.
    check(f"engine/{task}", epoch(loader, 1))


# --------------------------------------------------------------------------- (d) gpu_augment


def test_gpu_augment_on_cpu(op_in):
    x, valid = np.ascontiguousarray(op_in.x[:, :, :6]), np.ascontiguousarray(op_in.valid[:, :6])
    xt, vt = torch.from_numpy(x), torch.from_numpy(valid)
    cfg = A.AugmentConfig(noise_prob=1.0)
    view = A.params_for(3, 0, np.arange(4), cfg, extreme=True).extreme
    got = {
        "linear": gpu_augment.linear_transform(xt, vt, torch.from_numpy(op_in.mat)).numpy(),
        "noise": gpu_augment.gaussian_noise(xt, vt, op_in.std, op_in.seeds).numpy(),
        "view": gpu_augment.apply_view(xt, vt, view).numpy(),
    }
    # torch's float32 matmul (einsum -> bmm) sums the three products of a point in an order,
    # and with or without FMA, that depends on the ISA kernel ATen picks: a few float32 ulps
    # of sums below ~10 (ulp(8) = 9.5e-7); the noise itself is float64 and exact.
    check_close("gpu_augment", got, rtol=0, atol=2e-6)


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


# --------------------------------------------------------------------------- recorded values


def check(key: str, *arrays) -> None:
    """Compare the digest of ``arrays`` with ``GOLDEN[key]``; with ``SSCL_GOLDEN_RECORD`` set to
    a file, append ``key: digest`` to it instead (``python -m tests.data.augment.test_golden``)."""
    got = digest(*arrays)
    record = os.environ.get("SSCL_GOLDEN_RECORD")
    if record:
        with open(record, "a") as f:
            f.write(f'    "{key}": "{got}",\n')
        return
    assert got == GOLDEN[key], f"{key}: digest {got}, recorded {GOLDEN[key]}"


def check_close(key: str, arrays: dict[str, np.ndarray], rtol: float, atol: float) -> None:
    """Compare ``arrays`` with those stored in ``golden/<key>.npz``: floats at (rtol, atol) (the
    caller says why), every other dtype exactly. With ``SSCL_GOLDEN_RECORD`` set, (re)write the
    file instead (``python -m tests.data.augment.test_golden``)."""
    path = GOLDEN_DIR / f"{key.replace('/', '-')}.npz"
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    if os.environ.get("SSCL_GOLDEN_RECORD"):
        GOLDEN_DIR.mkdir(exist_ok=True)
        np.savez_compressed(path, **arrays)
        return
    with np.load(path) as stored:
        assert sorted(stored.files) == sorted(arrays), f"{key}: stored {stored.files}"
        for name, got in arrays.items():
            want = stored[name]
            where = f"{key}: {name}"
            assert (got.dtype, got.shape) == (want.dtype, want.shape), where
            if np.issubdtype(want.dtype, np.floating):
                np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=where)
            else:
                np.testing.assert_array_equal(got, want, err_msg=where)


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
    "ops/linear_transform": "b5659fe87e7dfc88f6be97a6bfdaaf65",
    "ops/gaussian_noise": "e8e191e2db36379e8aae06af1e657f35",
    "twins/crop_windows": "5a47487ce2647c8c362fe2f01c9ad3e1",
    "twins/crop_resize_ref": "b45bbfc425ae1884398c10b705c9bd0b",
    "twins/linear_transform_ref": "b5659fe87e7dfc88f6be97a6bfdaaf65",
    "twins/flip_swap_ref": "531878988380bb8179f045ce0424f4aa",
    "twins/gaussian_noise_ref": "e8e191e2db36379e8aae06af1e657f35",
    "engine/pretrain": "4cccffd411c64c03fa182425f439864d",
    "engine/finetune": "26773aa8d1314a03d92ec4416eeb3f98",
    "sampling": "379debf3b08919bc628bcd1302265d4a",
}


if __name__ == "__main__":  # print the digest table and rewrite the stored arrays
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SSCL_GOLDEN_RECORD"] = table = os.path.join(tmp, "golden.txt")
        rc = pytest.main([__file__, "-q", "-p", "no:cacheprovider"])
        print("GOLDEN: dict[str, str] = {\n" + "".join(dict.fromkeys(open(table))) + "}")
    sys.exit(rc)
