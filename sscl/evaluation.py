"""The evaluation stage and ``sscl evaluate``: a trained localizer on a corpus split, scored the
way the field scores it, with the trivial baselines beside it.

Writes ``<run>/eval/<corpus>-<split>/``: ``report.json`` (every metric), ``report.md`` (mAP at
each tIoU and their average, per-class AP, frame accuracy, edit, F1@k) and
``timelines/<sequence>.png``. The decoder is chosen on the validation sequences held out by
finetuning (``evaluate.decoder: auto``), never on the split being reported.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from sscl.builders import corpus_location
from sscl.config import DECODERS
from sscl.errors import ConfigError
from sscl.inference import check_layout, load_localizer, sequence_probabilities

log = logging.getLogger("sscl")

# evaluate.decoder values naming one decoder (``auto`` chooses among candidates on validation).
FIXED_DECODERS = tuple(d for d in DECODERS if d != "auto")


def corpus_label(corpus: str) -> str:
    """A folder-safe name of a corpus (``demo``, or a path's stem)."""
    stem = Path(corpus.rstrip("/")).name
    stem = stem[:-5] if stem.endswith(".zarr") else stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "corpus"


def report_folder(corpus: str, split: str) -> str:
    """The report folder name of a corpus and split: one folder-safe name (a split tag given on
    the command line can never lead out of the ``eval`` directory)."""
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", split).strip(".") or "split"
    return f"{corpus_label(corpus)}-{tag}"


def sequence_labels(corpus, sequences) -> list[np.ndarray]:
    return [np.asarray(corpus.labels[corpus.offsets[s]:corpus.offsets[s] + corpus.lengths[s]],
                       np.int64) for s in sequences]


def evaluate(localizer: str | Path, out_root: Path, corpus: str | None = None,
             split: str | None = None, decoder: str = "auto",
             tiou: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5), timelines: int = 20,
             device: torch.device | str = "cpu") -> dict:
    """Score a trained localizer on one split; returns the report document.

    Args:
        localizer: run directory, finetune directory or ``localizer.safetensors``.
        out_root: the run's ``eval`` directory; the report goes to ``<corpus>-<split>/`` in it.
        corpus: corpus path or ``demo`` (default: the finetuning corpus).
        split: split tag (default: the finetuning test split).
        decoder: ``auto`` (chosen on the validation sequences), ``reference`` (METHOD.md
            section 5, NMS on IoU), ``reference_code`` (the same with the reference code's NMS
            overlap, intersection over the other segment's length: METHOD.md section 7) or
            ``argmax``.
        timelines: timeline PNGs written (-1: all).

    Raises:
        ConfigError / CheckpointError / CorpusError: named problems of the inputs.
    """
    from sscl.data.corpus import open_corpus
    from sscl.data.loader import LoaderConfig
    from sscl.localize.evaluate import evaluate_sequences, select_decoder, trivial_baselines
    from sscl.localize.postprocess import ARGMAX, REFERENCE, REFERENCE_CODE_NMS, decode
    from sscl.localize.report import plot_timeline, write_report

    trained = load_localizer(localizer, device)
    meta = trained.meta
    same_corpus = corpus is None or corpus == meta["corpus"]
    corpus = corpus or meta["corpus"]
    path = corpus_location(corpus)
    c = open_corpus(path, memory_budget=0)
    check_layout(trained, c.layout, path)
    if list(c.class_names) != meta["class_names"]:
        raise ConfigError(f"{path}: classes {list(c.class_names)} differ from the localizer's "
                          f"{meta['class_names']}")
    if split is None:
        if not same_corpus:
            raise ConfigError("--split is needed for a corpus other than the finetuning one")
        sequences, split = tuple(meta["splits"]["test"]), "test"
    else:
        sequences = tuple(int(i) for i in c.split(split))
    lcfg = LoaderConfig(normalize=meta["normalize"])
    device = torch.device(device)
    probs = sequence_probabilities(trained, path, sequences, lcfg, device)
    labels = sequence_labels(c, sequences)
    ids = [c.meta[s]["seq_id"] for s in sequences]

    table = None
    if decoder == "auto":
        val = tuple(meta["splits"]["val"]) if same_corpus else ()
        if val:
            vprobs = sequence_probabilities(trained, path, val, lcfg, device)
            chosen, table = select_decoder(vprobs, sequence_labels(c, val), split="val",
                                           tiou_thresholds=tiou)
        else:
            log.warning("no validation sequences: using the reference decoder")
            chosen = REFERENCE
    elif decoder in FIXED_DECODERS:
        chosen = {"reference": REFERENCE, "reference_code": REFERENCE_CODE_NMS,
                  "argmax": ARGMAX}[decoder]
    else:
        raise ConfigError(f"decoder must be auto or one of {', '.join(FIXED_DECODERS)}, got "
                          f"{decoder!r}")

    metrics = evaluate_sequences(probs, labels, chosen, sequence_ids=ids, tiou_thresholds=tiou)
    train_labels = sequence_labels(c, meta["splits"]["train"]) if same_corpus else labels
    baselines = trivial_baselines(train_labels, labels, len(c.class_names), sequence_ids=ids,
                                  tiou_thresholds=tiou)
    out_dir = Path(out_root) / report_folder(corpus, split)
    write_report(out_dir, metrics, c.class_names, baselines=baselines,
                 title=f"{corpus_label(corpus)} {split}", model_name="sscl")
    if table is not None:
        from sscl.atomic import write_bytes_atomic as atomic_write_bytes

        atomic_write_bytes(out_dir / "decoder_choice.json", json.dumps(
            [{"decoder": asdict(d), "val_average_mAP": v} for d, v in table], indent=1).encode())
    n_plots = len(sequences) if timelines < 0 else min(timelines, len(sequences))
    for i in range(n_plots):
        plot_timeline(out_dir / "timelines" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(ids[i]))}"
                      ".png", labels[i], decode(probs[i], chosen), probs[i], c.class_names,
                      fps=c.fps, title=f"{ids[i]}")
    log.info("evaluation of %s on %s %s: average mAP %.4f; report in %s", trained.path, corpus,
             split, metrics["average_mAP"], out_dir)
    return {"metrics": metrics, "baselines": baselines, "out_dir": out_dir, "split": split,
            "corpus": corpus}


def summary_table(doc: dict) -> list[str]:
    """The mAP table (percent) the main job prints: the model and the trivial baselines."""
    from sscl.localize.report import map_table

    return map_table({"sscl": doc["metrics"], **doc["baselines"]}).splitlines()


class _MappedBackbone(torch.nn.Module):
    """The localizer's backbone behind its joint map: what the kNN probe embeds with."""

    def __init__(self, task: torch.nn.Module) -> None:
        super().__init__()
        self.task = task

    def embed(self, x_NCTVM: torch.Tensor, mask_NT: torch.Tensor) -> torch.Tensor:
        return self.task.localizer.backbone.embed(self.task.map_joints(x_NCTVM), mask_NT)


def evaluate_knn(localizer: str | Path, out_dir: Path, corpus: str | None = None,
                 split: str | None = None, run_config=None,
                 device: torch.device | str = "cpu") -> dict:
    """kNN top-1 of the finetuned localizer's backbone on labelled clips (``sscl evaluate
    --knn``): the pretraining monitor (``sscl.probe``) applied after finetuning.

    Memory clips come from the finetuning ``train_split`` tag, queries from ``split`` (default
    the finetuning ``test_split`` tag) of ``corpus`` (default the finetuning corpus), read with
    the localizer's normalization. Writes ``out_dir/knn.json``.

    Args:
        run_config: the run's ``Config`` (probe and split settings); None: the defaults.

    Returns:
        ``{"top1", "k", "corpus", "train_split", "test_split", "clip_length", "max_clips"}``.
    """
    from sscl import config as config_mod
    from sscl.atomic import write_bytes_atomic
    from sscl.config import Config
    from sscl.data.corpus import open_corpus
    from sscl.probe import KnnProbe

    trained = load_localizer(localizer, device)
    meta = trained.meta
    cfg = run_config if run_config is not None else Config()
    corpus = corpus or meta["corpus"]
    path = corpus_location(corpus)
    check_layout(trained, open_corpus(path, memory_budget=0).layout, path)
    ft = cfg.finetune
    probe_cfg = config_mod.replace(cfg.probe, corpus=corpus, train_split=ft.train_split,
                                   test_split=split or ft.test_split)
    loader = config_mod.replace(cfg.data.loader, normalize=meta["normalize"])
    cfg = config_mod.replace(cfg, probe=probe_cfg,
                             data=config_mod.replace(cfg.data, loader=loader))
    probe = KnnProbe.from_config(cfg)
    for tag, (_, _, labels) in probe.clips.items():
        if len(labels) == 0:
            raise ConfigError(
                f"{corpus} {tag}: no clip of {probe_cfg.clip_length} frames has one class on at "
                f"least half of its frames; lower probe.clip_length in the run's config.yaml")
    top1 = probe(_MappedBackbone(trained.model), torch.device(device))
    doc = {"top1": top1, "k": probe_cfg.k, "corpus": corpus, "train_split": ft.train_split,
           "test_split": probe_cfg.test_split, "clip_length": probe_cfg.clip_length,
           "max_clips": probe_cfg.max_clips}
    write_bytes_atomic(Path(out_dir) / "knn.json", json.dumps(doc, indent=1).encode())
    return doc
