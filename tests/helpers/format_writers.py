"""Writers of small files in the exact published formats of the datasets that are not in
../shared/data (NTU RGB+D `.skeleton`, PKU-MMD skeleton/label/split files, BABEL json + joint
npz), used by the converter tests to build fixtures in tmp_path.

Each writer follows the format as its publisher documents it (see the docstrings of
sscl.data.formats.ntu / pkummd / babel for the sources); values are written with `repr`, so a
float32 value read back as float64 and cast to float32 is bit-identical.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _num(v: float) -> str:
    return repr(float(v))


# ---------------------------------------------------------------- NTU RGB+D .skeleton


@dataclass
class NtuBody:
    """One body in one frame: tracking id, (25, 3) positions, (25,) joint trackingState."""

    body_id: int
    xyz: np.ndarray
    state: np.ndarray = field(default_factory=lambda: np.full(25, 2, dtype=np.int64))


def ntu_skeleton_text(frames: list[list[NtuBody]], crlf: bool = False) -> str:
    """The text of a .skeleton file holding `frames` (a list of the bodies of each frame)."""
    out = [str(len(frames))]
    for bodies in frames:
        out.append(str(len(bodies)))
        for b in bodies:
            # bodyID clipedEdges handLeftConfidence handLeftState handRightConfidence
            # handRightState isRestricted leanX leanY trackingState
            out.append(f"{b.body_id} 0 1 1 1 1 0 0.02764709 0.05745083 2")
            out.append(str(len(b.xyz)))
            for j, (x, y, z) in enumerate(b.xyz):
                # x y z depthX depthY colorX colorY orientationW X Y Z trackingState
                out.append(
                    f"{_num(x)} {_num(y)} {_num(z)} 277.419 191.8218 1036.233 519.1677 "
                    f"-0.2059419 0.05349901 0.9692109 -0.1239193 {int(b.state[j])}"
                )
    sep = "\r\n" if crlf else "\n"
    return sep.join(out) + sep


def write_ntu_skeleton(path: Path, frames: list[list[NtuBody]], crlf: bool = False) -> Path:
    """Write one NTU .skeleton file (the name should be SsssCcccPpppRrrrAaaa.skeleton)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ntu_skeleton_text(frames, crlf).encode())
    return path


def write_ntu_missing_list(path: Path, names: list[str]) -> Path:
    """A missing-skeleton list laid out like the published one (two lines of prose, a blank)."""
    head = (
        f'{len(names)} of the captured samples in the "NTU RGB+D" dataset have missing or '
        "incomplete skeleton data.\nIf you are working on skeleton-based analysis, please ignore "
        "these files in your training and testing procedures.\n\n"
    )
    path.write_text(head + "".join(n + "\n" for n in names))
    return path


# ---------------------------------------------------------------- PKU-MMD


def pkummd_skeleton_text(joints: np.ndarray) -> str:
    """Skeleton file text: one line per frame, 150 values = 2 bodies x 25 joints x xyz.

    Args:
        joints: (T, 2, 25, 3) positions; an absent body is all zeros.
    """
    rows = joints.reshape(len(joints), 150)
    return "".join(" ".join(_num(v) for v in row) + "\n" for row in rows)


def write_pkummd(
    root: Path,
    name: str,
    joints: np.ndarray,
    labels: list[tuple[int, int, int, int]] | None,
    skeleton_dir: str = "skeleton",
    label_dir: str = "label",
) -> None:
    """Write `<root>/skeleton/<name>.txt` and, if given, `<root>/label/<name>.txt`.

    Args:
        labels: rows (action_id 1..51, start_frame, end_frame, confidence 1|2).
    """
    (root / skeleton_dir).mkdir(parents=True, exist_ok=True)
    (root / skeleton_dir / f"{name}.txt").write_text(pkummd_skeleton_text(joints))
    if labels is not None:
        (root / label_dir).mkdir(parents=True, exist_ok=True)
        (root / label_dir / f"{name}.txt").write_text(
            "".join(f"{c},{s},{e},{k}\n" for c, s, e, k in labels)
        )


def write_pkummd_split(path: Path, train: list[str], val: list[str]) -> Path:
    """A split list as released (cross-subject.txt / cross-view.txt), heading spelling included."""
    path.write_text(
        "Training videos: \n" + "".join(f"{n}, " for n in train) + "\n"
        "Validataion videos: \n" + "".join(f"{n}, " for n in val) + "\n"
    )
    return path


# ---------------------------------------------------------------- BABEL


def babel_entry(
    sid: int,
    feat_p: str,
    dur: float,
    frame_segments: list[tuple[float, float, list[str] | None]] | None,
    seq_acts: list[str] = ("walk",),
) -> dict:
    """One BABEL v1.0 entry (babel_v1.0_release/{train,val}.json value).

    Args:
        frame_segments: (start_t, end_t, act_cat) per frame_ann label, or None for an entry
            whose frame_ann is null (sequence-level annotation only).
    """
    entry = {
        "babel_sid": sid,
        "url": f"https://babel-renders.s3.eu-central-1.amazonaws.com/{sid:06d}.mp4",
        "feat_p": feat_p,
        "dur": dur,
        "seq_ann": {
            "babel_lid": f"seq-{sid}",
            "anntr_id": "a1",
            "mul_act": True,
            "labels": [
                {"raw_label": a, "proc_label": a, "seg_id": f"s{sid}", "act_cat": [a]}
                for a in seq_acts
            ],
        },
        "frame_ann": None,
    }
    if frame_segments is not None:
        entry["frame_ann"] = {
            "babel_lid": f"frm-{sid}",
            "anntr_id": "a2",
            "mul_act": True,
            "labels": [
                {
                    "raw_label": " and ".join(cats or ["?"]),
                    "proc_label": " and ".join(cats or ["?"]),
                    "seg_id": f"f{sid}-{i}",
                    "act_cat": cats,
                    "start_t": st,
                    "end_t": en,
                }
                for i, (st, en, cats) in enumerate(frame_segments)
            ],
        }
    return entry


def write_babel_json(path: Path, entries: list[dict]) -> Path:
    """A BABEL split file: a dict keyed by str(babel_sid)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({str(e["babel_sid"]): e for e in entries}))
    return path


def write_joint_npz(
    path: Path, joint_pos: np.ndarray, fps: float | None, fps_key: str = "mocap_framerate"
) -> Path:
    """Per-AMASS-file joint positions: `joint_pos` (T, J*3) plus the source fps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"joint_pos": joint_pos.reshape(len(joint_pos), -1)}
    if fps is not None:
        arrays[fps_key] = np.asarray(fps)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path
