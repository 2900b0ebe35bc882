"""Motion model of the synthetic corpus: people, per-action pose-parameter curves, kinematics.

Split out of ``sscl.data.synthetic`` (which plans sequences and writes the corpus; its module
docstring describes the model). Every frame is a vector of pose parameters (``PARAMS``); each
action writes them as smooth functions of time for one ``Segment``; ``kinematics()`` turns them
into NTU-25 joint positions by forward kinematics over a per-person set of bone offsets.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sscl.data.layouts import Layout, get_layout

GRAVITY = 9.81  # m/s^2
FOOT_CLEARANCE = 0.03  # m, height of the lowest foot joint above the floor when standing

# Pose parameters per frame: root speed (m/s), heading yaw (deg), jump lift (m), foot anchoring
# weight and per-foot support weights (0..1), then joint angles in degrees.
PARAMS: tuple[str, ...] = (
    "speed", "yaw", "lift", "anchor", "support_l", "support_r",
    "torso_pitch", "torso_roll", "torso_twist", "head_pitch",
    "sh_flex_l", "sh_abd_l", "sh_twist_l", "elbow_l",
    "sh_flex_r", "sh_abd_r", "sh_twist_r", "elbow_r",
    "hip_flex_l", "knee_l", "ankle_l",
    "hip_flex_r", "knee_r", "ankle_r",
)  # fmt: skip
_P = {n: i for i, n in enumerate(PARAMS)}
_SIDES = (("l", 1.0), ("r", -1.0))  # suffix, sign of +x (the person's left) for that side


# ----------------------------------------------------------------------------- people

# Rest offsets (metres) of each NTU-25 joint from its parent for a 1.75 m person, body frame,
# arms hanging; grouped for per-person proportions. Limb lengths are near the usual fractions of
# height (thigh and shank ~0.24 H, forearm ~0.15 H, Winter's segment table); joint placement is
# Kinect-like (shoulder joints 0.34 m apart, spine joints at NTU's heights).
_REST = {
    "spine_mid": ((0.0, 0.20, 0.0), "torso"),
    "spine_shoulder": ((0.0, 0.24, -0.01), "torso"),
    "neck": ((0.0, 0.07, 0.01), "neck"),
    "head": ((0.0, 0.14, 0.02), "neck"),
    "shoulder": ((0.17, -0.03, 0.0), "shoulders"),
    "elbow": ((0.0, -0.28, 0.0), "upper_arm"),
    "wrist": ((0.0, -0.25, 0.0), "forearm"),
    "hand": ((0.0, -0.07, 0.0), "hand"),
    "hand_tip": ((0.0, -0.08, 0.0), "hand"),
    "thumb": ((0.0, -0.03, 0.04), "hand"),
    "hip": ((0.09, -0.06, 0.0), "hips"),
    "knee": ((0.0, -0.42, 0.0), "thigh"),
    "ankle": ((0.0, -0.41, 0.0), "shank"),
    "foot": ((0.0, -0.06, 0.12), "foot"),
}
_GROUPS = (
    "torso", "neck", "shoulders", "upper_arm", "forearm", "hand", "hips", "thigh", "shank", "foot",
)  # fmt: skip


@dataclass(frozen=True)
class Person:
    offsets: np.ndarray  # (V, 3) float64 rest offset of each joint from its parent
    leg_length: float  # hip to floor, m
    tempo: float  # > 1 faster
    amp: float  # amplitude factor
    right_handed: bool
    walk_speed: float  # m/s
    jog_speed: float
    noise_scale: float


def make_person(seed: int, subject: int, layout: Layout) -> Person:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, subject)))
    height = float(np.clip(rng.normal(1.72, 0.09), 1.50, 1.95))
    factor = {g: float(np.clip(rng.normal(1.0, 0.04), 0.9, 1.1)) for g in _GROUPS}
    scale = height / 1.75
    offsets = np.zeros((layout.num_joints, 3))
    for j, name in enumerate(layout.joint_names):
        base = name.rsplit("_", 1)[0] if name.endswith(("_left", "_right")) else name
        if base not in _REST:
            continue  # spine_base: the root
        off, group = _REST[base]
        o = np.array(off) * scale * factor[group]
        if name.endswith("_right"):
            o[0] = -o[0]  # mirror left-side offsets
        offsets[j] = o
    leg = -(
        offsets[layout.index("hip_left"), 1]
        + offsets[layout.index("knee_left"), 1]
        + offsets[layout.index("ankle_left"), 1]
        + offsets[layout.index("foot_left"), 1]
    )
    leg += FOOT_CLEARANCE
    return Person(
        offsets=offsets,
        leg_length=float(leg),
        tempo=float(rng.uniform(0.85, 1.2)),
        amp=float(rng.uniform(0.8, 1.15)),
        right_handed=bool(rng.random() < 0.85),
        walk_speed=float(rng.uniform(1.1, 1.5) * scale),
        jog_speed=float(rng.uniform(2.0, 2.7) * scale),
        noise_scale=float(rng.uniform(0.5, 1.5)),
    )


# ----------------------------------------------------------------------------- segments


@dataclass
class Segment:
    label: int
    start: int  # first frame (inclusive)
    end: int  # last frame (exclusive)
    duration: float  # (end - start) / fps, seconds
    yaw: float  # heading, degrees (0 = facing +z)
    speed: float  # m/s along the heading (walk/jog), else 0
    freq: float  # cycles per second of periodic motions
    amp: float  # amplitude factor for this segment
    side: float  # +1 the person's left limb performs one-sided actions, -1 the right
    phase: np.ndarray  # (4,) random phases for idle drift


def _standing(n: int, seg: Segment) -> np.ndarray:
    """Neutral standing parameters (n, P): facing seg.yaw, both feet planted, arms hanging."""
    p = np.zeros((n, len(PARAMS)))
    p[:, _P["yaw"]] = seg.yaw
    p[:, _P["anchor"]] = 1.0
    p[:, _P["support_l"]] = p[:, _P["support_r"]] = 1.0
    p[:, _P["sh_abd_l"]] = p[:, _P["sh_abd_r"]] = 6.0
    p[:, _P["elbow_l"]] = p[:, _P["elbow_r"]] = 10.0
    return p


def _eased(t: np.ndarray, knots: list[float], values: list[float]) -> np.ndarray:
    """Cosine-eased key-frame curve: ``values`` at ``knots`` (seconds), held outside, C1."""
    k = np.asarray(knots, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    tc = np.clip(t, k[0], k[-1])
    i = np.clip(np.searchsorted(k, tc, side="right") - 1, 0, len(k) - 2)
    frac = (tc - k[i]) / (k[i + 1] - k[i])
    return v[i] + (v[i + 1] - v[i]) * (0.5 - 0.5 * np.cos(np.pi * frac))


def _idle(t: np.ndarray, seg: Segment, person: Person) -> np.ndarray:
    p = _standing(len(t), seg)
    ph = seg.phase
    w = 2 * np.pi * t
    p[:, _P["torso_roll"]] = 1.5 * np.sin(0.21 * w + ph[0])  # slow postural sway
    p[:, _P["torso_pitch"]] = 2.0 + 1.0 * np.sin(0.27 * w + ph[1])  # breathing, ~16 per minute
    p[:, _P["head_pitch"]] = 4.0 * np.sin(0.13 * w + ph[2])
    for s, sign in _SIDES:
        drift = np.sin((0.17 + 0.05 * sign) * w + ph[3] * sign)
        p[:, _P[f"sh_flex_{s}"]] = 4.0 * drift
        p[:, _P[f"elbow_{s}"]] = 12.0 + 6.0 * np.sin(0.11 * w + ph[3] + sign)
    return p


def _gait(t: np.ndarray, seg: Segment, person: Person, jog: bool) -> np.ndarray:
    p = _standing(len(t), seg)
    p[:, _P["speed"]] = seg.speed
    p[:, _P["anchor"]] = 0.0
    f = seg.freq  # strides per second
    # Each stance half-cycle the foot sweeps 2 L sin(A) relative to the pelvis; matching it to
    # the distance covered, speed / (2 f), keeps the stance foot from skating.
    a = np.degrees(np.arcsin(np.clip(seg.speed / (4 * person.leg_length * f), 0.0, 0.7)))
    phi = 2 * np.pi * f * t
    for s, sign in _SIDES:
        ph = phi if sign > 0 else phi + np.pi
        p[:, _P[f"hip_flex_{s}"]] = a * np.sin(ph)
        swing = np.clip(np.cos(ph), 0.0, None) ** 1.5  # knee flexes in swing (hip moving forward)
        p[:, _P[f"knee_{s}"]] = (10.0 if jog else 5.0) + (65.0 if jog else 55.0) * swing
        p[:, _P[f"ankle_{s}"]] = -10.0 * np.clip(-np.cos(ph), 0.0, None)  # push-off
        p[:, _P[f"sh_flex_{s}"]] = -(0.9 if jog else 0.6) * a * seg.amp * np.sin(ph)
        p[:, _P[f"elbow_{s}"]] = (85.0 if jog else 15.0) + 10.0 * np.sin(ph)
        p[:, _P[f"sh_abd_{s}"]] = 8.0
    p[:, _P["torso_pitch"]] = 10.0 if jog else 3.0
    p[:, _P["torso_twist"]] = 4.0 * np.sin(phi)
    if jog:  # short flight phases, twice per stride
        p[:, _P["lift"]] = 0.03 * (0.5 - 0.5 * np.cos(2 * phi))
    return p


def _walk(t: np.ndarray, seg: Segment, person: Person) -> np.ndarray:
    return _gait(t, seg, person, jog=False)


def _jog(t: np.ndarray, seg: Segment, person: Person) -> np.ndarray:
    return _gait(t, seg, person, jog=True)


def _wave(t: np.ndarray, seg: Segment, person: Person) -> np.ndarray:
    p = _standing(len(t), seg)
    s = "l" if seg.side > 0 else "r"
    # Upper arm out to the side, twisted so the elbow bends in the frontal plane: the forearm
    # stands up and swings side to side.
    p[:, _P[f"sh_abd_{s}"]] = 85.0 * seg.amp
    p[:, _P[f"sh_flex_{s}"]] = 15.0
    p[:, _P[f"sh_twist_{s}"]] = 90.0
    p[:, _P[f"elbow_{s}"]] = 75.0 + 30.0 * seg.amp * np.sin(2 * np.pi * seg.freq * t)
    return p


def _clap(t: np.ndarray, seg: Segment, person: Person) -> np.ndarray:
    p = _standing(len(t), seg)
    c = 0.5 - 0.5 * np.cos(2 * np.pi * seg.freq * t)  # 0 hands apart, 1 together
    for s, _ in _SIDES:
        # Arms forward and in; twisting the upper arms inwards brings the hands together in
        # front of the chest (hand centres ~5 cm apart at twist -38 degrees).
        p[:, _P[f"sh_flex_{s}"]] = 60.0
        p[:, _P[f"sh_abd_{s}"]] = -30.0
        p[:, _P[f"sh_twist_{s}"]] = -38.0 + 35.0 * seg.amp * (1.0 - c)
        p[:, _P[f"elbow_{s}"]] = 50.0
    return p


def _squat(t: np.ndarray, seg: Segment, person: Person) -> np.ndarray:
    p = _standing(len(t), seg)
    c = seg.amp * (0.5 - 0.5 * np.cos(2 * np.pi * seg.freq * t))  # 0 standing, ~1 bottom
    for s, _ in _SIDES:
        p[:, _P[f"hip_flex_{s}"]] = 95.0 * c
        p[:, _P[f"knee_{s}"]] = 110.0 * c
        p[:, _P[f"sh_flex_{s}"]] = 80.0 * c
    p[:, _P["torso_pitch"]] = 2.0 + 30.0 * c
    return p


def jump_height(amp: float) -> float:
    """Jump height (m) of the pelvis above standing, for a segment amplitude factor."""
    return 0.12 + 0.15 * amp


def _jump(t: np.ndarray, seg: Segment, person: Person) -> np.ndarray:
    p = _standing(len(t), seg)
    period = 1.0 / seg.freq
    height = jump_height(seg.amp)
    t_flight = np.sqrt(8 * height / GRAVITY)  # ballistic: up and down under gravity
    u = np.mod(t, period)
    # Crouch 0.5 s, take off, flight, land and absorb 0.4 s, stand for the rest of the period.
    t0, t1 = 0.5, 0.5 + t_flight
    crouch = _eased(u, [0.0, 0.3, t0, t1, t1 + 0.15, t1 + 0.4], [0, 1, 0, 0, 0.6, 0])
    v = np.clip((u - t0) / t_flight, 0.0, 1.0)
    p[:, _P["lift"]] = 4 * height * v * (1 - v)
    in_air = (u > t0) & (u < t1)
    for s, _ in _SIDES:
        p[:, _P[f"hip_flex_{s}"]] = 70.0 * crouch
        p[:, _P[f"knee_{s}"]] = 90.0 * crouch
        p[:, _P[f"ankle_{s}"]] = -25.0 * np.sin(np.pi * v) * in_air  # toes pointed in flight
        # Arms back in the crouch, swung forward-up through take-off, lowered on landing.
        p[:, _P[f"sh_flex_{s}"]] = _eased(
            u, [0.0, 0.3, t0 + t_flight / 2, t1 + 0.4], [0, -35, 90, 0]
        )
    p[:, _P["torso_pitch"]] = 2.0 + 35.0 * crouch
    return p


def _kick(t: np.ndarray, seg: Segment, person: Person) -> np.ndarray:
    p = _standing(len(t), seg)
    s = "l" if seg.side > 0 else "r"
    o = "r" if seg.side > 0 else "l"
    u = np.mod(t, 1.0 / seg.freq)
    # Front kick: chamber, extend, recoil, put the foot down, stand.
    knots = [0.0, 0.25, 0.45, 0.65, 0.9, 1.1]
    p[:, _P[f"hip_flex_{s}"]] = _eased(u, knots, [0, 60, 80, 55, 0, 0]) * seg.amp
    p[:, _P[f"knee_{s}"]] = _eased(u, knots, [0, 95, 10, 90, 5, 0])
    p[:, _P[f"ankle_{s}"]] = _eased(u, knots, [0, 0, -20, 0, 0, 0])
    p[:, _P[f"support_{s}"]] = _eased(u, knots, [1, 0, 0, 0, 1, 1])  # stand on the other foot
    p[:, _P[f"support_{o}"]] = 1.0
    p[:, _P["torso_pitch"]] = _eased(u, knots, [2, -5, -12, -5, 2, 2])  # lean back for balance
    p[:, _P[f"sh_abd_{s}"]] = p[:, _P[f"sh_abd_{o}"]] = _eased(u, knots, [6, 25, 30, 25, 6, 6])
    return p


def _sit(t: np.ndarray, seg: Segment, person: Person) -> np.ndarray:
    p = _standing(len(t), seg)
    d = seg.duration
    down = 1.5 / seg.amp  # seconds to sit down (and to stand up)
    knots = [0.0, down / 2, down, d - down, d - down / 2, d]
    for s, _ in _SIDES:
        p[:, _P[f"hip_flex_{s}"]] = _eased(t, knots, [0, 50, 90, 90, 50, 0])
        p[:, _P[f"knee_{s}"]] = _eased(t, knots, [0, 50, 90, 90, 50, 0])
        p[:, _P[f"sh_flex_{s}"]] = _eased(t, knots, [0, 30, 15, 15, 30, 0])
        p[:, _P[f"elbow_{s}"]] = _eased(t, knots, [10, 20, 60, 60, 20, 10])
    p[:, _P["torso_pitch"]] = _eased(t, knots, [2, 35, 8, 8, 35, 2])
    return p


def _arm_circles(t: np.ndarray, seg: Segment, person: Person) -> np.ndarray:
    p = _standing(len(t), seg)
    w = 2 * np.pi * seg.freq * t
    r = 25.0 * seg.amp
    for s, _ in _SIDES:
        p[:, _P[f"sh_abd_{s}"]] = 90.0 - r + r * np.cos(w)
        p[:, _P[f"sh_flex_{s}"]] = r * np.sin(w)
        p[:, _P[f"elbow_{s}"]] = 5.0
    return p


# Pose-parameter curves by motion name ("idle" is the background).
MOTIONS: dict[str, Callable[[np.ndarray, Segment, Person], np.ndarray]] = {
    "walk": _walk,
    "jog": _jog,
    "wave": _wave,
    "clap": _clap,
    "squat": _squat,
    "jump": _jump,
    "kick": _kick,
    "sit_down_stand_up": _sit,
    "arm_circles": _arm_circles,
    "idle": _idle,
}


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)  # symmetric: s(1 - x) = 1 - s(x), so blends sum to 1


# ----------------------------------------------------------------------------- kinematics


def _rot(axis: int, deg: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations about x (0), y (1) or z (2) by ``deg`` degrees (right-handed)."""
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    r = np.zeros((len(a), 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[:, axis, axis] = 1.0
    r[:, i, i] = c
    r[:, j, j] = c
    r[:, i, j] = -s
    r[:, j, i] = s
    return r


# The hand tip and thumb hang off the hand (the Kinect v2 SDK's bones; their `_REST` offsets are
# from the hand), while the NTU-25 layout's graph chains tip - thumb - hand as ST-GCN does.
_KINEMATIC_PARENT = {
    "hand_tip_left": "hand_left", "thumb_left": "hand_left",
    "hand_tip_right": "hand_right", "thumb_right": "hand_right",
}  # fmt: skip


class _Kinematics:
    """Forward kinematics of NTU-25 from `PARAMS` (vectorised over frames)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        parents = list(layout.parents)
        for joint, parent in _KINEMATIC_PARENT.items():
            parents[layout.index(joint)] = layout.index(parent)
        self.parents = tuple(parents)
        children: list[list[int]] = [[] for _ in range(layout.num_joints)]
        for c, p in enumerate(self.parents):
            if p != -1:
                children[p].append(c)
        order, stack = [], [layout.root]
        while stack:  # parents before children
            j = stack.pop()
            order.append(j)
            stack.extend(children[j])
        self.order = order
        ix = layout.index
        self.feet = [ix("ankle_left"), ix("foot_left"), ix("ankle_right"), ix("foot_right")]
        self.ankle_l, self.ankle_r = ix("ankle_left"), ix("ankle_right")
        self.j = {n: ix(n) for n in layout.joint_names}

    def local_rotations(self, p: np.ndarray) -> dict[int, np.ndarray]:
        """Rotation of the bone ending at each driven joint, relative to its parent bone."""
        col = {n: p[:, i] for n, i in _P.items()}
        rots = {
            self.j["spine_mid"]: _rot(1, col["torso_twist"])
            @ _rot(0, col["torso_pitch"])
            @ _rot(2, col["torso_roll"]),
            self.j["head"]: _rot(0, col["head_pitch"]),
        }
        for s, sign in _SIDES:
            side = "left" if sign > 0 else "right"
            rots[self.j[f"elbow_{side}"]] = (
                _rot(2, sign * col[f"sh_abd_{s}"])
                @ _rot(0, -col[f"sh_flex_{s}"])
                @ _rot(1, sign * col[f"sh_twist_{s}"])
            )
            rots[self.j[f"wrist_{side}"]] = _rot(0, -col[f"elbow_{s}"])
            rots[self.j[f"knee_{side}"]] = _rot(0, -col[f"hip_flex_{s}"])
            rots[self.j[f"ankle_{side}"]] = _rot(0, col[f"knee_{s}"])
            # The ankle undoes hip and knee pitch (foot flat), then adds its own angle.
            rots[self.j[f"foot_{side}"]] = _rot(
                0, -(col[f"knee_{s}"] - col[f"hip_flex_{s}"] + col[f"ankle_{s}"])
            )
        return rots

    def body(self, p: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """(T, V, 3) joint positions in the body frame, pelvis at the origin."""
        t = len(p)
        rots = self.local_rotations(p)
        pos = np.zeros((t, self.layout.num_joints, 3))
        world: dict[int, np.ndarray | None] = {self.layout.root: None}  # None = identity
        parents = self.parents
        for j in self.order[1:]:
            r_parent = world[parents[j]]
            local = rots.get(j)
            if local is None:
                r = r_parent
            else:
                r = local if r_parent is None else r_parent @ local
            world[j] = r
            pos[:, j] = pos[:, parents[j]] + (offsets[j] if r is None else r @ offsets[j])
        return pos

    def world(self, p: np.ndarray, person: Person, start_xz: np.ndarray, fps: float) -> np.ndarray:
        """(T, V, 3) joint positions in the corpus frame (metres, y up, floor y = 0)."""
        pos = self.body(p, person.offsets)
        # Keep the supporting foot where it is in the rest pose (no sliding while standing).
        off = person.offsets
        rest = {}
        for a, name in ((self.ankle_l, "left"), (self.ankle_r, "right")):
            rest[a] = off[self.j[f"hip_{name}"]] + off[self.j[f"knee_{name}"]] + off[a]
        wl, wr = p[:, _P["support_l"]], p[:, _P["support_r"]]
        wsum = np.maximum(wl + wr, 1e-6)[:, None]
        support = (wl[:, None] * pos[:, self.ankle_l] + wr[:, None] * pos[:, self.ankle_r]) / wsum
        support_rest = (wl[:, None] * rest[self.ankle_l] + wr[:, None] * rest[self.ankle_r]) / wsum
        shift = p[:, _P["anchor"], None] * (support_rest - support)
        # Ground contact: the lowest foot joint sits FOOT_CLEARANCE above the floor, plus lift.
        lowest = pos[:, self.feet, 1].min(axis=1)
        shift[:, 1] = FOOT_CLEARANCE - lowest + p[:, _P["lift"]]
        pos += shift[:, None, :]
        # Heading: rotate about y; then translate by the root path integrated from the speed.
        yaw = np.radians(p[:, _P["yaw"]])
        c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        x, z = pos[..., 0].copy(), pos[..., 2]
        pos[..., 0] = c * x + s * z
        pos[..., 2] = -s * x + c * z
        speed = p[:, _P["speed"]]
        step = np.stack([speed * np.sin(yaw), speed * np.cos(yaw)], axis=1) / fps
        path = start_xz + np.concatenate([np.zeros((1, 2)), np.cumsum(step[:-1], axis=0)])
        pos[..., 0] += path[:, 0, None]
        pos[..., 2] += path[:, 1, None]
        return pos


@functools.lru_cache(maxsize=1)
def kinematics() -> _Kinematics:
    return _Kinematics(get_layout("ntu25"))
