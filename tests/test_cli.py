"""The `sscl` console script: help on every subcommand, info/validate, errors and exit codes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import zarr

from sscl.cli import main
from sscl.data import demo
from sscl.data.corpus import CorpusHeader, Sequence, Skipped, write_corpus
from sscl.data.formats import FORMATS
from sscl.data.layouts import get_layout
from sscl.data.synthetic import SynthConfig


def _corpus(path):
    header = CorpusHeader(layout=get_layout("openni15"), class_names=("wave", "clap"), fps=30.0,
                          persons=1, source_frame="test")
    rng = np.random.default_rng(0)
    items = [Sequence(f"s{i}", rng.standard_normal((20 + i, 15, 3, 1)).astype(np.float32), "x",
                      labels=np.full(20 + i, i % 3), split_tags=("xsub:train",)) for i in range(3)]
    items.append(Skipped("broken.txt", "truncated frame"))
    write_corpus(path, header, items)
    return path


@pytest.mark.parametrize("argv", [
    ["--help"], ["data", "--help"], ["data", "synth", "--help"], ["data", "info", "--help"],
    ["data", "validate", "--help"], ["demo", "--help"], ["data", "convert", "--help"],
] + [["data", "convert", f, "--help"] for f in FORMATS])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    assert "usage: sscl" in capsys.readouterr().out


def test_info_and_validate(tmp_path, capsys):
    c = _corpus(tmp_path / "c.zarr")
    assert main(["data", "info", str(c), "--skipped"]) == 0
    out = capsys.readouterr().out
    assert "sequences   3   frames 63" in out and "openni15" in out
    assert "truncated frame" in out and "xsub:train: 3" in out
    assert main(["data", "validate", str(c)]) == 0
    zarr.open_group(c, mode="r+")["labels"][0] = 7
    assert main(["data", "validate", str(c)]) == 1
    assert "array 'labels', shard 0" in capsys.readouterr().out  # fails its checksums


def test_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "missing.zarr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.zarr" in err


@pytest.mark.slow
def test_console_script_installed(tmp_path):
    # The entry point a user types, in a fresh process.
    r = subprocess.run([sys.executable, "-m", "sscl.cli", "data", "info", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no corpus there" in r.stderr



def test_synth_then_refuse_existing_dest(tmp_path, capsys):
    dest = tmp_path / "s.zarr"
    assert main(["data", "synth", str(dest), "--sequences", "2", "--seed", "3"]) == 0
    assert "sequences   2" in capsys.readouterr().out
    assert main(["data", "synth", str(dest), "--sequences", "2"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err
    assert main(["data", "synth", str(dest), "--sequences", "1", "--overwrite"]) == 0


def test_demo_uses_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SSCL_CACHE", str(tmp_path))
    monkeypatch.setattr(demo, "DEMO_CONFIG",
                        SynthConfig(num_sequences=2, min_frames=300, max_frames=400))
    assert main(["demo"]) == 0
    first = demo.demo_path()
    assert first.is_dir() and first.parent == tmp_path / "demo"
    assert "synthesizing" in capsys.readouterr().out
    assert main(["demo"]) == 0  # second run reuses the cached corpus
    assert "synthesizing" not in capsys.readouterr().out
    # Another version of the demo corpus gets another name: an old cache is never reused.
    monkeypatch.setattr(demo, "DEMO_CONFIG",
                        SynthConfig(num_sequences=3, min_frames=300, max_frames=400))
    assert demo.demo_path() != first
    assert main(["demo"]) == 0
    assert "synthesizing" in capsys.readouterr().out
