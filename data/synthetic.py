"""Procedural NTU-25 demo corpus: long untrimmed sequences with exact per-frame labels.

Motion model. Every frame is a vector of pose parameters (joint angles in degrees, root speed,
heading, jump lift, foot anchoring; `PARAMS`). Each segment of a sequence (an action, or a
background stretch) writes those parameters as smooth functions of time: periodic cycles for
walk, jog, wave, clap, squat, arm circles, cosine-eased key frames for jump, kick and sit
down/stand up. Poses come from forward kinematics over the NTU-25 bone tree
(`sscl.data.layouts.get_layout("ntu25")`) with a per-person set of bone offsets, so bone lengths
are exactly constant (before sensor noise). Each parameter rotates the bone ending at its joint
(shoulder angles turn the upper arm, the elbow the forearm, ...). Body frame: pelvis at the
origin, y up, facing +z, the person's left at +x.

Physical plausibility. The pelvis height follows from ground contact: the lowest foot joint
rests 3 cm above the floor (``FOOT_CLEARANCE``) plus the jump lift, so walking bobs, squats and
sitting lower the body and jumps leave the floor. While standing, the pelvis moves so the
supporting foot (or the mid-point of both feet) stays planted. Walking and jogging translate the
root along the heading at the person's speed; the hip swing amplitude is set from speed and
cadence (stride = speed / cadence) so the stance foot roughly stays put; jump flight time
matches the jump height under gravity.

Sequences. A sequence alternates background stretches and actions until its sampled length.
`CLASS_NAMES` holds the 9 actions; "idle" (standing with sway, breathing and small arm drift) is
the background, label K = 9: in localisation, background is what is not an action of interest,
and idle standing is exactly that. Consecutive segments are blended in parameter space over
``SynthConfig.transition_s`` (0.5 s) centred on their boundary with a smoothstep weight. Label
rule: every frame carries the label of the segment it lies in; the boundary is the midpoint of
the blend (so the first and last 0.25 s of an action are partly blended with the background).
Periodic actions last whole cycles: squat, jump, kick and sit down/stand up start and end
standing; wave, clap and arm circles raise and lower the arms within the blends.

Variation. Per subject (shared by all their sequences): height, bone proportions, tempo,
amplitude, walking/jogging speed, handedness (85% right), noise scale. Per sequence: the
view (the person's heading relative to facing the camera, +-``view_yaw_deg``), the camera
distance, the order and durations of the actions, per-segment tempo and amplitude jitter.

Coordinates (corpus conventions): metres, right-handed, y up, floor at y = 0, origin on the floor
below the camera, the camera looking along +z (so x points to the camera's left, as in Kinect
camera space lowered to the floor). Arrays (T, V=25, C=3, M=1) float32.

Randomness: sequence ``i`` of seed ``s`` draws from ``SeedSequence(s, spawn_key=(0, i))`` and
subject ``p`` from ``SeedSequence(s, spawn_key=(1, p))``, so a sequence does not depend on how
many are generated. Throughput: ``bench/bench_synthetic.py`` (frames/s on one core).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sscl.data.corpus import CorpusHeader, CorpusWriter, Sequence
from sscl.data.layouts import get_layout
from sscl.data.synthetic_motion import (
    GRAVITY,
    MOTIONS,
    PARAMS,
    Person,
    Segment,
    jump_height,
    kinematics,
    make_person,
    smoothstep,
)  # fmt: skip
from sscl.errors import ConfigError

__all__ = [
    "CLASS_NAMES", "SynthConfig", "generate_sequence", "header", "iter_sequences", "synthesize",
]  # fmt: skip

CLASS_NAMES: tuple[str, ...] = (
    "walk", "jog", "wave", "clap", "squat", "jump", "kick", "sit_down_stand_up", "arm_circles",
)  # fmt: skip
BACKGROUND = len(CLASS_NAMES)  # label K: idle standing
_MOTION_OF_LABEL = [MOTIONS[name] for name in CLASS_NAMES] + [MOTIONS["idle"]]
# Walking area on the floor (camera at the origin looking along +z), metres.
AREA_X = (-2.5, 2.5)
AREA_Z = (2.0, 6.5)



@dataclass(frozen=True)
class SynthConfig:
    """Schema of the synthetic corpus.

    Attributes:
        num_sequences: sequences in the corpus.
        min_frames, max_frames: sequence length range (inclusive), frames.
        fps: frame rate.
        subjects: distinct synthetic people; sequence i is performed by subject i % subjects.
            Cross-subject split: subjects whose 1-based id is a multiple of 3 are "xsub:test".
        noise_std: sensor noise, metres (Gaussian per joint and frame, scaled per subject by
            0.5-1.5). 0 gives exact forward kinematics (constant bone lengths).
        view_yaw_deg: the person's base heading varies uniformly within +- this angle around
            facing the camera.
        transition_s: pose blend between consecutive segments, seconds.
        background_s: (min, max) length of a background (idle) stretch, seconds.
        action_scale: multiplies the number of cycles (or the seconds) each action lasts; a
            periodic action keeps at least one whole cycle. Below 1 actions get shorter, and
            harder to localize.
    """

    num_sequences: int = 120
    min_frames: int = 1000
    max_frames: int = 3000
    fps: float = 30.0
    subjects: int = 20
    noise_std: float = 0.005
    view_yaw_deg: float = 45.0
    transition_s: float = 0.5
    background_s: tuple[float, float] = (1.0, 4.0)
    action_scale: float = 1.0

    def __post_init__(self) -> None:
        def bad(field: str, value: object, expected: str) -> ConfigError:
            return ConfigError(f"SynthConfig.{field} = {value!r}: expected {expected}")

        if self.num_sequences < 1:
            raise bad("num_sequences", self.num_sequences, "an integer >= 1")
        if not 0 < self.fps <= 1000:
            raise bad("fps", self.fps, "0 < fps <= 1000")
        if self.min_frames < 10 * self.fps or self.max_frames < self.min_frames:
            raise bad(
                "min_frames/max_frames",
                (self.min_frames, self.max_frames),
                f"min_frames >= 10 s of frames ({int(10 * self.fps)}) and max_frames >= min_frames",
            )
        if self.subjects < 1:
            raise bad("subjects", self.subjects, "an integer >= 1")
        if self.noise_std < 0:
            raise bad("noise_std", self.noise_std, "a standard deviation >= 0 (metres)")
        if not 0 <= self.view_yaw_deg <= 180:
            raise bad("view_yaw_deg", self.view_yaw_deg, "0..180 degrees")
        if not 0 < self.transition_s <= 1.0:
            raise bad("transition_s", self.transition_s, "0 < seconds <= 1")
        lo, hi = self.background_s
        if not self.transition_s <= lo <= hi:
            raise bad("background_s", self.background_s, "transition_s <= min <= max seconds")
        if not 0 < self.action_scale <= 4:
            raise bad("action_scale", self.action_scale, "0 < scale <= 4")


def _frames(seconds: float, fps: float) -> int:
    return max(1, round(seconds * fps))


def _unwrap(yaw: float, near: float) -> float:
    """``yaw`` plus a multiple of 360 degrees, within 180 degrees of ``near`` (no spin on blend)."""
    return near + (yaw - near + 180.0) % 360.0 - 180.0


def _plan(
    rng: np.random.Generator, person: Person, cfg: SynthConfig, n_frames: int
) -> tuple[list[Segment], np.ndarray, float]:
    """Segments covering [0, n_frames), the start position (x, z) and the view offset (deg)."""
    fps = cfg.fps
    view = float(rng.uniform(-cfg.view_yaw_deg, cfg.view_yaw_deg))
    pos = np.array([rng.uniform(-0.8, 0.8), rng.uniform(2.5, 4.0)])  # camera distance 2.5-4 m
    start_pos = pos.copy()

    def facing_camera(xz: np.ndarray) -> float:
        # Heading that faces the camera at the origin, turned by the sequence's view offset.
        return float(np.degrees(np.arctan2(-xz[0], -xz[1]))) + view

    yaw = facing_camera(pos)
    min_bg = cfg.background_s[0]
    scale = cfg.action_scale

    def repeats(lo: int, hi: int) -> int:
        # Whole cycles in [lo, hi), scaled, at least one.
        return max(1, round(int(rng.integers(lo, hi)) * scale))
    segs: list[Segment] = []
    t = 0
    classes = iter(())

    def segment(label: int, n: int, **kw: float) -> Segment:
        return Segment(
            label=label,
            start=t,
            end=t + n,
            duration=n / fps,
            yaw=kw.get("yaw", yaw),
            speed=kw.get("speed", 0.0),
            freq=kw.get("freq", 1.0),
            amp=kw.get("amp", 1.0),
            side=kw.get("side", 1.0),
            phase=rng.uniform(0, 2 * np.pi, 4),
        )

    while True:
        bg = segment(BACKGROUND, _frames(rng.uniform(*cfg.background_s), fps))
        segs.append(bg)
        t = bg.end
        # Every class once (in random order) before any repeats.
        c = next(classes, None)
        if c is None:
            classes = iter(rng.permutation(len(CLASS_NAMES)).tolist())
            c = next(classes)
        tempo = person.tempo * rng.uniform(0.9, 1.1)
        amp = person.amp * rng.uniform(0.85, 1.15)
        dominant = -1.0 if person.right_handed else 1.0
        side = dominant if rng.random() < 0.8 else -dominant
        name = CLASS_NAMES[c]
        kw: dict[str, float] = {"amp": amp, "side": side}
        new_pos = pos
        if name in ("walk", "jog"):
            speed = (person.walk_speed if name == "walk" else person.jog_speed) * rng.uniform(
                0.9, 1.1
            )
            freq = 0.65 + 0.15 * speed if name == "walk" else 1.25 + 0.05 * speed  # strides/s
            lo, hi = (2.0, 4.0) if name == "walk" else (1.2, 1.8)  # seconds
            cycles = max(1, round(rng.uniform(lo, hi) * scale * freq))
            # Of 16 random headings, take one with room for the whole path inside the area;
            # failing that, the roomiest one, and shorten the path to fit.
            headings = rng.uniform(-180.0, 180.0, 16)
            dirs = np.stack([np.sin(np.radians(headings)), np.cos(np.radians(headings))], axis=1)
            bound = np.where(dirs > 0, [AREA_X[1], AREA_Z[1]], [AREA_X[0], AREA_Z[0]])
            reach = np.clip(((bound - pos) / dirs).min(axis=1), 0.0, None)
            fits = reach >= speed * cycles / freq
            k = int(np.argmax(fits)) if fits.any() else int(np.argmax(reach))
            if not fits.any():
                cycles = max(1, int(reach[k] / speed * freq))
            seconds = cycles / freq
            kw.update(speed=speed, freq=freq, yaw=_unwrap(float(headings[k]), yaw))
            new_pos = pos + speed * seconds * dirs[k]
        elif name in ("wave", "clap"):
            freq = rng.uniform(1.5, 2.5) * tempo
            seconds = max(1, round(rng.uniform(2.0, 4.0) * scale * freq)) / freq
            kw.update(freq=freq)
        elif name == "squat":
            freq = rng.uniform(0.35, 0.55) * tempo
            seconds = repeats(2, 5) / freq
            kw.update(freq=freq)
        elif name == "jump":
            # Crouch 0.5 s + flight + landing 0.4 s + a pause (see _jump).
            flight = np.sqrt(8 * jump_height(amp) / GRAVITY)
            period = 0.5 + flight + 0.4 + rng.uniform(0.2, 0.6)
            seconds = repeats(2, 5) * period
            kw.update(freq=1.0 / period)
        elif name == "kick":
            period = rng.uniform(1.4, 2.0) / tempo + 0.2
            seconds = repeats(2, 4) * period
            kw.update(freq=1.0 / period)
        elif name == "sit_down_stand_up":
            seconds = max(rng.uniform(4.0, 8.0) * scale, 2 * 1.5 / amp + 1.0)
        else:  # arm_circles
            freq = rng.uniform(0.7, 1.3) * tempo
            seconds = repeats(3, 7) / freq
            kw.update(freq=freq)
        n = _frames(seconds, fps)
        if t + n + _frames(min_bg, fps) > n_frames:
            break
        segs.append(segment(c, n, **kw))
        t += n
        pos = new_pos
        if name in ("walk", "jog"):
            yaw = kw["yaw"]
        # The next stationary stretch faces the camera again from wherever the person is.
        yaw = _unwrap(facing_camera(pos), yaw)
    # The closing background stretch runs to the end of the sequence.
    segs[-1].end = n_frames
    segs[-1].duration = (n_frames - segs[-1].start) / fps
    return segs, start_pos, view


def _compose(segs: list[Segment], person: Person, n_frames: int, cfg: SynthConfig) -> np.ndarray:
    """Per-frame parameters (n_frames, P): segments blended with smoothstep weights."""
    h = max(1, round(cfg.transition_s * cfg.fps / 2))
    out = np.zeros((n_frames, len(PARAMS)))
    last = len(segs) - 1
    for k, seg in enumerate(segs):
        lo = 0 if k == 0 else seg.start - h
        hi = n_frames if k == last else seg.end + h
        f = np.arange(lo, hi)
        vals = _MOTION_OF_LABEL[seg.label]((f - seg.start) / cfg.fps, seg, person)
        w = np.ones(len(f))
        if k > 0:  # ramp in over [start - h, start + h); the previous segment ramps out there
            w *= smoothstep((f - lo + 0.5) / (2 * h))
        if k < last:
            w *= smoothstep((hi - f - 0.5) / (2 * h))
        out[lo:hi] += w[:, None] * vals
    return out


def header(cfg: SynthConfig = SynthConfig()) -> CorpusHeader:
    """Corpus header of the synthetic corpus (NTU-25, one person, `CLASS_NAMES`)."""
    return CorpusHeader(
        layout=get_layout("ntu25"),
        class_names=CLASS_NAMES,
        fps=float(cfg.fps),
        persons=1,
        source_frame=(
            "generated directly in corpus conventions: metres, right-handed, y up, floor at y=0, "
            "origin on the floor below the camera, camera looking along +z; no transform applied"
        ),
        label_rule=(
            f"exact: each frame has the label of the generated segment it lies in; label "
            f"{BACKGROUND} (background) = idle standing; boundaries are the midpoints of the "
            f"{cfg.transition_s:g} s pose blends between consecutive segments"
        ),
        converter="synthetic",
        converter_version="1",
    )


def generate_sequence(seed: int, index: int, cfg: SynthConfig = SynthConfig()) -> Sequence:
    """Sequence ``index`` of the synthetic corpus with seed ``seed``.

    Depends only on (seed, index, cfg), not on how many sequences are generated.

    Returns:
        Sequence with joints (T, 25, 3, 1) float32 in metres, labels (T,) int16 in
        0..len(CLASS_NAMES) (the last = background), valid all True, split tag xsub:train/test,
        and ``extra`` holding the segments ``[[label, start, end], ...]`` and the view.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, index)))
    subject = index % cfg.subjects
    person = make_person(seed, subject, get_layout("ntu25"))
    n = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
    segs, start_xz, view = _plan(rng, person, cfg, n)
    params = _compose(segs, person, n, cfg)
    joints = kinematics().world(params, person, start_xz, cfg.fps)
    sigma = cfg.noise_std * person.noise_scale
    if sigma > 0:
        joints += rng.normal(0.0, sigma, joints.shape)
    labels = np.empty(n, dtype=np.int16)
    for seg in segs:
        labels[seg.start : seg.end] = seg.label
    test = (subject + 1) % 3 == 0
    return Sequence(
        seq_id=f"synth{index:05d}",
        joints=joints.astype(np.float32)[..., None],
        source_file=f"synthetic/seed{seed}/{index:05d}",
        labels=labels,
        valid=np.ones((n, joints.shape[1], 1), dtype=bool),
        subject=f"P{subject + 1:03d}",
        fps=float(cfg.fps),
        split_tags=("xsub:test" if test else "xsub:train",),
        extra={
            "segments": [[int(s.label), int(s.start), int(s.end)] for s in segs],
            "view_yaw_deg": round(view, 3),
            "camera_distance_m": round(float(np.hypot(*start_xz)), 3),
        },
    )


def iter_sequences(cfg: SynthConfig = SynthConfig(), seed: int = 0) -> Iterator[Sequence]:
    """The corpus's sequences 0..cfg.num_sequences-1, generated lazily."""
    for i in range(cfg.num_sequences):
        yield generate_sequence(seed, i, cfg)


def synthesize(
    dest: str | os.PathLike,
    cfg: SynthConfig = SynthConfig(),
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Generate the synthetic corpus into ``dest`` (streamed, atomic; see CorpusWriter).

    Raises:
        DestinationExistsError: ``dest`` exists and ``overwrite`` is False.
    """
    provenance = {"generator": "sscl.data.synthetic", "seed": seed, "config": asdict(cfg)}
    with CorpusWriter(dest, header(cfg), overwrite=overwrite, provenance=provenance) as w:
        for seq in tqdm(
            iter_sequences(cfg, seed),
            total=cfg.num_sequences,
            disable=not progress,
            desc="synthesize",
            unit="seq",
        ):
            w.append(seq)
    return Path(dest)
