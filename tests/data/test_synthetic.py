"""Tests for sscl.data.synthetic: determinism, exact labels, physical plausibility, output."""

from __future__ import annotations

import functools
import itertools
from dataclasses import replace

import numpy as np
import pytest

from sscl.data.corpus import open_corpus
from sscl.data.layouts import get_layout
from sscl.data.synthetic import (
    BACKGROUND,
    CLASS_NAMES,
    SynthConfig,
    generate_sequence,
    header,
    iter_sequences,
    synthesize,
)
from sscl.data.synthetic_motion import FOOT_CLEARANCE
from sscl.errors import ConfigError, DestinationExistsError

LAYOUT = get_layout("ntu25")
J = LAYOUT.index
FEET = [J("ankle_left"), J("foot_left"), J("ankle_right"), J("foot_right")]
EXACT = SynthConfig(num_sequences=12, min_frames=600, max_frames=1500, noise_std=0.0)
MAX_STEP_M = 0.35  # per frame at 30 fps = 10.5 m/s, above any limb speed in these motions
MAX_ACCEL_M = 0.2  # second difference per frame, m


@functools.cache
def _exact(i: int):
    return generate_sequence(0, i, EXACT)


def _segments(seq):
    return [tuple(s) for s in seq.extra["segments"]]


def _half_blend(cfg: SynthConfig) -> int:
    return round(cfg.transition_s * cfg.fps / 2)


def test_same_seed_same_arrays_and_independent_of_count():
    cfg = SynthConfig(num_sequences=2, min_frames=400, max_frames=700)
    a = list(iter_sequences(cfg, seed=5))
    b = list(iter_sequences(replace(cfg, num_sequences=4), seed=5))
    assert len(a) == 2 and len(b) == 4
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.joints, y.joints)
        np.testing.assert_array_equal(x.labels, y.labels)
        assert x.extra == y.extra and x.seq_id == y.seq_id
    np.testing.assert_array_equal(generate_sequence(5, 3, cfg).joints, b[3].joints)
    other = generate_sequence(6, 0, cfg)
    assert other.joints.shape != a[0].joints.shape or not np.array_equal(other.joints, a[0].joints)


def test_shapes_dtypes_and_exact_labels():
    k = len(CLASS_NAMES)
    for i in range(4):
        s = _exact(i)
        t = len(s.labels)
        assert EXACT.min_frames <= t <= EXACT.max_frames
        assert s.joints.shape == (t, 25, 3, 1) and s.joints.dtype == np.float32
        assert s.labels.dtype == np.int16 and s.valid.shape == (t, 25, 1) and s.valid.all()
        assert s.labels.min() >= 0 and s.labels.max() <= k
        segs = _segments(s)
        # Contiguous cover of [0, T), background first and last, backgrounds between actions.
        assert segs[0][1] == 0 and segs[-1][2] == t
        assert all(a[2] == b[1] for a, b in itertools.pairwise(segs))
        assert [lab == BACKGROUND for lab, _, _ in segs] == [j % 2 == 0 for j in range(len(segs))]
        for lab, start, end in segs:
            assert end > start and (s.labels[start:end] == lab).all()


def test_every_class_and_background_appear():
    cfg = SynthConfig(num_sequences=6)
    counts = np.zeros(len(CLASS_NAMES) + 1, dtype=np.int64)
    for s in iter_sequences(cfg, seed=0):
        counts += np.bincount(s.labels, minlength=len(counts))
    assert (counts > 0).all(), dict(zip(CLASS_NAMES + ("background",), counts.tolist()))


def test_bone_lengths_constant_without_noise_and_not_with_noise():
    for i in range(EXACT.num_sequences):
        j = _exact(i).joints[..., 0].astype(np.float64)
        for c, p in LAYOUT.bones:
            length = np.linalg.norm(j[:, c] - j[:, p], axis=-1)
            assert np.ptp(length) < 1e-4, (i, LAYOUT.joint_names[c])
    noisy = generate_sequence(0, 0, replace(EXACT, noise_std=0.01)).joints[..., 0]
    length = np.linalg.norm(noisy[:, J("elbow_left")] - noisy[:, J("shoulder_left")], axis=-1)
    assert np.ptp(length) > 1e-3


def test_feet_on_floor_when_standing_and_nothing_below_it():
    h = _half_blend(EXACT)
    for i in range(EXACT.num_sequences):
        s = _exact(i)
        y = s.joints[..., 1, 0]
        assert y.min() >= -1e-5
        for lab, start, end in _segments(s):
            if lab == BACKGROUND and end - start > 2 * h:
                lowest = y[start + h : end - h][:, FEET].min(axis=1)
                np.testing.assert_allclose(lowest, FOOT_CLEARANCE, atol=1e-4)


def test_head_above_pelvis_and_plausible_height():
    for i in range(EXACT.num_sequences):
        j = _exact(i).joints[..., 0]
        head_over_pelvis = j[:, J("head"), 1] - j[:, J("spine_base"), 1]
        assert head_over_pelvis.min() > 0.3
        assert 1.2 < j[:, J("head"), 1].max() < 2.5


def test_velocity_and_transitions_bounded():
    h = _half_blend(EXACT)
    for i in range(EXACT.num_sequences):
        s = _exact(i)
        j = s.joints[..., 0].astype(np.float64)
        step = np.linalg.norm(np.diff(j, axis=0), axis=-1).max(axis=1)
        accel = np.linalg.norm(j[2:] - 2 * j[1:-1] + j[:-2], axis=-1).max(axis=1)
        assert step.max() < MAX_STEP_M and accel.max() < MAX_ACCEL_M
        for _, start, _ in _segments(s)[1:]:  # around each blend: no jumps
            lo, hi = max(0, start - h - 1), min(len(j) - 1, start + h + 1)
            assert step[lo:hi].max() < MAX_STEP_M
            assert accel[max(0, lo - 1) : hi - 1].max() < MAX_ACCEL_M


def test_jump_leaves_the_floor_and_raises_the_root():
    seen = 0
    for i in range(EXACT.num_sequences):
        s = _exact(i)
        y = s.joints[..., 1, 0]
        for lab, start, end in _segments(s):
            if lab != CLASS_NAMES.index("jump"):
                continue
            seen += 1
            feet = y[start:end][:, FEET].min(axis=1)
            root = y[start:end, J("spine_base")]
            assert feet.max() > 0.1  # both feet off the floor
            assert root.max() > y[start, J("spine_base")] + 0.1
    assert seen > 0


def test_walk_and_jog_translate_the_root_stationary_actions_do_not():
    walk, jog = CLASS_NAMES.index("walk"), CLASS_NAMES.index("jog")
    stationary = {CLASS_NAMES.index(n) for n in ("wave", "clap", "arm_circles")}
    planted = {CLASS_NAMES.index(n) for n in ("squat", "sit_down_stand_up")}
    seen = set()
    for i in range(EXACT.num_sequences):
        s = _exact(i)
        root = s.joints[:, J("spine_base"), :, 0][:, [0, 2]].astype(np.float64)
        ankles = s.joints[..., 0][:, [J("ankle_left"), J("ankle_right")]][..., [0, 2]]
        for lab, start, end in _segments(s):
            moved = np.linalg.norm(root[end - 1] - root[start])
            speed = moved / ((end - start) / EXACT.fps)
            if lab == walk:
                assert 0.7 < speed < 1.8, speed
            elif lab == jog:
                assert 1.3 < speed < 3.3, speed
            elif lab in stationary:
                assert np.linalg.norm(root[start:end] - root[start], axis=1).max() < 0.05
            elif lab in planted:  # the pelvis moves back and down, the feet stay put
                slide = np.linalg.norm(ankles[start:end] - ankles[start], axis=-1).max()
                assert (
                    slide < 0.02
                    and np.linalg.norm(root[start:end] - root[start], axis=1).max() > 0.05
                )
            seen.add(lab)
    assert {walk, jog} <= seen


def test_per_person_and_view_variation():
    seqs = [_exact(i) for i in range(6)]
    upper_arm = [
        np.linalg.norm(s.joints[0, J("elbow_left"), :, 0] - s.joints[0, J("shoulder_left"), :, 0])
        for s in seqs
    ]
    assert len({round(float(x), 4) for x in upper_arm}) == 6  # subjects 0..5 differ
    views = {s.extra["view_yaw_deg"] for s in seqs}
    dists = {s.extra["camera_distance_m"] for s in seqs}
    assert len(views) == 6 and len(dists) == 6
    assert all(abs(v) <= EXACT.view_yaw_deg for v in views)


def test_subjects_and_splits():
    cfg = replace(EXACT, subjects=6)
    s = generate_sequence(0, 8, cfg)
    assert s.subject == "P003" and s.split_tags == ("xsub:test",)
    s = generate_sequence(0, 7, cfg)
    assert s.subject == "P002" and s.split_tags == ("xsub:train",)
    # A subject keeps their skeleton across sequences.
    a, b = generate_sequence(0, 1, cfg), generate_sequence(0, 7, cfg)
    la = np.linalg.norm(a.joints[0, J("knee_left"), :, 0] - a.joints[0, J("hip_left"), :, 0])
    lb = np.linalg.norm(b.joints[0, J("knee_left"), :, 0] - b.joints[0, J("hip_left"), :, 0])
    assert abs(la - lb) < 1e-5


@pytest.mark.parametrize(
    "field,value",
    [
        ("num_sequences", 0),
        ("min_frames", 10),
        ("max_frames", 100),
        ("fps", 0.0),
        ("subjects", 0),
        ("noise_std", -0.1),
        ("view_yaw_deg", 270.0),
        ("transition_s", 0.0),
        ("background_s", (0.1, 2.0)),
    ],
)
def test_bad_config_raises(field, value):
    with pytest.raises(ConfigError, match=field.split("_")[0]):
        SynthConfig(**{field: value})


def test_header():
    h = header(EXACT)
    assert h.layout == LAYOUT and h.class_names == CLASS_NAMES and h.persons == 1
    assert h.fps == 30.0 and "background" in h.label_rule and "y up" in h.source_frame


def test_synthesize_writes_a_readable_corpus(tmp_path):
    cfg = SynthConfig(num_sequences=3, min_frames=300, max_frames=400)
    dest = synthesize(tmp_path / "demo.zarr", cfg, seed=1)
    c = open_corpus(dest)
    assert c.num_sequences == 3 and tuple(c.class_names) == CLASS_NAMES
    assert c.layout == LAYOUT and c.fps == 30.0
    for i in range(3):
        expected = generate_sequence(1, i, cfg)
        joints, valid, labels = c.read_sequence(i)
        np.testing.assert_array_equal(joints, expected.joints)
        np.testing.assert_array_equal(labels, expected.labels)
        assert valid.all() and c.meta[i]["seq_id"] == expected.seq_id
    with pytest.raises(DestinationExistsError):
        synthesize(dest, cfg, seed=1)
    synthesize(dest, replace(cfg, num_sequences=2), seed=1, overwrite=True)
    assert open_corpus(dest).num_sequences == 2
