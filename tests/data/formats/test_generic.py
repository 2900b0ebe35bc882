"""The generic importer as a new user meets it (issue 12): -1 as background, label counts,
subjects and splits, JSON classes, layout names in --help, warnings for unused members, the
default fps and linked folders; sizes checked from npz headers before loading; paths that
lead outside their root refused; nothing unpickled."""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from sscl.cli import build_parser, main
from sscl.data.corpus import open_corpus
from sscl.data.formats import convert, generic
from sscl.data.formats._npz import inside, npz_header
from sscl.data.formats.generic.labels import read_classes
from sscl.data.layouts import layout_names
from sscl.errors import ConfigError, FormatError, SsclWarning


def _utk(root: Path, n: int = 4) -> Path:
    """UTKinect-like: per-sequence npz, Kinect-20 joints, per-frame labels with -1."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        labels = np.array([-1, -1, 0, 0, 1, 1, -1, 0], np.int64)
        np.savez(root / f"s{i}.npz", joints=rng.standard_normal((8, 20, 3)).astype(np.float32),
                 labels=labels, frame_ids=np.arange(8), subject=f"P{i % 2}")
    return root


def test_minus_one_background_and_label_counts(tmp_path, capsys):
    src = _utk(tmp_path / "utk")
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["walk", "wave"]}))
    base = ["data", "convert", "generic", str(src), "--layout", "kinect20", "--quiet",
            "--classes", str(tmp_path / "classes.json")]
    with pytest.warns(SsclWarning, match=r"frame_ids \(in 4 file\(s\)\).*default 30 fps"):
        assert main(base[:4] + [str(tmp_path / "u.zarr")] + base[4:]) == 0
    out = capsys.readouterr().out
    assert "label frames: unlabelled 12, walk 12, wave 8, background 0" in out
    with pytest.warns(SsclWarning):
        assert main(base[:4] + [str(tmp_path / "b.zarr")] + base[4:]
                    + ["--minus-one", "background"]) == 0
    assert "label frames: unlabelled 0, walk 12, wave 8, background 12" in capsys.readouterr().out
    c = open_corpus(tmp_path / "b.zarr")
    assert c.class_frame_counts() == {"unlabelled": 0, "walk": 12, "wave": 8, "background": 12}
    assert c.meta[1]["subject"] == "P1"


def test_subjects_and_splits_from_the_npz_and_a_side_file(tmp_path):
    src = _utk(tmp_path / "utk")
    np.savez(src / "s0.npz", joints=np.ones((5, 20, 3), np.float32), split="test", fps=15.0)
    meta = tmp_path / "meta.csv"
    meta.write_text("seq_id,subject,split\ns1,P7,xsub:test\ns2,P8,train\n")
    with pytest.warns(SsclWarning):
        convert("generic", src, tmp_path / "c.zarr", progress=False, layout="kinect20",
                classes=str(_classes(tmp_path)), meta=str(meta))
    c = open_corpus(tmp_path / "c.zarr")
    ids = [m["seq_id"] for m in c.meta]
    assert [ids[i] for i in c.split("split:test")] == ["s0"]  # a published split survives
    assert [ids[i] for i in c.split("xsub:test")] == ["s1"]
    assert [ids[i] for i in c.split("split:train")] == ["s2"]
    assert c.meta[ids.index("s1")]["subject"] == "P7"  # the side file wins over the npz
    assert c.meta[ids.index("s3")]["subject"] == "P1" and c.meta[0]["fps"] == 15.0


def _classes(tmp_path: Path) -> Path:
    p = tmp_path / "classes.txt"
    p.write_text("walk\nwave\n")
    return p


@pytest.mark.parametrize("bad", ["../outside", "/etc/passwd", "sub/../../x"])
def test_side_file_paths_outside_the_source_are_refused(tmp_path, bad):
    src = _utk(tmp_path / "utk", n=1)
    meta = tmp_path / "meta.csv"
    meta.write_text(f"seq_id,split\n{bad},test\n")
    with pytest.raises(FormatError, match=r"meta.csv:2: seq_id .* leads outside"):
        generic.read(src, layout="kinect20", classes=str(_classes(tmp_path)), meta=str(meta))


def test_classes_text_or_json_and_layout_help_names_every_layout(tmp_path):
    for name, text in (("c.txt", "walk\nwave\n"), ("c.json", '["walk", "wave"]'),
                       ("d.json", '{"classes": ["walk", "wave"]}')):
        (tmp_path / name).write_text(text)
        assert read_classes(tmp_path / name) == ("walk", "wave")
    (tmp_path / "e.json").write_text('{"classes": [1, 2]}')
    with pytest.raises(FormatError, match="JSON list of class names"):
        read_classes(tmp_path / "e.json")
    p = build_parser()
    sub = p._subparsers._group_actions[0].choices["data"]._subparsers._group_actions[0]
    conv = sub.choices["convert"]._subparsers._group_actions[0].choices["generic"]
    text = conv.format_help()
    assert all(n in text.replace("\n", " ").replace("  ", " ") for n in layout_names())


def test_linked_folders_are_counted_in_a_warning(tmp_path):
    src = _utk(tmp_path / "utk", n=1)
    other = _utk(tmp_path / "other", n=2)
    os.symlink(other, src / "linked")
    with pytest.warns(SsclWarning, match=r"1 linked folder\(s\) not searched: linked"):
        header, items = generic.read(src, layout="kinect20", classes=str(_classes(tmp_path)))
    assert [s.seq_id for s in items] == ["s0"]


# ----------------------------------------------------------------------------- sizes


def _forged_npz(path: Path, shape: tuple, dtype: str = "<f4") -> None:
    """An npz whose joints header claims ``shape`` but holds 240 bytes of data."""
    head = {"descr": dtype, "fortran_order": False, "shape": shape}
    text = repr(head).encode()
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + bytes(240)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("joints.npy", npy)


@pytest.mark.parametrize("shape,match", [
    ((10**9, 20, 3), r"claims shape \(1000000000, 20, 3\).*holds 240"),
    ((2, 20, 3, 100_000), r"claims shape .* holds 240"),
])
def test_forged_headers_are_refused_before_allocating(tmp_path, shape, match):
    src = tmp_path / "src"
    src.mkdir()
    _forged_npz(src / "a.npz", shape)
    with pytest.raises(FormatError, match=match):
        generic.read(src, layout="kinect20")


def test_honest_but_huge_inputs_meet_stated_limits(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "a.npz", joints=np.zeros((50, 20, 3, 20), np.float32))
    with pytest.raises(FormatError, match=r"20 persons, over the limit of 16; pass --max-persons"):
        generic.read(src, layout="kinect20")
    with pytest.raises(FormatError, match=r"50 frames, over the limit of 40; pass --max-frames"):
        generic.read(src, layout="kinect20", max_frames=40, max_persons=32)
    with pytest.warns(SsclWarning):
        header, _ = generic.read(src, layout="kinect20", max_persons=32)
    assert header.persons == 20
    monkeypatch.setenv("SSCL_MAX_ARRAY_BYTES", "1000")
    with pytest.raises(FormatError, match=r"over the 1,000-byte limit per array.*"
                       r"SSCL_MAX_ARRAY_BYTES"):
        generic.read(src, layout="kinect20", max_persons=32)


def test_object_arrays_are_never_unpickled(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.savez(src / "a.npz", joints=np.zeros((4, 20, 3), np.float32),
             labels=np.array([object()] * 4))
    with pytest.raises(FormatError, match="dtype object.*never done"):
        npz_header(src / "a.npz", "labels")
    with pytest.raises(FormatError, match="dtype object"):
        generic.read(src, layout="kinect20")


def test_inside_refuses_paths_that_escape(tmp_path):
    (tmp_path / "root").mkdir()
    assert inside(tmp_path / "root", "a/b.npz", "x", tmp_path) == tmp_path / "root" / "a/b.npz"
    for bad in ("../x.npz", "/etc/passwd", "a/../../x"):
        with pytest.raises(FormatError, match="leads outside"):
            inside(tmp_path / "root", bad, "feat_p", tmp_path / "train.json")
    os.symlink(tmp_path, tmp_path / "root" / "up")
    with pytest.raises(FormatError, match="leads outside"):
        inside(tmp_path / "root", "up/x.npz", "feat_p", tmp_path / "train.json")


def test_all_skipped_conversion_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b"):
        np.savez(src / f"{name}.npz", joints=np.zeros((0, 20, 3), np.float32), fps=30.0)
    dest = tmp_path / "c.zarr"
    assert main(["data", "convert", "generic", str(src), str(dest), "--layout", "kinect20",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no sequence to write (2 source item(s) skipped: 2 x empty sequence" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_nothing_in_the_data_stack_unpickles_a_file():
    # np.load only with allow_pickle=False, no pickle.load / torch.load of inputs in data/
    root = Path(__file__).resolve().parents[3] / "data"
    for f in sorted(root.rglob("*.py")):
        text = f.read_text()
        assert "allow_pickle=True" not in text and "pickle.load" not in text, f
        assert "torch.load" not in text, f
        for m in re.finditer(r"np\.load\(([^)]*)\)", text):
            assert "allow_pickle=False" in m.group(1), (f, m.group(0))


@pytest.mark.parametrize("options, message", [
    ({"layout": "kinect20", "lables": "x.csv"},
     r"unknown option\(s\) lables; expected any of layout, labels,"),
    ({"layout": "kinect20", "units": "km"}, r"--units 'km'; expected one of m, cm, mm"),
    ({"layout": "coco17", "up": "z"}, r"--up 'z'; expected y: layout coco17 has 2-D joints"),
    ({"layout": "kinect20", "fps": -1}, r"--fps -1.0; expected a positive number"),
    ({"layout": "kinect20", "fps": "fast"}, r"--fps 'fast'; expected a number"),
    ({"layout": "kinect20", "minus_one": "ignore"}, r"--minus-one 'ignore'"),
    ({"layout": "kinect20", "persons": 20}, r"--persons 20; expected 1..16 \(--max-persons\)"),
])
def test_options_are_checked_once_and_named(tmp_path, options, message):
    src = _utk(tmp_path / "utk", n=1)
    with pytest.raises(ConfigError, match=message):
        generic.read(src, **options)
