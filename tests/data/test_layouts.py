"""Tests for sscl.data.layouts: trees, flips, ST-GCN partition, JSON files, Florence3D evidence."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from sscl.data.layouts import Layout, get_layout, layout_names, load_layout_json
from sscl.errors import LayoutError

ALL = layout_names()
EXPECTED_V = {
    "ntu25": 25,
    "kinect20": 20,
    "msr3d20": 20,
    "openni15": 15,
    "florence15": 15,
    "cmu31": 31,
    "smpl22": 22,
    "smpl24": 24,
    "coco17": 17,
}


def test_builtin_names_and_sizes():
    assert set(ALL) == set(EXPECTED_V)
    for name, v in EXPECTED_V.items():
        lay = get_layout(name)
        assert lay.name == name and lay.num_joints == v
        assert lay.channels == (2 if name == "coco17" else 3)


@pytest.mark.parametrize("name", ALL)
def test_bone_graph_is_a_tree_over_all_joints(name):
    lay = get_layout(name)
    v = lay.num_joints
    bones = lay.bones
    assert len(bones) == v - 1
    assert sum(p == -1 for p in lay.parents) == 1
    # Connected: a union-find over the bones ends in one component (with V-1 edges => a tree).
    comp = list(range(v))

    def find(a: int) -> int:
        while comp[a] != a:
            a = comp[a]
        return a

    for c, p in bones:
        rc, rp = find(c), find(p)
        assert rc != rp, f"{name}: bone ({c}, {p}) closes a cycle"
        comp[rc] = rp
    assert len({find(j) for j in range(v)}) == 1
    assert (lay.hop_distance() >= 0).all()


@pytest.mark.parametrize("name", ALL)
def test_flip_permutation_is_involution_mapping_left_to_right(name):
    lay = get_layout(name)
    perm = lay.flip_permutation()
    assert perm.dtype == np.int64 and perm.shape == (lay.num_joints,)
    np.testing.assert_array_equal(perm[perm], np.arange(lay.num_joints))
    assert lay.flip_pairs, f"{name} has left/right limbs"
    for a, b in lay.flip_pairs:
        left, right = lay.joint_names[a], lay.joint_names[b]
        assert perm[a] == b
        # Built-ins name sides as "left"/"right" or CMU's leading l/r.
        assert right in {left.replace("left", "right"), "r" + left[1:]}, (left, right)
    # Every joint whose name says "left" is paired.
    for j, n in enumerate(lay.joint_names):
        if "left" in n:
            assert perm[j] != j, n
    # A flip preserves bones: the bone set maps onto itself.
    bones = {frozenset(b) for b in lay.bones}
    assert {frozenset((int(perm[c]), int(perm[p]))) for c, p in lay.bones} == bones


@pytest.mark.parametrize("name", ALL)
def test_spatial_adjacency_partition(name):
    lay = get_layout(name)
    v = lay.num_joints
    a = lay.adjacency("spatial")
    assert a.shape == (3, v, v) and a.dtype == np.float32
    # The hop<=1 adjacency with self loops, normalised by column degree (A @ D^-1).
    hop1 = np.eye(v)
    for c, p in lay.bones:
        hop1[c, p] = hop1[p, c] = 1.0
    expected = hop1 / hop1.sum(axis=0, keepdims=True)
    np.testing.assert_allclose(a.sum(0), expected, rtol=1e-6)
    np.testing.assert_allclose(a.sum(0).sum(0), np.ones(v), rtol=1e-6)
    # Subsets are disjoint: root = diagonal only; the others hold exactly the bones, once each.
    assert np.count_nonzero(a[0]) == v and np.count_nonzero(a[0] - np.diag(np.diag(a[0]))) == 0
    assert np.count_nonzero(a[1]) == v - 1 and np.count_nonzero(a[2]) == v - 1
    assert not np.any((a[1] != 0) & (a[2] != 0))
    # Centripetal: input v nearer the graph centre than output w. A bone (child, parent) in a
    # tree rooted at the graph centre would give a[1][parent, child] > 0.
    d = lay.hop_distance()[:, lay.graph_center]
    for vi, wi in zip(*np.nonzero(a[1])):
        assert d[vi] == d[wi] - 1
    for vi, wi in zip(*np.nonzero(a[2])):
        assert d[vi] == d[wi] + 1


def test_other_strategies_and_unknown_strategy():
    lay = get_layout("openni15")
    spatial = lay.adjacency("spatial")
    np.testing.assert_allclose(lay.adjacency("uniform")[0], spatial.sum(0), rtol=1e-6)
    dist = lay.adjacency("distance")
    np.testing.assert_allclose(dist[0], spatial[0])
    np.testing.assert_allclose(dist[1], spatial[1] + spatial[2], rtol=1e-6)
    with pytest.raises(LayoutError, match="spatial"):
        lay.adjacency("bogus")


def test_ntu25_known_joints():
    lay = get_layout("ntu25")
    assert lay.center == 1 and lay.joint_names[1] == "spine_mid"
    # ST-GCN's graph centre (21 - 1), apart from the normalisation centre.
    assert lay.graph_center == 20 and lay.joint_names[20] == "spine_shoulder"
    assert lay.root == 0
    assert lay.joint_names[4] == "shoulder_left" and lay.joint_names[8] == "shoulder_right"
    assert lay.parents[3] == 2 and lay.parents[2] == 20 and lay.parents[12] == 0
    # Hands chain tip - thumb - hand.
    assert lay.parents[21] == 22 and lay.parents[22] == 7
    assert lay.parents[23] == 24 and lay.parents[24] == 11
    assert lay.flip_permutation()[4] == 8
    # Other built-ins keep one centre for both uses.
    for name in ALL:
        if name != "ntu25":
            assert get_layout(name).graph_center == get_layout(name).center, name


def test_kinect20_and_msr3d20_orders_match_readmes():
    k = get_layout("kinect20")
    assert k.joint_names[:4] == ("hip_center", "spine", "shoulder_center", "head")
    assert k.joint_names[12] == "hip_left" and k.joint_names[19] == "foot_right"
    m = get_layout("msr3d20")
    # drawskt.m bones, 1-based.
    drawskt = (
        "20-3 1-3 2-3 1-8 8-10 10-12 2-9 9-11 11-13 3-4 4-7 7-5 7-6 "
        "5-14 6-15 14-16 15-17 16-18 17-19"
    )
    edges = {frozenset(int(x) - 1 for x in e.split("-")) for e in drawskt.split()}
    assert {frozenset(b) for b in m.bones} == edges
    assert m.joint_names[19] == "head" and m.joint_names[6] == "hip_center"


def test_cmu31_matches_asf_hierarchy_and_npz_names(shared_dataset):
    root = shared_dataset("cmu_mocap6")
    lay = get_layout("cmu31")
    names = [str(n) for n in np.load(root / "joints" / "13_29.npz")["joint_names"]]
    assert tuple(names) == lay.joint_names
    text = (root / "raw_amc" / "01_template.asf").read_text()
    hier = text.split(":hierarchy")[1].split("begin")[1].split("end")[0]
    edges = set()
    for line in hier.strip().splitlines():
        parent, *children = line.split()
        edges |= {(c, parent) for c in children}
    assert {(lay.joint_names[c], lay.joint_names[p]) for c, p in lay.bones} == edges


@pytest.mark.parametrize("name", ALL)
def test_json_round_trip(name, tmp_path):
    lay = get_layout(name)
    d = json.loads(json.dumps(lay.to_dict()))
    assert Layout.from_dict(d) == lay
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(lay.to_dict()))
    assert get_layout(str(path)) == lay
    np.testing.assert_array_equal(load_layout_json(path).adjacency(), lay.adjacency())


def test_unknown_name_lists_known_layouts():
    with pytest.raises(LayoutError) as e:
        get_layout("ntu26")
    for n in ALL:
        assert n in str(e.value)


def _custom(**over) -> dict:
    d = {
        "name": "tiny",
        "joints": [
            {"name": "pelvis", "parent": None},
            {"name": "l_leg", "parent": "pelvis"},
            {"name": "r_leg", "parent": "pelvis"},
            {"name": "head", "parent": "pelvis"},
        ],
        "center": "pelvis",
        "flip_pairs": [["l_leg", "r_leg"]],
        "channels": 3,
    }
    d.update(over)
    return d


def test_custom_json_ok(tmp_path):
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(_custom()))
    lay = get_layout(str(p))
    assert lay.num_joints == 4 and lay.bones == ((1, 0), (2, 0), (3, 0))
    assert lay.flip_permutation().tolist() == [0, 2, 1, 3]


J = _custom()["joints"]
BAD = {
    "unknown parent": (
        _custom(joints=J[:3] + [{"name": "head", "parent": "neck"}]),
        "unknown joint 'neck'",
    ),
    "cycle": (
        _custom(
            joints=J[:2]
            + [{"name": "r_leg", "parent": "head"}, {"name": "head", "parent": "r_leg"}]
        ),
        "cycle",
    ),
    "two roots": (_custom(joints=J[:3] + [{"name": "head", "parent": None}]), "exactly one root"),
    "no root": (
        _custom(
            joints=[{"name": "a", "parent": "b"}, {"name": "b", "parent": "a"}],
            center="a",
            flip_pairs=[],
        ),
        "exactly one root",
    ),
    "duplicate": (
        _custom(joints=J + [{"name": "head", "parent": "pelvis"}]),
        "duplicate joint name 'head'",
    ),
    "flip unknown": (
        _custom(flip_pairs=[["l_leg", "r_arm"]]),
        "flip_pairs\\[0\\] names unknown joint 'r_arm'",
    ),
    "flip twice": (
        _custom(flip_pairs=[["l_leg", "r_leg"], ["l_leg", "head"]]),
        "more than one flip pair",
    ),
    "center unknown": (_custom(center="chest"), "'center' names unknown joint 'chest'"),
    "channels": (_custom(channels=4), "channels = 4"),
    "missing key": ({"name": "x", "joints": J}, "missing key 'center'"),
    "unknown key": (_custom(colour="red"), "unknown key"),
    "joint not object": (_custom(joints=["pelvis"]), "joints\\[0\\] must be an object"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_custom_json_names_the_problem(case, tmp_path):
    content, pattern = BAD[case]
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(content))
    with pytest.raises(LayoutError, match=pattern) as e:
        get_layout(str(p))
    assert str(p) in str(e.value)


def test_bad_json_syntax_and_missing_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"name": "x",\n "joints": [}')
    with pytest.raises(LayoutError, match=r"not valid JSON at line 2"):
        get_layout(str(p))
    with pytest.raises(LayoutError, match="cannot read"):
        get_layout(str(tmp_path / "absent.json"))


def test_direct_construction_validates():
    with pytest.raises(LayoutError, match="3 joint names but 2 parents"):
        Layout("x", ("a", "b", "c"), (-1, 0), 0)
    with pytest.raises(LayoutError, match="out of range"):
        Layout("x", ("a", "b"), (-1, 0), 5)


# ---- Florence3D: the joint order is established from the data (module docstring) ----


@functools.lru_cache(maxsize=1)
def _florence(root: str) -> tuple[tuple[str, np.ndarray], ...]:
    files = sorted(Path(root, "florence").glob("a*_s*_id*.txt"))
    return tuple((f.name, np.loadtxt(f, dtype=np.float64).reshape(-1, 15, 3)) for f in files)


def test_florence15_order_evidence(shared_dataset):
    clips = _florence(str(shared_dataset("florence3d")))
    assert len(clips) == 215
    lay = get_layout("florence15")
    ix = lay.index
    head, neck, spine = ix("head"), ix("neck"), ix("spine")
    sh_l, el_l, wr_l = ix("shoulder_left"), ix("elbow_left"), ix("wrist_left")
    sh_r, el_r, wr_r = ix("shoulder_right"), ix("elbow_right"), ix("wrist_right")
    hp_l, kn_l, an_l = ix("hip_left"), ix("knee_left"), ix("ankle_left")
    hp_r, kn_r, an_r = ix("hip_right"), ix("knee_right"), ix("ankle_right")
    frames = np.concatenate([a for _, a in clips])
    y, x = frames[..., 1], frames[..., 0]

    # Up/down: head highest, ankles lowest, the vertical chain in order.
    assert (y.argmax(1) == head).mean() > 0.85
    assert np.isin(y.argmin(1), [an_l, an_r]).mean() > 0.95
    h = y.mean(0)
    assert h[head] > h[neck] > h[spine] > max(h[hp_l], h[hp_r])
    assert (
        min(h[hp_l], h[hp_r])
        > max(h[kn_l], h[kn_r])
        > min(h[kn_l], h[kn_r])
        > max(h[an_l], h[an_r])
    )
    assert abs(h[sh_l] - h[neck]) < 50 and abs(h[sh_r] - h[neck]) < 50
    # Joint 2 is a midline joint (a spine), not KARD's right shoulder.
    assert abs(x[:, spine].mean() - x[:, neck].mean()) < 20

    # Bone-length constancy: mean over clips of the within-clip std of each pair distance (mm).
    std = np.mean(
        [np.linalg.norm(a[:, :, None] - a[:, None], axis=-1).std(0) for _, a in clips], axis=0
    )
    # The wrist's most constant partner is its elbow.
    for wr, el in ((wr_l, el_l), (wr_r, el_r)):
        assert np.argsort(std[wr])[1] == el
    # The elbow / knee is the middle of its chain: skipping it varies far more than either bone.
    for a, b, c in ((sh_l, el_l, wr_l), (sh_r, el_r, wr_r), (hp_l, kn_l, an_l), (hp_r, kn_r, an_r)):
        assert std[a, c] > 1.5 * max(std[a, b], std[b, c]), (a, b, c)
    # The tracker moves neck, spine and shoulders as one rigid body, and each hip nearly rigidly
    # with the spine (so those attachments are anatomical, not measurable): all vary less than
    # any limb bone.
    torso = [neck, spine, sh_l, sh_r]
    limb_bones = [std[c, p] for c, p in lay.bones if c not in torso + [hp_l, hp_r, head]]
    rigid = max(std[np.ix_(torso, torso)].max(), std[hp_l, spine], std[hp_r, spine])
    assert rigid < 10.0 < min(limb_bones)

    # Sides: the claimed left joints lie on one side (x smaller), the right ones on the other.
    assert (x[:, sh_l] < x[:, sh_r]).mean() > 0.99 and (x[:, hp_l] < x[:, hp_r]).mean() > 0.99
    for l_j, r_j in lay.flip_pairs:
        assert x[:, l_j].mean() < x[:, r_j].mean()
    # Which side is the person's right: in wave (1), drink (2) and answer phone (3) the hand raised
    # highest above the neck is the claimed right wrist in most clips (mostly right-handed people).
    raised_right = [
        (a[:, wr_r, 1] - a[:, neck, 1]).max() > (a[:, wr_l, 1] - a[:, neck, 1]).max()
        for name, a in clips
        if int(re.match(r"a(\d+)_", name).group(1)) in (1, 2, 3)
    ]
    assert len(raised_right) == 67 and np.mean(raised_right) > 0.65


def test_custom_json_graph_center(tmp_path):
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(_custom(graph_center="head")))
    lay = get_layout(str(p))
    assert lay.center == 0 and lay.graph_center == 3
    assert lay.to_dict()["graph_center"] == "head"
    assert Layout.from_dict(lay.to_dict()) == lay
    # The partitions measure distances to the graph centre: head -> pelvis is centripetal.
    assert lay.adjacency("spatial")[1][3, 0] > 0
    # Absent, it is the centre, and to_dict leaves it out (older corpora's dicts stay equal).
    plain = Layout.from_dict(_custom())
    assert plain.graph_center == plain.center and "graph_center" not in plain.to_dict()
    with pytest.raises(LayoutError, match="'graph_center' names unknown joint 'neck'"):
        Layout.from_dict(_custom(graph_center="neck"))
