"""Hypothesis fuzzing of the text parsers of the NTU, PKU-MMD, BABEL and generic converters:
any input either parses or raises FormatError (never another exception), and well-formed
inputs written by tests/helpers/format_writers.py parse back to exactly the values written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sscl.data.formats import babel, ntu, pkummd
from sscl.data.formats.generic.csv_files import parse_csv_text
from sscl.data.formats.generic.labels import parse_label_rows
from sscl.errors import FormatError
from tests.helpers import format_writers as W

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# text made of the characters these formats use, plus some that they never do
_ALPHABET = st.sampled_from(
    list("0123456789 .-+eE,\n\r\tnaifxyzTVW:") + ["25", "\n1\n", "Training videos:"]
)
garbage = st.lists(_ALPHABET, max_size=300).map("".join) | st.text(max_size=200)


def _parses_or_format_error(fn, *args):
    try:
        return fn(*args)
    except FormatError:
        return None


@FUZZ
@given(garbage)
def test_ntu_parser_garbage(text):
    _parses_or_format_error(ntu.parse_skeleton_text, text, "x.skeleton")
    _parses_or_format_error(ntu.parse_missing_list, text, "missing.txt")


coords = st.floats(-10, 10, allow_nan=False, width=32)
_BODY_IDS = [1, 72057594037931101, 2**64 - 1]


@st.composite
def ntu_files(draw):
    n_frames = draw(st.integers(0, 4))
    frames = []
    for _ in range(n_frames):
        ids = draw(st.lists(st.sampled_from(_BODY_IDS), max_size=3, unique=True))
        bodies = [
            W.NtuBody(
                body_id,
                draw(hnp.arrays(np.float32, (25, 3), elements=coords)),
                draw(hnp.arrays(np.int64, 25, elements=st.integers(0, 2))),
            )
            for body_id in ids
        ]
        frames.append(bodies)
    return frames


@FUZZ
@given(ntu_files(), st.booleans())
def test_ntu_parser_round_trips_written_files(frames, crlf):
    parsed = ntu.parse_skeleton_text(W.ntu_skeleton_text(frames, crlf), "x.skeleton")
    assert parsed.num_frames == len(frames)
    written = {(t, b.body_id): b for t, bodies in enumerate(frames) for b in bodies}
    got = {
        (int(t), track.body_id): (xyz, state)
        for track in parsed.bodies
        for t, xyz, state in zip(track.frames, track.xyz, track.state, strict=True)
    }
    assert got.keys() == written.keys()
    for key, body in written.items():
        np.testing.assert_array_equal(got[key][0].astype(np.float32), body.xyz)
        np.testing.assert_array_equal(got[key][1], body.state)


@FUZZ
@given(ntu_files(), st.data())
def test_ntu_parser_mutated_files(frames, data):
    lines = W.ntu_skeleton_text(frames).split("\n")
    i = data.draw(st.integers(0, len(lines) - 1))
    mutation = data.draw(st.sampled_from(["truncate", "drop", "token", "dup"]))
    if mutation == "truncate":
        lines = lines[:i]
    elif mutation == "drop":
        lines = lines[:i] + lines[i + 1 :]
    elif mutation == "dup":
        lines = lines[: i + 1] + lines[i:]
    else:
        tokens = lines[i].split() or [""]
        k = data.draw(st.integers(0, len(tokens) - 1))
        tokens[k] = data.draw(
            st.sampled_from(["", "nan", "inf", "-1", "3", "1e400", "x", "1 2", "0.5"])
        )
        lines[i] = " ".join(tokens)
    _parses_or_format_error(ntu.parse_skeleton_text, "\n".join(lines), "x.skeleton")


@FUZZ
@given(garbage, st.integers(0, 40), st.sampled_from([0, 1]))
def test_pkummd_parsers_garbage(text, num_frames, base):
    _parses_or_format_error(pkummd.parse_skeleton_text, text, "s.txt")
    _parses_or_format_error(pkummd.parse_split_text, text, "cross-view.txt")
    segments = _parses_or_format_error(pkummd.parse_label_text, text, "l.txt")
    if segments is not None:
        labels = _parses_or_format_error(pkummd.frame_labels, segments, num_frames, "l.txt", base)
        if labels is not None:
            assert labels[0].shape == (num_frames,) and labels[0].dtype == np.int16
            assert ((labels[0] >= 0) & (labels[0] <= 51)).all()


label_rows = st.lists(
    st.tuples(
        st.integers(-2, 53),
        st.integers(-3, 45),
        st.integers(-3, 45),
        st.sampled_from(["1", "2", "x", "1.5"]),
    ),
    max_size=8,
)


@FUZZ
@given(label_rows, st.integers(1, 40))
def test_pkummd_label_rows(rows, num_frames):
    text = "".join(f"{c},{s},{e},{k}\n" for c, s, e, k in rows)
    segments = _parses_or_format_error(pkummd.parse_label_text, text, "l.txt")
    if segments is None:
        assert any(not 1 <= c <= 51 or s < 0 or e < s or k == "x" for c, s, e, k in rows)
        return
    result = _parses_or_format_error(pkummd.frame_labels, segments, num_frames, "l.txt", 0)
    if result is None:
        assert any(e > num_frames or s >= num_frames for _, s, e, _ in rows)
        return
    labels, _ = result
    # every frame covered by a segment carries the class of the latest-starting one covering it
    for t in range(num_frames):
        covering = [
            (s, i, c - 1) for i, (c, s, e, _) in enumerate(rows) if s <= t <= min(e, num_frames - 1)
        ]
        assert labels[t] == (max(covering)[2] if covering else 51)


@FUZZ
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(0, 4), st.just(2), st.just(25), st.just(3)),
        elements=coords,
    )
)
def test_pkummd_skeleton_round_trip(joints):
    parsed = pkummd.parse_skeleton_text(W.pkummd_skeleton_text(joints), "s.txt")
    np.testing.assert_array_equal(parsed.astype(np.float32), joints)


@FUZZ
@given(garbage, st.sampled_from([3, 6, 75]))
def test_generic_parsers_garbage(text, width):
    values = _parses_or_format_error(parse_csv_text, text, "a.csv", width)
    if values is not None:
        assert values.ndim == 2 and values.shape[1] % width == 0
    _parses_or_format_error(parse_label_rows, text, "labels.csv")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=True)
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["feat_p", "frame_ann", "labels", "start_t", "end_t", "act_cat", "dur"]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@FUZZ
@given(json_values, st.integers(1, 60))
def test_babel_entry_checks(entry, num_frames):
    try:
        babel._check_entry(entry, "1", Path("train.json"))
    except FormatError:
        return
    if entry.get("frame_ann") is None:
        return
    segments = entry["frame_ann"]["labels"]
    for subset in (False, True):
        names = (
            ("walk", "stand")
            if subset
            else tuple(sorted({c for s in segments for c in (s.get("act_cat") or ())}))
        )
        labels = babel.frame_labels(segments, num_frames, names, subset)
        assert labels.shape == (num_frames,) and 0 <= labels.min() and labels.max() <= len(names)


@pytest.mark.parametrize("fps", [30.0, 50.0, 59.94, 60.0, 100.0, 119.88, 120.0, 250.0])
def test_babel_subsample_indices_are_increasing_and_cover_the_duration(fps):
    for T in (0, 1, 29, 121, 1000):
        idx = babel.subsample_indices(T, fps)
        assert np.all(np.diff(idx) > 0) and (idx < T).all()
        # about 30 output frames per second of source
        assert abs(len(idx) - T * 30 / fps) <= 31
