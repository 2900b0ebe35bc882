"""CMU motion capture (Acclaim ASF skeleton + AMC motion) -> joint positions by forward kinematics.

Based on the Acclaim ASF/AMC file format (as documented with the CMU Graphics Lab Motion Capture
Database) and the mocap6 annotations of Fox, Hughes, Sudderth, Jordan (Ann. Appl. Stat. 2014).

ASF: `:units` (`length` L: one ASF unit is 1/L inch, so metres = value / L * 0.0254, CMU
uses L = 0.45; `angle` deg|rad), `:root` (`order` of the AMC root channels, `axis` rotation order,
`position`/`orientation`), `:bonedata` blocks (`name`, unit `direction`, `length`, `axis a b c
ORDER`, `dof`, `limits`) and `:hierarchy` (`parent child ...` lines). AMC: `:FULLY-SPECIFIED`,
`:DEGREES` (or `:RADIANS`), then per frame its number and one `bone v1 v2 ...` line per bone
with degrees of freedom, values in that bone's `dof` order.

Forward kinematics, per frame: the root sits at the AMC translation, rotated by its channels;
for a bone with axis rotation C (Euler angles of `axis`, applied in its ORDER) and motion
rotation R (its dof angles, applied in dof order), the global rotation is
`G = G_parent @ C @ R @ C^T` and the bone's END is `end_parent + length * G @ direction`.
Euler angles applied "in order X, Y, Z" mean the matrix `Rz @ Ry @ Rx` (column vectors). The
ASF root `position` is the rest position, which CMU's absolute AMC root translation already
includes, so it is not added; a non-zero root `orientation` is rejected (no CMU file has one).

Output: `cmu31` (root, then the 30 ASF bones, each joint = the END of its bone), metres, the
ASF frame kept as is (right-handed, y up). The mocap6 release stores a derived copy
(`joints/*.npz`, made by its own FK script); the tests check this module against it.

Which skeleton: `<subject>_<trial>.amc` uses `<subject>.asf`, else `<subject>_*.asf` (the release
ships `13_reconstructed.asf`), searched next to the AMC; `--asf FILE` forces one file.
Labels: when `truelabels/<seq>.txt` exists (one class 1..12 per 12-frame block, 10 Hz), frame f
gets `labels[f // 12]` (the last, partial block uses the last label), class c -> c - 1; a label
file without its AMC (14_06 in the release) is reported as Skipped. `--fps F` keeps every
(120/F)-th frame starting at frame 0 (F must divide the source rate); labels follow the kept
frames.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from sscl.data.corpus import CorpusHeader, Sequence, Skipped
from sscl.data.formats._skipping import add_skip_bad, or_skipped
from sscl.data.formats._sources import single_file
from sscl.data.formats._text import parses
from sscl.data.layouts import get_layout
from sscl.errors import ConfigError, FormatError

NAME = "cmu"

CLASS_NAMES = (
    "JumpJack",
    "Jog",
    "Squat",
    "KneeRaise",
    "ArmCircle",
    "Twist",
    "SideReach",
    "Box",
    "UpDown",
    "ToeTouchOneHand",
    "SideBend",
    "ToeTouchTwoHands",
)
SOURCE_FPS = 120.0
LABEL_BLOCK = 12  # mocap6 labels one 12-frame block (10 Hz at 120 fps)
INCH = 0.0254
SOURCE_FRAME = (
    "CMU ASF/AMC: joint positions computed by forward kinematics in the ASF frame (right-handed, "
    "y up); lengths in ASF units converted to metres by / (ASF :units length) * 0.0254 "
    "(CMU: 1/0.45 inch per unit). No rotation applied."
)
_AMC_RE = re.compile(r"(\d+)_(\d+)\.amc", re.IGNORECASE)


@dataclass
class Bone:
    """One ASF bone (lengths in ASF units, angles in radians)."""

    name: str
    direction: np.ndarray  # (3,) unit vector in the global rest frame
    length: float
    axis: np.ndarray  # (3, 3) rotation C of the bone's local frame
    dof: tuple[str, ...]  # e.g. ("rx", "ry", "rz")
    parent: str = ""


@dataclass
class Skeleton:
    """A parsed ASF file."""

    path: Path
    unit_to_m: float
    angle_in_degrees: bool
    root_order: tuple[str, ...]  # e.g. ("tx", "ty", "tz", "rx", "ry", "rz")
    bones: dict[str, Bone]  # in :bonedata order
    order: tuple[str, ...]  # bones parents-first


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the CMU converter's options (`--asf`, `--fps`, `--skip-bad`)."""
    parser.add_argument(
        "--asf",
        type=Path,
        default=None,
        help="use this ASF skeleton for every AMC (default: matched by subject)",
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=SOURCE_FPS,
        help="output frame rate; must divide 120 (every 120/fps-th frame is kept)",
    )
    add_skip_bad(parser, "malformed AMC files")


def rotation(angles: np.ndarray, order: str) -> np.ndarray:
    """Euler rotation: the axes of `order` applied one after another (first = innermost).

    Args:
        angles: (..., len(order)) radians, one per letter of `order` (letters from "xyz").
        order: e.g. "xyz" gives `Rz @ Ry @ Rx`.

    Returns:
        (..., 3, 3) float64 rotation matrices.
    """
    angles = np.asarray(angles, dtype=np.float64)
    out = np.broadcast_to(np.eye(3), (*angles.shape[:-1], 3, 3)).copy()
    for k, ax in enumerate(order.lower()):
        c, s = np.cos(angles[..., k]), np.sin(angles[..., k])
        r = np.zeros((*angles.shape[:-1], 3, 3))
        i = "xyz".index(ax)
        j, k2 = (i + 1) % 3, (i + 2) % 3
        r[..., i, i] = 1.0
        r[..., j, j] = c
        r[..., k2, k2] = c
        r[..., k2, j] = s
        r[..., j, k2] = -s
        out = r @ out
    return out


def parse_asf(path: Path) -> Skeleton:
    """Parse an Acclaim ASF skeleton.

    Raises:
        FormatError: a missing section or field, a malformed value, an unknown hierarchy name,
            or a non-zero root orientation; the message names the line.
    """
    lines = _lines(path)
    sections: dict[str, list[tuple[int, list[str]]]] = {}
    current = None
    for no, tok in lines:
        if tok[0].startswith(":"):
            current = tok[0][1:].lower()
            sections[current] = []
            if len(tok) > 1:
                sections[current].append((no, tok[1:]))
        elif current is not None:
            sections[current].append((no, tok))
    for name in ("root", "bonedata", "hierarchy"):
        if name not in sections:
            raise FormatError(path, f"no :{name} section; expected an Acclaim ASF skeleton")
    units = {t[0].lower(): (no, t[1:]) for no, t in sections.get("units", [])}
    unit_len = _float(path, *units["length"], 0) if "length" in units else 1.0
    if unit_len <= 0:
        raise FormatError(
            path, f":units length must be > 0, got {unit_len}", line=units["length"][0]
        )
    deg = True
    if "angle" in units:
        no, tok = units["angle"]
        if not tok or tok[0].lower() not in ("deg", "rad"):
            raise FormatError(
                path, f":units angle {' '.join(tok)!r}; expected 'deg' or 'rad'", line=no
            )
        deg = tok[0].lower() == "deg"
    root = {t[0].lower(): (no, t[1:]) for no, t in sections["root"]}
    if "order" not in root:
        raise FormatError(
            path, ":root has no 'order' line; expected e.g. 'order TX TY TZ RX RY RZ'"
        )
    root_order = tuple(t.lower() for t in root["order"][1])
    if sorted(root_order) != ["rx", "ry", "rz", "tx", "ty", "tz"]:
        raise FormatError(
            path,
            f"root order {root_order} must name TX TY TZ RX RY RZ once each",
            line=root["order"][0],
        )
    if "orientation" in root and any(_float(path, *root["orientation"], k) for k in range(3)):
        raise FormatError(
            path,
            "non-zero :root orientation is not supported (CMU files use 0 0 0)",
            line=root["orientation"][0],
        )
    bones = _parse_bonedata(path, sections["bonedata"], deg)
    _parse_hierarchy(path, sections["hierarchy"], bones)
    order: list[str] = []
    frontier = ["root"]
    while frontier:
        p = frontier.pop(0)
        kids = [b.name for b in bones.values() if b.parent == p]
        order += kids
        frontier += kids
    orphans = [n for n in bones if n not in order]
    if orphans:
        raise FormatError(path, f"bones {orphans} are not reachable from root in :hierarchy")
    return Skeleton(path, INCH / unit_len, deg, root_order, bones, tuple(order))


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FormatError(path, f"cannot read the file ({exc})") from exc
    out = []
    for no, line in enumerate(text.split("\n"), start=1):
        tok = line.split()
        if tok and not tok[0].startswith("#"):
            out.append((no, tok))
    return out


def _float(path: Path, line: int, tok: list[str], k: int) -> float:
    try:
        v = float(tok[k])
    except (IndexError, ValueError):
        raise FormatError(
            path, f"expected a number at position {k + 1} of {' '.join(tok)!r}", line=line
        ) from None
    if not np.isfinite(v):
        raise FormatError(path, f"non-finite value {tok[k]!r}", line=line)
    return v


def _parse_bonedata(path: Path, body: list[tuple[int, list[str]]], deg: bool) -> dict[str, Bone]:
    bones: dict[str, Bone] = {}
    block: dict[str, tuple[int, list[str]]] | None = None
    start = 0
    for no, tok in body:
        key = tok[0].lower()
        if key == "begin":
            block, start = {}, no
        elif key == "end":
            if block is None:
                raise FormatError(path, "'end' without 'begin' in :bonedata", line=no)
            bone = _bone(path, block, start, deg)
            if bone.name in bones:
                raise FormatError(path, f"bone {bone.name!r} defined twice", line=start)
            bones[bone.name] = bone
            block = None
        elif block is not None and key != "limits" and not key.startswith("("):
            block[key] = (no, tok[1:])
    if block is not None:
        raise FormatError(path, "last :bonedata block has no 'end' (truncated file)", line=start)
    if not bones:
        raise FormatError(path, "no bones in :bonedata")
    return bones


def _bone(path: Path, block: dict[str, tuple[int, list[str]]], start: int, deg: bool) -> Bone:
    for key in ("name", "direction", "length", "axis"):
        if key not in block:
            raise FormatError(path, f"bone block has no '{key}' line", line=start)
    if len(block["name"][1]) != 1:
        raise FormatError(path, "bone 'name' must be one word", line=block["name"][0])
    no, tok = block["direction"]
    direction = np.array([_float(path, no, tok, k) for k in range(3)])
    norm = np.linalg.norm(direction)
    length = _float(path, *block["length"], 0)
    if norm == 0 and length != 0:
        raise FormatError(path, "bone direction is the zero vector", line=no)
    no, tok = block["axis"]
    ang = np.array([_float(path, no, tok, k) for k in range(3)])
    axis_order = tok[3].lower() if len(tok) > 3 else "xyz"
    if sorted(axis_order) != ["x", "y", "z"]:
        raise FormatError(path, f"axis order {tok[3]!r} must be a permutation of XYZ", line=no)
    dof = tuple(d.lower() for d in block["dof"][1]) if "dof" in block else ()
    bad = [d for d in dof if d not in ("rx", "ry", "rz")]
    if bad:
        raise FormatError(
            path, f"dof {bad} not supported; expected rotations rx ry rz", line=block["dof"][0]
        )
    return Bone(
        name=block["name"][1][0],
        direction=direction / norm if norm else direction,
        length=length,
        axis=rotation(np.deg2rad(ang) if deg else ang, axis_order),
        dof=dof,
    )


def _parse_hierarchy(path: Path, body: list[tuple[int, list[str]]], bones: dict[str, Bone]) -> None:
    for no, tok in body:
        if tok[0].lower() in ("begin", "end"):
            continue
        parent = tok[0]
        if parent != "root" and parent not in bones:
            raise FormatError(path, f"hierarchy names unknown bone {parent!r}", line=no)
        for child in tok[1:]:
            if child not in bones:
                raise FormatError(path, f"hierarchy names unknown bone {child!r}", line=no)
            bones[child].parent = parent


def parse_amc(path: Path, skel: Skeleton) -> dict[str, np.ndarray]:
    """Parse an AMC motion file against its skeleton.

    Returns:
        Per channel owner ("root" and every bone with dofs): (T, n_dof) float64, angles in
        radians, root translation in ASF units (root columns in the ASF root `order`).

    Raises:
        FormatError: a frame with a missing, repeated or unknown bone, a wrong value count, a
            non-numeric or non-finite value, non-consecutive frame numbers, or no frames.
    """
    dofs = {"root": len(skel.root_order)} | {
        b.name: len(b.dof) for b in skel.bones.values() if b.dof
    }
    # the values of each bone are gathered as text and converted in one numpy call per bone
    texts: dict[str, list[str]] = {k: [] for k in dofs}
    line_nos: dict[str, list[int]] = {k: [] for k in dofs}
    deg = skel.angle_in_degrees
    frame_no, frame_line = None, 0
    seen: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FormatError(path, f"cannot read the file ({exc})") from exc
    for no, line in enumerate(text.split("\n"), start=1):
        s = line.strip()
        if not s or s[0] == "#":
            continue
        if s[0] == ":":
            kw = s.split()[0].upper()
            if kw in (":DEGREES", ":RADIANS"):
                deg = kw == ":DEGREES"
            continue
        if s.isascii() and s.isdigit():
            if frame_no is not None:
                _check_frame(path, dofs, seen, frame_no, frame_line)
                if int(s) != frame_no + 1:
                    raise FormatError(
                        path,
                        f"frame number {s} follows {frame_no}; expected {frame_no + 1}",
                        line=no,
                    )
            frame_no, frame_line = int(s), no
            seen = set()
            continue
        parts = s.split(None, 1)
        name = parts[0]
        if frame_no is None:
            raise FormatError(path, f"bone line {name!r} before the first frame number", line=no)
        if name not in dofs:
            raise FormatError(
                path, f"unknown bone {name!r} (not a bone with dofs in {skel.path.name})", line=no
            )
        if name in seen:
            raise FormatError(path, f"bone {name!r} twice in frame {frame_no}", line=no)
        seen.add(name)
        texts[name].append(parts[1] if len(parts) > 1 else "")
        line_nos[name].append(no)
    if frame_no is None:
        raise FormatError(path, "no frames; expected frame numbers followed by bone lines")
    _check_frame(path, dofs, seen, frame_no, frame_line)
    scale = np.pi / 180.0 if deg else 1.0
    out = {}
    for name, n in dofs.items():
        arr = _bone_values(path, name, n, texts[name], line_nos[name])
        if name == "root":
            arr[:, [i for i, c in enumerate(skel.root_order) if c.startswith("r")]] *= scale
        else:
            arr *= scale
        out[name] = arr
    return out


def _check_frame(
    path: Path, dofs: dict[str, int], seen: set[str], frame_no: int, line: int
) -> None:
    if len(seen) != len(dofs):
        missing = [k for k in dofs if k not in seen]
        raise FormatError(
            path, f"frame {frame_no} lacks bones {missing} (truncated or garbled)", line=line
        )


def _bone_values(
    path: Path, name: str, n: int, texts: list[str], line_nos: list[int]
) -> np.ndarray:
    """(T, n) float64 from the value text of one bone's lines, or a FormatError naming the line."""
    for text, no in zip(texts, line_nos, strict=True):
        if len(text.split()) != n:
            raise FormatError(
                path, f"bone {name!r} has {len(text.split())} values; expected {n}", line=no
            )
    tokens = " ".join(texts).split()
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError:
        i = next(i for i, t in enumerate(tokens) if not parses(float, t))
        raise FormatError(
            path, f"non-numeric value {tokens[i][:40]!r} for bone {name!r}", line=line_nos[i // n]
        ) from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise FormatError(
            path,
            f"non-finite value {tokens[bad[0]]!r} for bone {name!r}",
            line=line_nos[bad[0] // n],
        )
    return values.reshape(len(texts), n)


def forward_kinematics(
    skel: Skeleton, motion: dict[str, np.ndarray], joint_names: tuple[str, ...]
) -> np.ndarray:
    """Joint positions of every frame.

    Args:
        skel: the parsed ASF.
        motion: `parse_amc` output.
        joint_names: output order: "root" and bone names (each bone's joint is its END).

    Returns:
        (T, len(joint_names), 3) float64 metres.
    """
    root = motion["root"]
    t = root.shape[0]
    trans = [skel.root_order.index(c) for c in ("tx", "ty", "tz")]
    rot = [i for i, c in enumerate(skel.root_order) if c.startswith("r")]
    pos = {"root": root[:, trans]}
    glob = {"root": rotation(root[:, rot], "".join(skel.root_order[i][1] for i in rot))}
    for name in skel.order:
        bone = skel.bones[name]
        g = glob[bone.parent]  # (T, 3, 3); a bone without dofs keeps its parent's rotation
        if bone.dof:
            local = rotation(motion[name], "".join(d[1] for d in bone.dof))
            g = g @ bone.axis @ local @ bone.axis.T
        glob[name] = g
        pos[name] = pos[bone.parent] + bone.length * (g @ bone.direction)
    out = np.empty((t, len(joint_names), 3))
    for j, name in enumerate(joint_names):
        out[:, j] = pos[name]
    return out * skel.unit_to_m


def read(
    src: Path, *, asf: Path | None = None, fps: float = SOURCE_FPS, skip_bad: bool = False
) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Open a folder of AMC files (searched recursively) with their ASF skeletons.

    Args:
        src: e.g. the mocap6 release (`raw_amc/*.amc`, `truelabels/*.txt`), or one AMC file
            (its skeleton beside it or `asf`; labels from a `truelabels/` beside it).
        asf: force this skeleton for every AMC.
        fps: output frame rate; 120 / fps must be an integer.
        skip_bad: record a malformed AMC as `Skipped` instead of raising.

    Returns:
        The header and a generator of `Sequence` (T, 31, 3, 1) float32 (plus `Skipped` for
        label files without motion).

    Raises:
        ConfigError: an fps that does not divide 120.
        FormatError: no AMC files, an AMC without a matching ASF, an ASF that is not the
            31-joint CMU skeleton; malformed files while streaming (without `skip_bad`).
    """
    src = Path(src)
    step = SOURCE_FPS / fps if fps > 0 else 0.0
    if fps <= 0 or abs(step - round(step)) > 1e-9:
        raise ConfigError(
            f"cmu --fps {fps} must divide the source rate {SOURCE_FPS:g} (e.g. 120, 60, 30)"
        )
    one = single_file(src, (".amc",), "a CMU .amc motion file")
    root = src.parent if one is not None else src
    amcs = [one] if one is not None else sorted(src.rglob("*.amc"), key=lambda p: p.name)
    if not amcs:
        raise FormatError(
            src, "no .amc files; expected CMU AMC motion files with their ASF skeletons"
        )
    layout = get_layout("cmu31")
    skeletons: dict[Path, Skeleton] = {}
    pairs = []
    for amc in amcs:
        path = Path(asf) if asf is not None else _find_asf(amc)
        if path not in skeletons:
            skel = parse_asf(path)
            missing = [n for n in layout.joint_names[1:] if n not in skel.bones]
            if missing:
                raise FormatError(
                    path, f"skeleton lacks bones {missing}; expected the 31-joint CMU skeleton"
                )
            skeletons[path] = skel
        pairs.append((amc, skeletons[path]))
    label_dirs = [d for d in root.rglob("truelabels") if d.is_dir()]
    labels = {p.stem: p for d in label_dirs for p in sorted(d.glob("*.txt"))}
    if one is not None:  # its own labels only, not the others' as "labels without motion"
        labels = {k: p for k, p in labels.items() if k == one.stem}
    header = CorpusHeader(
        layout=layout,
        class_names=CLASS_NAMES,
        fps=float(fps),
        persons=1,
        source_frame=SOURCE_FRAME,
        label_rule=(
            f"mocap6 truelabels: one class (1..12) per {LABEL_BLOCK}-frame block at 120 fps; "
            f"frame f gets block f // {LABEL_BLOCK} (last partial block: last label), "
            "class c -> c-1; sequences without a label file are unlabelled (-1)"
        ),
    )
    return header, _items(root, pairs, labels, layout.joint_names, round(step), float(fps),
                          skip_bad)


def _find_asf(amc: Path) -> Path:
    m = _AMC_RE.fullmatch(amc.name)
    if m is None:
        raise FormatError(
            amc, "AMC name is not <subject>_<trial>.amc; pass --asf to name its skeleton"
        )
    subject = m.group(1)
    for folder in (amc.parent, amc.parent.parent):
        exact = folder / f"{subject}.asf"
        if exact.is_file():
            return exact
        found = sorted(folder.glob(f"{subject}_*.asf"))
        if found:
            return found[0]
    raise FormatError(
        amc, f"no skeleton {subject}.asf or {subject}_*.asf next to it; pass --asf FILE"
    )


def _items(
    src: Path,
    pairs: list[tuple[Path, Skeleton]],
    label_files: dict[str, Path],
    joint_names: tuple[str, ...],
    step: int,
    fps: float,
    skip_bad: bool,
) -> Iterator[Sequence | Skipped]:
    stems = set()
    for amc, skel in pairs:
        stems.add(amc.stem)
        yield or_skipped(str(amc.relative_to(src)),
                         partial(_sequence, src, amc, skel, label_files.get(amc.stem),
                                 joint_names, step, fps), skip_bad)
    for stem, path in label_files.items():
        if stem not in stems:
            yield Skipped(
                str(path.relative_to(src)), f"labels without motion: no {stem}.amc in the release"
            )


def _sequence(
    src: Path,
    amc: Path,
    skel: Skeleton,
    label_file: Path | None,
    joint_names: tuple[str, ...],
    step: int,
    fps: float,
) -> Sequence:
    joints_TV3 = forward_kinematics(skel, parse_amc(amc, skel), joint_names)
    t = joints_TV3.shape[0]
    labels = None
    if label_file is not None:
        labels = _frame_labels(label_file, t)[::step]
    m = _AMC_RE.fullmatch(amc.name)
    return Sequence(
        seq_id=amc.stem,
        joints=joints_TV3[::step, :, :, None].astype(np.float32),
        source_file=str(amc.relative_to(src)),
        labels=labels,
        subject=m.group(1) if m else "",
        setup=m.group(2) if m else "",
        extra={"asf": skel.path.name},
    )


def _frame_labels(path: Path, num_frames: int) -> np.ndarray:
    """Per-frame labels (0-based classes) from one 12-frame-block label file."""
    tok = path.read_text().split()
    try:
        blocks = np.array([int(v) for v in tok], dtype=np.int64)
    except ValueError:
        raise FormatError(path, "labels must be integers 1..12, one per 12-frame block") from None
    if blocks.size and (blocks.min() < 1 or blocks.max() > len(CLASS_NAMES)):
        raise FormatError(
            path, f"label values {blocks.min()}..{blocks.max()} outside 1..{len(CLASS_NAMES)}"
        )
    need = -(-num_frames // LABEL_BLOCK)
    if not need <= blocks.size <= num_frames // LABEL_BLOCK + 1:
        raise FormatError(
            path,
            f"{blocks.size} labels for {num_frames} frames; expected {need}"
            f"..{num_frames // LABEL_BLOCK + 1} (one per {LABEL_BLOCK}-frame block)",
        )
    return (blocks[np.minimum(np.arange(num_frames) // LABEL_BLOCK, blocks.size - 1)] - 1).astype(
        np.int16
    )
