"""Evaluation outputs: ``report.json``, ``report.md``, the mAP table, and PNG timelines.

``report.json`` holds every metric of :func:`sscl.localize.evaluate.evaluate_sequences` (AP keyed
by tIoU as text, e.g. ``"0.1"``, then by class name), the class names and any baselines.
``report.md`` shows mAP at each tIoU and the average, frame accuracy, edit and F1@k beside the
baselines, and the per-class AP table. mAP is shown in percent there (the papers' unit); the
JSON keeps the metric's fractions. Files are written to a temporary name, fsynced and renamed
into place (HOUSE_STYLE.md "Errors").

Timelines draw with matplotlib's Agg canvas on a private ``Figure`` (no pyplot global state):
ground truth, predicted segments (stacked in lanes where they overlap, opacity by score) and
the frame scores, one colour per class and a legend.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sscl.atomic import write_bytes_atomic as atomic_write_bytes
from sscl.localize.segments import runs

UNLABELLED_COLOUR = "#ffffff"
BACKGROUND_COLOUR = "#d9d9d9"


def _key(h: float) -> str:
    return f"{float(h):g}"


def _name(class_names: Sequence[str], c: int) -> str:
    return class_names[c] if 0 <= c < len(class_names) else f"class_{c}"


def _jsonable(metrics: Mapping, class_names: Sequence[str]) -> dict:
    """Metrics with JSON-safe keys and values (AP by tIoU text, then class name)."""
    def plain(v):
        if isinstance(v, Mapping):
            return {str(_key(k) if isinstance(k, float) else k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, np.generic):
            return v.item()
        return v

    out = {k: plain(v) for k, v in metrics.items() if k != "ap"}
    if "ap" in metrics:
        out["ap"] = {
            _key(h): {_name(class_names, int(c)): float(a) for c, a in per.items()}
            for h, per in metrics["ap"].items()
        }
    return out


def map_table(rows: Mapping[str, Mapping]) -> str:
    """A markdown table of mAP (percent) at each tIoU and the average, one row per method.

    Args:
        rows: ``{method name: metrics}``, each with ``"mAP"`` and ``"average_mAP"``.

    Returns:
        The table as text (header, rule, one line per method).
    """
    first = next(iter(rows.values()))
    ths = list(first["mAP"])
    head = "| method | " + " | ".join(f"mAP@{_key(h)}" for h in ths) + " | avg |"
    lines = [head, "|---" * (len(ths) + 2) + "|"]
    for name, m in rows.items():
        vals = [100.0 * m["mAP"][h] for h in ths] + [100.0 * m["average_mAP"]]
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    return "\n".join(lines)


def frame_table(rows: Mapping[str, Mapping]) -> str:
    """A markdown table of frame accuracy, edit and F1@k (percent), one row per method."""
    first = next(iter(rows.values()))
    ks = list(first["f1"])
    head = "| method | frame acc. | edit | " + " | ".join(f"F1@{k}" for k in ks) + " |"
    lines = [head, "|---" * (len(ks) + 3) + "|"]
    for name, m in rows.items():
        vals = [m["frame_accuracy"], m["edit"]] + [m["f1"][k] for k in ks]
        lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    return "\n".join(lines)


def _baseline_label(name: str, m: Mapping, class_names: Sequence[str]) -> str:
    label = name.replace("_", " ")
    if "class" in m:
        label += f" ({_name(class_names, int(m['class']))})"
    return label


def write_report(
    out_dir: str | Path,
    metrics: Mapping,
    class_names: Sequence[str],
    *,
    baselines: Mapping[str, Mapping] | None = None,
    title: str = "evaluation",
    model_name: str = "model",
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (created if needed).

    Args:
        out_dir: destination folder.
        metrics: the output of :func:`sscl.localize.evaluate.evaluate_sequences`.
        class_names: the K action class names, by index.
        baselines: optional ``{name: metrics}`` (e.g. :func:`trivial_baselines`), shown as
            extra rows and stored under ``"baselines"``.
        title: the report's heading (e.g. ``"msrc12-test"``).
        model_name: the row label of ``metrics``.

    Returns:
        ``(json_path, md_path)``.
    """
    out_dir = Path(out_dir)
    baselines = dict(baselines or {})
    doc = {
        "title": title,
        "class_names": list(class_names),
        "metrics": _jsonable(metrics, class_names),
        "baselines": {k: _jsonable(v, class_names) for k, v in baselines.items()},
    }
    json_path = atomic_write_bytes(
        out_dir / "report.json", (json.dumps(doc, indent=2, allow_nan=False) + "\n").encode()
    )

    rows = {model_name: metrics}
    rows.update({_baseline_label(k, v, class_names): v for k, v in baselines.items()})
    ths = list(metrics["mAP"])
    per_class = [
        "| class | " + " | ".join(f"AP@{_key(h)}" for h in ths) + " | avg |",
        "|---" * (len(ths) + 2) + "|",
    ]
    classes = list(next(iter(metrics["ap"].values())))
    for c in classes:
        vals = [100.0 * metrics["ap"][h][c] for h in ths]
        per_class.append(
            f"| {_name(class_names, int(c))} | "
            + " | ".join(f"{v:.1f}" for v in vals + [float(np.mean(vals))])
            + " |"
        )
    decoder = metrics.get("decoder", {})
    facts = [
        f"- sequences evaluated: {metrics.get('num_sequences', '?')}"
        f" (unlabelled, skipped: {metrics.get('num_unlabelled_skipped', 0)})",
        f"- ground-truth segments: {metrics.get('num_ground_truth', '?')};"
        f" detections: {metrics.get('num_detections', '?')}",
        f"- decoder: `{json.dumps(decoder)}`" if decoder else "- decoder: (not recorded)",
    ]
    md = "\n".join([
        f"# Evaluation report: {title}",
        "",
        *facts,
        "",
        "## Detection mAP (%)",
        "",
        map_table(rows),
        "",
        "## Frame metrics (%)",
        "",
        "Frame accuracy over labelled frames; edit and F1@k as in MS-TCN (background excluded).",
        "",
        frame_table(rows),
        "",
        "## Per-class AP (%)",
        "",
        *per_class,
        "",
    ])
    md_path = atomic_write_bytes(out_dir / "report.md", md.encode())
    return json_path, md_path


def class_colours(num_classes: int) -> list[tuple[float, float, float, float]]:
    """One RGBA colour per action class: tab10 / tab20 while they suffice, else turbo."""
    if num_classes <= 10:
        return [colormaps["tab10"](i) for i in range(num_classes)]
    if num_classes <= 20:
        return [colormaps["tab20"](i) for i in range(num_classes)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, num_classes)]


def _lanes(segments: Sequence, max_lanes: int) -> list[list]:
    """Place segments (best score first) into the first lane where they overlap nothing."""
    lanes: list[list] = []
    for seg in sorted(segments, key=lambda s: -s[3]):
        for lane in lanes:
            if all(seg[2] <= o[1] or seg[1] >= o[2] for o in lane):
                lane.append(seg)
                break
        else:
            if len(lanes) < max_lanes:
                lanes.append([seg])
    return lanes


def plot_timeline(
    path: str | Path,
    gt_labels: np.ndarray,
    pred_segments: Sequence,
    probs: np.ndarray,
    class_names: Sequence[str],
    fps: float | None = None,
    *,
    title: str | None = None,
    max_curves: int = 8,
    max_lanes: int = 6,
    max_segments: int = 300,
) -> Path:
    """Draw one sequence's ground truth, predicted segments and frame scores into a PNG.

    Args:
        path: the PNG to write (atomically).
        gt_labels: (T,) labels in ``-1..K``.
        pred_segments: ``(label, start, end, score)`` rows (e.g. :func:`decode`'s output).
        probs: (T, K+1) frame probabilities, background last.
        class_names: the K action class names.
        fps: frames per second; the time axis is in seconds when given, else in frames.
        title: figure title.
        max_curves: at most this many class score curves (the classes of the ground truth and
            the predictions first, then by peak score); background is always drawn dashed.
        max_lanes: at most this many rows of overlapping predicted segments (lower-scored ones
            that do not fit are not drawn; the row label says how many).
        max_segments: at most this many predicted segments, the best-scored, are drawn.

    Returns:
        ``path``.
    """
    gt_labels = np.asarray(gt_labels)
    probs = np.asarray(probs, np.float64)
    T, K = probs.shape[0], probs.shape[1] - 1
    scale = 1.0 / fps if fps else 1.0
    colours = class_colours(K)

    def colour(c: int):
        return UNLABELLED_COLOUR if c < 0 else BACKGROUND_COLOUR if c == K else colours[c]

    segs = [tuple(s) for s in pred_segments]
    # Lane packing is quadratic; only the best-scored max_segments are candidates.
    lanes = _lanes(sorted(segs, key=lambda s: -s[3])[:max_segments], max_lanes)
    drawn = sum(len(lane) for lane in lanes)
    lane_rows = max(len(lanes), 1)
    value_R, a_R, b_R = runs(gt_labels)
    shown = {int(v) for v in value_R if 0 <= v < K} | {int(s[0]) for s in segs}
    peak = probs[:, :K].max(axis=0) if T else np.zeros(K)
    curves = sorted(sorted(range(K), key=lambda c: (c not in shown, -peak[c]))[:max_curves])
    handles = [
        Patch(facecolor=colours[c], label=_name(class_names, c))
        for c in sorted(shown | set(curves))
    ]
    handles += [
        Patch(facecolor=BACKGROUND_COLOUR, label="background (score dashed)"),
        Patch(facecolor=UNLABELLED_COLOUR, edgecolor="#999999", hatch="///", label="unlabelled"),
    ]
    # Up to 12 entries fit beside the plots; more go below them in rows of 8.
    below = len(handles) > 12
    legend_h = 0.22 * math.ceil(len(handles) / 8) + 0.1 if below else 0.0
    plots_h = 2.4 + 0.3 * lane_rows
    top_h, bottom_h = (0.45 if title else 0.15), 0.5 + legend_h
    height = plots_h + top_h + bottom_h

    fig = Figure(figsize=(12, height), dpi=100)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(3, 1, height_ratios=[0.6, 0.35 * lane_rows + 0.25, 2.0], hspace=0.15)
    ax_gt = fig.add_subplot(grid[0])
    ax_pred = fig.add_subplot(grid[1], sharex=ax_gt)
    ax_sc = fig.add_subplot(grid[2], sharex=ax_gt)

    for v in np.unique(value_R):
        sel = value_R == v
        bars = [(a * scale, (b - a) * scale) for a, b in zip(a_R[sel], b_R[sel])]
        ax_gt.broken_barh(
            bars, (0, 1), facecolors=colour(int(v)),
            edgecolor="#999999" if v == -1 else "none", hatch="///" if v == -1 else None,
        )
    ax_gt.set_yticks([0.5], ["ground truth"])
    ax_gt.set_ylim(0, 1)

    scores = np.array([s[3] for s in segs]) if segs else np.zeros(0)
    lo, hi = (scores.min(), scores.max()) if segs else (0.0, 1.0)
    for row, lane in enumerate(lanes):  # one collection per lane, opacity inside the colour
        bars, faces = [], []
        for c, a, b, s in lane:
            alpha = 1.0 if hi <= lo else 0.35 + 0.65 * (s - lo) / (hi - lo)
            bars.append((a * scale, (b - a) * scale))
            faces.append((*colours[int(c)][:3], float(alpha)))
        ax_pred.broken_barh(bars, (row + 0.1, 0.8), facecolors=faces, edgecolor="white",
                            linewidth=0.5)
    ax_pred.set_ylim(lane_rows, 0)
    label = "predicted" if drawn == len(segs) else f"predicted\n({len(segs) - drawn} not drawn)"
    ax_pred.set_yticks([lane_rows / 2], [label])

    # The plot is about 1000 pixels wide: past 2000 frames, draw each bin's maximum (peaks stay
    # visible) instead of every frame.
    step = max(1, math.ceil(T / 2000))
    nbin = math.ceil(T / step) if T else 0
    padded = np.full((nbin * step, K + 1), -np.inf)
    padded[:T] = probs
    binned = padded.reshape(nbin, step, K + 1).max(axis=1)
    t = (np.arange(nbin) * step + (step - 1) / 2) * scale
    for c in curves:
        ax_sc.plot(t, binned[:, c], color=colours[c], lw=1.2)
    ax_sc.plot(t, binned[:, K], color="#555555", lw=1.0, ls="--")
    ax_sc.set_ylim(0, 1.02)
    ax_sc.set_ylabel("frame score")
    ax_sc.set_xlabel("time (s)" if fps else "frame")
    ax_sc.set_xlim(0, max(T, 1) * scale)
    for ax in (ax_gt, ax_pred):
        ax.tick_params(axis="x", labelbottom=False)

    if below:
        fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncol=8,
                   fontsize=8, frameon=False)
    else:
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.82, 0.5), fontsize=8,
                   frameon=False)
    fig.subplots_adjust(left=0.1, right=0.97 if below else 0.8, top=1 - top_h / height,
                        bottom=bottom_h / height)
    if title:
        fig.suptitle(title, fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())
