"""NTU-style normalisation of skeleton sequences: which joints, the per-sequence reference, and
the finetuning kernel (the pretraining views fold it into the fused crop kernel).

Based on the 2s-AGCN pre-normalisation that this line of work reuses (METHOD.md section 1):
subtract person 0's spine middle, then rotate the whole sequence so that, in the reference
frame, person 0's bone spine base -> spine middle is parallel to +z and the bone right shoulder
-> left shoulder parallel to +x (NTU-25 0-based ids 0 -> 1 and 8 -> 4).

Definition (one per sequence, so every window of a sequence sees a frame in the same
coordinates, and overlapping evaluation windows agree before ``stitch``):

- Centre reference: person 0's centre joint at the sequence's first frame where it is tracked.
- Rotation reference: the sequence's first frame where person 0's four bone joints are tracked
  and both bones are non-degenerate (length >= 1e-8 m): R has rows (e_x, e_y, e_z) with e_z the
  unit spine bone and e_x the shoulder bone made orthogonal to e_z (Gram-Schmidt), e_y = e_z x
  e_x. The two bones are rarely exactly orthogonal, so the spine is exactly +z and the shoulder
  bone lies in the +x half of the xz-plane. In recorded data both references are the first
  tracked frame.
- ``"first"`` (the default): every frame is centred on the centre reference, which keeps the
  global translation (walk, jog, jump: information a localizer needs).
- ``"frame"``: frame t is centred on person 0's centre joint at t where it is tracked there and
  on the centre reference where it is not (2s-AGCN subtracts 0 there; carrying the last tracked
  value forward would make a frame's coordinates depend on where a window starts).
- ``"none"``: the corpus coordinates.
- No tracked centre in the whole sequence: no centring; no rotation frame: no rotation.
  Two-channel layouts are centred only. Invalid (untracked) points stay exactly 0.

:func:`normalization_joints` says which joints play the four roles in every built-in layout;
:class:`ReferenceTable` computes the references lazily per sequence, once per process;
:func:`normalize_windows` applies them to finetuning windows while transposing to the model
layout (numpy twin :func:`normalize_windows_ref`); :func:`normalize_sequence_ref` is the
whole-sequence oracle the tests hold both fast paths to.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from sscl.data.layouts import Layout
from sscl.errors import ConfigError

NORMALIZE_MODES = ("none", "frame", "first")
_EPS = 1e-8  # metres: a shorter bone has no direction
# Frames read per sequence to find its references; sequences whose references lie later (or
# that are shorter) are read whole.
_PREFIX = 16


class NormJoints(NamedTuple):
    """Joint indices of the normalisation roles (NTU-25: (1, 0, 1, 8, 4))."""

    centre: int
    spine_from: int
    spine_to: int
    shoulder_from: int  # the right shoulder
    shoulder_to: int  # the left shoulder


# Role -> joint name for each built-in layout: (centre, spine base, spine middle, right
# shoulder, left shoulder). The spine bone is the trunk bone below (or through) the centre:
# - ntu25, kinect20, msr3d20: spine base / hip centre -> spine middle, the centre itself.
# - openni15 (KARD), florence15: no joint below the centre (torso / spine is the root); the
#   bone centre -> neck points the same way up the trunk.
# - cmu31: root (pelvis) -> lowerback (the end of the lower back bone, mid trunk, the centre);
#   each ASF joint is the END of its bone, so the shoulders are the ends of the clavicles.
# - smpl22 / smpl24: pelvis -> spine2 (the centre, half way to the neck like NTU's spine
#   middle); pelvis -> spine1 would be a 10 cm bone, a noisier direction.
_ROLES: dict[str, tuple[str, str, str, str, str] | str] = {
    "ntu25": ("spine_mid", "spine_base", "spine_mid", "shoulder_right", "shoulder_left"),
    "kinect20": ("spine", "hip_center", "spine", "shoulder_right", "shoulder_left"),
    "msr3d20": ("spine", "hip_center", "spine", "shoulder_right", "shoulder_left"),
    "openni15": ("torso", "torso", "neck", "shoulder_right", "shoulder_left"),
    "florence15": ("spine", "spine", "neck", "shoulder_right", "shoulder_left"),
    "cmu31": ("lowerback", "root", "lowerback", "rclavicle", "lclavicle"),
    "smpl22": ("spine2", "pelvis", "spine2", "right_shoulder", "left_shoulder"),
    "smpl24": ("spine2", "pelvis", "spine2", "right_shoulder", "left_shoulder"),
    "coco17": "COCO keypoints have no trunk joints (spine base, spine middle)",
}
_ROLE_NAMES = ("centre (spine middle)", "spine base", "spine middle", "right shoulder",
               "left shoulder")


def normalization_joints(layout: Layout) -> NormJoints:
    """The joints of the NTU-style normalisation for ``layout`` (table ``_ROLES`` above).

    Built-in layouts use the table; a custom layout uses its centre joint, the bone from the
    centre's parent to the centre (or from the centre to a child whose name contains "neck"
    when the centre is the root), and the flip pair whose names contain "shoulder" or
    "clavicle" (the right joint first).

    Raises:
        ConfigError: the layout lacks a joint of some role; the message names the layout and
            the role (and the joint name looked for).
    """
    names = layout.joint_names
    roles = _ROLES.get(layout.name)
    if isinstance(roles, str):
        raise ConfigError(
            f"loader.normalize: layout {layout.name!r} cannot be normalised: {roles}; "
            "set loader.normalize = 'none'"
        )
    if roles is not None and all(r in names for r in roles):
        return NormJoints(*(names.index(r) for r in roles))
    if roles is not None:
        role, name = next((w, r) for w, r in zip(_ROLE_NAMES, roles) if r not in names)
        raise ConfigError(
            f"loader.normalize: layout {layout.name!r} has no joint {name!r} (the {role}); "
            f"its joints are {', '.join(names)}; set loader.normalize = 'none'"
        )
    centre = layout.center
    parent = layout.parents[centre]
    if parent >= 0:
        spine = (parent, centre)
    else:
        necks = [v for v, p in enumerate(layout.parents) if p == centre and "neck" in names[v]]
        if not necks:
            raise ConfigError(
                f"loader.normalize: layout {layout.name!r} has no spine bone: its centre "
                f"{names[centre]!r} is the root and no child joint is named like 'neck'; "
                "set loader.normalize = 'none'"
            )
        spine = (centre, necks[0])
    for left, right in layout.flip_pairs:
        if all(("shoulder" in names[j] or "clavicle" in names[j]) for j in (left, right)):
            return NormJoints(centre, spine[0], spine[1], right, left)
    raise ConfigError(
        f"loader.normalize: layout {layout.name!r} has no left/right shoulder joints (a flip "
        "pair whose names contain 'shoulder' or 'clavicle'); set loader.normalize = 'none'"
    )


def check_mode(mode: str) -> None:
    """Raise ConfigError unless ``mode`` is one of :data:`NORMALIZE_MODES`."""
    if mode not in NORMALIZE_MODES:
        raise ConfigError(
            f"loader.normalize = {mode!r}: expected one of {', '.join(NORMALIZE_MODES)}"
        )


class WindowNorm(NamedTuple):
    """The normalisation of a batch of windows, as the kernels take it.

    Attributes:
        centre: (N, 3) float64 centre reference of each window's sequence.
        rot: (N, 3, 3) float64 rotation of each window's sequence.
        centre_joint: -1 for ``"first"`` (every frame centred on ``centre``); the centre joint
            for ``"frame"`` (each frame on its own centre joint where tracked).
    """

    centre: np.ndarray
    rot: np.ndarray
    centre_joint: int


# --------------------------------------------------------------------------- references


def sequence_references(
    raw_NTVCM: np.ndarray, valid_NTVM: np.ndarray, joints: NormJoints
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The centre and rotation references of each row, taken as (the start of) a sequence.

    Args:
        raw_NTVCM: (N, T, V, C, M) float32 frames; valid_NTVM: (N, T, V, M) bool.
        joints: :func:`normalization_joints`.

    Returns:
        centre (N, 3) float64 (zeros where not found; channel 2 is 0 for 2-D layouts),
        rot (N, 3, 3) float64 (identity where not found or for 2-D layouts),
        has_centre (N,) bool, has_rot (N,) bool (always True for 2-D layouts).
    """
    n, _, _, c, _ = raw_NTVCM.shape
    cj, sa, sb, ha, hb = joints
    rows = np.arange(n)
    tracked = valid_NTVM[:, :, cj, 0]
    has_centre = tracked.any(axis=1)
    centre = np.zeros((n, 3))
    first = np.argmax(tracked, axis=1)
    centre[:, :c] = np.where(has_centre[:, None], raw_NTVCM[rows, first, cj, :, 0], 0.0)
    rot = np.tile(np.eye(3), (n, 1, 1))
    if c != 3:
        return centre, rot, has_centre, np.ones(n, bool)
    x = raw_NTVCM[:, :, :, :, 0].astype(np.float64)
    u = x[:, :, sb] - x[:, :, sa]
    w = x[:, :, hb] - x[:, :, ha]
    nu = np.sqrt(np.einsum("ntc,ntc->nt", u, u))
    u = u / np.where(nu < _EPS, 1.0, nu)[..., None]
    w = w - np.einsum("ntc,ntc->nt", w, u)[..., None] * u
    nw = np.sqrt(np.einsum("ntc,ntc->nt", w, w))
    w = w / np.where(nw < _EPS, 1.0, nw)[..., None]
    ok = valid_NTVM[:, :, [sa, sb, ha, hb], 0].all(axis=2) & (nu >= _EPS) & (nw >= _EPS)
    has_rot = ok.any(axis=1)
    t = np.argmax(ok, axis=1)
    e_z, e_x = u[rows, t], w[rows, t]
    r = np.stack([e_x, np.cross(e_z, e_x), e_z], axis=1)
    rot = np.where(has_rot[:, None, None], r, rot)
    return centre, rot, has_centre, has_rot


class ReferenceTable:
    """Per-sequence normalisation references, computed lazily (each sequence once per process).

    Args:
        num_sequences: S.
        joints: :func:`normalization_joints` of the corpus layout.

    Attributes:
        centre: (S, 3) float64 centre reference of every sequence computed so far.
        rot: (S, 3, 3) float64 rotation.
        known: (S,) bool, which rows are computed.
    """

    def __init__(self, num_sequences: int, joints: NormJoints):
        self.joints = joints
        self.centre = np.zeros((num_sequences, 3))
        self.rot = np.tile(np.eye(3), (num_sequences, 1, 1))
        self.known = np.zeros(num_sequences, bool)

    def ensure(self, corpus, seq: np.ndarray) -> None:
        """Compute the references of the sequences in ``seq`` not yet known.

        The first ``_PREFIX`` frames of every new sequence are read in one ``read_windows``
        call; a sequence shorter than that, or whose references lie later, is read whole.
        Reads go through ``corpus``, so call this before taking a ``window_table`` (a read may
        evict the chunks a table points into).
        """
        need = np.unique(np.asarray(seq, np.int64))
        need = need[~self.known[need]]
        if not need.size:
            return
        lengths = corpus.lengths[need]
        head = need[lengths >= _PREFIX]
        whole = [int(s) for s in need[lengths < _PREFIX]]
        if head.size:
            raw, valid, _ = corpus.read_windows(head, np.zeros(head.size, np.int64), _PREFIX)
            centre, rot, has_c, has_r = sequence_references(raw, valid, self.joints)
            done = has_c & has_r
            self.centre[head[done]], self.rot[head[done]] = centre[done], rot[done]
            self.known[head[done]] = True
            whole += [int(s) for s in head[~done]]
        for s in whole:
            raw, valid, _ = corpus.read_sequence(s)
            centre, rot, _, _ = sequence_references(raw[None], valid[None], self.joints)
            self.centre[s], self.rot[s] = centre[0], rot[0]
            self.known[s] = True


# --------------------------------------------------------------------------- applying it


@njit(cache=True, nogil=True)
def _normalize_windows_kernel(joints, valid, centre, rot, cj, out):
    """out[n, c, t, v, m] = (rot[n] @ (x - ctr_t))[c] for valid points, else 0 (float64 math).

    ``ctr_t`` is ``centre[n]``, or with ``cj >= 0`` person 0's joint ``cj`` at frame t where it
    is valid there."""
    N, T, V, C, M = joints.shape
    ctr = np.empty(C)
    d = np.empty(C)
    for n in range(N):
        for t in range(T):
            per_frame = cj >= 0 and valid[n, t, cj, 0]
            for c in range(C):
                ctr[c] = np.float64(joints[n, t, cj, c, 0]) if per_frame else centre[n, c]
            for v in range(V):
                for m in range(M):
                    if not valid[n, t, v, m]:
                        for c in range(C):
                            out[n, c, t, v, m] = 0.0
                        continue
                    for c in range(C):
                        d[c] = np.float64(joints[n, t, v, c, m]) - ctr[c]
                    for c in range(C):
                        y = 0.0
                        for k in range(C):
                            y += rot[n, c, k] * d[k]
                        out[n, c, t, v, m] = y


def normalize_windows(
    joints_NTVCM: np.ndarray,
    valid_NTVM: np.ndarray,
    norm: WindowNorm,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Normalise windows with their sequences' references, written in the model layout.

    Args:
        joints_NTVCM: (N, T, V, C, M) float32 windows (corpus layout; 0 where invalid).
        valid_NTVM: (N, T, V, M) bool.
        norm: the references of each window's sequence (:class:`ReferenceTable`) and the mode
            (``"first"`` or ``"frame"``, by ``norm.centre_joint``).
        out: optional (N, C, T, V, M) float32 buffer.

    Returns:
        (N, C, T, V, M) float32; invalid points exactly 0.
    """
    n, t, v, c, m = joints_NTVCM.shape
    if out is None:
        out = np.empty((n, c, t, v, m), np.float32)
    _normalize_windows_kernel(
        np.ascontiguousarray(joints_NTVCM), np.ascontiguousarray(valid_NTVM),
        np.ascontiguousarray(norm.centre[:, :c], np.float64),
        np.ascontiguousarray(norm.rot[:, :c, :c], np.float64), int(norm.centre_joint), out,
    )
    return out


def normalize_windows_ref(
    joints_NTVCM: np.ndarray, valid_NTVM: np.ndarray, norm: WindowNorm
) -> np.ndarray:
    """Numpy twin of :func:`normalize_windows`."""
    c = joints_NTVCM.shape[3]
    x = joints_NTVCM.astype(np.float64)
    ctr = np.broadcast_to(np.asarray(norm.centre, np.float64)[:, None, :c], x.shape[:2] + (c,))
    if norm.centre_joint >= 0:  # "frame"
        here = valid_NTVM[:, :, norm.centre_joint, 0]
        ctr = np.where(here[..., None], x[:, :, norm.centre_joint, :, 0], ctr)
    d = x - ctr[:, :, None, :, None]  # (N, T, V, C, M)
    y = np.einsum("nck,ntvkm->nctvm", np.asarray(norm.rot, np.float64)[:, :c, :c], d)
    return np.where(valid_NTVM[:, None], y, 0.0).astype(np.float32)


def normalize_sequence_ref(
    joints_TVCM: np.ndarray, valid_TVM: np.ndarray, joints: NormJoints, mode: str
) -> np.ndarray:
    """The definition on one whole sequence (the oracle of both fast paths).

    Args:
        joints_TVCM: (T, V, C, M) float32 sequence; valid_TVM: (T, V, M) bool.
        joints: :func:`normalization_joints`.
        mode: ``"none"``, ``"first"`` or ``"frame"``.

    Returns:
        (T, V, C, M) float32 in the corpus layout.
    """
    check_mode(mode)
    if mode == "none":
        return joints_TVCM.copy()
    centre, rot, _, _ = sequence_references(joints_TVCM[None], valid_TVM[None], joints)
    norm = WindowNorm(centre, rot, joints.centre if mode == "frame" else -1)
    y = normalize_windows_ref(joints_TVCM[None], valid_TVM[None], norm)
    return np.ascontiguousarray(y[0].transpose(1, 2, 0, 3))
