"""Skeleton layouts: joint names, the bone tree, the centre joint, left/right pairs, adjacency.

A `Layout` describes one skeleton: its joints in storage order, the parent of each joint (a single
tree), the centre joint used for centring, the graph centre the adjacency partitions measure hop
distances to (the centre unless a layout names another), the left/right joint pairs swapped by a
mirror flip, and the number of coordinate channels (3, or 2 for COCO-17).

Built-in layouts (`get_layout(name)`), with their sources:

- ``ntu25``: NTU RGB+D / Kinect v2, 25 joints in the order of Shahroudy et al., CVPR 2016
  (0 spine base, 1 spine middle, 2 neck, 3 head, 4-7 left shoulder/elbow/wrist/hand, 8-11 right,
  12-15 left hip/knee/ankle/foot, 16-19 right, 20 spine shoulder, 21/22 left hand tip/thumb,
  23/24 right). Bones follow the edge list of ST-GCN and 2s-AGCN (``ntu_rgb_d.py``), whose hand
  edges chain tip - thumb - hand ((22, 23), (23, 8), (24, 25), (25, 12), 1-based), not the
  Kinect v2 SDK's (tip and thumb both on the hand). Root: spine base; centre: spine middle
  (joint 1), the joint NTU preprocessing centres on; graph centre: spine shoulder (joint 20,
  ST-GCN's ``center = 21 - 1``).
- ``kinect20``: Kinect SDK v1 NUI order, as in MSRC-12 (hip_center, spine, shoulder_center, head,
  left arm, right arm, left leg, right leg). Root: hip_center; centre: spine (1).
- ``msr3d20``: MSR Action3D's own 20-joint order and the bone list of its ``drawskt.m``.
  Root: hip_center; centre: spine.
- ``openni15``: OpenNI/NiTE 15 joints in KARD's order (head, neck, right arm, left arm, torso,
  right leg, left leg; "torso" is a joint). Root and centre: torso.
- ``florence15``: Florence 3D Actions (OpenNI 15 joints, but another order): head, neck, spine,
  left shoulder/elbow/wrist, right shoulder/elbow/wrist, left hip/knee/ankle, right
  hip/knee/ankle. Root and centre: spine. The dataset's files do not state this order; it was
  established from the data (below).
- ``cmu31``: CMU mocap ASF skeleton: ``root`` then the 30 bones in the ASF ``:bonedata`` order of
  ``01.asf`` (the order of ``joint_names`` in the shared ``cmu_mocap6/joints/*.npz``); each
  bone's joint is the END of that bone, its parent is the ASF ``:hierarchy`` parent.
  (``SkeletonJoints.key`` lists only the 29 entries with degrees of freedom, in AMC order; the
  two hip joints ``lhipjoint``/``rhipjoint`` have none, so that file is not a joint list.)
  Root: root; centre: lowerback (its end lies at mid trunk height).
- ``smpl22`` / ``smpl24``: SMPL body joints (pelvis ... right_wrist, and the two hands for 24),
  kinematic tree of the SMPL model. Root: pelvis; centre: spine2 (6), half way between pelvis
  and neck like NTU's spine middle.
- ``coco17``: COCO keypoints (2-D, ``channels=2``). COCO's drawing skeleton is not a tree over the
  face points and has no neck, so the tree is: nose root; eyes -> nose; ears -> eyes;
  shoulders -> nose; elbows -> shoulders; wrists -> elbows; hips -> shoulders (same side);
  knees -> hips; ankles -> knees (the tree pyskl uses for COCO). Centre: nose.

How the Florence3D order was established (``test_florence15_order_evidence`` in
``tests/data/test_layouts.py`` re-checks every number below on the shared data: 215 clips,
3,802 frames, millimetres). "std" is the within-clip standard deviation of a joint-pair
distance, averaged over clips.

- Not KARD's order: joint 2 lies on the body midline (mean x 8 mm from the neck's) below
  the neck, a spine joint, where KARD's order has the right shoulder.
- Up/down: joint 0 is the highest joint in 90.4% of frames and joints 11/14 are the lowest
  in 99.3%. Mean heights: head 469, neck 254, shoulders 260/248, spine 62, hips -127/-134,
  knees -537/-538, ankles -916/-916.
- Limb chains: each wrist's most constant partner is its claimed elbow (std 27.3 and 30.4 mm;
  the next best partner 39.2 / 49.5 mm). The elbows and knees are the middle of their chains:
  shoulder-wrist varies 53.5 / 74.4 mm and hip-ankle 49.5 / 49.5 mm against at most 27.3 /
  30.4 / 27.0 / 22.7 mm for either bone of the chain.
- Torso: neck, spine and both shoulders move as one rigid body (every pair std <= 8.8 mm) and
  each hip nearly rigidly with the spine (6.8 mm), below every limb bone (>= 14.8 mm). Bone
  lengths therefore cannot tell which torso joint a shoulder or hip hangs from; the tree uses
  OpenNI's anatomy (shoulders on the neck, hips on the spine, as ``openni15``).
- Sides: joints 3 and 9 have smaller x than joints 6 and 12 in 99.95% of frames, and every
  claimed left joint has a smaller mean x than its right partner. With y up and z pointing
  from the sensor to the person (z ~ +2.8 m), a right-handed frame puts a person's left side at
  negative x when they face the sensor, as MSRC-12's Kinect SDK data do (shoulder_L x < shoulder_R
  x). That alone does not settle it, because KARD's OpenNI coordinates are mirrored (its stated
  left shoulder has the larger x, while its stated right hand is the active hand in all 120
  wave/phone/drink clips). The actions do: in wave, drink and answer phone the hand raised
  highest above the neck is joint 8 (claimed right wrist) in 50 of 67 clips, as expected of
  mostly right-handed subjects. So the claimed order holds and the data are already right-handed.

Custom layouts come from a small JSON file (``get_layout("path/to/layout.json")``)::

    {"name": "my15",
     "joints": [{"name": "torso", "parent": null}, {"name": "neck", "parent": "torso"}, ...],
     "center": "torso",                 # a joint name
     "graph_center": "neck",            # optional joint name, default the centre
     "flip_pairs": [["l_hip", "r_hip"]],  # [left, right] joint names; may be empty
     "channels": 3}                      # 3 (x, y, z) or 2 (x, y); optional, default 3

Joints are listed in storage order; exactly one joint has ``"parent": null``. `Layout.to_dict`
writes this schema, so a layout stored in a corpus is readable as a custom layout file.

Adjacency (`Layout.adjacency`), index convention ``A_KVV[k, v, w]`` = weight with which input
joint ``v`` feeds output joint ``w`` (ST-GCN's ``einsum("nkctv,kvw->nctw")``, 2s-AGCN's
``x @ A``). The partitions split the tree's hop<=1 neighbourhood by the hop distance ``d`` of each
joint to the *graph centre* (``Layout.graph_center``; the centre unless a layout names another):

- ``"spatial"`` (the ST-GCN paper, K=3): the hop<=1 adjacency with self loops, normalised as
  ST-GCN's ``normalize_digraph`` (``A @ D^-1``, ``D`` the column sums, so every column sums to 1),
  split into 0 root (the joint itself), 1 centripetal (``d[v] < d[w]``: the input is nearer the
  centre), 2 centrifugal (``d[v] > d[w]``).
- ``"stgcn"`` (ST-GCN's published ``graph.py``, the matrices ST-GCN, SkeletonCLR and AimCLR train
  with): the same normalised matrix, but that code measures hop distances only up to
  ``max_hop = 1``, so every joint two or more hops from the centre is at distance infinity and two
  such neighbours compare equal. With ``d'`` = ``d`` where ``d <= 1``, else infinity: 0 the
  joint itself, 1 neighbours with ``d'[v] >= d'[w]`` (its ``a_root + a_close``), 2 neighbours
  with ``d'[v] < d'[w]`` (its ``a_further``). On NTU-25 subset 2 thus holds only 8 of the 48
  directed edges (from the spine shoulder to its 4 neighbours, and from each of those outwards),
  subset 1 the other 40.
- ``"agcn"`` (2s-AGCN's ``get_spatial_graph``, K=3): ``stack(I, In, Out)`` over the tree's edges
  directed towards the graph centre. ``I`` is the identity (self weight 1); ``In[v, w] = 1``
  where ``v`` is ``w``'s neighbour towards the centre (each column but the centre's holds one 1);
  ``Out[v, w] = 1 / n_w`` for each of the ``n_w`` neighbours ``v`` of ``w`` away from the centre
  (columns of leaves are 0). Each subset weighs like the data-dependent graph of AGCN (columns
  sum to 1), where a ``"spatial"`` subset's columns sum to about 1/3.
- ``"distance"`` (K=2: self, neighbours) and ``"uniform"`` (K=1) split the ``"spatial"`` matrix.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sscl.errors import LayoutError

__all__ = ["Layout", "get_layout", "layout_names", "load_layout_json"]

_STRATEGIES = ("spatial", "stgcn", "agcn", "distance", "uniform")


@dataclass(frozen=True)
class Layout:
    """One skeleton layout (see the module docstring for the built-ins and the JSON schema).

    Attributes:
        name: layout name (a built-in name, or the ``name`` of a custom JSON file).
        joint_names: joint names in storage order, unique.
        parents: parent index of each joint, -1 for the single root.
        center: index of the centre joint (centring and the NTU-style normalisation).
        flip_pairs: (left, right) index pairs swapped by a left/right mirror; may be empty.
        channels: coordinates per joint, 3 (x, y, z) or 2 (x, y).
        graph_center: index of the joint the adjacency partitions measure hop distances to;
            None (default) takes ``center``. NTU-25: the spine shoulder, as in ST-GCN.

    Raises:
        LayoutError: on construction, when the description is inconsistent (lengths differ,
            duplicate names, not exactly one root, a cycle, indices out of range, a joint in two
            flip pairs, channels not 2 or 3).
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    center: int
    flip_pairs: tuple[tuple[int, int], ...] = ()
    channels: int = 3
    graph_center: int | None = None

    def __post_init__(self) -> None:
        if self.graph_center is None:
            object.__setattr__(self, "graph_center", self.center)
        object.__setattr__(self, "graph_center", int(self.graph_center))
        # Normalise list inputs to tuples so layouts hash and compare by value.
        object.__setattr__(self, "joint_names", tuple(str(n) for n in self.joint_names))
        object.__setattr__(self, "parents", tuple(int(p) for p in self.parents))
        object.__setattr__(self, "flip_pairs", tuple((int(a), int(b)) for a, b in self.flip_pairs))
        self._check()

    def _check(self) -> None:
        where = f"layout {self.name!r}"
        names, parents, v = self.joint_names, self.parents, len(self.joint_names)
        if v == 0:
            raise LayoutError(f"{where}: has no joints; expected at least one joint")
        if len(parents) != v:
            raise LayoutError(
                f"{where}: {v} joint names but {len(parents)} parents; give one parent per joint"
            )
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise LayoutError(
                    f"{where}: duplicate joint name {n!r}; joint names must be unique"
                )
            seen.add(n)
        roots = [j for j, p in enumerate(parents) if p == -1]
        if len(roots) != 1:
            listed = ", ".join(names[j] for j in roots) or "none"
            raise LayoutError(
                f"{where}: expected exactly one root joint (parent -1), "
                f"found {len(roots)}: {listed}"
            )
        for j, p in enumerate(parents):
            if p != -1 and not 0 <= p < v:
                raise LayoutError(
                    f"{where}: joint {names[j]!r} has parent index {p}, expected -1 or 0..{v - 1}"
                )
            if p == j:
                raise LayoutError(f"{where}: joint {names[j]!r} is its own parent")
        for j in range(v):
            # Walking up from every joint must reach the root within V steps, else a cycle.
            k, steps = j, 0
            while parents[k] != -1:
                k, steps = parents[k], steps + 1
                if steps > v:
                    raise LayoutError(
                        f"{where}: the parent chain from joint {names[j]!r} has a cycle; "
                        "parents must form a tree"
                    )
        if not 0 <= self.center < v:
            raise LayoutError(f"{where}: centre index {self.center} out of range 0..{v - 1}")
        if not 0 <= self.graph_center < v:
            raise LayoutError(
                f"{where}: graph centre index {self.graph_center} out of range 0..{v - 1}"
            )
        used: set[int] = set()
        for a, b in self.flip_pairs:
            for j in (a, b):
                if not 0 <= j < v:
                    raise LayoutError(
                        f"{where}: flip pair ({a}, {b}) index {j} out of range 0..{v - 1}"
                    )
                if j in used:
                    raise LayoutError(
                        f"{where}: joint {names[j]!r} appears in more than one flip pair "
                        "(or pairs with itself); each joint swaps with at most one other"
                    )
                used.add(j)
        if self.channels not in (2, 3):
            raise LayoutError(f"{where}: channels = {self.channels}, expected 2 or 3")

    @property
    def num_joints(self) -> int:
        """Number of joints V."""
        return len(self.joint_names)

    @property
    def root(self) -> int:
        """Index of the root joint of the bone tree."""
        return self.parents.index(-1)

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """(child, parent) index pairs, one per non-root joint, in joint order."""
        return tuple((j, p) for j, p in enumerate(self.parents) if p != -1)

    def index(self, joint_name: str) -> int:
        """Index of a joint by name.

        Raises:
            LayoutError: the name is not a joint of this layout.
        """
        try:
            return self.joint_names.index(joint_name)
        except ValueError:
            raise LayoutError(
                f"layout {self.name!r} has no joint {joint_name!r}; "
                f"joints: {', '.join(self.joint_names)}"
            ) from None

    def hop_distance(self) -> np.ndarray:
        """Hop distance between every pair of joints along the bone tree.

        Returns:
            (V, V) int64, symmetric, zero on the diagonal.
        """
        v = self.num_joints
        nbrs: list[list[int]] = [[] for _ in range(v)]
        for c, p in self.bones:
            nbrs[c].append(p)
            nbrs[p].append(c)
        hop = np.full((v, v), -1, dtype=np.int64)
        for s in range(v):
            hop[s, s] = 0
            queue = deque([s])
            while queue:
                a = queue.popleft()
                for b in nbrs[a]:
                    if hop[s, b] < 0:
                        hop[s, b] = hop[s, a] + 1
                        queue.append(b)
        assert (hop >= 0).all(), "a validated tree is connected"
        return hop

    def adjacency(self, strategy: str = "spatial") -> np.ndarray:
        """Adjacency subsets (see the module docstring for the strategies and the convention).

        Args:
            strategy: ``"spatial"`` (ST-GCN paper, K=3: root, centripetal, centrifugal),
                ``"stgcn"`` (ST-GCN's published code, K=3), ``"agcn"`` (2s-AGCN, K=3:
                I, In, Out), ``"distance"`` (K=2: self, neighbours) or ``"uniform"`` (K=1).

        Returns:
            (K, V, V) float32 ``A_KVV[k, v, w]``. For every strategy but ``"agcn"`` the subsets
            sum to the column-normalised hop<=1 matrix (every column sums to 1).

        Raises:
            LayoutError: unknown strategy.
        """
        if strategy not in _STRATEGIES:
            raise LayoutError(
                f"unknown adjacency strategy {strategy!r}; expected one of {', '.join(_STRATEGIES)}"
            )
        hop = self.hop_distance()
        self_mask = np.eye(self.num_joints, dtype=bool)
        nbr_mask = hop == 1
        d = hop[:, self.graph_center].astype(np.float64)  # hop distance of each joint to it
        nearer = nbr_mask & (d[:, None] < d[None, :])  # input v nearer the centre than output w
        farther = nbr_mask & (d[:, None] > d[None, :])
        assert not (nbr_mask & ~nearer & ~farther).any(), "tree neighbours differ by one hop"
        if strategy == "agcn":
            n_out = farther.sum(axis=0, keepdims=True)  # neighbours of w away from the centre
            out = farther / np.maximum(n_out, 1)
            return np.stack([self_mask, nearer, out]).astype(np.float32)
        a = (hop <= 1).astype(np.float64)
        a_norm = a / a.sum(axis=0, keepdims=True)  # A @ D^-1, D = column degree
        if strategy == "uniform":
            return a_norm[None].astype(np.float32)
        if strategy == "distance":
            return np.stack([a_norm * self_mask, a_norm * nbr_mask]).astype(np.float32)
        if strategy == "stgcn":
            d_trunc = np.where(d <= 1, d, np.inf)  # graph.py's hop_dis with max_hop = 1
            further = nbr_mask & (d_trunc[:, None] < d_trunc[None, :])  # its a_further
            close = nbr_mask & ~further  # its a_root + a_close (inf == inf lands here)
            return np.stack([a_norm * self_mask, a_norm * close, a_norm * further]).astype(
                np.float32
            )
        return np.stack([a_norm * self_mask, a_norm * nearer, a_norm * farther]).astype(np.float32)

    def flip_permutation(self) -> np.ndarray:
        """Joint permutation of a left/right mirror: ``x_flipped = x[..., perm, :]``.

        Returns:
            (V,) int64; an involution (``perm[perm] == arange(V)``).
        """
        perm = np.arange(self.num_joints, dtype=np.int64)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description in the custom-layout schema (joint names, not indices)."""
        names = self.joint_names
        return {
            "name": self.name,
            "joints": [
                {"name": n, "parent": None if p == -1 else names[p]}
                for n, p in zip(names, self.parents)
            ],
            "center": names[self.center],
            **(
                {}
                if self.graph_center == self.center
                else {"graph_center": names[self.graph_center]}
            ),
            "flip_pairs": [[names[a], names[b]] for a, b in self.flip_pairs],
            "channels": self.channels,
        }

    @classmethod
    def from_dict(cls, d: Any, source: str = "layout description") -> Layout:
        """Build a layout from the custom-layout schema (the output of `to_dict`).

        Args:
            d: the parsed JSON object.
            source: where ``d`` came from (a file path), named in errors.

        Raises:
            LayoutError: a missing or mistyped field, an unknown joint name, or an
                inconsistent tree.
        """
        if not isinstance(d, dict):
            raise LayoutError(
                f"{source}: expected a JSON object with keys name, joints, center, "
                f"got {type(d).__name__}"
            )
        known = {"name", "joints", "center", "graph_center", "flip_pairs", "channels"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise LayoutError(f"{source}: unknown key(s) {unknown}; valid keys: {sorted(known)}")
        for key in ("name", "joints", "center"):
            if key not in d:
                raise LayoutError(
                    f"{source}: missing key {key!r}; required keys: name, joints, center"
                )
        name = d["name"]
        if not isinstance(name, str) or not name:
            raise LayoutError(f"{source}: 'name' must be a non-empty string, got {name!r}")
        joints = d["joints"]
        if not isinstance(joints, list) or not joints:
            raise LayoutError(
                f"{source}: 'joints' must be a non-empty list of {{'name', 'parent'}} objects"
            )
        names: list[str] = []
        parent_names: list[str | None] = []
        for i, jd in enumerate(joints):
            if not isinstance(jd, dict) or "name" not in jd or "parent" not in jd:
                raise LayoutError(
                    f"{source}: joints[{i}] must be an object with keys 'name' and 'parent' "
                    f"(parent null for the root), got {jd!r}"
                )
            if not isinstance(jd["name"], str) or not jd["name"]:
                raise LayoutError(
                    f"{source}: joints[{i}].name must be a non-empty string, got {jd['name']!r}"
                )
            if jd["parent"] is not None and not isinstance(jd["parent"], str):
                raise LayoutError(
                    f"{source}: joints[{i}] ({jd['name']!r}).parent must be a joint name or null, "
                    f"got {jd['parent']!r}"
                )
            if jd["name"] in names:
                raise LayoutError(f"{source}: duplicate joint name {jd['name']!r} at joints[{i}]")
            names.append(jd["name"])
            parent_names.append(jd["parent"])
        index = {n: i for i, n in enumerate(names)}

        def lookup(joint: Any, field: str) -> int:
            if not isinstance(joint, str) or joint not in index:
                raise LayoutError(
                    f"{source}: {field} names unknown joint {joint!r}; joints: {', '.join(names)}"
                )
            return index[joint]

        parents = [
            -1 if p is None else lookup(p, f"joints[{i}] ({names[i]!r}).parent")
            for i, p in enumerate(parent_names)
        ]
        center = lookup(d["center"], "'center'")
        graph_center = lookup(d["graph_center"], "'graph_center'") if "graph_center" in d else None
        pairs_in = d.get("flip_pairs", [])
        if not isinstance(pairs_in, list):
            raise LayoutError(
                f"{source}: 'flip_pairs' must be a list of [left, right] joint-name pairs"
            )
        pairs = []
        for i, pr in enumerate(pairs_in):
            if not isinstance(pr, list) or len(pr) != 2:
                raise LayoutError(
                    f"{source}: flip_pairs[{i}] must be a [left, right] pair of joint names, "
                    f"got {pr!r}"
                )
            pairs.append((lookup(pr[0], f"flip_pairs[{i}]"), lookup(pr[1], f"flip_pairs[{i}]")))
        channels = d.get("channels", 3)
        if not isinstance(channels, int) or isinstance(channels, bool):
            raise LayoutError(f"{source}: 'channels' must be the integer 2 or 3, got {channels!r}")
        try:
            return cls(
                name, tuple(names), tuple(parents), center, tuple(pairs), channels, graph_center
            )
        except LayoutError as e:
            raise LayoutError(f"{source}: {e}") from None


def load_layout_json(path: str | Path) -> Layout:
    """Read a custom layout from a JSON file (schema in the module docstring).

    Raises:
        LayoutError: the file is missing, is not valid JSON, or describes an inconsistent layout;
            the message names the file and the problem.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise LayoutError(f"{p}: cannot read custom layout file ({e.strerror or e})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise LayoutError(
            f"{p}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    return Layout.from_dict(d, source=str(p))


def _build(
    name: str,
    joints: list[tuple[str, str | None]],
    center: str,
    flips: list[tuple[str, str]],
    channels: int = 3,
    graph_center: str | None = None,
) -> Layout:
    """A built-in layout from (joint, parent name) pairs in storage order."""
    names = [j for j, _ in joints]
    parents = [-1 if p is None else names.index(p) for _, p in joints]
    pairs = [(names.index(a), names.index(b)) for a, b in flips]
    return Layout(
        name,
        tuple(names),
        tuple(parents),
        names.index(center),
        tuple(pairs),
        channels,
        None if graph_center is None else names.index(graph_center),
    )


def _lr_pairs(names: list[str], left: str, right: str) -> list[tuple[str, str]]:
    """Flip pairs from a naming pattern: every name containing ``left`` paired with ``right``."""
    return [(n, n.replace(left, right)) for n in names if left in n]


# The joint tables below are (joint, parent) pairs in storage order, kept a few to a line so each
# layout reads as one block; ruff format would put one pair per line.
# fmt: off
def _ntu25() -> Layout:
    j = [
        ("spine_base", None), ("spine_mid", "spine_base"), ("neck", "spine_shoulder"),
        ("head", "neck"),
        ("shoulder_left", "spine_shoulder"), ("elbow_left", "shoulder_left"),
        ("wrist_left", "elbow_left"), ("hand_left", "wrist_left"),
        ("shoulder_right", "spine_shoulder"), ("elbow_right", "shoulder_right"),
        ("wrist_right", "elbow_right"), ("hand_right", "wrist_right"),
        ("hip_left", "spine_base"), ("knee_left", "hip_left"), ("ankle_left", "knee_left"),
        ("foot_left", "ankle_left"),
        ("hip_right", "spine_base"), ("knee_right", "hip_right"), ("ankle_right", "knee_right"),
        ("foot_right", "ankle_right"),
        ("spine_shoulder", "spine_mid"),
        ("hand_tip_left", "thumb_left"), ("thumb_left", "hand_left"),
        ("hand_tip_right", "thumb_right"), ("thumb_right", "hand_right"),
    ]
    return _build("ntu25", j, "spine_mid", _lr_pairs([n for n, _ in j], "_left", "_right"),
                  graph_center="spine_shoulder")


def _kinect20() -> Layout:
    j = [
        ("hip_center", None), ("spine", "hip_center"), ("shoulder_center", "spine"),
        ("head", "shoulder_center"),
        ("shoulder_left", "shoulder_center"), ("elbow_left", "shoulder_left"),
        ("wrist_left", "elbow_left"), ("hand_left", "wrist_left"),
        ("shoulder_right", "shoulder_center"), ("elbow_right", "shoulder_right"),
        ("wrist_right", "elbow_right"), ("hand_right", "wrist_right"),
        ("hip_left", "hip_center"), ("knee_left", "hip_left"), ("ankle_left", "knee_left"),
        ("foot_left", "ankle_left"),
        ("hip_right", "hip_center"), ("knee_right", "hip_right"), ("ankle_right", "knee_right"),
        ("foot_right", "ankle_right"),
    ]
    return _build("kinect20", j, "spine", _lr_pairs([n for n, _ in j], "_left", "_right"))


def _msr3d20() -> Layout:
    # drawskt.m bones (1-based): 20-3 1-3 2-3 1-8 8-10 10-12 2-9 9-11 11-13 3-4 4-7 7-5 7-6
    # 5-14 6-15 14-16 15-17 16-18 17-19, rooted at hip_center (7).
    j = [
        ("shoulder_left", "shoulder_center"), ("shoulder_right", "shoulder_center"),
        ("shoulder_center", "spine"), ("spine", "hip_center"),
        ("hip_left", "hip_center"), ("hip_right", "hip_center"), ("hip_center", None),
        ("elbow_left", "shoulder_left"), ("elbow_right", "shoulder_right"),
        ("wrist_left", "elbow_left"), ("wrist_right", "elbow_right"),
        ("hand_left", "wrist_left"), ("hand_right", "wrist_right"),
        ("knee_left", "hip_left"), ("knee_right", "hip_right"),
        ("ankle_left", "knee_left"), ("ankle_right", "knee_right"),
        ("foot_left", "ankle_left"), ("foot_right", "ankle_right"),
        ("head", "shoulder_center"),
    ]
    return _build("msr3d20", j, "spine", _lr_pairs([n for n, _ in j], "_left", "_right"))


def _openni15() -> Layout:
    j = [
        ("head", "neck"), ("neck", "torso"),
        ("shoulder_right", "neck"), ("elbow_right", "shoulder_right"),
        ("hand_right", "elbow_right"),
        ("shoulder_left", "neck"), ("elbow_left", "shoulder_left"), ("hand_left", "elbow_left"),
        ("torso", None),
        ("hip_right", "torso"), ("knee_right", "hip_right"), ("foot_right", "knee_right"),
        ("hip_left", "torso"), ("knee_left", "hip_left"), ("foot_left", "knee_left"),
    ]
    return _build("openni15", j, "torso", _lr_pairs([n for n, _ in j], "_left", "_right"))


def _florence15() -> Layout:
    j = [
        ("head", "neck"), ("neck", "spine"), ("spine", None),
        ("shoulder_left", "neck"), ("elbow_left", "shoulder_left"), ("wrist_left", "elbow_left"),
        ("shoulder_right", "neck"), ("elbow_right", "shoulder_right"),
        ("wrist_right", "elbow_right"),
        ("hip_left", "spine"), ("knee_left", "hip_left"), ("ankle_left", "knee_left"),
        ("hip_right", "spine"), ("knee_right", "hip_right"), ("ankle_right", "knee_right"),
    ]
    return _build("florence15", j, "spine", _lr_pairs([n for n, _ in j], "_left", "_right"))


def _cmu31() -> Layout:
    j = [
        ("root", None),
        ("lhipjoint", "root"), ("lfemur", "lhipjoint"), ("ltibia", "lfemur"), ("lfoot", "ltibia"),
        ("ltoes", "lfoot"),
        ("rhipjoint", "root"), ("rfemur", "rhipjoint"), ("rtibia", "rfemur"), ("rfoot", "rtibia"),
        ("rtoes", "rfoot"),
        ("lowerback", "root"), ("upperback", "lowerback"), ("thorax", "upperback"),
        ("lowerneck", "thorax"), ("upperneck", "lowerneck"), ("head", "upperneck"),
        ("lclavicle", "thorax"), ("lhumerus", "lclavicle"), ("lradius", "lhumerus"),
        ("lwrist", "lradius"), ("lhand", "lwrist"), ("lfingers", "lhand"), ("lthumb", "lwrist"),
        ("rclavicle", "thorax"), ("rhumerus", "rclavicle"), ("rradius", "rhumerus"),
        ("rwrist", "rradius"), ("rhand", "rwrist"), ("rfingers", "rhand"), ("rthumb", "rwrist"),
    ]
    # Sided ASF bones start with l/r; lowerback and lowerneck are midline.
    flips = [(n, "r" + n[1:]) for n, _ in j if n[0] == "l" and n not in ("lowerback", "lowerneck")]
    return _build("cmu31", j, "lowerback", flips)


_SMPL24 = [
    ("pelvis", None), ("left_hip", "pelvis"), ("right_hip", "pelvis"), ("spine1", "pelvis"),
    ("left_knee", "left_hip"), ("right_knee", "right_hip"), ("spine2", "spine1"),
    ("left_ankle", "left_knee"), ("right_ankle", "right_knee"), ("spine3", "spine2"),
    ("left_foot", "left_ankle"), ("right_foot", "right_ankle"), ("neck", "spine3"),
    ("left_collar", "spine3"), ("right_collar", "spine3"), ("head", "neck"),
    ("left_shoulder", "left_collar"), ("right_shoulder", "right_collar"),
    ("left_elbow", "left_shoulder"), ("right_elbow", "right_shoulder"),
    ("left_wrist", "left_elbow"), ("right_wrist", "right_elbow"),
    ("left_hand", "left_wrist"), ("right_hand", "right_wrist"),
]


def _smpl(v: int) -> Layout:
    j = _SMPL24[:v]
    return _build(f"smpl{v}", j, "spine2", _lr_pairs([n for n, _ in j], "left_", "right_"))


def _coco17() -> Layout:
    j = [
        ("nose", None), ("left_eye", "nose"), ("right_eye", "nose"),
        ("left_ear", "left_eye"), ("right_ear", "right_eye"),
        ("left_shoulder", "nose"), ("right_shoulder", "nose"),
        ("left_elbow", "left_shoulder"), ("right_elbow", "right_shoulder"),
        ("left_wrist", "left_elbow"), ("right_wrist", "right_elbow"),
        ("left_hip", "left_shoulder"), ("right_hip", "right_shoulder"),
        ("left_knee", "left_hip"), ("right_knee", "right_hip"),
        ("left_ankle", "left_knee"), ("right_ankle", "right_knee"),
    ]
    return _build("coco17", j, "nose", _lr_pairs([n for n, _ in j], "left_", "right_"), channels=2)
# fmt: on


_BUILTINS: dict[str, Layout] = {
    lay.name: lay
    for lay in (
        _ntu25(),
        _kinect20(),
        _msr3d20(),
        _openni15(),
        _florence15(),
        _cmu31(),
        _smpl(22),
        _smpl(24),
        _coco17(),
    )
}


def layout_names() -> tuple[str, ...]:
    """Names of the built-in layouts."""
    return tuple(_BUILTINS)


def get_layout(name_or_json_path: str | Path) -> Layout:
    """A built-in layout by name, or a custom layout from a JSON file.

    Args:
        name_or_json_path: a built-in name (``layout_names()``) or the path of a ``.json`` file.

    Raises:
        LayoutError: unknown name (the message lists the known names), or a bad JSON file.
    """
    key = str(name_or_json_path)
    if key in _BUILTINS:
        return _BUILTINS[key]
    if key.lower().endswith(".json") or Path(key).is_file():
        return load_layout_json(key)
    raise LayoutError(
        f"unknown skeleton layout {key!r}; known layouts: {', '.join(_BUILTINS)}, "
        "or the path of a custom layout .json file"
    )
