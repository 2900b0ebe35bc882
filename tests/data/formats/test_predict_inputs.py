"""What ``sscl predict`` accepts as a new recording: a single sequence file wherever a converter
takes a folder of them (every format with one file per sequence), and a generic ``.npz`` that
carries labels without ``--classes`` (prediction needs no labels: they are ignored, and the
output says so in one note line).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sscl.cli import main
from sscl.data.corpus import Sequence, open_corpus
from sscl.data.formats import cmu, florence3d, generic, kard, msr3d, ntu, pkummd
from sscl.data.synthetic import SynthConfig, synthesize
from sscl.errors import ConfigError, FormatError
from tests.helpers import format_writers as W
from tests.helpers.localizers import make_localizer

FPS = 10.0  # the synthetic corpus and its localizer
NOTE = "note: the labels of 1 input sequence(s) were ignored (prediction needs none"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory of a seeded untrained localizer, the synthetic corpus it was made for);
    predict only reads the run, so one serves the module."""
    root = tmp_path_factory.mktemp("predict")
    synthesize(root / "syn.zarr", SynthConfig(num_sequences=6, min_frames=120, max_frames=200,
                                              subjects=3, fps=FPS), seed=1)
    make_localizer(root / "run" / "finetune", root / "syn.zarr")
    return root / "run", root / "syn.zarr"


def _predict(run: Path, src: Path, capsys, *extra: str) -> tuple[dict, str]:
    assert main(["predict", str(run), str(src), "--format", "generic", "--layout", "ntu25",
                 "--fps", str(FPS), "--decoder", "argmax", "--out", "-", "--device", "cpu",
                 *extra]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def _segments(doc: dict) -> list[tuple]:
    return [(g["class"], g["start_frame"], g["end_frame"]) for g in doc["sequences"][0]["segments"]]


def test_a_single_npz_file_is_scored_like_its_folder(trained, capsys, tmp_path):
    run, corpus = trained
    raw = tmp_path / "raw"
    raw.mkdir()
    joints, valid, _ = open_corpus(corpus).read_sequence(1)
    np.savez(raw / "take1.npz", joints=joints, valid=valid)
    from_folder, _ = _predict(run, raw, capsys)
    from_file, err = _predict(run, raw / "take1.npz", capsys)
    assert from_file["sequences"][0]["sequence"] == "take1" and from_file["notes"] == []
    assert _segments(from_file) == _segments(from_folder) and "note:" not in err


def test_npz_labels_are_ignored_without_classes_and_the_output_says_so(trained, capsys,
                                                                      tmp_path):
    run, corpus = trained
    c = open_corpus(corpus)
    joints, valid, labels = c.read_sequence(1)
    np.savez(tmp_path / "take1.npz", joints=joints, valid=valid, labels=labels)
    doc, err = _predict(run, tmp_path / "take1.npz", capsys)
    assert [line for line in err.splitlines() if line.startswith("note:")] == [
        NOTE + "; pass --classes to read them as ground truth)"]
    assert doc["notes"] == [NOTE.removeprefix("note: ")
                            + "; pass --classes to read them as ground truth)"]
    # with the class list the labels are read (ground truth for the timeline), no note
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(c.class_names) + "\n")
    doc, err = _predict(run, tmp_path / "take1.npz", capsys, "--classes", str(classes))
    assert doc["notes"] == [] and "note:" not in err


def test_ignore_labels_reads_neither_labels_nor_their_shape(tmp_path):
    np.savez(tmp_path / "a.npz", joints=np.ones((4, 20, 3)), labels=np.zeros((3, 2), np.int64))
    header, items = generic.read(tmp_path / "a.npz", layout="kinect20", fps=30.0,
                                 ignore_labels=True)
    (seq,) = items
    assert header.class_names == () and seq.labels is None
    assert seq.extra == {"labels_ignored": True} and "ignored" in header.label_rule
    with pytest.raises(FormatError, match="labels has shape"):
        generic.read(tmp_path, layout="kinect20", fps=30.0)
    (tmp_path / "l.csv").write_text("a,0,2,0\n")
    with pytest.raises(ConfigError, match="--ignore-labels with --labels"):
        generic.read(tmp_path, layout="kinect20", ignore_labels=True,
                     labels=str(tmp_path / "l.csv"))


# ----------------------------------------------------------------------------- one file


def _clip_text(ncols: int, rows: int, frames: int, seed: int) -> str:
    values = np.random.default_rng(seed).uniform(0.1, 2.0, size=(frames * rows, ncols))
    return "".join(" ".join(f"{v:.6f}" for v in row) + "\n" for row in values)


def _generic_npz(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        np.savez(root / f"{name}.npz", joints=rng.normal(size=(6, 20, 3)), fps=30.0)
    return root / "b.npz"


def _generic_csv(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        rows = rng.normal(size=(5, 60))
        (root / f"{name}.csv").write_text("".join(",".join(f"{v!r}" for v in r.tolist()) + "\n"
                                                  for r in rows))
    return root / "b.csv"


def _ntu(root: Path) -> Path:
    rng = np.random.default_rng(2)
    for name in ("S001C001P001R001A001", "S001C001P002R001A002"):
        body = W.NtuBody(7, rng.normal(size=(25, 3)).astype(np.float32) + 2)
        W.write_ntu_skeleton(root / f"{name}.skeleton", [[body], [body]])
    return root / "S001C001P002R001A002.skeleton"


def _pkummd(root: Path) -> Path:
    rng = np.random.default_rng(3)
    for name in ("0002-L", "0002-M"):
        W.write_pkummd(root, name, rng.normal(size=(4, 2, 25, 3)), [(1, 0, 2, 1)])
    return root / "skeleton" / "0002-M.txt"


def _clips(name_a: str, name_b: str, ncols: int, rows: int) -> Callable[[Path], Path]:
    def write(root: Path) -> Path:
        for seed, name in enumerate((name_a, name_b)):
            (root / name).write_text(_clip_text(ncols, rows, 3, seed))
        return root / name_b
    return write


SINGLE = {
    "generic npz": (generic, _generic_npz, {"layout": "kinect20"}),
    "generic csv": (generic, _generic_csv, {"layout": "kinect20"}),
    "ntu": (ntu, _ntu, {}),
    "pkummd": (pkummd, _pkummd, {}),
    "kard": (kard, _clips("a01_s01_e01_realworld.txt", "a02_s02_e01_realworld.txt", 3, 15), {}),
    "msr3d": (msr3d, _clips("a01_s01_e01_skeleton3D.txt", "a02_s02_e01_skeleton3D.txt", 4, 20),
              {}),
    "florence3d": (florence3d, _clips("a01_s1_id1.txt", "a02_s2_id2.txt", 3, 15), {}),
}


def _only_sequences(items) -> list[Sequence]:
    return [s for s in items if isinstance(s, Sequence)]


@pytest.mark.filterwarnings("ignore::sscl.errors.SsclWarning")
@pytest.mark.parametrize("case", sorted(SINGLE))
def test_a_single_sequence_file_converts_as_its_folder_does(tmp_path, case):
    mod, write, options = SINGLE[case]
    one = write(tmp_path)
    _, items = mod.read(one, **options)
    (seq,) = _only_sequences(items)
    _, all_items = mod.read(tmp_path, **options)
    same = next(s for s in _only_sequences(all_items) if s.seq_id == seq.seq_id)
    assert seq.source_file == one.name
    np.testing.assert_array_equal(seq.joints, same.joints)
    assert seq.split_tags == same.split_tags


@pytest.mark.parametrize("mod, name, options, what", [
    (generic, "a.txt", {"layout": "kinect20"}, "a .npz or .csv sequence file"),
    (ntu, "a.txt", {}, "an NTU .skeleton file"),
    (pkummd, "a.npz", {}, "a PKU-MMD skeleton file"),
    (cmu, "a.asf", {}, "a CMU .amc motion file"),
    (kard, "a.txt", {}, "file name is not aAA_sSS_eEE_realworld.txt"),
])
def test_a_single_file_of_another_kind_is_refused_by_name(tmp_path, mod, name, options, what):
    (tmp_path / name).write_text("1 2 3\n")
    with pytest.raises(FormatError, match=what):
        mod.read(tmp_path / name, **options)


def test_a_single_cmu_amc_file_converts_with_the_skeleton_beside_it(shared_dataset, tmp_path):
    raw = shared_dataset("cmu_mocap6") / "raw_amc"
    for name in ("13_29.amc", "13_reconstructed.asf"):
        shutil.copy(raw / name, tmp_path / name)
    _, items = cmu.read(tmp_path / "13_29.amc")
    (seq,) = items
    _, folder = cmu.read(raw.parent)
    same = next(s for s in folder if isinstance(s, Sequence) and s.seq_id == "13_29")
    assert seq.source_file == "13_29.amc" and seq.labels is None
    np.testing.assert_array_equal(seq.joints, same.joints)
