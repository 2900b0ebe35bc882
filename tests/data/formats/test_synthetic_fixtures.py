"""Converters of the formats whose real files are not in ../shared/data (NTU RGB+D, PKU-MMD,
BABEL, generic npz/CSV), tested on small files written in the exact published formats
(tests/helpers/format_writers.py): exact values after the stated transform, body selection,
skip lists, splits, label rules, converted + skipped = inputs, and typed errors on bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sscl.cli import main
from sscl.data.corpus import Sequence, Skipped, open_corpus
from sscl.data.formats import _ntu_tables as ntu_tables
from sscl.data.formats import babel, generic, ntu, pkummd
from sscl.errors import FormatError, LayoutError
from tests.helpers import format_writers as W

RNG_SEED = 20240611


def _f32(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _collect(items) -> tuple[list[Sequence], list[Skipped]]:
    seqs, skipped = [], []
    for item in items:
        (seqs if isinstance(item, Sequence) else skipped).append(item)
    return seqs, skipped


# ======================================================================== NTU RGB+D


def _body(rng, body_id: int, spread: float, state=None) -> W.NtuBody:
    xyz = _f32(rng, 25, 3, scale=spread) + np.float32(2.0)
    if state is None:
        return W.NtuBody(body_id, xyz)
    return W.NtuBody(body_id, xyz, np.asarray(state))


def test_ntu_values_bodies_labels_and_metadata(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    T = 6
    # body 7 active (spread 1.0) all frames, body 9 calm (0.1) from frame 2 (appears mid-sequence),
    # body 5 calmest (0.01) in frames 3..4 (three bodies there); frame 1 has no body at all.
    active = [_body(rng, 7, 1.0) for _ in range(T)]
    calm = [_body(rng, 9, 0.1) for _ in range(T)]
    state = np.full(25, 2)
    state[[3, 11]] = 0  # untracked joints
    state[4] = 1  # inferred joint: kept
    calm[3] = W.NtuBody(9, calm[3].xyz, state)
    noise = [_body(rng, 5, 0.01) for _ in range(T)]
    frames = []
    for t in range(T):
        bodies = [] if t == 1 else [calm[t], active[t]] if t >= 2 else [active[t]]
        if t in (3, 4):
            bodies.insert(0, noise[t])
        frames.append(bodies)
    W.write_ntu_skeleton(
        tmp_path / "nturgb+d_skeletons" / "S002C003P008R001A023.skeleton", frames, crlf=True
    )

    header, items = ntu.read(tmp_path)
    assert header.fps == 30.0 and header.persons == 2 and header.layout.num_joints == 25
    assert (
        header.class_names == ntu_tables.NTU60_CLASS_NAMES
        and header.class_names[22] == "hand waving"
    )
    (seq,), skipped = _collect(items)
    assert skipped == []
    assert seq.seq_id == "S002C003P008R001A023"
    assert seq.source_file == "nturgb+d_skeletons/S002C003P008R001A023.skeleton"
    assert seq.joints.shape == (T, 25, 3, 2) and seq.joints.dtype == np.float32
    assert seq.valid.shape == (T, 25, 2) and seq.valid.dtype == bool
    # slot 0 = most active body (7) in every frame it is listed, exact values (identity transform)
    for t in range(T):
        if t == 1:
            assert not seq.valid[t].any() and not seq.joints[t].any()
            continue
        np.testing.assert_array_equal(seq.joints[t, :, :, 0], active[t].xyz)
    # slot 1 = body 9, absent in frames 0-1 (zeros, invalid), untracked joints zeroed in frame 3
    assert not seq.valid[:2, :, 1].any() and not seq.joints[:2, :, :, 1].any()
    for t in range(2, T):
        expect = calm[t].xyz.copy()
        if t == 3:
            expect[[3, 11]] = 0.0
        np.testing.assert_array_equal(seq.joints[t, :, :, 1], expect)
    assert not seq.valid[3, 3, 1] and not seq.valid[3, 11, 1] and seq.valid[3, 4, 1]
    assert seq.valid[2:, :, 1].sum() == 4 * 25 - 2
    assert (seq.labels == 22).all() and seq.labels.dtype == np.int16
    assert (seq.subject, seq.camera, seq.setup) == ("P008", "C003", "S002")
    assert seq.extra["replication"] == 1 and seq.extra["action"] == 23
    assert seq.extra["bodies_seen"] == 3 and seq.extra["bodies_dropped"] == 1
    assert seq.extra["kept_body_ids"] == ["7", "9"] and seq.extra["frames_without_body"] == 1
    # NTU60 protocols: P008 trains in xsub, camera 3 trains in xview
    assert seq.split_tags == ("xsub:train", "xview:train")


def test_ntu_keep_untracked_keeps_positions(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 1)
    state = np.full(25, 2)
    state[0] = 0
    body = _body(rng, 1, 1.0, state)
    W.write_ntu_skeleton(tmp_path / "S001C001P001R001A001.skeleton", [[body]])
    _, items = ntu.read(tmp_path, keep_untracked=True)
    (seq,), _ = _collect(items)
    np.testing.assert_array_equal(seq.joints[0, :, :, 0], body.xyz)
    assert seq.valid[0, :, 0].all()


def test_ntu_nan_joints_become_invalid(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 5)
    body = _body(rng, 1, 1.0)
    text = W.ntu_skeleton_text([[body], [body]])
    lines = text.split("\n")
    lines = _retoken(lines, 4 + 7, 1, "NaN")  # frame 1, joint 7, y
    lines = _retoken(lines, 32 + 3, 2, "-Infinity")  # frame 2, joint 3, z
    (tmp_path / "S001C001P001R001A001.skeleton").write_text("\n".join(lines))
    (seq,), _ = _collect(ntu.read(tmp_path)[1])
    assert not seq.valid[0, 7, 0] and not seq.valid[1, 3, 0] and seq.valid[:, :, 0].sum() == 48
    assert not seq.joints[0, 7].any() and np.isfinite(seq.joints).all()
    assert seq.extra["nonfinite_joints"] == 2
    np.testing.assert_array_equal(seq.joints[1, 7, :, 0], body.xyz[7])


def test_ntu_activity_rule_is_variance_sum():
    rng = np.random.default_rng(RNG_SEED + 2)
    xyz = rng.standard_normal((4, 25, 3))
    body = ntu.BodyTrack(1, np.arange(4), xyz, np.full((4, 25), 2, dtype=np.int8))
    expect = sum(np.var(xyz[..., c]) for c in range(3))
    assert body.activity == pytest.approx(expect)
    a = ntu.BodyTrack(2, np.arange(4), xyz * 0.5, body.state)
    b = ntu.BodyTrack(3, np.arange(4), xyz * 2.0, body.state)
    tie = ntu.BodyTrack(4, np.arange(4), xyz * 2.0, body.state)
    assert [t.body_id for t in ntu.select_bodies([a, body, b, tie])] == [3, 4]


def test_ntu_missing_list_skips_counts_and_splits(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 3)
    one = [[_body(rng, 1, 1.0)] for _ in range(3)]
    names = {
        "S001C002P005R002A008": one,  # in the published list
        "S001C001P003R001A001": one,  # P003 -> xsub test, C001 -> xview test
        "S001C001P001R001A002": [[] for _ in range(4)],  # no body at all
        "S001C001P001R001A003": [],  # zero frames
        "S018C002P045R001A061": one,  # NTU120 only: setup 18 (even) trains in xset
    }
    for stem, frames in names.items():
        W.write_ntu_skeleton(tmp_path / f"{stem}.skeleton", frames)
    header, items = ntu.read(tmp_path)
    assert header.class_names == ntu_tables.NTU120_CLASS_NAMES
    seqs, skipped = _collect(items)
    assert len(seqs) + len(skipped) == len(names)
    reasons = {Path(s.source_file).stem: s.reason for s in skipped}
    assert reasons["S001C002P005R002A008"] == "in the published missing-skeleton list"
    assert "no body" in reasons["S001C001P001R001A002"]
    assert "zero frames" in reasons["S001C001P001R001A003"]
    tags = {s.seq_id: s.split_tags for s in seqs}
    assert tags["S001C001P003R001A001"] == ("xsub:test", "xview:test", "xsub120:test", "xset:test")
    assert tags["S018C002P045R001A061"] == ("xsub120:train", "xset:train")
    assert {s.seq_id: int(s.labels[0]) for s in seqs}["S018C002P045R001A061"] == 60

    # a user list replaces the built-in one; 'none' disables skipping
    listed = W.write_ntu_missing_list(tmp_path / "missing.txt", ["S001C001P003R001A001"])
    seqs, skipped = _collect(ntu.read(tmp_path, missing_list=str(listed))[1])
    assert {Path(s.source_file).stem for s in skipped if "published" in s.reason} == {
        "S001C001P003R001A001"
    }
    seqs, skipped = _collect(ntu.read(tmp_path, missing_list="none")[1])
    assert len(seqs) == 3 and len(skipped) == 2


def test_ntu_builtin_missing_list_matches_published_counts():
    names = ntu_tables.NTU120_MISSING_SKELETONS
    assert len(names) == len(set(names)) == 535
    assert sum(ntu.parse_sample_name(n).in_ntu60 for n in names) == 302
    assert len(ntu_tables.NTU120_XSUB_TRAIN_PERFORMERS) == 53
    assert len(ntu_tables.NTU120_CLASS_NAMES) == 120


def _ntu_lines(tmp_path) -> list[str]:
    rng = np.random.default_rng(RNG_SEED + 4)
    return W.ntu_skeleton_text([[_body(rng, 1, 1.0)], [_body(rng, 1, 1.0)]]).split("\n")


def _retoken(lines: list[str], i: int, k: int, token: str) -> list[str]:
    tokens = lines[i].split()
    tokens[k] = token
    return lines[:i] + [" ".join(tokens)] + lines[i + 1 :]


@pytest.mark.parametrize(
    ("edit", "line", "message"),
    [
        (lambda ls: ls[:20], 21, "file ends early"),  # truncated inside the joint block of frame 1
        (lambda ls: ls[:30], 31, "file ends early"),  # truncated after frame 1
        (lambda ls: ls[:3] + ["24"] + ls[4:], 4, "expected 25 joints"),
        (lambda ls: _retoken(ls, 6, 2, "zz"), 7, "not a number"),
        (lambda ls: _retoken(ls, 6, 2, "1.2.3"), 7, "not a number"),
        (lambda ls: _retoken(ls, 6, 1, "--1"), 7, "not a number"),
        (lambda ls: ls[:6] + [ls[6] + " 7"] + ls[7:], 7, "12 values"),
        (lambda ls: ls[:2] + ["72057594037931101 0 1"] + ls[3:], 3, "10 values"),
        (lambda ls: ["2.5"] + ls[1:], 1, "frame count"),
        (lambda ls: _retoken(ls, 6, 11, "5"), 7, "trackingState"),
        (lambda ls: _retoken(ls, 40, 0, "1.#QNAN"), 41, "not a number"),
        (lambda ls: ls[:-1] + ["1", ""], 58, "unexpected content"),
    ],
)
def test_ntu_bad_files_name_file_and_line(tmp_path, edit, line, message):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text("\n".join(edit(_ntu_lines(tmp_path))))
    _, items = ntu.read(tmp_path)
    with pytest.raises(FormatError) as err:
        list(items)
    assert err.value.line == line and message in str(err.value)
    assert err.value.path == str(path)
    # with --skip-bad the file is recorded as skipped with the same message
    seqs, skipped = _collect(ntu.read(tmp_path, skip_bad=True)[1])
    assert seqs == [] and message in skipped[0].reason


def test_ntu_bad_folder_contents(tmp_path):
    with pytest.raises(FormatError, match="no .skeleton files"):
        ntu.read(tmp_path)
    (tmp_path / "clip01.skeleton").write_text("0\n")
    with pytest.raises(FormatError, match="SsssCcccPpppRrrrAaaa"):
        ntu.read(tmp_path)
    (tmp_path / "clip01.skeleton").unlink()
    W.write_ntu_skeleton(tmp_path / "S020C001P050R001A100.skeleton", [])
    with pytest.raises(FormatError, match="--dataset ntu120"):
        ntu.read(tmp_path, dataset="ntu60")
    with pytest.raises(FormatError, match="no sample names"):
        ntu.read(tmp_path, missing_list=str(W.write_ntu_missing_list(tmp_path / "m.txt", [])))


# ======================================================================== PKU-MMD


def _pku_joints(rng, T: int, second_body_frames: slice | None) -> np.ndarray:
    joints = _f32(rng, T, 2, 25, 3) + np.float32(1.5)
    mask = np.zeros(T, dtype=bool)
    if second_body_frames is not None:
        mask[second_body_frames] = True
    joints[~mask, 1] = 0.0  # absent second body: zeros, as released
    return joints


def test_pkummd_values_labels_overlaps_and_splits(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 10)
    a = _pku_joints(rng, 40, None)  # one person throughout
    b = _pku_joints(rng, 30, slice(10, 20))
    # 0-based inclusive: 41 'throw' covers 2..9; 8 'drink water' 8..15 overlaps it and starts
    # later, so it wins on 8..9; the last segment ends one past the last frame (clipped)
    W.write_pkummd(tmp_path, "0002-L", a, [(41, 2, 9, 2), (8, 8, 15, 1), (51, 30, 40, 2)])
    W.write_pkummd(tmp_path, "0002-M", b, [(14, 0, 29, 1)])
    b_nan = b[:5].copy()
    b_nan[2, 0, 4, 1] = np.nan  # the Kinect tools write NaN for some joints
    W.write_pkummd(tmp_path, "0003-R", b_nan, None)  # skeleton without labels
    (tmp_path / "label" / "0009-L.txt").write_text("1,0,3,1\n")  # labels without skeleton
    W.write_pkummd_split(tmp_path / "cross-subject.txt", ["0002-L", "0002-M"], ["0003-R"])
    W.write_pkummd_split(tmp_path / "Split_view.txt", ["0002-M", "0003-R"], ["0002-L"])

    header, items = pkummd.read(
        tmp_path, split_file=[str(tmp_path / "cross-subject.txt"), str(tmp_path / "Split_view.txt")]
    )
    assert (
        len(header.class_names) == 51 and header.class_names[40] == "throw" and header.persons == 2
    )
    seqs, skipped = _collect(items)
    assert len(seqs) + len(skipped) == 4
    assert [(s.source_file, s.reason) for s in skipped] == [
        ("label/0009-L.txt", "label file without a skeleton file")
    ]
    by_id = {s.seq_id: s for s in seqs}
    s = by_id["0002-L"]
    np.testing.assert_array_equal(s.joints, a.transpose(0, 2, 3, 1))
    assert s.valid[:, :, 0].all() and not s.valid[:, :, 1].any()
    expect = np.full(40, 51)
    expect[2:10] = 40
    expect[8:16] = 7
    expect[30:40] = 50
    np.testing.assert_array_equal(s.labels, expect)
    assert s.extra["overlapping_frames"] == 2 and s.extra["segments"][0] == [40, 2, 9, 2.0]
    assert (s.camera, s.setup) == ("L", "0002")
    assert s.split_tags == ("xsub:train", "Split_view:test")
    m = by_id["0002-M"]
    assert (
        m.valid[10:20, :, 1].all() and not m.valid[:10, :, 1].any() and not m.valid[20:, :, 1].any()
    )
    np.testing.assert_array_equal(m.joints[10:20, :, :, 1], b[10:20, 1])
    assert (m.labels == 13).all()
    r = by_id["0003-R"]
    assert r.labels is None and r.extra["labels"] == "none: no label file"
    assert (
        not r.valid[2, 4, 0]
        and r.valid[:, :, 0].sum() == 5 * 25 - 1
        and np.isfinite(r.joints).all()
    )
    assert r.extra["nonfinite_joints"] == 1
    assert r.split_tags == ("xsub:test", "Split_view:train")


def test_pkummd_label_base_and_default_split_discovery(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 11)
    W.write_pkummd(
        tmp_path,
        "0005-R",
        _pku_joints(rng, 10, slice(0, 10)),
        [(3, 1, 10, 1)],
        skeleton_dir="PKU_Skeleton_Renew",
        label_dir="Train_Label_PKU_final",
    )
    (tmp_path / "Split").mkdir()
    W.write_pkummd_split(tmp_path / "Split" / "cross-view.txt", ["0005-R"], [])
    (seq,), _ = _collect(pkummd.read(tmp_path, label_base=1)[1])
    assert (seq.labels == 2).all() and seq.split_tags == ("xview:train",)
    with pytest.raises(FormatError, match="start_frame 0 is before the first frame"):
        W.write_pkummd(
            tmp_path,
            "0005-R",
            _pku_joints(rng, 10, None),
            [(3, 0, 9, 1)],
            skeleton_dir="PKU_Skeleton_Renew",
            label_dir="Train_Label_PKU_final",
        )
        list(pkummd.read(tmp_path, label_base=1)[1])


@pytest.mark.parametrize(
    ("label_line", "message"),
    [
        ("52,0,3,1", "action_id 52 outside 1..51"),
        ("0,0,3,1", "action_id 0 outside"),
        ("3,7,5,1", "start_frame <= end_frame"),
        ("3,-1,5,1", "start_frame <= end_frame"),
        ("3,2,11,1", "goes past the last frame"),
        ("3,2,5", "expected 4 fields"),
        ("3,a,5,1", "integer"),
    ],
)
def test_pkummd_bad_labels_name_file_and_line(tmp_path, label_line, message):
    rng = np.random.default_rng(RNG_SEED + 12)
    W.write_pkummd(tmp_path, "0002-L", _pku_joints(rng, 10, None), [(1, 0, 1, 1)])
    label = tmp_path / "label" / "0002-L.txt"
    label.write_text("1,0,1,1\n\n" + label_line + "\n")
    with pytest.raises(FormatError) as err:
        list(pkummd.read(tmp_path)[1])
    assert message in str(err.value) and err.value.line == 3 and err.value.path == str(label)
    seqs, skipped = _collect(pkummd.read(tmp_path, skip_bad=True)[1])
    assert seqs == [] and message in skipped[0].reason


def test_pkummd_bad_skeleton_rows(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 13)
    W.write_pkummd(tmp_path, "0002-L", _pku_joints(rng, 4, None), [(1, 0, 1, 1)])
    path = tmp_path / "skeleton" / "0002-L.txt"
    lines = path.read_text().split("\n")
    path.write_text("\n".join(lines[:2] + [lines[2].rsplit(" ", 1)[0]] + lines[3:]))
    with pytest.raises(FormatError, match="expected 150 numbers") as err:
        list(pkummd.read(tmp_path)[1])
    assert err.value.line == 3
    tokens = lines[1].split()
    tokens[7] = "1.2.3"
    path.write_text("\n".join([lines[0], " ".join(tokens)] + lines[2:]))
    with pytest.raises(FormatError, match="not a number") as err:
        list(pkummd.read(tmp_path)[1])
    assert err.value.line == 2
    with pytest.raises(FormatError, match="no label folder"):
        (tmp_path / "label").rename(tmp_path / "labels_elsewhere")
        pkummd.read(tmp_path)


def test_pkummd_split_list_spellings():
    text = "Training videos: \n0002-L, 0002-M, \nValidataion videos: \n0003-R, \n"
    assert pkummd.parse_split_text(text, "x") == (["0002-L", "0002-M"], ["0003-R"])
    assert pkummd.parse_split_text(text.replace("Validataion", "Validation"), "x")[1] == ["0003-R"]
    with pytest.raises(FormatError, match="Training videos"):
        pkummd.parse_split_text("0002-L, 0003-R", "x")


# ======================================================================== BABEL


def _smplh73(rng, T: int) -> np.ndarray:
    return _f32(rng, T, 73, 3)


def test_babel_map_rotation_subsampling_and_labels(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 20)
    joints_dir, babel_dir = tmp_path / "joints", tmp_path / "babel"
    j120 = _smplh73(rng, 240)  # 2 s at 120 fps
    j100 = _smplh73(rng, 250)  # 2.5 s at 100 fps (not a multiple of 30)
    j60 = _smplh73(rng, 61)
    W.write_joint_npz(joints_dir / "CMU/CMU/86/86_05_poses.npz", j120, 120.0)
    W.write_joint_npz(joints_dir / "KIT/KIT/3/walk_poses.npz", j100, 100, fps_key="fps")
    # BABEL's renamed layout: BioMotionLab_NTroje -> BMLrub, dataset/subject/file
    W.write_joint_npz(joints_dir / "BMLrub/rub001/0001_poses.npz", j60, 60.0)
    train = [
        # overlapping multi-label segments
        W.babel_entry(
            1,
            "CMU/CMU/86/86_05_poses.npz",
            2.0,
            [(0.0, 1.0, ["walk", "wave"]), (0.5, 2.0, ["turn"]), (1.5, 1.8, None)],
        ),
        W.babel_entry(2, "KIT/KIT/3/walk_poses.npz", 2.5, None),  # no frame_ann
        W.babel_entry(3, "KIT/KIT/3/missing_poses.npz", 1.0, [(0.0, 1.0, ["walk"])]),
    ]
    val = [
        W.babel_entry(
            4, "KIT/KIT/3/walk_poses.npz", 2.5, [(0.0, 0.7, ["jog"]), (0.7, 2.5, ["stand"])]
        ),
        W.babel_entry(5, "BioMotionLab_NTroje/rub001/0001_poses.npz", 1.0, [(0.2, 0.6, ["jump"])]),
    ]
    W.write_babel_json(babel_dir / "train.json", train)
    W.write_babel_json(babel_dir / "val.json", val)

    header, items = babel.read(joints_dir, babel=str(babel_dir))
    assert header.class_names == ("jog", "jump", "stand", "turn", "walk", "wave")
    assert header.fps == 30.0 and header.persons == 1 and header.layout.num_joints == 25
    seqs, skipped = _collect(items)
    assert len(seqs) + len(skipped) == 5
    assert {(s.source_file, s.reason.split(" ")[0]) for s in skipped} == {
        ("KIT/KIT/3/walk_poses.npz", "no"),
        ("KIT/KIT/3/missing_poses.npz", "joint"),
    }
    assert [s.reason for s in skipped if s.reason.startswith("no ")] == ["no frame_ann"]
    by_id = {s.seq_id: s for s in seqs}

    s1 = by_id["babel_1"]
    assert s1.joints.shape == (60, 25, 3, 1) and s1.split_tags == ("babel:train",)
    src = j120[::4][:, list(babel.SMPL_TO_NTURGBD)]  # 120 fps: every 4th frame
    np.testing.assert_array_equal(
        s1.joints[..., 0], np.stack([src[..., 0], src[..., 2], -src[..., 1]], -1)
    )
    assert s1.valid.all() and s1.subject == "CMU/86" and s1.extra["source_fps"] == 120.0
    # frames 0..14: walk (first listed), 15..29: walk still listed first, 30..59: turn
    expect = np.full(60, 4)
    expect[30:] = 3
    np.testing.assert_array_equal(s1.labels, expect)

    s4 = by_id["babel_4"]
    idx = np.concatenate(
        [np.floor(100 / 30 * np.arange(30)).astype(int) + 100 * k for k in range(3)]
    )
    idx = idx[idx < 250]
    assert len(idx) == 75
    np.testing.assert_array_equal(
        s4.joints[:, :, 1, 0], j100[idx][:, list(babel.SMPL_TO_NTURGBD), 2]
    )
    assert s4.split_tags == ("babel:val",)
    n_jog = int(np.sum(np.arange(75) / 30 < 0.7))
    assert (s4.labels[:n_jog] == 0).all() and (s4.labels[n_jog:] == 2).all()

    s5 = by_id["babel_5"]
    assert len(s5.labels) == 31 and s5.source_file == "BioMotionLab_NTroje/rub001/0001_poses.npz"
    t = np.arange(31) / 30
    np.testing.assert_array_equal(s5.labels, np.where((t >= 0.2) & (t < 0.6), 1, 6))


def test_babel_subsets_take_first_subset_class(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 21)
    W.write_joint_npz(tmp_path / "j" / "A/A/1/a_poses.npz", _smplh73(rng, 30), 30.0)
    W.write_babel_json(
        tmp_path / "b" / "train.json",
        [
            W.babel_entry(
                7,
                "A/A/1/a_poses.npz",
                1.0,
                [
                    (0.0, 1.0, ["jump"]),
                    (0.0, 0.5, ["walk", "wave"]),
                    (0.2, 0.4, ["turn"]),
                    (0.8, 1.0, ["dance"]),
                ],
            ),
        ],
    )
    W.write_babel_json(tmp_path / "b" / "val.json", [])
    header, items = babel.read(tmp_path / "j", babel=str(tmp_path / "b"), subset=1)
    assert header.class_names == ("walk", "stand", "turn", "jump")
    (s,), _ = _collect(items)
    t = np.arange(30) / 30
    expect = np.where(t < 0.5, 0, 3)  # walk beats turn and jump; jump afterwards
    np.testing.assert_array_equal(s.labels, expect)
    _, items = babel.read(tmp_path / "j", babel=str(tmp_path / "b"), subset=3)
    (s,), _ = _collect(items)
    np.testing.assert_array_equal(s.labels, np.where(t < 0.5, 1, np.where(t >= 0.8, 2, 4)))


def test_babel_other_layouts_fps_json_and_errors(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 22)
    j52 = _f32(rng, 60, 52, 3)
    W.write_joint_npz(tmp_path / "j" / "A/A/1/a_poses.npz", j52, None)  # fps from --fps-json
    W.write_babel_json(
        tmp_path / "b" / "train.json", [W.babel_entry(1, "A/A/1/a_poses.npz", 1.0, [(0, 1, ["x"])])]
    )
    W.write_babel_json(tmp_path / "b" / "val.json", [])
    fps_json = tmp_path / "featp_2_fps.json"
    fps_json.write_text(json.dumps({"A/A/1/a_poses.npz": 60.0}))
    _, items = babel.read(tmp_path / "j", babel=str(tmp_path / "b"))
    seqs, (skip,) = _collect(items)
    assert seqs == [] and "no source fps" in skip.reason
    _, items = babel.read(
        tmp_path / "j", babel=str(tmp_path / "b"), fps_json=str(fps_json), layout="smpl22", up="y"
    )
    (s,), _ = _collect(items)
    np.testing.assert_array_equal(s.joints[..., 0], j52[::2, :22])
    _, items = babel.read(tmp_path / "j", babel=str(tmp_path / "b"), fps_json=str(fps_json))
    (s,), _ = _collect(items)
    assert "phalanx" in s.extra["joint_map"]
    np.testing.assert_array_equal(s.joints[:, 21, 0, 0], j52[::2, 36, 0])  # left thumb3
    with pytest.raises(FormatError, match="smpl24 needs SMPL's 24"):
        list(
            babel.read(
                tmp_path / "j", babel=str(tmp_path / "b"), fps_json=str(fps_json), layout="smpl24"
            )[1]
        )
    W.write_joint_npz(tmp_path / "j" / "A/A/1/a_poses.npz", _f32(rng, 60, 30, 3), 60.0)
    with pytest.raises(FormatError, match="30 joints; ntu25 needs SMPL-H"):
        list(babel.read(tmp_path / "j", babel=str(tmp_path / "b"))[1])
    (tmp_path / "b" / "val.json").write_text('{"9": {"feat_p": 3}}')
    with pytest.raises(FormatError, match="entry 9"):
        babel.read(tmp_path / "j", babel=str(tmp_path / "b"))
    (tmp_path / "b" / "val.json").write_text('{"9": ')
    with pytest.raises(FormatError, match="not valid JSON"):
        babel.read(tmp_path / "j", babel=str(tmp_path / "b"))


def test_babel_skip_bad_skips_a_malformed_entry_and_converts_the_rest(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 23)
    W.write_joint_npz(tmp_path / "j" / "A/A/1/a_poses.npz", _f32(rng, 60, 52, 3), 60.0)
    good = W.babel_entry(1, "A/A/1/a_poses.npz", 1.0, [(0, 1, ["x"])])
    bad_times = W.babel_entry(2, "A/A/2/b_poses.npz", 1.0, [(0.8, 0.2, ["y"])])  # ends first
    W.write_babel_json(tmp_path / "b" / "train.json", [good, bad_times])
    (tmp_path / "b" / "val.json").write_text('{"9": {"feat_p": 3}}')  # feat_p not a string
    with pytest.raises(FormatError, match="entry 2: frame_ann label 0 ends"):
        babel.read(tmp_path / "j", babel=str(tmp_path / "b"))
    header, items = babel.read(tmp_path / "j", babel=str(tmp_path / "b"), skip_bad=True)
    seqs, skipped = _collect(items)
    assert [s.seq_id for s in seqs] == ["babel_1"]
    assert header.class_names == ("x",)  # classes of the converted entries only
    reasons = {k.source_file: k.reason for k in skipped}
    assert len(skipped) == 2, skipped
    assert "ends (0.2) before it starts" in reasons["A/A/2/b_poses.npz"]
    assert "entry 9" in reasons["val.json:9"]


def test_babel_subsample_rule_matches_babel_for_integer_rates():
    for fps in (30, 60, 120, 90, 240):
        np.testing.assert_array_equal(
            babel.subsample_indices(1000, fps), np.arange(0, 1000, fps // 30)
        )
    idx = babel.subsample_indices(1000, 100.0)
    assert len(idx) == 300 and idx[:4].tolist() == [0, 3, 6, 10] and idx[30] == 100
    idx = babel.subsample_indices(70, 59.94)  # int(fps) = 59 frames per block
    assert idx[30] == 59 and np.all(np.diff(idx) > 0) and idx[-1] < 70


# ======================================================================== generic


def test_generic_npz_csv_units_up_labels(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 30)
    a = _f32(rng, 8, 25, 3, 2) * np.float32(1000)  # mm, z-up, two persons
    valid = np.ones((8, 25, 2), dtype=bool)
    valid[2, 5, 1] = False
    a[2, 5, :, 1] = np.nan  # missing joint marked invalid: allowed
    np.savez(tmp_path / "a.npz", joints=a, valid=valid, fps=np.float64(25.0))
    b = _f32(rng, 5, 25, 3) * np.float32(1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.csv").write_text(
        ",".join(f"j{j}{c}" for j in range(25) for c in "xyz")
        + "\n"
        + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in b.reshape(5, 75))
    )
    np.savez(tmp_path / "empty.npz", joints=np.zeros((0, 25, 3), dtype=np.float32))
    (tmp_path / "classes.txt").write_text("wave\nclap\n")
    (tmp_path / "labels.csv").write_text(
        "seq_id,start,end,class\na,1,4,clap\na,3,5,0\nsub/b,0,5,1\n"
    )

    header, items = generic.read(
        tmp_path,
        layout="ntu25",
        units="mm",
        up="z",
        classes=str(tmp_path / "classes.txt"),
        labels=str(tmp_path / "labels.csv"),
    )
    assert header.persons == 2 and header.class_names == ("wave", "clap")
    seqs, skipped = _collect(items)
    assert [(s.source_file, s.reason) for s in skipped] == [
        ("empty.npz", "empty sequence (0 frames)")
    ]
    sa, sb = seqs
    assert sa.seq_id == "a" and sa.fps == 25.0 and sb.seq_id == "sub/b" and sb.fps == 30.0
    expect = np.stack([a[:, :, 0], a[:, :, 2], -a[:, :, 1]], axis=2).astype(np.float64) * 0.001
    expect[2, 5, :, 1] = 0.0
    np.testing.assert_allclose(sa.joints, expect.astype(np.float32), rtol=1e-6)
    assert not sa.valid[2, 5, 1] and sa.valid.sum() == 8 * 25 * 2 - 1
    np.testing.assert_array_equal(sa.labels, [2, 1, 1, 0, 0, 2, 2, 2])
    assert (
        sb.joints.shape == (5, 25, 3, 2) and not sb.valid[:, :, 1].any() and (sb.labels == 1).all()
    )
    np.testing.assert_allclose(sb.joints[:, :, 1, 0], b[:, :, 2] * 0.001, rtol=1e-6)


@pytest.mark.parametrize(
    ("make", "options", "error", "message"),
    [
        (
            lambda d: np.savez(d / "a.npz", joints=np.zeros((3, 20, 3))),
            {},
            FormatError,
            "the layout needs (T, 25, 3)",
        ),
        (
            lambda d: np.savez(d / "a.npz", joints=np.full((3, 25, 3), np.inf)),
            {},
            FormatError,
            "NaN or infinity",
        ),
        (
            lambda d: np.savez(d / "a.npz", joints=np.ones((3, 25, 3)), labels=np.array([0, 1, 5])),
            {"classes": "c.txt"},
            FormatError,
            "labels[2] = 5",
        ),
        (
            lambda d: np.savez(d / "a.npz", joints=np.ones((3, 25, 3)), labels=np.array([0, 1, 1])),
            {},
            FormatError,
            "no --classes",
        ),
        (lambda d: (d / "a.csv").write_text("1,2,3\n"), {}, FormatError, "multiple of V*C = 75"),
        (
            lambda d: np.savez(d / "a.npz", joints=np.ones((3, 25, 3)), fps=np.array("30")),
            {},
            FormatError,
            "fps must be one positive number",
        ),
        (
            lambda d: np.savez(d / "a.npz", joints=np.ones((3, 25, 3)), valid=np.ones((3, 24))),
            {},
            FormatError,
            "valid has shape (3, 24)",
        ),
        (
            lambda d: (d / "a.csv").write_text("1 " * 75 + "\n" + "1 " * 74 + "q\n"),
            {},
            FormatError,
            "not a number",
        ),
        (
            lambda d: np.savez(d / "a.npz", joints=np.ones((3, 25, 3))),
            {"labels": "l.csv"},
            FormatError,
            "ends at frame 9",
        ),
        (
            lambda d: np.savez(d / "a.npz", joints=np.ones((3, 25, 3))),
            {"layout": "nope"},
            LayoutError,
            "",
        ),
    ],
)
def test_generic_bad_input(tmp_path, make, options, error, message):
    make(tmp_path)
    (tmp_path / "c.txt").write_text("x\ny\n")
    (tmp_path / "l.csv").write_text("a,0,9,1\n")
    opts = {"layout": "ntu25", **options}
    for key in ("classes", "labels"):
        if key in opts:
            opts[key] = str(tmp_path / opts[key])
    with pytest.raises(error) as err:
        list(generic.read(tmp_path, **opts)[1])
    assert message in str(err.value)


# ======================================================================== through the CLI


def test_all_four_formats_convert_through_the_cli(tmp_path):
    rng = np.random.default_rng(RNG_SEED + 40)
    ntu_src = tmp_path / "ntu"
    body = _body(rng, 3, 1.0)
    frames = [[body], [body, _body(rng, 4, 0.5)]]
    W.write_ntu_skeleton(ntu_src / "S001C002P002R001A010.skeleton", frames)
    W.write_ntu_skeleton(ntu_src / "S001C002P005R002A008.skeleton", [[body]])  # published missing
    pku_src = tmp_path / "pku"
    W.write_pkummd(pku_src, "0002-L", _pku_joints(rng, 12, slice(3, 6)), [(5, 2, 7, 1)])
    W.write_pkummd_split(pku_src / "cross-subject.txt", [], ["0002-L"])
    babel_joints, babel_json = tmp_path / "babel_joints", tmp_path / "babel_json"
    W.write_joint_npz(babel_joints / "A/A/1/a_poses.npz", _smplh73(rng, 8), 120.0)
    entry = W.babel_entry(1, "A/A/1/a_poses.npz", 1.0, [(0, 1, ["walk"])])
    W.write_babel_json(babel_json / "train.json", [entry])
    W.write_babel_json(babel_json / "val.json", [W.babel_entry(2, "A/A/1/b_poses.npz", 1.0, None)])
    gen_src = tmp_path / "generic"
    gen_src.mkdir()
    np.savez(gen_src / "s.npz", joints=_f32(rng, 4, 15, 3) * np.float32(100))

    cases = [
        ("ntu", ntu_src, [], (1, 2, 1), "xsub:train"),
        ("pkummd", pku_src, ["--label-base", "0"], (1, 12, 0), "xsub:test"),
        (
            "babel",
            babel_joints,
            ["--babel", str(babel_json), "--subset", "1"],
            (1, 2, 1),
            "babel:train",
        ),
        (
            "generic",
            gen_src,
            ["--layout", "openni15", "--units", "cm", "--up", "z"],
            (1, 4, 0),
            None,
        ),
    ]
    for fmt, src, args, (n_seq, n_frames, n_skip), tag in cases:
        dest = tmp_path / f"{fmt}.zarr"
        assert main(["data", "convert", fmt, str(src), str(dest), "--quiet", *args]) == 0
        corpus = open_corpus(dest)
        assert (corpus.num_sequences, corpus.num_frames, len(corpus.skipped)) == (
            n_seq,
            n_frames,
            n_skip,
        )
        if tag is not None:
            assert corpus.split(tag).tolist() == [0]
    joints, valid, labels = open_corpus(tmp_path / "pkummd.zarr").read_sequence(0)
    assert joints.shape == (12, 25, 3, 2) and valid[3:6, :, 1].all() and not valid[:3, :, 1].any()
    np.testing.assert_array_equal(labels, [51, 51, 4, 4, 4, 4, 4, 4, 51, 51, 51, 51])
    joints, _, labels = open_corpus(tmp_path / "ntu.zarr").read_sequence(0)
    np.testing.assert_array_equal(joints[:, :, :, 0], np.stack([body.xyz, body.xyz]))
    assert (labels == 9).all()


def test_pkummd_finds_release_archive_folders(tmp_path):
    # The public release unpacks to Data/PKU_Skeleton_Renew and Label/Train_Label_PKU_final.
    rng = np.random.default_rng(RNG_SEED + 12)
    W.write_pkummd(tmp_path, "0007-M", _pku_joints(rng, 6, slice(0, 6)), [(5, 0, 5, 1)],
                   skeleton_dir="Data/PKU_Skeleton_Renew",
                   label_dir="Label/Train_Label_PKU_final")
    (seq,), skipped = _collect(pkummd.read(tmp_path)[1])
    assert not skipped and (seq.labels == 4).all()
