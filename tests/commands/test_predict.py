"""``sscl evaluate`` and ``sscl predict`` end to end on an untrained localizer (no training: a
seeded random ST-GCN localizer exported exactly as the finetune stage exports one).

What is checked is the plumbing, not accuracy: outputs exist with their fields, numbers are in
range, PNGs decode, a converted raw recording gives the same segments as the same frames read
from the corpus, and wrong input (layout, fps, a hostile or damaged localizer.json) is refused
with one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sscl.cli import main
from sscl.data.corpus import open_corpus
from sscl.data.synthetic import SynthConfig, synthesize
from tests.helpers.localizers import make_localizer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FPS = 10.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("corpus") / "syn.zarr"
    synthesize(dest, SynthConfig(num_sequences=6, min_frames=120, max_frames=200, subjects=3,
                                 fps=FPS), seed=1)
    return dest


@pytest.fixture()
def run(tmp_path, corpus) -> Path:
    make_localizer(tmp_path / "run" / "finetune", corpus)
    return tmp_path / "run"


def assert_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def check_segments(doc: dict, fps: float, unit_scores: bool) -> int:
    names = doc["class_names"]
    n = 0
    for seq in doc["sequences"]:
        assert seq["frames"] > 0 and seq["seconds"] == pytest.approx(seq["frames"] / fps)
        for g in seq["segments"]:
            assert g["class"] == names[g["class_index"]]
            assert 0 <= g["start_frame"] < g["end_frame"] <= seq["frames"]
            assert g["start_s"] == pytest.approx(g["start_frame"] / fps)
            assert g["end_s"] == pytest.approx(g["end_frame"] / fps)
            assert np.isfinite(g["score"]) and g["score"] <= 1.0
            if unit_scores:
                assert 0.0 <= g["score"]
            n += 1
    return n


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    return err[-1]


def test_evaluate_writes_reports_then_predict_uses_its_decoder(run, corpus, capsys, tmp_path):
    # The run's config.yaml sets the kNN probe (this corpus's actions are short).
    (run / "config.yaml").write_text("probe:\n  clip_length: 20\n  max_clips: 100\n  k: 3\n")
    assert main(["evaluate", str(run), "--timelines", "all", "--knn", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    report_dir = run / "eval" / "syn-test"
    assert "| sscl |" in out and "| all_background |" in out
    assert f"report: {report_dir / 'report.md'}" in out and "kNN top-1" in out
    rep = json.loads((report_dir / "report.json").read_text())
    m = rep["metrics"]
    assert m["num_sequences"] == 2  # the test split of the metadata: sequences 2 and 5
    assert set(m["mAP"]) == {"0.1", "0.2", "0.3", "0.4", "0.5"}
    for v in [*m["mAP"].values(), m["average_mAP"],
              *(a for per in m["ap"].values() for a in per.values())]:
        assert 0.0 <= v <= 1.0
    assert "## Per-class AP (%)" in (report_dir / "report.md").read_text()
    pngs = sorted((report_dir / "timelines").glob("*.png"))
    assert len(pngs) == 2  # --timelines all
    for p in pngs:
        assert_png(p)
    assert (report_dir / "decoder_choice.json").is_file()  # auto: chosen on val sequence 4
    knn = json.loads((report_dir / "knn.json").read_text())
    assert 0.0 <= knn["top1"] <= 1.0 and knn["test_split"] == "xsub:test"
    assert knn["k"] == 3 and knn["clip_length"] == 20

    # A named split of a checkpoint file, another decoder, one timeline.
    weights = run / "finetune" / "localizer.safetensors"
    assert main(["evaluate", str(weights), "--split", "xsub:train", "--decoder", "argmax",
                 "--timelines", "1", "--device", "cpu"]) == 0
    assert "decoder: argmax" in capsys.readouterr().out
    assert len(list((run / "eval" / "syn-xsub_train" / "timelines").glob("*.png"))) == 1

    # predict takes the decoder the auto evaluation chose (not the forced argmax one).
    dest = tmp_path / "pred.json"
    assert main(["predict", str(run), str(corpus), "--sequence", "3", "--out", str(dest),
                 "--device", "cpu"]) == 0
    doc = json.loads(dest.read_text())
    assert doc["decoder"] == m["decoder"]
    assert str(report_dir / "report.json") in doc["decoder_source"]


def test_predict_corpus_sequences_json_and_timelines(run, corpus, capsys, tmp_path):
    dest, png = tmp_path / "out" / "pred.json", tmp_path / "tl.png"
    c = open_corpus(corpus, memory_budget=0)
    sid = c.meta[4]["seq_id"]
    assert main(["predict", str(run / "finetune"), str(corpus), "--sequence", sid,
                 "--sequence", "0", "--out", str(dest), "--timeline", str(png),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"segments: {dest}" in out and "decoder: reference (default" in out
    doc = json.loads(dest.read_text())
    assert [s["index"] for s in doc["sequences"]] == [4, 0]
    assert doc["sequences"][0]["sequence"] == sid
    assert doc["sequences"][1]["frames"] == int(c.lengths[0])
    assert doc["decoder"]["name"] == "reference" and doc["fps"] == FPS
    assert doc["class_names"] == list(c.class_names)
    assert check_segments(doc, FPS, unit_scores=False) > 0
    tls = sorted(tmp_path.glob("tl_*.png"))  # two sequences: one PNG each
    assert len(tls) == 2
    for p in tls:
        assert_png(p)


def test_predict_generic_npz_matches_the_corpus(run, corpus, capsys, tmp_path):
    """The same frames as raw generic .npz (converted on the fly) give the same segments."""
    raw = tmp_path / "raw"
    raw.mkdir()
    joints, valid, _ = open_corpus(corpus).read_sequence(1)  # (T, V, C, M) metres, y up
    np.savez(raw / "take1.npz", joints=joints, valid=valid)
    assert main(["predict", str(run), str(corpus), "--sequence", "1", "--decoder", "argmax",
                 "--out", str(tmp_path / "ref.json"), "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), str(raw), "--format", "generic", "--layout", "ntu25",
                 "--fps", str(FPS), "--decoder", "argmax", "--out", "-", "--timeline",
                 str(tmp_path / "take1.png"), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    ref = json.loads((tmp_path / "ref.json").read_text())
    assert "timeline:" in captured.err and doc["format"] == "generic"
    assert doc["sequences"][0]["sequence"] == "take1"
    assert check_segments(doc, FPS, unit_scores=True) > 0
    got = [(g["class"], g["start_frame"], g["end_frame"]) for g in doc["sequences"][0]["segments"]]
    want = [(g["class"], g["start_frame"], g["end_frame"]) for g in ref["sequences"][0]["segments"]]
    assert got == want
    assert [g["score"] for g in doc["sequences"][0]["segments"]] == pytest.approx(
        [g["score"] for g in ref["sequences"][0]["segments"]], abs=1e-5)
    assert_png(tmp_path / "take1.png")


@pytest.mark.parametrize("extra, message", [
    (["--layout", "kinect20", "--fps", "10"], "is not the layout 'ntu25'"),
    (["--layout", "ntu25", "--fps", "30"], "frame rate 30 fps differs from the 10 fps"),
    (["--layout", "ntu25", "--fps", "10", "--persons", "2"],
     "2 person(s) per frame, the localizer"),
])
def test_predict_refuses_input_it_was_not_trained_for(run, capsys, tmp_path, extra, message):
    raw = tmp_path / "raw"
    raw.mkdir()
    V = 20 if "kinect20" in extra else 25
    rng = np.random.default_rng(0)
    np.savez(raw / "x.npz", joints=rng.normal(size=(40, V, 3)).astype(np.float32))
    assert main(["predict", str(run), str(raw), "--format", "generic", *extra,
                 "--out", str(tmp_path / "p.json"), "--device", "cpu"]) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "p.json").exists()


def test_predict_named_errors(run, corpus, capsys, tmp_path):
    out = ["--out", str(tmp_path / "p.json"), "--device", "cpu"]
    assert main(["predict", str(run), str(corpus), "--sequence", "no-such", *out]) == 2
    assert "--sequence 'no-such' is neither" in error_line(capsys)
    assert main(["predict", str(tmp_path), str(corpus), *out]) == 2
    assert "no trained localizer" in error_line(capsys)
    raw = tmp_path / "raw"
    raw.mkdir()
    assert main(["predict", str(run), str(raw), *out]) == 2  # raw data without --format
    assert "--format" in error_line(capsys)
    with pytest.raises(SystemExit):  # converter options need their --format
        main(["predict", str(run), str(corpus), "--layout", "ntu25"])
    with pytest.raises(SystemExit):
        main(["evaluate", str(run), "--timelines", "some"])


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["model"].update(backbone="__import__('os').system('touch pwned')"),
     "cannot be built"),
    (lambda m: m.update(layout={"name": "x", "joints": "../../etc/passwd"}), "cannot be built"),
    (lambda m: m.update(corpus_layout={"name": "ntu25"}), "cannot be built"),
    (lambda m: m.pop("class_names"), "lacks ['class_names']"),
    (lambda m: m.update(splits={"train": [], "val": [], "test": "../../x"}), "splits.test"),
    (lambda m: m.update(embed_dim="32"), "embed_dim"),
])
def test_hostile_or_damaged_localizer_json_is_refused(run, corpus, capsys, tmp_path,
                                                      monkeypatch, edit, message):
    """localizer.json is data: a wrong key or value is a CheckpointError, nothing runs."""
    monkeypatch.chdir(tmp_path)
    meta_path = run / "finetune" / "localizer.json"
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    assert main(["predict", str(run), str(corpus), "--out", "p.json", "--device", "cpu"]) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "p.json").exists()


def test_corpus_path_in_localizer_json_is_only_opened_as_data(run, capsys, tmp_path):
    meta_path = run / "finetune" / "localizer.json"
    meta = json.loads(meta_path.read_text())
    meta["corpus"] = "../../../../no/such/corpus.zarr"
    meta_path.write_text(json.dumps(meta))
    assert main(["evaluate", str(run), "--device", "cpu"]) == 2
    assert "no/such/corpus.zarr" in error_line(capsys)
    (run / "finetune" / "localizer.json").write_bytes(b"\x80\x04\x95 not json")  # e.g. a pickle
    assert main(["evaluate", str(run), "--device", "cpu"]) == 2
    assert "damaged localizer files" in error_line(capsys)


def test_lone_checkpoint_file_reports_beside_it(run, corpus, capsys, tmp_path):
    lone = tmp_path / "lone"
    shutil.copytree(run / "finetune", lone)
    assert main(["evaluate", str(lone / "localizer.safetensors"), "--timelines", "0",
                 "--decoder", "reference", "--device", "cpu"]) == 0
    assert (lone / "eval" / "syn-test" / "report.json").is_file()
    assert not (lone / "eval" / "syn-test" / "timelines").exists()


def test_cmu_input_is_resampled_to_the_localizer_rate_unless_fps_is_given(monkeypatch,
                                                                         tmp_path):
    """A converter that resamples gets the localizer's rate when its option is at its
    default; an explicit value is passed through (and then checked like any input)."""
    from sscl.cli import build_parser
    from sscl.commands import predict
    from sscl.commands.predict import convert_input

    seen = []
    monkeypatch.setattr(predict, "convert", lambda fmt, src, dest, **kw: seen.append(kw))
    trained = type("T", (), {"meta": {"fps": 30.0}})()

    def options(argv):
        args = build_parser(argv).parse_args(argv)
        return ({k: getattr(args, k) for k in args.converter_defaults},
                args.converter_defaults)

    base = ["predict", "run", "raw", "--format", "cmu"]
    path, notes = convert_input("cmu", "raw", tmp_path, *options(base), trained)
    assert seen[-1]["fps"] == 30.0 and notes == [
        "resampled to 30 fps by the cmu converter (--fps 30)"]
    _, notes = convert_input("cmu", "raw", tmp_path, *options(base + ["--fps", "60"]), trained)
    assert seen[-1]["fps"] == 60.0 and notes == []
    assert path == str(tmp_path / "input.zarr")
