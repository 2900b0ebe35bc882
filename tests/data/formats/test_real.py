"""Converters for cmu, msrc12, kard, msr3d, florence3d on the real files in ../shared/data.

Counts come from each dataset's README.txt; every source item must end up converted or skipped
with a reason. Geometry checks: y up, metres (person-sized), and right-handed anatomy (the
body's forward direction, up x (right shoulder - left shoulder), points where the person faces).
"""

from __future__ import annotations

import json
import lzma
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from sscl.data.corpus import CorpusWriter, Sequence, Skipped, open_corpus
from sscl.data.formats import cmu, florence3d, kard, msr3d, msrc12


def _collect(items) -> tuple[list[Sequence], list[Skipped]]:
    seqs, skipped = [], []
    for item in items:
        (skipped if isinstance(item, Skipped) else seqs).append(item)
    return seqs, skipped


def _geometry(seqs: list[Sequence], layout, up_from: str, up_to: str, left: str, right: str):
    """Per clip: median head-to-lowest-joint height and the fraction of frames with the head above
    the trunk joint `up_from`; per frame: the facing vector u x (right - left) with u the trunk
    (`up_from` -> `up_to`) and the trunk joint position (valid frames only)."""
    idx = layout.joint_names.index
    heights, head_top, facing, torso = [], [], [], []
    for s in seqs:
        j = s.joints[..., 0].astype(np.float64)
        ok = np.ones(len(j), bool) if s.valid is None else s.valid[..., 0].all(axis=1)
        if not ok.any():
            continue
        j = j[ok]
        y = j[..., 1]
        heights.append(np.median(y[:, idx("head")] - y.min(axis=1)))
        head_top.append(np.mean(y[:, idx("head")] > y[:, idx(up_from)]))
        u = j[:, idx(up_to)] - j[:, idx(up_from)]
        r = j[:, idx(right)] - j[:, idx(left)]
        facing.append(np.cross(u, r))
        torso.append(j[:, idx(up_from)])
    return np.array(heights), np.array(head_top), np.concatenate(facing), np.concatenate(torso)


def _faces_sensor(facing: np.ndarray, torso: np.ndarray) -> float:
    """Fraction of frames whose facing vector points at the sensor (at the origin)."""
    return float(np.mean(np.einsum("ij,ij->i", facing, -torso) > 0))


# -- KARD ------------------------------------------------------------------------------------


def test_kard_counts_labels_geometry(shared_dataset):
    header, items = kard.read(shared_dataset("kard"))
    seqs, skipped = _collect(items)
    assert (len(seqs), len(skipped)) == (540, 0)
    assert sum(len(s.joints) for s in seqs) == 63_630
    assert header.layout.name == "openni15" and len(header.class_names) == 18
    clips = Counter(int(s.labels[0]) for s in seqs)
    assert clips == {c: 30 for c in range(18)}
    assert all((s.labels == s.labels[0]).all() for s in seqs)
    assert {s.subject for s in seqs} == {f"s{i:02d}" for i in range(1, 11)}
    assert all(s.joints.dtype == np.float32 and s.joints.shape[1:] == (15, 3, 1) for s in seqs)
    heights, head_top, facing, torso = _geometry(
        seqs, header.layout, "torso", "neck", "shoulder_left", "shoulder_right"
    )
    assert 1.3 < np.median(heights) < 1.9, "metres: head centre to feet of a standing adult"
    assert np.median(head_top) > 0.95, "y up: the head is above the trunk"
    assert _faces_sensor(facing, torso) > 0.9, "right-handed anatomy, person facing the sensor"


def test_kard_corpus_round_trip(shared_dataset, tmp_path):
    """The lead's CorpusWriter takes the converter's stream end to end, and reads it back."""
    header, items = kard.read(shared_dataset("kard"))
    dest = tmp_path / "kard.zarr"
    kept = []
    class_frames: Counter = Counter()
    with CorpusWriter(dest, header) as writer:
        for item in items:
            writer.append(item)
            class_frames.update(item.labels.tolist())
            if len(kept) < 3 or item.seq_id == "a18_s10_e03":
                kept.append(item)
    corpus = open_corpus(dest)
    assert corpus.num_sequences == 540 and corpus.num_frames == 63_630
    assert corpus.class_names == header.class_names and corpus.layout.name == "openni15"
    assert Counter(corpus.labels.tolist()) == class_frames and set(class_frames) == set(range(18))
    ids = [m["seq_id"] for m in corpus.meta]
    for seq in kept:
        joints, valid, labels = corpus.read_sequence(ids.index(seq.seq_id))
        np.testing.assert_array_equal(joints, seq.joints)
        np.testing.assert_array_equal(labels, seq.labels)
        assert valid.all()


# -- MSR Action3D ----------------------------------------------------------------------------


def test_msr3d_counts_skip_and_geometry(shared_dataset):
    root = shared_dataset("msr_action3d")
    header, items = msr3d.read(root)
    seqs, skipped = _collect(items)
    assert len(seqs) + len(skipped) == 567
    assert [Path(s.source_file).name for s in skipped] == ["a13_s09_e02_skeleton3D.txt"]
    assert "zero" in skipped[0].reason
    skipped_frames = (root / skipped[0].source_file).read_text().count("\n") // 20
    assert sum(len(s.joints) for s in seqs) + skipped_frames == 23_478
    clips = Counter(int(s.labels[0]) for s in seqs)
    assert set(clips) == set(range(20)) and all(20 <= n <= 30 for n in clips.values())
    # the list file names 557 clips (the README's 556 is its line count: no final newline)
    assert sum("cvpr12:used" in s.split_tags for s in seqs) == 557
    # invalid joints are stored as exact zeros
    for s in seqs:
        assert not s.joints[..., 0][~s.valid[..., 0]].any()
    heights, head_top, facing, torso = _geometry(
        seqs, header.layout, "hip_center", "shoulder_center", "shoulder_left", "shoulder_right"
    )
    assert 1.3 < np.median(heights) < 1.9
    assert np.median(head_top) > 0.95
    assert _faces_sensor(facing, torso) > 0.9
    # feet point forward, the same way the shoulders say the person faces
    idx = header.layout.joint_names.index
    toe = np.concatenate(
        [
            s.joints[:, idx("foot_left"), :, 0] - s.joints[:, idx("ankle_left"), :, 0]
            for s in seqs
            if s.valid[:, [idx("foot_left"), idx("ankle_left")]].all()
        ]
    )
    assert np.mean(toe[:, 2] > 0) > 0.9, "feet ahead of ankles along +z (person faces +z)"


def test_msr3d_zero_confidence_option(shared_dataset):
    _, items = msr3d.read(shared_dataset("msr_action3d"), zero_confidence_invalid=True)
    seq = next(s for s in items if isinstance(s, Sequence))
    _, plain = msr3d.read(shared_dataset("msr_action3d"))
    base = next(s for s in plain if isinstance(s, Sequence))
    assert seq.valid.sum() < base.valid.sum()
    assert not seq.joints[..., 0][~seq.valid[..., 0]].any()


# -- Florence3D ------------------------------------------------------------------------------


def test_florence3d_counts_labels_geometry(shared_dataset):
    header, items = florence3d.read(shared_dataset("florence3d"))
    seqs, skipped = _collect(items)
    assert (len(seqs), len(skipped)) == (215, 0)
    assert sum(len(s.joints) for s in seqs) == 3_802
    clips = Counter(int(s.labels[0]) for s in seqs)
    assert set(clips) == set(range(9)) and all(20 <= n <= 30 for n in clips.values())
    assert {s.subject for s in seqs} == {f"s{i:02d}" for i in range(1, 11)}
    heights, head_top, facing, torso = _geometry(
        seqs, header.layout, "spine", "neck", "shoulder_left", "shoulder_right"
    )
    assert 1.3 < np.median(heights) < 1.9
    assert np.median(head_top) > 0.95
    assert _faces_sensor(facing, torso) > 0.9


# -- CMU mocap6 ------------------------------------------------------------------------------


@pytest.mark.isa
def test_cmu_fk_matches_release_joints(shared_dataset):
    root = shared_dataset("cmu_mocap6")
    header, items = cmu.read(root)
    seqs, skipped = _collect(items)
    assert [Path(s.source_file).name for s in skipped] == ["14_06.txt"]
    assert len(seqs) == 5 and sum(len(s.joints) for s in seqs) == 19_371
    segments = json.loads((root / "joints" / "segments.json").read_text())
    n_segments = 0
    for s in seqs:
        ref = np.load(root / "joints" / f"{s.seq_id}.npz")
        assert tuple(ref["joint_names"]) == header.layout.joint_names
        err = np.abs(s.joints[..., 0] - ref["joints"]).max()
        assert err < 1e-5, f"{s.seq_id}: FK differs from the release by {err} m"
        np.testing.assert_array_equal(s.labels + 1, ref["labels"])
        n_segments += 1 + int(np.count_nonzero(np.diff(s.labels)))
        assert segments[s.seq_id]["frames"] == len(s.joints)
    assert n_segments == 30
    heights, head_top, facing, _ = _geometry(
        seqs, header.layout, "root", "lowerneck", "lclavicle", "rclavicle"
    )
    assert 1.4 < np.median(heights) < 1.9
    assert np.median(head_top) > 0.95
    idx = header.layout.joint_names.index
    toes = np.concatenate(
        [s.joints[:, idx("ltoes"), :, 0] - s.joints[:, idx("lfoot"), :, 0] for s in seqs]
    )
    assert np.mean(np.einsum("ij,ij->i", facing, toes) > 0) > 0.9, (
        "right-handed: toes point forward"
    )


@pytest.mark.isa
def test_cmu_downsampling_rule(shared_dataset):
    root = shared_dataset("cmu_mocap6")
    header, items = cmu.read(root / "raw_amc", fps=30)
    first = next(iter(items))
    ref = np.load(root / "joints" / f"{first.seq_id}.npz")
    assert header.fps == 30.0
    np.testing.assert_allclose(first.joints[..., 0], ref["joints"][::4], atol=1e-5)
    assert first.labels is None, "no truelabels folder below raw_amc: unlabelled"


# -- MSRC-12 ---------------------------------------------------------------------------------


def _timestamps(csv: Path) -> np.ndarray:
    data = csv.read_bytes()
    if csv.suffix == ".xz":
        data = lzma.decompress(data)
    return np.array(
        [line.split(None, 1)[0] for line in data.split(b"\n") if line.strip()], dtype=np.int64
    )


def test_msrc12_all_tag_frames_match_index(shared_dataset):
    """Every tagstream of the release: frames, tag frames (exactly), counts per README."""
    root = shared_dataset("msrc12")
    index = {
        k.lower(): v for k, v in json.loads((root / "tag_frames_index.json").read_text()).items()
    }
    tagstreams = sorted((root / "data").glob("*.tagstream"))
    assert len(tagstreams) == 594
    csvs = {p.name.split(".")[0].lower(): p for p in (root / "data").glob("*.csv.xz")}
    frames = tags = converted = 0
    per_class: Counter = Counter()
    for ts_path in tagstreams:
        key = ts_path.name.split(".")[0].lower()
        ticks, names = msrc12.read_tagstream(ts_path)
        if key not in csvs:
            assert index[key]["csv"] is None
            continue
        ts = _timestamps(csvs[key])
        points, offsets = msrc12.action_point_frames(ts, msrc12.tick_to_us(ticks))
        assert points.tolist() == index[key]["tag_frames"], key
        assert offsets.max(initial=0) <= 100_000, "README: every tag within 0.1 s of a frame"
        assert len(ts) == index[key]["frames"]
        converted += 1
        frames += len(ts)
        tags += len(points)
        per_class[names[0]] += len(points)
    assert (converted, frames, tags) == (593, 724_686, 6_243)
    assert len(per_class) == 12 and all(490 <= n <= 635 for n in per_class.values())


def test_msrc12_read_subset(shared_dataset, tmp_path):
    """read() end to end on links to a few recordings (missing csv and case pair included)."""
    root = shared_dataset("msrc12")
    index = {
        k.lower(): v for k, v in json.loads((root / "tag_frames_index.json").read_text()).items()
    }
    (tmp_path / "data").mkdir()
    names = [
        "P1_2_5_p04.tagstream",
        "p2_1_2A_p12.tagstream",
        "P2_1_2A_p12.csv.xz",
        "P1_1_10_p06.tagstream",
        "P1_1_10_p06.csv.xz",
        "P1_2_9A_p20.tagstream",
        "P1_2_9A_p20.csv.xz",
    ]
    for name in names:
        (tmp_path / "data" / name).symlink_to(root / "data" / name)
    header, items = msrc12.read(tmp_path, window_before=20, window_after=5)
    assert header.layout.name == "kinect20" and len(header.class_names) == 12
    assert "[p-20, p+5]" in header.label_rule
    seqs, skipped = _collect(items)
    assert [Path(s.source_file).name for s in skipped] == ["P1_2_5_p04.tagstream"]
    assert "csv missing" in skipped[0].reason
    assert {s.seq_id for s in seqs} == {"P2_1_2A_p12", "P1_1_10_p06", "P1_2_9A_p20"}
    for s in seqs:
        ref = index[s.seq_id.lower()]
        assert s.extra["action_points"] == ref["tag_frames"] and len(s.joints) == ref["frames"]
        gesture = int(ref["gesture"][1:3])
        assert s.extra["gesture"] == ref["gesture"]
        expect = np.full(len(s.joints), 12, np.int16)
        for p in ref["tag_frames"]:
            expect[max(p - 20, 0) : p + 6] = gesture - 1
        np.testing.assert_array_equal(s.labels, expect)
        assert not s.joints[..., 0][~s.valid[..., 0]].any()
        assert s.split_tags == ("xsub:train" if int(s.subject[1:]) % 2 else "xsub:test",)
    heights, head_top, facing, torso = _geometry(
        seqs, header.layout, "hip_center", "shoulder_center", "shoulder_left", "shoulder_right"
    )
    assert 1.3 < np.median(heights) < 1.9
    assert np.median(head_top) > 0.95
    assert _faces_sensor(facing, torso) > 0.9
