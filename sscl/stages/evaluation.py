"""The evaluation stage and ``sscl evaluate``: a trained localizer on a corpus split, scored the
way the field scores it, with the trivial baselines beside it.

Writes ``<run>/eval/<corpus>-<split>/`` (``sscl.rundir``): ``report.json`` (every metric),
``report.md`` (mAP at each tIoU and their average, per-class AP, frame accuracy, edit, F1@k),
``timelines/<sequence>.png``, ``decoder_choice.json`` and, with the kNN probe, ``knn.json``. The
decoder is chosen on the validation sequences held out by finetuning (``evaluate.decoder:
auto``), never on the split being reported.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from sscl.atomic import write_bytes_atomic
from sscl.config import DECODERS, Config
from sscl.contrastive.knn import KnnProbe
from sscl.data.corpus import Corpus
from sscl.errors import ConfigError
from sscl.inputs import open_corpus_of, probe_clips
from sscl.localize.frame_scores import sequence_probabilities
from sscl.localize.postprocess import ARGMAX, REFERENCE, REFERENCE_CODE_NMS, decode
from sscl.localize.report import plot_timeline, write_report
from sscl.localize.scoring import evaluate_sequences, select_decoder, trivial_baselines
from sscl.models.localizer import load_localizer
from sscl.rundir import RunDir, corpus_label, safe_name
from sscl.runlog import log

# evaluate.decoder values naming one decoder (``auto`` chooses among candidates on validation).
FIXED_DECODERS = tuple(d for d in DECODERS if d != "auto")
NAMED_DECODERS = {"reference": REFERENCE, "reference_code": REFERENCE_CODE_NMS, "argmax": ARGMAX}


def sequence_labels(corpus: Corpus, sequences: tuple[int, ...]) -> list[np.ndarray]:
    """Each sequence's frame labels, int64."""
    return [np.asarray(corpus.labels[corpus.offsets[s]:corpus.offsets[s] + corpus.lengths[s]],
                       np.int64) for s in sequences]


def evaluate(localizer: str | Path, run: RunDir, corpus: str | None = None,
             split: str | None = None, decoder: str = "auto",
             tiou: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5), timelines: int = 20,
             device: torch.device | str = "cpu") -> dict:
    """Score a trained localizer on one split; returns the report document.

    Args:
        localizer: run directory, finetune directory or ``localizer.safetensors``.
        run: the run whose ``eval/<corpus>-<split>/`` receives the report.
        corpus: corpus path or ``demo`` (default: the finetuning corpus).
        split: split tag (default: the finetuning test split); ``val``: the finetuning
            validation sequences (for choosing among runs without looking at the test split).
        decoder: ``auto`` (chosen on the validation sequences), ``reference`` (METHOD.md
            section 5, NMS on IoU), ``reference_code`` (the same with the reference code's NMS
            overlap, intersection over the other segment's length: METHOD.md section 7) or
            ``argmax``.
        timelines: timeline PNGs written (-1: all).

    Raises:
        ConfigError / CheckpointError / CorpusError: named problems of the inputs.
    """
    if decoder != "auto" and decoder not in FIXED_DECODERS:
        raise ConfigError(f"decoder must be auto or one of {', '.join(FIXED_DECODERS)}, got "
                          f"{decoder!r}")
    trained = load_localizer(localizer, device)
    meta = trained.meta
    same_corpus = corpus is None or corpus == meta["corpus"]
    corpus = corpus or meta["corpus"]
    c = open_corpus_of(corpus)
    trained.check_layout(c.layout, c.path)
    if list(c.class_names) != meta["class_names"]:
        raise ConfigError(f"{c.path}: classes {list(c.class_names)} differ from the localizer's "
                          f"{meta['class_names']}")
    if split in (None, "val"):
        if not same_corpus:
            raise ConfigError("--split is needed for a corpus other than the finetuning one")
        split = split or "test"
        sequences = tuple(meta["splits"][split])
    else:
        sequences = tuple(int(i) for i in c.split(split))
    probs = sequence_probabilities(trained, c, sequences, device)
    labels = sequence_labels(c, sequences)
    ids = [c.meta[s]["seq_id"] for s in sequences]

    table = None
    val = tuple(meta["splits"]["val"]) if same_corpus else ()
    if decoder != "auto":
        chosen = NAMED_DECODERS[decoder]
    elif val:
        chosen, table = select_decoder(sequence_probabilities(trained, c, val, device),
                                       sequence_labels(c, val), split="val", tiou_thresholds=tiou)
    else:
        log.warning("no validation sequences: using the reference decoder")
        chosen = REFERENCE

    metrics = evaluate_sequences(probs, labels, chosen, sequence_ids=ids, tiou_thresholds=tiou)
    train_labels = sequence_labels(c, meta["splits"]["train"]) if same_corpus else labels
    baselines = trivial_baselines(train_labels, labels, len(c.class_names), sequence_ids=ids,
                                  tiou_thresholds=tiou)
    out_dir = run.report_dir(corpus, split)
    write_report(out_dir, metrics, c.class_names, baselines=baselines,
                 title=f"{corpus_label(corpus)} {split}", model_name="sscl")
    if table is not None:
        write_bytes_atomic(out_dir / "decoder_choice.json", json.dumps(
            [{"decoder": asdict(d), "val_average_mAP": v} for d, v in table], indent=1).encode())
    n_plots = len(sequences) if timelines < 0 else min(timelines, len(sequences))
    for i in range(n_plots):
        plot_timeline(out_dir / "timelines" / f"{safe_name(str(ids[i]))}.png", labels[i],
                      decode(probs[i], chosen), probs[i], c.class_names, fps=c.fps,
                      title=f"{ids[i]}")
    log.info("evaluation of %s on %s %s: average mAP %.4f; report in %s", trained.path, corpus,
             split, metrics["average_mAP"], out_dir)
    return {"metrics": metrics, "baselines": baselines, "out_dir": out_dir, "split": split,
            "corpus": corpus}


def evaluate_knn(localizer: str | Path, out_dir: Path, corpus: str | None = None,
                 split: str | None = None, run_config: Config | None = None,
                 device: torch.device | str = "cpu") -> dict:
    """kNN top-1 of the finetuned localizer's backbone on labelled clips (``sscl evaluate
    --knn``): the pretraining monitor applied after finetuning.

    Memory clips come from the finetuning ``train_split`` tag, queries from ``split`` (default
    the finetuning ``test_split`` tag) of ``corpus`` (default the finetuning corpus), read with
    the localizer's normalization. Writes ``out_dir/knn.json``.

    Args:
        run_config: the run's ``Config`` (probe and split settings); None: the defaults.

    Returns:
        ``{"top1", "k", "corpus", "train_split", "test_split", "clip_length", "max_clips"}``.

    Raises:
        ConfigError: a split without a clip of one class.
    """
    trained = load_localizer(localizer, device)
    cfg = run_config if run_config is not None else Config()
    corpus = corpus or trained.meta["corpus"]
    c = open_corpus_of(corpus)
    trained.check_layout(c.layout, c.path)
    ft = cfg.finetune
    probe = replace(cfg.probe, corpus=corpus, train_split=ft.train_split,
                    test_split=split or ft.test_split)
    cfg = replace(cfg, probe=probe, data=replace(
        cfg.data, loader=replace(cfg.data.loader, normalize=trained.meta["normalize"])))
    clips = {tag: probe_clips(cfg, c, tag, draw)
             for draw, tag in enumerate((probe.train_split, probe.test_split))}
    for tag, (_, _, labels) in clips.items():
        if len(labels) == 0:
            raise ConfigError(
                f"{corpus} {tag}: no clip of {probe.clip_length} frames has one class on at "
                f"least half of its frames; lower probe.clip_length in the run's config.yaml")
    top1 = KnnProbe(clips[probe.train_split], clips[probe.test_split], probe.k)(
        trained.model, device)
    doc = {"top1": top1, "k": probe.k, "corpus": corpus, "train_split": ft.train_split,
           "test_split": probe.test_split, "clip_length": probe.clip_length,
           "max_clips": probe.max_clips}
    write_bytes_atomic(Path(out_dir) / "knn.json", json.dumps(doc, indent=1).encode())
    return doc
