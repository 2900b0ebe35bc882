"""NTU normalisation on the batch path: the fused pretraining kernel and the finetuning kernel
against the whole-sequence numpy definition (synthetic corpora, a corpus whose windows cross
chunk boundaries, and real data from ../shared/data), the joints of every layout, and that
overlapping evaluation windows see a shared frame in the same coordinates."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sscl.data import augment as A
from sscl.data.augment import AugmentConfig
from sscl.data.batch_source import BatchSource
from sscl.data.corpus import CorpusHeader, CorpusWriter, Sequence, open_corpus
from sscl.data.formats import florence3d, msr3d
from sscl.data.layouts import Layout, get_layout, layout_names
from sscl.data.loader import build_windows, make_loader
from sscl.data.loader_config import LoaderConfig
from sscl.data.normalize import (
    NormJoints,
    WindowNorm,
    normalization_joints,
    normalize_sequence_ref,
    normalize_windows,
    normalize_windows_ref,
    sequence_references,
)
from sscl.errors import ConfigError

LENGTHS = [30, 80, 200, 12, 120, 61, 45, 90, 33, 150]
AUG = AugmentConfig(out_len=24, rotate_deg=(10, 10, 10), flip_prob=0.5, swap_prob=0.5,
                    tempos=(1.0, 2.0))


def write_corpus(dest, chunk_frames: int = 1024, seed: int = 0) -> str:
    """NTU-25 x 2 random walks far from the origin: untracked joints here and there, sequence 3
    untracked, sequence 4's person 0 untracked for its first 20 frames (its references lie past
    the first read), sequence 6's centre joint untracked in every other frame."""
    header = CorpusHeader(layout=get_layout("ntu25"), class_names=("a", "b"), fps=30.0,
                          persons=2, source_frame="synthetic random walk, metres")
    rng = np.random.default_rng(seed)
    with CorpusWriter(dest, header, chunk_frames=chunk_frames, chunks_per_shard=4) as w:
        for i, t in enumerate(LENGTHS):
            joints = rng.uniform(-2, 2, (1, 1, 3, 2)) + np.cumsum(
                0.02 * rng.standard_normal((t, 25, 3, 2)), axis=0) + 0.3 * rng.standard_normal(
                (1, 25, 3, 2))
            valid = (rng.random((t, 25, 2)) > 0.05) & (i != 3)
            if i == 4:
                valid[:20, :, 0] = False
            if i == 6:
                valid[::2, 1, 0] = False
            w.append(Sequence(seq_id=f"s{i}", joints=joints.astype(np.float32),
                              source_file=f"f{i}", labels=rng.integers(-1, 3, t).astype(np.int16),
                              valid=valid))
    return str(dest)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("norm") / "tiny.zarr")


@pytest.fixture(scope="module")
def chunked16(tmp_path_factory):
    """The same corpus in 16-frame chunks: every 64-frame window spans 4-5 chunks."""
    return write_corpus(tmp_path_factory.mktemp("norm16") / "tiny16.zarr", chunk_frames=16)


SHARED_DATA = Path(os.environ.get(
    "SSCL_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.fixture(scope="module", params=["florence3d", "msr_action3d"])
def real_corpus(request, tmp_path_factory):
    """A real dataset of ../shared/data converted to a corpus (florence15: the centre is the
    root, spine bone centre -> neck; msr3d20: untracked joints and an all-zero clip)."""
    root = SHARED_DATA / request.param
    if not root.is_dir():
        pytest.skip(f"real dataset {root} absent (a user's clone has no ../shared); "
                    "set SSCL_SHARED_DATA")
    header, items = {"florence3d": florence3d, "msr_action3d": msr3d}[request.param].read(root)
    dest = tmp_path_factory.mktemp("real") / f"{request.param}.zarr"
    with CorpusWriter(dest, header) as w:
        w.extend(items)
    return str(dest)


# --------------------------------------------------------------------------- the oracle


class Oracle:
    """Batches as the whole-sequence numpy definition makes them."""

    def __init__(self, path: str, cfg: LoaderConfig):
        self.c = open_corpus(path)
        self.cfg = cfg
        self.nj = normalization_joints(self.c.layout) if cfg.normalize != "none" else None
        self._seq: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def sequence(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        if s not in self._seq:
            joints, valid, _ = self.c.read_sequence(s)
            if self.nj is not None:
                joints = normalize_sequence_ref(joints, valid, self.nj, self.cfg.normalize)
            self._seq[s] = joints, valid
        return self._seq[s]

    def windows(self, source: BatchSource, epoch: int, step: int):
        positions, items, _ = source.shard(epoch).batch(step)
        starts = source.windows.resolve_starts(items, positions, self.cfg.seed, epoch)
        lengths = source.windows.length[items]
        seq = source.windows.seq[items]
        V, C, M = self.c.frame_shape
        raw = np.zeros((len(items), int(lengths.max()), V, C, M), np.float32)
        valid = np.zeros(raw.shape[:3] + (M,), bool)
        for i, (s, a, t) in enumerate(zip(seq, starts, lengths)):
            j, v = self.sequence(int(s))
            raw[i, :t], valid[i, :t] = j[a:a + t], v[a:a + t]
        return positions, raw, valid, lengths

    def pretrain(self, source: BatchSource, epoch: int, step: int):
        cfg = self.cfg
        positions, raw, valid, lengths = self.windows(source, epoch, step)
        params = A.params_for_ref(cfg.seed, epoch, positions, cfg.augment, extreme=cfg.extreme)
        flip = self.c.layout.flip_permutation() if self.c.layout.flip_pairs else None
        views, vvalid = A.two_view_ref(raw, valid, lengths, params, cfg.augment, flip)
        return views, vvalid, params

    def finetune(self, source: BatchSource, epoch: int, step: int):
        _, raw, valid, _ = self.windows(source, epoch, step)
        return raw.transpose(0, 3, 1, 2, 4)


def check_pretrain(path: str, cfg: LoaderConfig, steps: int = 2) -> BatchSource:
    source = BatchSource(path, cfg, build_windows(open_corpus(path).lengths, cfg), 0, 1)
    oracle = Oracle(path, cfg)
    names = ("query", "key", "extreme") if cfg.extreme else ("query", "key")
    for step in range(min(steps, source.num_steps(1))):
        batch = source(1, step)
        views, vvalid, params = oracle.pretrain(source, 1, step)
        for r, name in enumerate(names):
            np.testing.assert_array_equal(batch[f"{name}_valid"], vvalid[r], err_msg=name)
            # float32 kernel against the float64 chain, coordinates of a few metres
            np.testing.assert_allclose(batch[name], views[r], rtol=1e-5, atol=2e-5,
                                       err_msg=name)
            x = batch[name].transpose(0, 2, 3, 4, 1)
            assert np.all(x[~batch[f"{name}_valid"]] == 0)  # untracked points exactly 0
            np.testing.assert_array_equal(batch[f"{name}_tempo"],
                                          params.views[r].tempo.astype(np.float32))
    return source


# --------------------------------------------------------------------------- fast paths vs twin


@pytest.mark.isa
@pytest.mark.parametrize("mode", ["first", "frame", "none"])
def test_pretrain_views_match_the_sequence_definition(corpus, mode):
    cfg = LoaderConfig(seed=3, batch_size=5, raw_length=64, extreme=True, augment=AUG,
                       normalize=mode, num_workers=0)
    source = check_pretrain(corpus, cfg, steps=2)
    if mode != "none":  # sequence 4's references lie past the first frames read
        refs = source._refs
        assert refs.known.any()
        if refs.known[4]:
            assert refs.rot[4].shape == (3, 3)


@pytest.mark.isa
@pytest.mark.parametrize("mode", ["first", "none"])
def test_windows_crossing_chunk_boundaries_match_the_twin(chunked16, mode):
    """The fused crop reads windows spanning several 16-frame chunks from the chunk cache."""
    budget = 200_000  # the corpus (533 kB decoded) does not fit; a batch's chunks do
    cfg = LoaderConfig(seed=5, batch_size=3, raw_length=64, augment=AUG, normalize=mode,
                       memory_budget=budget, map_joints=False, shuffle=False, num_workers=0)
    source = check_pretrain(chunked16, cfg, steps=4)
    assert source.corpus.mode == "chunked" and source.corpus.cache.chunk_frames == 16
    positions, items, _ = source.shard(1).batch(0)
    starts = source.windows.resolve_starts(items, positions, cfg.seed, 1)
    table = source.corpus.window_table(source.windows.seq[items], starts,
                                       source.windows.length[items])
    assert table.shift == 4 and table.rowbase.shape[1] >= 4  # in place, across chunks


@pytest.mark.parametrize("mode", ["first", "frame", "none"])
def test_finetune_windows_match_and_overlaps_agree(corpus, mode):
    cfg = LoaderConfig(task="finetune", seed=1, batch_size=4, max_length=50, overlap=20,
                       train=False, shuffle=False, normalize=mode, num_workers=0)
    source = BatchSource(corpus, cfg, build_windows(open_corpus(corpus).lengths, cfg), 0, 1)
    oracle = Oracle(corpus, cfg)
    frames: dict[tuple[int, int], np.ndarray] = {}
    shared = 0
    for step in range(source.num_steps(0)):
        batch = source(0, step)
        want = oracle.finetune(source, 0, step)
        np.testing.assert_allclose(batch["x"], want, rtol=1e-6, atol=1e-6)
        for i in np.flatnonzero(batch["weight"]):
            s, a = int(batch["seq"][i]), int(batch["start"][i])
            for t in range(int(batch["mask"][i].sum())):
                f = batch["x"][i, :, t]
                if (s, a + t) in frames:  # a frame two overlapping windows share
                    np.testing.assert_array_equal(frames[(s, a + t)], f)
                    shared += 1
                frames[(s, a + t)] = f
    assert shared > 50


def test_normalised_sequence_has_its_axes_and_centre(corpus):
    c = open_corpus(corpus)
    nj = normalization_joints(c.layout)
    joints, valid, _ = c.read_sequence(4)  # person 0 untracked in frames 0-19
    y = normalize_sequence_ref(joints, valid, nj, "first")
    tc = int(np.argmax(valid[:, nj.centre, 0]))  # first tracked centre
    tr = int(np.argmax(valid[:, list(nj), 0].all(axis=1)))  # first frame with all four joints
    assert tc >= 20 and tr >= tc
    np.testing.assert_allclose(y[tc, nj.centre, :, 0], 0.0, atol=1e-5)
    spine = y[tr, nj.spine_to, :, 0] - y[tr, nj.spine_from, :, 0]
    np.testing.assert_allclose(spine[:2], 0.0, atol=1e-5)
    assert spine[2] > 0
    shoulders = y[tr, nj.shoulder_to, :, 0] - y[tr, nj.shoulder_from, :, 0]
    assert abs(shoulders[1]) < 1e-5 and shoulders[0] > 0
    assert np.all(y.transpose(0, 1, 3, 2)[~valid] == 0)
    yf = normalize_sequence_ref(joints, valid, nj, "frame")
    here = valid[:, nj.centre, 0]
    np.testing.assert_allclose(yf[here, nj.centre, :, 0], 0.0, atol=1e-5)
    # "first" keeps the walk; rigid motion leaves bone lengths alone
    assert not np.allclose(y[here, nj.centre, :, 0], 0.0, atol=1e-2)
    both = valid[:, 0, 0] & valid[:, 1, 0]
    np.testing.assert_allclose(
        np.linalg.norm(y[both, 1, :, 0] - y[both, 0, :, 0], axis=-1),
        np.linalg.norm(joints[both, 1, :, 0] - joints[both, 0, :, 0], axis=-1), atol=1e-5)


@pytest.mark.isa
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 4), st.integers(1, 20), st.sampled_from([2, 3]),
       st.sampled_from([1, 2]), st.sampled_from(["first", "frame"]), st.integers(1, 16))
def test_kernels_with_norm_match_their_twins(seed, n, t, c, m, mode, out_len):
    rng = np.random.default_rng(seed)
    v = 7
    valid = rng.random((n, t, v, m)) < 0.8
    raw = (rng.standard_normal((n, t, v, c, m)) + 3.0).astype(np.float32) * valid[:, :, :, None]
    centre = rng.standard_normal((n, 3))
    q, _ = np.linalg.qr(rng.standard_normal((n, 3, 3)))
    rot = q if c == 3 else np.tile(np.eye(3), (n, 1, 1))
    cj = int(rng.integers(v)) if mode == "frame" else -1
    norm = WindowNorm(centre, rot, cj)
    got = normalize_windows(raw, valid, norm)
    want = normalize_windows_ref(raw, valid, norm)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    cfg = AugmentConfig(out_len=out_len, rotate_deg=(20, 20, 20), tempos=(0.5, 1.0, 2.0))
    params = A.draw_two_view_params(rng, n, cfg, extreme=True)
    lengths = rng.integers(0, t + 1, n)
    perm = rng.permutation(v)
    got, got_v = A.two_view(raw, valid, lengths, params, cfg, perm, norm=norm)
    want, want_v = A.two_view_ref(raw, valid, lengths, params, cfg, perm, norm=norm)
    np.testing.assert_array_equal(got_v, want_v)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)
    assert np.all(got[np.broadcast_to(~got_v[:, :, None], got.shape)] == 0)


@pytest.mark.isa
@pytest.mark.parametrize("mode", ["first", "frame"])
def test_real_data_pretrain_and_finetune_match_the_definition(real_corpus, mode):
    aug = AugmentConfig(out_len=32, rotate_deg=(10, 10, 10), flip_prob=0.5, tempos=(1.0, 2.0))
    cfg = LoaderConfig(seed=2, batch_size=16, raw_length=60, extreme=True, augment=aug,
                       normalize=mode, num_workers=0)
    check_pretrain(real_corpus, cfg, steps=2)
    cfg = LoaderConfig(task="finetune", batch_size=16, max_length=40, overlap=10, train=False,
                       shuffle=False, normalize=mode, num_workers=0)
    source = BatchSource(real_corpus, cfg, build_windows(open_corpus(real_corpus).lengths, cfg),
                         0, 1)
    oracle = Oracle(real_corpus, cfg)
    for step in (0, source.num_steps(0) - 1):
        np.testing.assert_allclose(source(0, step)["x"], oracle.finetune(source, 0, step),
                                   rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- joints per layout


def test_normalization_joints_of_every_layout():
    expect = {
        "ntu25": ("spine_mid", "spine_base", "spine_mid", "shoulder_right", "shoulder_left"),
        "kinect20": ("spine", "hip_center", "spine", "shoulder_right", "shoulder_left"),
        "msr3d20": ("spine", "hip_center", "spine", "shoulder_right", "shoulder_left"),
        "openni15": ("torso", "torso", "neck", "shoulder_right", "shoulder_left"),
        "florence15": ("spine", "spine", "neck", "shoulder_right", "shoulder_left"),
        "cmu31": ("lowerback", "root", "lowerback", "rclavicle", "lclavicle"),
        "smpl22": ("spine2", "pelvis", "spine2", "right_shoulder", "left_shoulder"),
        "smpl24": ("spine2", "pelvis", "spine2", "right_shoulder", "left_shoulder"),
    }
    assert set(expect) | {"coco17"} == set(layout_names())
    for name, roles in expect.items():
        lay = get_layout(name)
        assert tuple(lay.joint_names[j] for j in normalization_joints(lay)) == roles, name
    assert normalization_joints(get_layout("ntu25")) == NormJoints(1, 0, 1, 8, 4)
    with pytest.raises(ConfigError, match="layout 'coco17' cannot be normalised.*'none'"):
        normalization_joints(get_layout("coco17"))
    # A stored layout under a built-in name but without its joints: the missing one is named.
    lay = get_layout("kinect20")
    renamed = Layout("kinect20", tuple(n.replace("hip_center", "hips") for n in lay.joint_names),
                     lay.parents, lay.center, lay.flip_pairs)
    with pytest.raises(ConfigError, match="'kinect20' has no joint 'hip_center' \\(the spine"):
        normalization_joints(renamed)


def test_custom_layouts_use_their_centre_and_shoulder_pair():
    names = ("pelvis", "chest", "l_shoulder", "r_shoulder")
    lay = Layout("mine", names, (-1, 0, 1, 1), 1, ((2, 3),))
    assert normalization_joints(lay) == (1, 0, 1, 3, 2)
    no_pair = Layout("mine", names, (-1, 0, 1, 1), 1, ())
    with pytest.raises(ConfigError, match="'mine' has no left/right shoulder joints"):
        normalization_joints(no_pair)
    with pytest.raises(ConfigError, match="'line' has no spine bone"):
        normalization_joints(Layout("line", ("a", "b"), (-1, 0), 0, ()))
    with pytest.raises(ConfigError, match="loader.normalize = 'centre'"):
        LoaderConfig(normalize="centre")


def test_references_skip_untracked_and_degenerate_frames():
    nj = NormJoints(1, 0, 1, 3, 2)
    raw = np.zeros((1, 3, 4, 3, 1), np.float32)
    valid = np.ones((1, 3, 4, 1), bool)
    valid[0, 0, 1] = False  # frame 0: centre untracked
    raw[0, 1, 1] = raw[0, 1, 0]  # frame 1: zero-length spine
    raw[0, :, 1, :, 0] = [[0, 0, 0], [5, 5, 5], [1, 2, 3]]
    raw[0, 1, 0, :, 0] = [5, 5, 5]
    raw[0, 2, 0, :, 0] = [1, 1, 3]  # frame 2: spine along +y
    raw[0, 2, 2, :, 0], raw[0, 2, 3, :, 0] = [0, 0, 3], [2, 0, 3]  # shoulders along -x
    centre, rot, has_c, has_r = sequence_references(raw, valid, nj)
    np.testing.assert_allclose(centre[0], [5, 5, 5])  # frame 1: first tracked centre
    assert has_c[0] and has_r[0]
    np.testing.assert_allclose(rot[0] @ [0, 1, 0], [0, 0, 1], atol=1e-12)  # spine -> +z
    np.testing.assert_allclose(rot[0] @ [-1, 0, 0], [1, 0, 0], atol=1e-12)  # shoulders -> +x
    assert not sequence_references(raw, valid & False, nj)[2].any()


def test_make_loader_refuses_a_layout_without_the_joints(tmp_path):
    """COCO-17 (2-D) has no trunk joints: normalising fails at make_loader, in the training
    process, naming the layout; "none" loads."""
    header = CorpusHeader(layout=get_layout("coco17"), class_names=("a",), fps=25.0, persons=1,
                          source_frame="synthetic, pixels")
    rng = np.random.default_rng(0)
    with CorpusWriter(tmp_path / "coco.zarr", header) as w:
        w.append(Sequence(seq_id="s0", joints=rng.random((40, 17, 2, 1)).astype(np.float32),
                          source_file="f"))
    cfg = LoaderConfig(task="finetune", batch_size=1, max_length=40, num_workers=0)
    with pytest.raises(ConfigError, match="layout 'coco17' cannot be normalised"):
        make_loader(tmp_path / "coco.zarr", cfg, engine="torch")
    loader = make_loader(tmp_path / "coco.zarr", LoaderConfig(
        task="finetune", batch_size=1, max_length=40, num_workers=0, normalize="none"),
        engine="torch")
    (batch,) = list(loader.epoch(0))
    assert batch["x"].shape == (1, 2, 40, 17, 1) and loader.info.units != "metres"
