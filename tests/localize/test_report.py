"""report.json / report.md carry the numbers; timelines are valid PNGs of the expected size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sscl.localize.postprocess import REFERENCE, decode
from sscl.localize.report import map_table, plot_timeline, write_report
from sscl.localize.scoring import evaluate_sequences, trivial_baselines

K = 3
NAMES = ["walk", "stand", "turn"]


@pytest.fixture(scope="module")
def evaluated():
    rng = np.random.default_rng(0)
    labels, probs = [], []
    for _ in range(3):
        y = np.full(120, K)
        y[10:40], y[50:70], y[90:110] = 0, 1, 2
        y[:3] = -1
        p = rng.uniform(0, 0.6, (120, K + 1))  # noisy: the metrics are not all 100
        p[np.arange(120), np.where(y < 0, K, y)] += 0.5
        probs.append(p / p.sum(1, keepdims=True))
        labels.append(y)
    metrics = evaluate_sequences(probs, labels, REFERENCE)
    baselines = trivial_baselines(labels, labels, K)
    assert 0 < metrics["average_mAP"] < 1 and metrics["frame_accuracy"] < 100
    return probs, labels, metrics, baselines


def test_write_report_json_and_markdown(tmp_path, evaluated):
    _, _, metrics, baselines = evaluated
    js, md = write_report(tmp_path / "eval" / "toy-val", metrics, NAMES, baselines=baselines,
                          title="toy-val")
    doc = json.loads(js.read_text())
    assert doc["class_names"] == NAMES
    assert doc["metrics"]["average_mAP"] == pytest.approx(metrics["average_mAP"])
    assert doc["metrics"]["mAP"]["0.3"] == pytest.approx(metrics["mAP"][0.3])
    assert doc["metrics"]["ap"]["0.5"]["stand"] == pytest.approx(metrics["ap"][0.5][1])
    assert doc["metrics"]["f1"]["25"] == pytest.approx(metrics["f1"][25])
    assert doc["metrics"]["decoder"]["thresholds"] == list(REFERENCE.thresholds)
    assert doc["baselines"]["majority_class"]["class"] == baselines["majority_class"]["class"]
    text = md.read_text()
    assert "# Evaluation report: toy-val" in text
    assert f"| {100 * metrics['average_mAP']:.1f} |" in text
    assert f"| {metrics['frame_accuracy']:.1f} | {metrics['edit']:.1f} |" in text
    assert "| all background | 0.0 |" in text
    major = NAMES[baselines["majority_class"]["class"]]
    assert f"majority class ({major})" in text
    per_class = f"| turn | {100 * metrics['ap'][0.1][2]:.1f} |"
    assert per_class in text
    assert sorted(p.name for p in js.parent.iterdir()) == ["report.json", "report.md"]  # no tmp


def test_map_table_rows_and_columns(evaluated):
    _, _, metrics, baselines = evaluated
    table = map_table({"model": metrics, "bg": baselines["all_background"]}).splitlines()
    assert table[0] == "| method | mAP@0.1 | mAP@0.2 | mAP@0.3 | mAP@0.4 | mAP@0.5 | avg |"
    assert table[2].startswith(f"| model | {100 * metrics['mAP'][0.1]:.1f} |")
    assert table[3] == "| bg | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 | 0.0 |"


@pytest.mark.parametrize("fps", [None, 30.0])
def test_plot_timeline_writes_a_png(tmp_path, evaluated, fps):
    from matplotlib.image import imread

    probs, labels, _, _ = evaluated
    segs = decode(probs[0], REFERENCE)
    out = plot_timeline(tmp_path / "t.png", labels[0], segs, probs[0], NAMES, fps=fps,
                        title="sequence 0")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(out)
    assert img.shape[1] == 1200 and img.shape[0] >= 260  # 12 in x 100 dpi
    assert img[..., :3].std() > 0.05  # not blank


def test_plot_timeline_many_classes_long_and_no_prediction(tmp_path):
    from matplotlib.image import imread

    rng = np.random.default_rng(1)
    k = 30
    # 4100 frames: the score curves are drawn as maxima over bins of 3 (the last one partial)
    probs = rng.dirichlet(np.ones(k + 1), size=4100)
    labels = np.repeat(np.arange(-1, 40) % (k + 1), 100)
    names = [f"c{i}" for i in range(k)]
    out = plot_timeline(tmp_path / "many.png", labels, [], probs, names)
    img = imread(out)
    # 32 legend entries go below the plots in rows of 8: a taller figure than with 3 classes
    assert img.shape[1] == 1200 and img.shape[0] > 400
