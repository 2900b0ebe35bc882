"""BABEL frame labels + user-computed AMASS joint positions -> corpus sequences (30 fps, M=1).

Inputs (the layout of BABEL's public action-recognition code, github.com/abhinanda-punnakkal/BABEL,
action_recognition/data_gen/{dutils,create_dataset}.py):
- `--babel DIR`: the babel_v1.0_release json files `train.json` and `val.json` (dicts keyed by
  babel_sid; each entry has `feat_p` (AMASS path, e.g. "CMU/CMU/86/86_05_poses.npz"), `dur`
  (seconds), `seq_ann`, and `frame_ann`, which is null for sequences annotated only at sequence
  level; `frame_ann.labels[*]` carry `start_t`, `end_t` (seconds) and `act_cat` (a list of action
  categories, or null)). `test.json` has no labels and the `extra_*.json` files hold further
  annotators' labels of the same sequences; neither is read.
- SRC: one npz per AMASS file with `joint_pos` (T, J*3) and the source frame rate under `fps`,
  `mocap_framerate` or `mocap_frame_rate` (or from BABEL's `featp_2_fps.json` via --fps-json).
  The file is found at SRC/feat_p, else at SRC/<dataset>/<subject>/<file> with BABEL's folder
  renames (BioMotionLab_NTroje -> BMLrub, DFaust_67 -> DFaust), the layout BABEL's
  `store_ntu_jpos` writes.

Joints -> layout:
- ntu25 (default): BABEL's fixed `smpl_to_nturgbd` map, one source joint per NTU joint, indexing
  the 73 joints that smplx's SMPL-H model outputs (52 skeleton joints, then 5 face, 6 feet and 10
  fingertip surface points; smplx's vertex_joint_selector orders the tips thumb, index, middle,
  ring, pinky per hand, so 63/64 are the left thumb/index tips and 68/69 the right ones). The map
  is kept exactly as published, which puts the thumb tip on NTU's "tip of the hand" and the index
  tip on NTU's "thumb". A 52-joint SMPL-H array has no surface points: there those four NTU
  joints come from the last phalanx joints with the same assignment (left thumb3 = 36, left
  index3 = 24, right thumb3 = 51, right index3 = 39), an approximation recorded in `extra`.
- smpl22: the first 22 joints (the SMPL body joints, shared by SMPL, SMPL-H and SMPL-X).
- smpl24: SMPL's 24 joints (J must be 24).

Frames: AMASS is z-up, so (x, y, z) -> (x, z, -y) (a rotation of -90 degrees about x) gives y-up,
right-handed, metres (`--up y` keeps arrays that are already y-up). Subsampling to 30 fps follows
BABEL's `_subsample_to_30fps`: if int(fps) is a multiple of 30, frame k is source frame
floor(k * fps / 30); otherwise each whole second of int(fps) source frames contributes frames
floor(fps / 30 * j), j = 0..29, and the trailing part second the ones that exist. Sources below
30 fps are skipped.

Labels (METHOD.md section 6): only `frame_ann` (entries without it are Skipped, "no frame_ann").
Output frame n covers time n / 30 s and gets every act_cat of the segments with
start_t <= n / 30 < end_t. With --subset 1/2/3 a frame takes the first of the subset's classes
present, in the subset's order, else background. Without --subset the classes are every act_cat
in the read json files, sorted alphabetically, and a frame takes the first act_cat of the first
segment (in json order) that covers it; uncovered frames are background.

Splits: every sequence carries `babel:<split>` (its json file). With --subset, a sequence that the
reference localization code's split script keeps (METHOD.md section 7: at most 1000 frames at
30 fps and at least one frame of a subset class) also carries `babel_ref:<split>`. Nothing is
dropped: `babel:val` is the whole validation split (this project never drops test sequences),
`babel_ref:val` the reference code's test set, for comparing with its published figures.
"""

from __future__ import annotations

import argparse
import json
import math
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np

from sscl.data.corpus import CorpusHeader, Sequence, Skipped
from sscl.data.formats._npz import inside, npz_header
from sscl.data.formats._skipping import add_skip_bad, or_skipped
from sscl.data.layouts import get_layout
from sscl.errors import FormatError

NAME = "babel"
FPS = 30.0

# BABEL's smpl_to_nturgbd (dutils.py): NTU-25 joint i <- SMPL-H (smplx output) joint MAP[i].
SMPL_TO_NTURGBD: tuple[int, ...] = (
    0, 3, 12, 15,  # spine base, spine mid, neck, head
    16, 18, 20, 22,  # left shoulder, elbow, wrist, hand (left index1)
    17, 19, 21, 37,  # right shoulder, elbow, wrist, hand (right index1)
    1, 4, 7, 10,  # left hip, knee, ankle, foot
    2, 5, 8, 11,  # right hip, knee, ankle, foot
    9,  # spine shoulder (spine3)
    63, 64, 68, 69,  # NTU hand tips/thumbs <- smplx points l-thumb, l-index, r-thumb, r-index tips
)  # fmt: skip
# For 52-joint SMPL-H arrays: NTU joints 21..24 from the last phalanx joints, assigned as the
# published map assigns the tip points (thumb -> NTU hand tip, index -> NTU thumb).
_SMPLH52_TIPS = {21: 36, 22: 24, 23: 51, 24: 39}
SMPLH52_TO_NTURGBD: tuple[int, ...] = tuple(
    _SMPLH52_TIPS.get(i, j) for i, j in enumerate(SMPL_TO_NTURGBD)
)

SUBSETS: dict[int, tuple[str, ...]] = {
    1: ("walk", "stand", "turn", "jump"),
    2: ("sit", "run", "stand up", "kick"),
    3: ("jog", "wave", "dance", "gesture"),
}
# The reference split script drops sequences longer than this (frames at 30 fps).
REF_MAX_FRAMES = 1000
_FPS_KEYS = ("fps", "mocap_framerate", "mocap_frame_rate")
_DIR_RENAMES = {"BioMotionLab_NTroje": "BMLrub", "DFaust_67": "DFaust"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the BABEL converter's options."""
    parser.add_argument(
        "--babel", required=True, help="folder with BABEL's train.json and val.json"
    )
    parser.add_argument(
        "--layout",
        choices=("ntu25", "smpl22", "smpl24"),
        default="ntu25",
        help="output joints (default ntu25 via BABEL's smpl_to_nturgbd map)",
    )
    parser.add_argument(
        "--subset",
        type=int,
        choices=(1, 2, 3),
        default=None,
        help="METHOD.md subset: 1 walk/stand/turn/jump, 2 sit/run/stand up/kick, "
        "3 jog/wave/dance/gesture (+ background); default: all act_cat classes",
    )
    parser.add_argument(
        "--up",
        choices=("z", "y"),
        default="z",
        help="up axis of the joint arrays (AMASS: z, rotated into y-up)",
    )
    parser.add_argument(
        "--fps-json",
        default=None,
        help="BABEL's featp_2_fps.json, for npz files without an fps entry",
    )
    parser.add_argument(
        "--splits", default="train,val", help="json files to read (default train,val)"
    )
    add_skip_bad(parser, "an unreadable or malformed joint file")


def subsample_indices(num_frames: int, fps: float) -> np.ndarray:
    """Source frame indices of the 30 fps sequence (BABEL's rule, see the module docstring).

    Args:
        num_frames: source length T.
        fps: source frame rate, >= 30.

    Returns:
        (T30,) int64 increasing indices < num_frames.
    """
    whole = int(fps)
    if whole % 30 == 0:
        n_out = math.ceil(num_frames * 30.0 / fps)
        idx = np.floor(np.arange(n_out) * (fps / 30.0)).astype(np.int64)
    else:
        sel = np.floor(fps / 30.0 * np.arange(30)).astype(np.int64)
        seconds = num_frames // whole
        idx = (np.arange(seconds, dtype=np.int64)[:, None] * whole + sel[None, :]).ravel()
        idx = np.concatenate([idx, seconds * whole + sel])
    return idx[idx < num_frames]


def frame_labels(
    segments: list[dict], num_frames: int, class_names: tuple[str, ...], subset: bool
) -> np.ndarray:
    """Per-frame labels at 30 fps from frame_ann segments (rules in the module docstring).

    Args:
        segments: frame_ann["labels"] entries (start_t, end_t, act_cat).
        num_frames: frames of the 30 fps sequence.
        class_names: the K classes; index K is background.
        subset: True: first subset class present (class order); False: first-listed act_cat.

    Returns:
        (T,) int16 labels in 0..K.
    """
    K = len(class_names)
    index = {c: i for i, c in enumerate(class_names)}
    t = np.arange(num_frames) / 30.0
    if subset:
        present = np.zeros((num_frames, K), dtype=bool)
        for seg in segments:
            cover = (t >= float(seg["start_t"])) & (t < float(seg["end_t"]))
            for cat in seg.get("act_cat") or ():
                if cat in index:
                    present[cover, index[cat]] = True
        return np.where(present.any(axis=1), present.argmax(axis=1), K).astype(np.int16)
    labels = np.full(num_frames, -1, dtype=np.int16)
    for seg in segments:
        cats = [c for c in (seg.get("act_cat") or ()) if c in index]
        if not cats:
            continue
        cover = (t >= float(seg["start_t"])) & (t < float(seg["end_t"])) & (labels < 0)
        labels[cover] = index[cats[0]]
    labels[labels < 0] = K
    return labels


def _load_entries(
    babel_dir: Path, splits: list[str], skip_bad: bool = False
) -> tuple[list[tuple[str, str, dict, Path]], list[Skipped]]:
    """(split, sid, entry, json path) for every entry, validated, ordered by split then sid;
    with ``skip_bad`` a malformed entry is returned as a :class:`Skipped` record instead of
    raising (an unreadable split file or a duplicated sid still raises: nothing sensible to
    convert around)."""
    out: list[tuple[str, str, dict, Path]] = []
    bad: list[Skipped] = []
    seen: dict[str, Path] = {}
    for split in splits:
        path = babel_dir / f"{split}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise FormatError(
                path, f"cannot read the BABEL split file ({exc}); expected {split}.json in --babel"
            ) from exc
        except json.JSONDecodeError as exc:
            raise FormatError(path, f"not valid JSON ({exc.msg})", line=exc.lineno) from exc
        if not isinstance(data, dict):
            raise FormatError(path, "expected a JSON object keyed by babel_sid")
        for sid in sorted(data, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s)):
            entry = data[sid]
            if sid in seen:
                raise FormatError(
                    path, f"babel_sid {sid} is also in {seen[sid]}; expected each sequence once"
                )
            seen[sid] = path
            feat_p = entry.get("feat_p") if isinstance(entry, dict) else None
            name = feat_p if isinstance(feat_p, str) else f"{path.name}:{sid}"
            checked = or_skipped(name, partial(_check_entry, entry, sid, path), skip_bad,
                                 "malformed entry: ")
            if isinstance(checked, Skipped):
                bad.append(checked)
                continue
            out.append((split, sid, entry, path))
    return out, bad


def _check_entry(entry: object, sid: str, path: Path) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("feat_p"), str):
        raise FormatError(path, f"entry {sid}: expected an object with a string 'feat_p'")
    frame_ann = entry.get("frame_ann")
    if frame_ann is None:
        return
    labels = frame_ann.get("labels") if isinstance(frame_ann, dict) else None
    if not isinstance(labels, list):
        raise FormatError(
            path, f"entry {sid}: frame_ann must be null or an object with a 'labels' list"
        )
    for k, seg in enumerate(labels):
        ok = isinstance(seg, dict) and all(
            isinstance(seg.get(key), (int, float))
            and not isinstance(seg.get(key), bool)
            and math.isfinite(seg[key])
            for key in ("start_t", "end_t")
        )
        cats = seg.get("act_cat") if isinstance(seg, dict) else None
        ok = ok and (
            cats is None or (isinstance(cats, list) and all(isinstance(c, str) for c in cats))
        )
        if not ok:
            raise FormatError(
                path,
                f"entry {sid}: frame_ann label {k} needs numeric start_t/end_t and an act_cat "
                "list of strings (or null)",
            )
        if seg["end_t"] < seg["start_t"]:
            raise FormatError(
                path,
                f"entry {sid}: frame_ann label {k} ends ({seg['end_t']}) before it starts "
                f"({seg['start_t']})",
            )


def _joint_file(root: Path, feat_p: str) -> Path | None:
    direct = inside(root, feat_p, "feat_p", root)  # a feat_p of ../ or / is refused
    if direct.is_file():
        return direct
    parts = PurePosixPath(feat_p).parts
    if len(parts) >= 3:
        dataset = _DIR_RENAMES.get(parts[-3], parts[-3])
        renamed = root / dataset / parts[-2] / parts[-1]
        if renamed.is_file():
            return renamed
    return None


def _load_joints(
    path: Path, feat_p: str, fps_map: dict[str, float]
) -> tuple[np.ndarray, float | None]:
    """(T, J, 3) float64 joint positions and the source fps (None when unknown)."""
    if npz_header(path, "joint_pos") is None:  # also checks the claimed size before loading
        raise FormatError(path, "no 'joint_pos' array; expected joint_pos (T, J*3)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "joint_pos" not in npz.files:
                raise FormatError(
                    path,
                    f"no 'joint_pos' array (found {sorted(npz.files)}); "
                    "expected joint_pos (T, J*3)",
                )
            joint_pos = np.asarray(npz["joint_pos"], dtype=np.float64)
            fps = next(
                (float(npz[k]) for k in _FPS_KEYS if k in npz.files and np.size(npz[k]) == 1), None
            )
    except FormatError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise FormatError(path, f"cannot read the npz ({exc})") from exc
    if fps is None:
        fps = fps_map.get(feat_p)
    if joint_pos.ndim == 3 and joint_pos.shape[2] == 3:
        joints = joint_pos
    elif joint_pos.ndim == 2 and joint_pos.shape[1] % 3 == 0:
        joints = joint_pos.reshape(len(joint_pos), -1, 3)
    else:
        raise FormatError(
            path, f"joint_pos has shape {joint_pos.shape}; expected (T, J*3) or (T, J, 3)"
        )
    if not np.isfinite(joints).all():
        t = int(np.flatnonzero(~np.isfinite(joints).reshape(len(joints), -1).all(axis=1))[0])
        raise FormatError(
            path, f"joint_pos frame {t} holds NaN or infinity; expected finite metres"
        )
    return joints, fps


def _load_mapped(path: Path, feat_p: str, fps_map: dict[str, float], layout: str
                 ) -> tuple[np.ndarray, str, float | None]:
    """(joints mapped to ``layout``, the map's name, the source fps or None) of one file."""
    joints, fps = _load_joints(path, feat_p, fps_map)
    mapped, map_name = map_joints(joints, layout, path)
    return mapped, map_name, fps


def map_joints(joints: np.ndarray, layout: str, path: Path) -> tuple[np.ndarray, str]:
    """Select/reorder source joints into `layout`; returns (T, V, 3) and the map's name."""
    J = joints.shape[1]
    if layout == "ntu25":
        if J >= 70:
            return joints[:, SMPL_TO_NTURGBD], "babel smpl_to_nturgbd"
        if J == 52:
            return joints[
                :, SMPLH52_TO_NTURGBD
            ], "babel smpl_to_nturgbd, hand tips/thumbs from phalanx joints (52)"
        raise FormatError(
            path,
            f"{J} joints; ntu25 needs SMPL-H joints (73 from smplx as BABEL computes them, or 52)"
            " (use --layout smpl22 for SMPL/SMPL-X bodies)",
        )
    if layout == "smpl22":
        if J >= 22:
            return joints[:, :22], "first 22 SMPL body joints"
        raise FormatError(path, f"{J} joints; smpl22 needs at least 22")
    if layout == "smpl24":
        if J == 24:
            return joints, "SMPL 24 joints"
        raise FormatError(
            path,
            f"{J} joints; smpl24 needs SMPL's 24 "
            "(SMPL-H/SMPL-X replace the hand joints: use smpl22)",
        )
    raise FormatError(path, f"unknown layout {layout!r}; expected ntu25, smpl22 or smpl24")


def read(src: Path, **options) -> tuple[CorpusHeader, Iterator[Sequence | Skipped]]:
    """Convert BABEL-labelled AMASS joint arrays.

    Args:
        src: folder of per-AMASS-file joint npz files.
        **options: babel (folder of the json files, required), layout, subset (1..3 or None),
            up ('z' | 'y'), fps_json (path or None), splits ("train,val"), skip_bad (bool).

    Returns:
        The header and a generator with one Sequence or Skipped per json entry.

    Raises:
        FormatError: missing/unreadable json files, a duplicated babel_sid or bad options;
            without skip_bad also a malformed entry (up front) and, lazily, an unreadable npz,
            a wrong joint count or non-finite values. With skip_bad those become Skipped
            records (malformed entries first), counted in the conversion report.
    """
    src = Path(src)
    if not src.is_dir():
        raise FormatError(src, "not a folder; expected the folder of joint npz files")
    if not options.get("babel"):
        raise FormatError(src, "--babel DIR (the folder with train.json and val.json) is required")
    babel_dir = Path(options["babel"])
    layout = options.get("layout") or "ntu25"
    subset = options.get("subset")
    up = options.get("up") or "z"
    skip_bad = bool(options.get("skip_bad", False))
    if up not in ("z", "y"):
        raise FormatError(src, f"--up must be z or y, got {up!r}")
    if subset is not None and int(subset) not in SUBSETS:
        raise FormatError(babel_dir, f"--subset must be 1, 2 or 3, got {subset!r}")
    splits = [s.strip() for s in str(options.get("splits") or "train,val").split(",") if s.strip()]
    entries, bad_entries = _load_entries(babel_dir, splits, skip_bad)
    fps_map: dict[str, float] = {}
    if options.get("fps_json"):
        fps_path = Path(options["fps_json"])
        try:
            fps_map = {
                str(k): float(v)
                for k, v in json.loads(fps_path.read_text(encoding="utf-8")).items()
            }
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise FormatError(
                fps_path, f"expected BABEL's featp_2_fps.json ({{feat_p: fps}}): {exc}"
            ) from exc

    if subset is not None:
        class_names = SUBSETS[int(subset)]
    else:
        cats = {
            c
            for _, _, e, _ in entries
            if e.get("frame_ann")
            for seg in e["frame_ann"]["labels"]
            for c in (seg.get("act_cat") or ())
        }
        class_names = tuple(sorted(cats))
    header = CorpusHeader(
        layout=get_layout(layout),
        class_names=class_names,
        fps=FPS,
        persons=1,
        source_frame=(
            "AMASS/SMPL-H joint positions in metres; "
            + (
                "z-up, rotated (x, y, z) -> (x, z, -y) into y-up"
                if up == "z"
                else "already y-up, unchanged"
            )
            + f"; subsampled to 30 fps by BABEL's rule; joints -> {layout}"
        ),
        label_rule=(
            "BABEL frame_ann: frame n gets the act_cat of segments with start_t <= n/30 < end_t; "
            + (
                f"subset {subset}: first subset class present, else background"
                if subset is not None
                else "all act_cat classes (sorted); first-listed label per frame, else background"
            )
        ),
    )

    def generate() -> Iterator[Sequence | Skipped]:
        yield from bad_entries
        for split, sid, entry, _ in entries:
            feat_p = entry["feat_p"]
            if entry.get("frame_ann") is None:
                yield Skipped(feat_p, "no frame_ann")
                continue
            path = _joint_file(src, feat_p)
            if path is None:
                yield Skipped(
                    feat_p, f"joint file not found under {src} (as feat_p or BABEL's renamed path)"
                )
                continue
            loaded = or_skipped(feat_p, partial(_load_mapped, path, feat_p, fps_map, layout),
                                skip_bad, "malformed: ")
            if isinstance(loaded, Skipped):
                yield loaded
                continue
            mapped, map_name, fps = loaded
            if fps is None:
                yield Skipped(
                    feat_p, f"no source fps (keys {', '.join(_FPS_KEYS)} absent, not in --fps-json)"
                )
                continue
            if not fps >= 30.0:
                yield Skipped(feat_p, f"source fps {fps} is below 30")
                continue
            idx = subsample_indices(len(mapped), fps)
            if idx.size == 0:
                yield Skipped(feat_p, "no frames")
                continue
            xyz = mapped[idx]
            if up == "z":
                xyz = np.stack([xyz[..., 0], xyz[..., 2], -xyz[..., 1]], axis=-1)
            segments = entry["frame_ann"]["labels"]
            labels = frame_labels(segments, len(idx), class_names, subset is not None)
            parts = PurePosixPath(feat_p).parts
            tags = (f"babel:{split}",)
            if subset is not None and len(idx) <= REF_MAX_FRAMES and (
                labels < len(class_names)
            ).any():
                tags += (f"babel_ref:{split}",)
            yield Sequence(
                seq_id=f"babel_{sid}",
                joints=np.ascontiguousarray(xyz[..., None]).astype(np.float32),
                source_file=feat_p,
                labels=labels,
                # every mapped joint exists (a pelvis-centred root may be exactly 0)
                valid=np.ones((len(idx), xyz.shape[1], 1), dtype=bool),
                subject="/".join(parts[-3:-1]) if len(parts) >= 3 else "",
                setup=parts[0] if parts else "",
                fps=FPS,
                split_tags=tags,
                extra={
                    "babel_sid": sid,
                    "dur": entry.get("dur"),
                    "source_fps": fps,
                    "source_frames": len(mapped),
                    "joint_map": map_name,
                    "frame_ann": [[s["start_t"], s["end_t"], s.get("act_cat")] for s in segments],
                },
            )

    return header, generate()
