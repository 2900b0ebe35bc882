"""Malformed input for the cmu, msrc12, kard, msr3d and florence3d converters.

Every fault (truncated frame, wrong column or joint count, non-numeric token, NaN/inf, broken
headers) must raise `FormatError` naming the file and the 1-based line; `--skip-bad` turns it
into a recorded `Skipped`. Hypothesis feeds the text parsers garbage: the only exception they may
raise is `FormatError`. All files are written to tmp_path in the exact published formats.
"""

from __future__ import annotations

import lzma
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sscl.data.corpus import Sequence, Skipped
from sscl.data.formats import cmu, florence3d, kard, msr3d, msrc12
from sscl.data.formats._text import parse_table, tokens_per_line
from sscl.errors import ConfigError, FormatError

# (module, file name, numbers per line, lines per frame)
CLIP_FORMATS = {
    "kard": (kard, "a01_s01_e01_realworld.txt", 3, 15),
    "msr3d": (msr3d, "a01_s01_e01_skeleton3D.txt", 4, 20),
    "florence3d": (florence3d, "a01_s1_id1.txt", 3, 15),
}


def _clip_lines(ncols: int, rows: int, frames: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.1, 2.0, size=(frames * rows, ncols))
    return [" ".join(f"{v:.6f}" for v in row) for row in values]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _convert_all(mod, src: Path, **options) -> list:
    _, items = mod.read(src, **options)
    return list(items)


@pytest.fixture(params=sorted(CLIP_FORMATS))
def clip_format(request):
    return CLIP_FORMATS[request.param]


def test_valid_clip_converts(clip_format, tmp_path):
    mod, name, ncols, rows = clip_format
    _write(tmp_path / name, _clip_lines(ncols, rows, 3))
    (seq,) = _convert_all(mod, tmp_path)
    assert isinstance(seq, Sequence)
    assert seq.joints.shape == (3, rows, 3, 1) and seq.joints.dtype == np.float32
    assert (seq.labels == 0).all() and seq.subject == "s01"


@pytest.mark.parametrize(
    "fault, line",
    [
        ("truncated", None),  # last frame lacks its last line: error names the frame's first line
        ("garbled", 5),
        ("short_line", 7),
        ("long_line", 2),
        ("nan", 4),
        ("inf", 9),
        ("joint_count", None),
    ],
)
def test_clip_faults_name_file_and_line(clip_format, tmp_path, fault, line):
    mod, name, ncols, rows = clip_format
    lines = _clip_lines(ncols, rows, 2)
    if fault == "truncated":
        lines = lines[:-1]
        line = rows + 1
    elif fault == "garbled":
        lines[line - 1] = lines[line - 1].replace(".", ",", 1)
    elif fault == "short_line":
        lines[line - 1] = " ".join(lines[line - 1].split()[:-1])
    elif fault == "long_line":
        lines[line - 1] += " 1.0"
    elif fault == "nan":
        lines[line - 1] = " ".join(["nan", *lines[line - 1].split()[1:]])
    elif fault == "inf":
        lines[line - 1] = " ".join(["-inf", *lines[line - 1].split()[1:]])
    elif fault == "joint_count":
        lines = _clip_lines(ncols, rows - 1, 1)  # one frame of rows-1 joints
        line = 1
    path = _write(tmp_path / name, lines)
    with pytest.raises(FormatError) as err:
        _convert_all(mod, tmp_path)
    assert err.value.path == str(path) and err.value.line == line
    assert f"{path}:{line}" in str(err.value)


def test_clip_skip_bad_records_the_error(clip_format, tmp_path):
    mod, name, ncols, rows = clip_format
    lines = _clip_lines(ncols, rows, 2)
    lines[3] = "1.0 abc"
    _write(tmp_path / name, lines)
    good = name.replace("a01", "a02")
    _write(tmp_path / good, _clip_lines(ncols, rows, 1))
    items = _convert_all(mod, tmp_path, skip_bad=True)
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert len(items) == 2 and len(skipped) == 1
    assert skipped[0].source_file == name and ":4:" in skipped[0].reason


def test_clip_empty_file_and_bad_names(clip_format, tmp_path):
    mod, name, ncols, rows = clip_format
    path = _write(tmp_path / name, [])
    with pytest.raises(FormatError, match="no data lines") as err:
        _convert_all(mod, tmp_path)
    assert err.value.path == str(path)
    path.unlink()
    with pytest.raises(FormatError, match="no a"):
        mod.read(tmp_path)
    bad = {
        "kard": "aX1_s01_e01_realworld.txt",
        "msr3d": "a1_s01_e01_skeleton3D.txt",
        "florence3d": "a01_sX_id1.txt",
    }[mod.NAME]
    _write(tmp_path / bad, _clip_lines(ncols, rows, 1))
    with pytest.raises(FormatError, match="file name"):
        mod.read(tmp_path)


def test_msr3d_all_zero_clip_is_skipped(tmp_path):
    _write(tmp_path / "a13_s09_e02_skeleton3D.txt", ["0 0 0 0"] * 40)
    (item,) = _convert_all(msr3d, tmp_path)
    assert isinstance(item, Skipped) and "zero" in item.reason


def test_florence3d_rejects_bad_fps(tmp_path):
    with pytest.raises(ConfigError):
        florence3d.read(tmp_path, fps=0)


# -- MSRC-12 ---------------------------------------------------------------------------------

TICKS_PER_US = 49875 / 1000


def _msrc12_folder(
    tmp_path: Path,
    *,
    name: str = "P1_1_3_p01",
    frames: int = 40,
    tag_frames=(10, 30),
    xz: bool = True,
) -> tuple[Path, Path]:
    """A recording whose tags fall exactly on `tag_frames` (timestamps 33,333 us apart)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    t0 = 2_000_000_000
    ts = t0 + np.arange(frames, dtype=np.int64) * 33_333
    rows = [" ".join([str(t)] + [f"{v:.5f}" for v in rng.uniform(0.1, 2, 80)]) for t in ts]
    text = ("\n".join(rows) + "\n").encode()
    csv = data / (name + (".csv.xz" if xz else ".csv"))
    csv.write_bytes(lzma.compress(text) if xz else text)
    # invert tick_to_us: the smallest tick whose microseconds equal the frame's timestamp
    ticks = [int(np.ceil((ts[f] - 1) * TICKS_PER_US)) for f in tag_frames]
    gesture = int(name.split("_")[2].rstrip("A"))
    (data / f"{name}.tagstream").write_text(
        "XQPCTick;Tag\r\n" + "".join(f"{t};G{gesture}  gesture\r\n" for t in ticks)
    )
    return csv, data / f"{name}.tagstream"


def test_msrc12_tiny_recording_labels_and_points(tmp_path):
    _msrc12_folder(tmp_path, xz=False)
    _, items = msrc12.read(tmp_path, window_before=3, window_after=2)
    (seq,) = list(items)
    assert seq.extra["action_points"] == [10, 30] and seq.subject == "p01"
    expect = np.full(40, 12)
    expect[7:13] = 2
    expect[27:33] = 2
    np.testing.assert_array_equal(seq.labels, expect)
    assert seq.joints.shape == (40, 20, 3, 1) and seq.valid.all()


def test_msrc12_tick_formula_matches_matlab_doubles():
    ticks = np.random.default_rng(0).integers(10**9, 10**12, size=2000)
    matlab = [int(np.floor((float(t) * 1000 + 49875 / 2) / 49875 + 0.5)) for t in ticks]
    assert msrc12.tick_to_us(ticks).tolist() == matlab


@pytest.mark.parametrize(
    "fault, target, line, match",
    [
        ("csv_columns", "csv", 3, "expected 81 numbers"),
        ("csv_token", "csv", 5, "non-numeric"),
        ("csv_nan", "csv", 2, "non-finite"),
        ("csv_time", "csv", 4, "does not increase"),
        ("tag_header", "tag", 1, "XQPCTick;Tag"),
        ("tag_line", "tag", 3, "integer tick"),
        ("tag_gesture", "tag", 2, "not gesture G3"),
        ("tag_far", "tag", 3, "from every frame"),
    ],
)
def test_msrc12_faults(tmp_path, fault, target, line, match):
    csv, tag = _msrc12_folder(tmp_path, xz=False)
    rows = csv.read_text().splitlines()
    tags = tag.read_text().splitlines()
    if fault == "csv_columns":
        rows[2] = " ".join(rows[2].split()[:-1])
    elif fault == "csv_token":
        rows[4] = rows[4].replace(" ", " x", 1)
    elif fault == "csv_nan":
        rows[1] = rows[1].rsplit(" ", 1)[0] + " NaN"
    elif fault == "csv_time":
        parts = rows[3].split(" ", 1)
        rows[3] = f"{int(parts[0]) - 100_000} {parts[1]}"
    elif fault == "tag_header":
        tags[0] = "Tick;Tag"
    elif fault == "tag_line":
        tags[2] = "12x4;G3  Push right"
    elif fault == "tag_gesture":
        tags[1] = tags[1].split(";")[0] + ";G4  Goggles"
    elif fault == "tag_far":
        tags[2] = f"{int(tags[2].split(';')[0]) + 10**9};G3  gesture"
    csv.write_text("\n".join(rows) + "\n")
    tag.write_text("\n".join(tags) + "\n")
    with pytest.raises(FormatError, match=match) as err:
        list(msrc12.read(tmp_path)[1])
    assert err.value.path == str(csv if target == "csv" else tag) and err.value.line == line
    if target == "csv":
        (item,) = list(msrc12.read(tmp_path, skip_bad=True)[1])
        assert isinstance(item, Skipped) and match in item.reason


def test_msrc12_pairing_missing_orphan_and_duplicate(tmp_path):
    csv, _ = _msrc12_folder(tmp_path, name="P2_1_2A_p12")
    (tmp_path / "data" / "P2_1_2A_p12.tagstream").rename(
        tmp_path / "data" / "p2_1_2A_p12.tagstream"
    )
    (tmp_path / "data" / "P1_2_5_p04.tagstream").write_text("XQPCTick;Tag\n100;G5  Wind it up\n")
    _, tag = _msrc12_folder(tmp_path, name="P1_1_1_p02")
    tag.unlink()
    items = list(msrc12.read(tmp_path)[1])
    kinds = [(type(i).__name__, Path(i.source_file).name) for i in items]
    assert kinds == [
        ("Skipped", "P1_2_5_p04.tagstream"),
        ("Sequence", "P2_1_2A_p12.csv.xz"),
        ("Skipped", "P1_1_1_p02.csv.xz"),
    ]
    assert items[1].extra["gesture_variant"] == "A" and items[1].split_tags == ("xsub:test",)
    (tmp_path / "data" / "P2_1_2A_p12.csv").write_bytes(lzma.decompress(csv.read_bytes()))
    with pytest.raises(FormatError, match="same recording"):
        msrc12.read(tmp_path)


def test_msrc12_rejects_negative_window(tmp_path):
    _msrc12_folder(tmp_path)
    with pytest.raises(ConfigError):
        msrc12.read(tmp_path, window_before=-1)


# -- CMU ASF/AMC -----------------------------------------------------------------------------

TINY_ASF = """\
# a two-bone arm
:version 1.10
:name tiny
:units
  mass 1.0
  length 0.45
  angle deg
:root
   order TX TY TZ RX RY RZ
   axis XYZ
   position 0 0 0
   orientation 0 0 0
:bonedata
  begin
     id 1
     name upper
     direction 1 0 0
     length 1
     axis 0 0 0 XYZ
    dof rz
    limits (-180.0 180.0)
  end
  begin
     id 2
     name lower
     direction 1 0 0
     length 1
     axis 0 0 90 XYZ
    dof rx
    limits (-180.0 180.0)
  end
:hierarchy
  begin
    root upper
    upper lower
  end
"""


def _amc(frames: list[tuple[float, float]]) -> str:
    out = ["#!OML:ASF tiny.asf", ":FULLY-SPECIFIED", ":DEGREES"]
    for i, (rz, rx) in enumerate(frames, start=1):
        out += [str(i), "root 0 0 0 0 0 0", f"upper {rz}", f"lower {rx}"]
    return "\n".join(out) + "\n"


def _tiny(tmp_path: Path, amc_text: str) -> tuple[cmu.Skeleton, Path]:
    asf = tmp_path / "07.asf"
    asf.write_text(TINY_ASF)
    amc = tmp_path / "07_01.amc"
    amc.write_text(amc_text)
    return cmu.parse_asf(asf), amc


def test_cmu_fk_known_poses(tmp_path):
    """upper (rz) turns the arm in the x-y plane; lower's axis is turned 90 degrees about z, so
    its rx spins about the global y axis: x -> -z at 90 degrees."""
    skel, amc = _tiny(tmp_path, _amc([(0, 0), (90, 0), (0, 90)]))
    pos = cmu.forward_kinematics(skel, cmu.parse_amc(amc, skel), ("root", "upper", "lower"))
    unit = 0.0254 / 0.45
    expect = (
        np.array(
            [
                [[0, 0, 0], [1, 0, 0], [2, 0, 0]],
                [[0, 0, 0], [0, 1, 0], [0, 2, 0]],
                [[0, 0, 0], [1, 0, 0], [1, 0, -1]],
            ]
        )
        * unit
    )
    np.testing.assert_allclose(pos, expect, atol=1e-12)


def test_cmu_rotation_order():
    """ "xyz" means Rz @ Ry @ Rx: x first."""
    a = np.deg2rad([90.0, 90.0, 0.0])
    r = cmu.rotation(a, "xyz")
    # Rx(90) sends y to z, then Ry(90) sends z to x
    np.testing.assert_allclose(r @ [0, 1, 0], [1, 0, 0], atol=1e-12)


@pytest.mark.parametrize(
    "edit, line, match",
    [
        (lambda t: t.replace("lower 0\n", "", 1), 4, "lacks bones"),  # truncated frame 1
        (lambda t: t.replace("upper 0\n", "upper 0 1\n", 1), 6, "has 2 values"),
        (lambda t: t.replace("upper 90", "upper 9o"), 10, "non-numeric"),
        (lambda t: t.replace("lower 90", "lower nan"), 15, "non-finite"),
        (lambda t: t.replace("\n2\n", "\n3\n"), 8, "follows 1"),
        (lambda t: t.replace("upper 0\n", "elbow 0\n", 1), 6, "unknown bone"),
        (lambda t: t.replace("lower 0\n", "upper 0\n", 1), 7, "twice"),
    ],
)
def test_cmu_amc_faults(tmp_path, edit, line, match):
    text = edit(_amc([(0, 0), (90, 0), (0, 90)]))
    skel, amc = _tiny(tmp_path, text)
    with pytest.raises(FormatError, match=match) as err:
        cmu.parse_amc(amc, skel)
    assert err.value.path == str(amc) and err.value.line == line


def test_cmu_amc_truncated_mid_frame(tmp_path):
    text = _amc([(0, 0), (90, 0)])
    skel, amc = _tiny(tmp_path, text[: text.rindex("lower")])
    with pytest.raises(FormatError, match="frame 2 lacks") as err:
        cmu.parse_amc(amc, skel)
    assert err.value.line == 8


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda t: t.split(":hierarchy")[0], "no :hierarchy"),
        (lambda t: t.replace("     length 1\n", "", 1), "no 'length'"),
        (lambda t: t.replace("upper lower", "upper hand"), "unknown bone 'hand'"),
        (lambda t: t.replace("axis 0 0 90 XYZ", "axis 0 0 90 XYQ"), "permutation of XYZ"),
        (lambda t: t.replace("orientation 0 0 0", "orientation 0 10 0"), "orientation"),
        (lambda t: t.replace("length 0.45", "length 0"), "length must be > 0"),
        (lambda t: t.replace("  end\n:hierarchy", ":hierarchy"), "no 'end'"),
    ],
)
def test_cmu_asf_faults(tmp_path, edit, match):
    asf = tmp_path / "07.asf"
    asf.write_text(edit(TINY_ASF))
    with pytest.raises(FormatError, match=match) as err:
        cmu.parse_asf(asf)
    assert err.value.path == str(asf)


def test_cmu_read_requires_cmu31_and_a_skeleton(tmp_path):
    _tiny(tmp_path, _amc([(0, 0)]))
    with pytest.raises(FormatError, match="lacks bones"):
        cmu.read(tmp_path)
    (tmp_path / "07.asf").unlink()
    with pytest.raises(FormatError, match="--asf"):
        cmu.read(tmp_path)
    with pytest.raises(ConfigError, match="divide"):
        cmu.read(tmp_path, fps=50)


# -- fuzz ------------------------------------------------------------------------------------

_LINE_BYTES = st.binary(max_size=40) | st.sampled_from(
    [b"1.0 2.0 3.0", b"nan 1 2", b"1e999 0 0", b"\t1\x0b2\x0c3\r", b"", b"   ", b"-0 +1 .5"]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_LINE_BYTES, max_size=12), ncols=st.integers(1, 5))
def test_fuzz_parse_table(lines, ncols):
    data = b"\n".join(lines)
    # the vectorised column count agrees with its plain-Python twin
    twin = [len(line.split()) for line in data.split(b"\n")] if data else []
    if data.endswith(b"\n"):
        twin.pop()
    assert tokens_per_line(data).tolist() == twin
    try:
        values, row_lines = parse_table(data, Path("fuzz.txt"), ncols)
    except FormatError as exc:
        assert exc.path == "fuzz.txt"
        return
    assert values.shape == (len(row_lines), ncols) and np.isfinite(values).all()
    assert len(row_lines) == int(np.count_nonzero(tokens_per_line(data)))


_TEXT_LINE = st.text(
    st.characters(codec="utf-8", exclude_characters="\n"), max_size=30
) | st.sampled_from(
    [
        "123;G3  Push right",
        ";",
        "XQPCTick;Tag",
        "root 0 0 0 0 0 0",
        "upper",
        "upper 1 2",
        "1",
        "2",
        ":DEGREES",
        "begin",
        "end",
        "name x",
        "length",
        "direction 1 0",
        ":root",
        ":bonedata",
        ":hierarchy",
        "root upper",
        "dof rq",
        "axis 0 0",
        ":units",
        "angle",
        "length -1",
        "name",
        "angle grad",
        "\u00b2",
        "upper lower",
        "lower upper",
        "order TX TY",
        "limits (1 2)",
    ]
)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(_TEXT_LINE, max_size=15))
def test_fuzz_text_parsers_raise_only_format_error(tmp_path, lines):
    body = "\n".join(lines) + "\n"
    tag = tmp_path / "P1_1_3_p01.tagstream"
    tag.write_text(body, encoding="utf-8")
    with suppress(FormatError):
        msrc12.read_tagstream(tag)
    asf = tmp_path / "fuzz.asf"
    asf.write_text(body)
    with suppress(FormatError):
        cmu.parse_asf(asf)
    # the same garbage spliced into a valid skeleton (units, a bone block, hierarchy) and motion
    for anchor in ("  mass 1.0\n", "     id 2\n", "    root upper\n"):
        asf.write_text(TINY_ASF.replace(anchor, anchor + body))
        with suppress(FormatError):
            cmu.parse_asf(asf)
    skel_path = tmp_path / "07.asf"
    skel_path.write_text(TINY_ASF)
    skel = cmu.parse_asf(skel_path)
    amc = tmp_path / "07_01.amc"
    amc.write_text(_amc([(0, 0)]) + body)
    with suppress(FormatError):
        cmu.parse_amc(amc, skel)
