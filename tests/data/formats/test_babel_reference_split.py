"""The BABEL converter's reference split tags (METHOD.md section 7): with --subset, sequences the
reference split script keeps (at most 1000 frames at 30 fps, at least one subset frame) carry
``babel_ref:<split>`` besides ``babel:<split>``; nothing is deleted."""

from __future__ import annotations

import numpy as np

from sscl.data.corpus import Sequence
from sscl.data.formats import babel
from tests.helpers import format_writers as W


def test_subset_tags_the_reference_split_and_keeps_every_sequence(tmp_path):
    rng = np.random.default_rng(7)
    joints, jsons = tmp_path / "joints", tmp_path / "babel"
    # 30 fps sources: frames = seconds * 30. 1000 frames is kept, 1001 is not (the script drops
    # sequences *longer* than 1000 frames).
    lengths = {"a": 1000, "b": 1001, "c": 60, "d": 90, "e": 45}
    for name, n in lengths.items():
        W.write_joint_npz(joints / f"A/A/1/{name}_poses.npz",
                          rng.standard_normal((n, 73, 3)).astype(np.float32), 30.0)
    train = [
        W.babel_entry(1, "A/A/1/a_poses.npz", 1000 / 30, [(0.0, 1.0, ["walk"])]),
        W.babel_entry(2, "A/A/1/b_poses.npz", 1001 / 30, [(0.0, 1.0, ["walk"])]),
        W.babel_entry(3, "A/A/1/c_poses.npz", 2.0, [(0.0, 2.0, ["sit"])]),  # no subset-1 class
    ]
    val = [
        W.babel_entry(4, "A/A/1/d_poses.npz", 3.0, [(1.0, 2.0, ["turn", "sit"])]),
        # a subset class only after the sequence's end: no frame of it
        W.babel_entry(5, "A/A/1/e_poses.npz", 1.5, [(1.5, 3.0, ["jump"])]),
    ]
    W.write_babel_json(jsons / "train.json", train)
    W.write_babel_json(jsons / "val.json", val)

    _, items = babel.read(joints, babel=str(jsons), subset=1)
    seqs = {s.seq_id: s for s in items if isinstance(s, Sequence)}
    assert {k: len(s.labels) for k, s in seqs.items()} == {
        "babel_1": 1000, "babel_2": 1001, "babel_3": 60, "babel_4": 90, "babel_5": 45}
    assert {k: s.split_tags for k, s in seqs.items()} == {
        "babel_1": ("babel:train", "babel_ref:train"),
        "babel_2": ("babel:train",),
        "babel_3": ("babel:train",),
        "babel_4": ("babel:val", "babel_ref:val"),
        "babel_5": ("babel:val",),
    }
    # without --subset there is no reference split (it is defined per subset)
    _, items = babel.read(joints, babel=str(jsons))
    assert all(s.split_tags == (f"babel:{'train' if int(s.seq_id[6:]) <= 3 else 'val'}",)
               for s in items if isinstance(s, Sequence))
