"""``sscl predict``: a trained localizer on a new recording -> scored segments as JSON.

The input is a corpus (a path, ``demo``, or raw data converted on the fly by a format's
converter into a temporary corpus, ``sscl.data.formats.convert``). Before any frame is scored
it must match what the localizer was trained on (``localizer.json``):

- layout: the joint names of the finetuning corpus (``TrainedLocalizer.check_layout``);
- persons per frame;
- frame rate: of the corpus and of every selected sequence. A converter that resamples
  (``RESAMPLE_OPTIONS``: the CMU converter's ``--fps`` keeps every 120/fps-th frame) is given
  the localizer's rate when the user left the option at its default; otherwise a mismatch is
  refused, naming both rates;
- units: the corpus format stores metres; a localizer trained on other units is refused.

Normalization and windowing are the localizer's own (``sequence_probabilities``). Segments come
from the decoder the run's evaluation chose (``<run>/eval/*/report.json``), else the reference
decoder, unless one is named; the output says which and why. Segments are frames ``[start,
end)`` and seconds ``start / fps``; reference scores are inner minus weighted outer mean
(METHOD.md section 5) and may be negative, argmax scores are mean probabilities in [0, 1].
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from sscl.atomic import write_bytes_atomic
from sscl.data.corpus import Corpus
from sscl.data.formats import convert
from sscl.errors import CheckpointError, ConfigError, CorpusError
from sscl.inputs import open_corpus_of
from sscl.localize.frame_scores import sequence_probabilities
from sscl.localize.postprocess import ARGMAX, REFERENCE, DecoderConfig, decode
from sscl.localize.report import plot_timeline
from sscl.machine import default_device
from sscl.models.localizer import TrainedLocalizer, load_localizer
from sscl.rundir import RunDir, localizer_run, safe_name
from sscl.runlog import log

# Formats whose converter can resample to a given frame rate: format -> option (argparse dest).
RESAMPLE_OPTIONS = {"cmu": "fps"}


@dataclass
class PredictInput:
    """The corpus to score and how it came about."""

    corpus: Corpus  # a temporary one for converted raw input
    sequences: tuple[int, ...]
    source: str  # what the user gave (INPUT)
    fmt: str | None = None  # converter used, if any
    notes: list[str] = field(default_factory=list)


def decoder_from_reports(run: RunDir) -> tuple[DecoderConfig | None, Path | None]:
    """The decoder a run's evaluation used, from its ``eval/*/report.json``.

    Reports whose decoder was chosen on the validation split (``decoder_choice.json`` beside
    them) come first, then the newest.

    Returns:
        ``(DecoderConfig, report path)``, or ``(None, None)`` when no report records one.

    Raises:
        CheckpointError: a report whose decoder entry is not a valid decoder config.
    """
    reports = sorted(run.reports(),
                     key=lambda p: ((p.parent / "decoder_choice.json").is_file(),
                                    p.stat().st_mtime), reverse=True)
    for rep in reports:
        try:
            entry = json.loads(rep.read_text())["metrics"]["decoder"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a foreign or damaged report records no choice
        if not isinstance(entry, dict):
            continue
        try:
            return DecoderConfig(**entry), rep
        except (TypeError, ConfigError) as e:
            raise CheckpointError(f"{rep}: metrics.decoder is not a decoder config: {e}; "
                                  f"pass --decoder reference|argmax") from None
    return None, None


def resolve_decoder(name: str | None, run: RunDir) -> tuple[DecoderConfig, str]:
    """``(DecoderConfig, why)``: the named decoder, else the evaluation's, else reference."""
    if name is not None:
        if name not in ("reference", "argmax"):
            raise ConfigError(f"--decoder must be reference or argmax, got {name!r}")
        return (REFERENCE if name == "reference" else ARGMAX), "named by --decoder"
    chosen, report = decoder_from_reports(run)
    if chosen is not None:
        return chosen, f"chosen by the evaluation recorded in {report}"
    return REFERENCE, f"default: no evaluation report under {run.eval_root}"


def select_sequences(corpus: Corpus, wanted: list[str] | None) -> tuple[int, ...]:
    """Sequence indices by id (exact) or index; all sequences when ``wanted`` is empty.

    Raises:
        ConfigError: an id that is no sequence's and no valid index.
    """
    if not wanted:
        return tuple(range(corpus.num_sequences))
    ids = {m["seq_id"]: i for i, m in enumerate(corpus.meta)}
    out = []
    for w in wanted:
        if w in ids:
            out.append(ids[w])
        elif re.fullmatch(r"-?\d+", w) and -corpus.num_sequences <= int(w) < corpus.num_sequences:
            out.append(int(w) % corpus.num_sequences)
        else:
            some = ", ".join(list(ids)[:5])
            raise ConfigError(
                f"--sequence {w!r} is neither a sequence id of {corpus.path} (e.g. {some}) nor "
                f"an index in 0..{corpus.num_sequences - 1}")
    return tuple(dict.fromkeys(out))


def check_input(trained: TrainedLocalizer, corpus: Corpus, sequences: tuple[int, ...],
                source: str, fmt: str | None = None) -> None:
    """Refuse input the localizer was not trained for (layout, persons, fps, units).

    Raises:
        ConfigError: the mismatch, both values, and the fix.
    """
    meta = trained.meta
    trained.check_layout(corpus.layout, source)
    if corpus.persons != meta["num_persons"]:
        hint = " (generic: --persons)" if fmt == "generic" else ""
        raise ConfigError(
            f"{source}: {corpus.persons} person(s) per frame, the localizer {trained.path} "
            f"expects {meta['num_persons']}; convert with {meta['num_persons']} persons{hint}")
    want = float(meta["fps"])
    rates = {float(corpus.fps)} | {float(corpus.meta[s].get("fps", corpus.fps))
                                   for s in sequences}
    bad = sorted(r for r in rates if abs(r - want) > 1e-6 * want)
    if bad:
        how = (f"; pass --{RESAMPLE_OPTIONS[fmt].replace('_', '-')} {want:g} to resample"
               if fmt in RESAMPLE_OPTIONS else
               "; resample the recording to that rate (this converter does not resample)")
        if fmt == "generic":
            how += (f", or, if it was recorded at {want:g} fps and its files have no 'fps' "
                    f"entry, pass --fps {want:g}")
        raise ConfigError(
            f"{source}: frame rate {', '.join(f'{r:g}' for r in bad)} fps differs from the "
            f"{want:g} fps the localizer {trained.path} was trained at{how}")
    units = corpus.attrs.get("units", "m")
    if units != meta["units"]:
        raise ConfigError(f"{source}: coordinates in {units!r}, the localizer was trained on "
                          f"{meta['units']!r}")


def convert_input(fmt: str, src: str, dest_dir: Path, options: dict, defaults: dict,
                  trained: TrainedLocalizer) -> tuple[str, list[str]]:
    """Convert raw input into ``dest_dir/input.zarr``; a resampling option left at its
    default is set to the localizer's frame rate, and generic input is read without its labels
    unless --classes or --labels name them (prediction needs none; ``ignore_labels``).

    Returns:
        (corpus path, notes for the output).
    """
    notes = []
    opt = RESAMPLE_OPTIONS.get(fmt)
    want = float(trained.meta["fps"])
    if opt is not None and options.get(opt) == defaults.get(opt) and options.get(opt) != want:
        options = {**options, opt: want}
        notes.append(f"resampled to {want:g} fps by the {fmt} converter "
                     f"(--{opt.replace('_', '-')} {want:g})")
    if fmt == "generic" and not (options.get("classes") or options.get("labels")):
        options = {**options, "ignore_labels": True}
    dest = dest_dir / "input.zarr"
    convert(fmt, src, dest, progress=False, **options)
    return str(dest), notes


@dataclass
class Prediction:
    """One sequence's scores and segments."""

    index: int
    seq_id: str
    probs: np.ndarray  # (T, K + 1)
    labels: np.ndarray  # (T,) ground truth in the localizer's classes, or -1
    segments: list  # ScoredSegment


def predict_sequences(trained: TrainedLocalizer, inp: PredictInput, decoder: DecoderConfig,
                      device: torch.device) -> list[Prediction]:
    """Frame probabilities and decoded segments of every selected sequence."""
    c = inp.corpus
    probs = sequence_probabilities(trained, c, inp.sequences, device)
    same_classes = list(c.class_names) == trained.class_names
    out = []
    for s, p in zip(inp.sequences, probs):
        a, n = int(c.offsets[s]), int(c.lengths[s])
        labels = (np.asarray(c.labels[a:a + n], np.int64) if same_classes
                  else np.full(n, -1, np.int64))
        out.append(Prediction(s, str(c.meta[s]["seq_id"]), p, labels, decode(p, decoder)))
    return out


def prediction_doc(trained: TrainedLocalizer, inp: PredictInput, preds: list[Prediction],
                   decoder: DecoderConfig, decoder_why: str) -> dict:
    """The JSON document of ``sscl predict``."""
    fps = float(trained.meta["fps"])
    names = trained.class_names
    seqs = []
    for pr in preds:
        segs = sorted(pr.segments, key=lambda g: (g.start, -g.score, g.label))
        seqs.append({
            "sequence": pr.seq_id, "index": pr.index, "frames": int(len(pr.probs)),
            "seconds": len(pr.probs) / fps,
            "segments": [{"class": names[g.label], "class_index": int(g.label),
                          "start_frame": int(g.start), "end_frame": int(g.end),
                          "start_s": g.start / fps, "end_s": g.end / fps,
                          "score": float(g.score)} for g in segs],
        })
    return {
        "checkpoint": str(trained.path), "input": inp.source, "format": inp.fmt,
        "fps": fps, "class_names": list(names), "normalize": trained.meta["normalize"],
        "decoder": asdict(decoder), "decoder_source": decoder_why, "notes": inp.notes,
        "segment_convention": "frames [start_frame, end_frame), end exclusive; seconds = "
                              "frame / fps",
        "sequences": seqs,
    }


def timeline_paths(path: Path, preds: list[Prediction]) -> list[Path]:
    """One PNG for one sequence (``path`` itself), else ``<stem>_<seq_id>.png`` beside it."""
    if len(preds) == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{safe_name(pr.seq_id)}{path.suffix or '.png'}")
            for pr in preds]


def open_input(trained: TrainedLocalizer, source: str, fmt: str | None, options: dict,
               defaults: dict, wanted: list[str] | None, tmp: Path) -> PredictInput:
    """Convert (when ``fmt`` is given) or open the input, select sequences and check them."""
    notes: list[str] = []
    path = source
    if fmt is not None:
        path, notes = convert_input(fmt, source, tmp, options, defaults, trained)
    elif source != "demo" and not Path(source).exists() and "://" not in source:
        raise ConfigError(f"input {source} does not exist")
    try:
        c = open_corpus_of(path)
    except CorpusError as e:
        if fmt is None:
            raise CorpusError(f"{e}; for a raw recording name its converter with --format "
                              f"(see `sscl data convert --help`)") from None
        raise
    ignored = sum(1 for m in c.meta if (m.get("extra") or {}).get("labels_ignored"))
    if fmt is not None and ignored:
        notes.append(f"the labels of {ignored} input sequence(s) were ignored (prediction needs "
                     "none; pass --classes to read them as ground truth)")
    sequences = select_sequences(c, wanted)
    check_input(trained, c, sequences, source, fmt)
    return PredictInput(c, sequences, source, fmt, notes)


def run_predict(checkpoint: str, source: str, *, fmt: str | None = None,
                options: dict | None = None, defaults: dict | None = None,
                sequences: list[str] | None = None, decoder: str | None = None,
                device: str | torch.device = "cpu") -> tuple[dict, list[Prediction]]:
    """Score ``source`` with the localizer at ``checkpoint``.

    Args:
        checkpoint: run directory, finetune directory or ``localizer.safetensors``.
        source: a corpus path (or ``demo``), or raw data when ``fmt`` is given.
        fmt: converter name (``sscl.data.formats.FORMATS``), None for a corpus.
        options: the converter's options (argparse dests); defaults: their default values.
        sequences: ids or indices to score (default: all).
        decoder: ``reference``, ``argmax`` or None (the evaluation's choice, else reference).

    Returns:
        (the JSON document, the per-sequence predictions).

    Raises:
        ConfigError, CheckpointError, CorpusError, FormatError: named problems of the inputs.
    """
    trained = load_localizer(checkpoint, device)
    chosen, why = resolve_decoder(decoder, localizer_run(trained.path))
    with tempfile.TemporaryDirectory(prefix="sscl-predict-") as tmp:
        inp = open_input(trained, source, fmt, dict(options or {}), dict(defaults or {}),
                         sequences, Path(tmp))
        preds = predict_sequences(trained, inp, chosen, torch.device(device))
    log.info("predicted %d sequence(s) of %s with %s", len(preds), source, chosen.describe())
    return prediction_doc(trained, inp, preds, chosen, why), preds


def write_timelines(path: Path, doc: dict, preds: list[Prediction]) -> list[Path]:
    """Timeline PNGs (ground truth when the input carries the localizer's classes)."""
    out = []
    for p, pr in zip(timeline_paths(Path(path), preds), preds):
        out.append(plot_timeline(p, pr.labels, pr.segments, pr.probs, doc["class_names"],
                                 fps=doc["fps"], title=f"{pr.seq_id} ({doc['input']})"))
    return out


# `sscl predict`'s own option dests; everything else on its namespace is the converter's.
_PREDICT_KEYS = {"cmd", "func", "checkpoint", "input", "format", "sequence", "out", "timeline",
                 "decoder", "device", "converter_defaults"}


def cmd_predict(args: argparse.Namespace) -> int:
    options = {k: v for k, v in vars(args).items() if k not in _PREDICT_KEYS}
    if options and args.format is None:  # unreachable from argparse; a guard for callers
        raise ConfigError(f"converter options {sorted(options)} need --format")
    doc, preds = run_predict(args.checkpoint, args.input, fmt=args.format, options=options,
                             defaults=args.converter_defaults, sequences=args.sequence,
                             decoder=args.decoder, device=default_device(args.device))
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    say = sys.stderr if args.out == "-" else sys.stdout
    if args.out == "-":
        sys.stdout.write(text)
    else:
        write_bytes_atomic(args.out, text.encode())
    for seq in doc["sequences"]:
        best = max(seq["segments"], key=lambda g: g["score"], default=None)
        top = (f"; best: {best['class']} {best['start_s']:.2f}-{best['end_s']:.2f} s "
               f"(score {best['score']:.3f})" if best else "")
        print(f"{seq['sequence']}: {seq['frames']} frames ({seq['seconds']:.1f} s), "
              f"{len(seq['segments'])} segments{top}", file=say)
    for note in doc["notes"]:
        print(f"note: {note}", file=say)
    print(f"decoder: {doc['decoder']['name']} ({doc['decoder_source']})", file=say)
    if args.out != "-":
        print(f"segments: {args.out}", file=say)
    if args.timeline:
        for png in write_timelines(args.timeline, doc, preds):
            print(f"timeline: {png}", file=say)
    return 0
