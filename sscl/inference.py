"""A trained localizer applied to whole sequences: frame probabilities (T, K + 1) per sequence.

Sequences longer than the localizer's ``max_length`` are read as overlapping windows (the
finetuning loader's evaluation plan, same normalization as training) whose softmax scores are
averaged back per frame by ``sscl.data.sampling.stitch``; no sequence is ever dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from sscl.errors import CheckpointError, ConfigError


@dataclass
class TrainedLocalizer:
    """A localizer with the metadata it was trained with (``localizer.json``)."""

    model: torch.nn.Module  # sscl.finetune.FrameTask (joint map + Localizer), eval mode
    meta: dict
    path: Path

    @property
    def class_names(self) -> list[str]:
        return self.meta["class_names"]


META_KEYS = ("model", "head", "embed_dim", "layout", "corpus_layout", "joint_map", "num_persons",
             "class_names", "fps", "units", "normalize", "max_length", "overlap", "corpus",
             "splits")


def save_localizer(directory: str | Path, localizer: torch.nn.Module, meta: dict) -> Path:
    """Export a localizer: ``localizer.safetensors`` (weights) + ``localizer.json`` (``meta``).

    The finetune stage's export and the tests write through this one function, so what
    :func:`load_localizer` reads has one producer. Both files are written atomically (the JSON
    last: a directory with the JSON has its weights).

    Args:
        directory: destination folder (created if needed).
        localizer: a ``sscl.models.Localizer`` (its ``state_dict`` is saved, tensors only).
        meta: the inference metadata (keys ``META_KEYS``, plus ``protocol`` and ``encoder``);
            JSON-serialisable.

    Returns:
        The weights file.

    Raises:
        CheckpointError: ``meta`` lacks a key inference needs.
    """
    from safetensors.torch import save

    from sscl.atomic import write_bytes_atomic

    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"localizer metadata lacks {missing}; expected keys {META_KEYS}")
    weights = {k: v.detach().contiguous().cpu() for k, v in localizer.state_dict().items()}
    directory = Path(directory)
    out = write_bytes_atomic(directory / "localizer.safetensors", save(weights))
    write_bytes_atomic(directory / "localizer.json", json.dumps(meta, indent=1).encode())
    return out


def run_directory(weights: Path) -> Path:
    """The run a weights file belongs to: the parent of its ``finetune/`` folder, else the
    folder holding the file."""
    weights = Path(weights)
    return weights.parent.parent if weights.parent.name == "finetune" else weights.parent


def find_localizer(path: str | Path) -> Path:
    """A run directory, its finetune stage directory or a ``localizer.safetensors`` file ->
    the weights file."""
    p = Path(path)
    for cand in (p, p / "localizer.safetensors", p / "finetune" / "localizer.safetensors"):
        if cand.is_file() and cand.suffix == ".safetensors":
            return cand
    raise CheckpointError(
        f"{path}: no trained localizer (expected a run directory with finetune/"
        f"localizer.safetensors, or that file); run the finetune stage first")


def load_localizer(path: str | Path, device: torch.device | str = "cpu") -> TrainedLocalizer:
    """Load weights (safetensors, no pickle) and rebuild the model from its metadata.

    Raises:
        CheckpointError: missing or damaged files, or weights that do not fit the metadata.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from sscl import config as config_mod
    from sscl.builders import build_backbone
    from sscl.config import ModelConfig
    from sscl.data.layouts import Layout
    from sscl.finetune import FrameTask
    from sscl.models import Localizer

    weights_path = find_localizer(path)
    meta_path = weights_path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text())
        weights = load_file(str(weights_path))
    except FileNotFoundError:
        raise CheckpointError(f"{meta_path} is missing (written beside the weights)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError) as e:
        raise CheckpointError(f"{weights_path}: damaged localizer files: {e}") from None
    check_meta(meta, meta_path)
    try:
        Layout.from_dict(meta["corpus_layout"])  # check_layout reads its joint names
        model_cfg = config_mod.build(ModelConfig, meta["model"], "model.")
        backbone = build_backbone(model_cfg, Layout.from_dict(meta["layout"]),
                                  meta["num_persons"])
        localizer = Localizer(backbone, len(meta["class_names"]), head=meta["head"],
                              embed_dim=meta["embed_dim"])
    except (KeyError, TypeError, ValueError) as e:  # SsclError's config errors are ValueErrors
        raise CheckpointError(f"{meta_path}: the model it describes cannot be built: "
                              f"{type(e).__name__}: {e}") from None
    try:
        localizer.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights_path} does not fit its metadata: {e}") from None
    model = FrameTask(localizer, "full", tuple(meta["joint_map"]) if meta["joint_map"] else None)
    return TrainedLocalizer(model.to(device).eval(), meta, weights_path)


def check_meta(meta: object, source: str | Path) -> None:
    """The metadata's keys and the types inference relies on (it is data: JSON only, paths in
    it are opened as corpora, never imported or executed).

    Raises:
        CheckpointError: a missing key or a value of the wrong type, named.
    """
    if not isinstance(meta, dict):
        raise CheckpointError(f"{source}: expected a JSON object, got {type(meta).__name__}")
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{source}: lacks {missing}; written by an older or foreign "
                              f"exporter? re-export with the finetune stage")
    types = {"model": dict, "layout": dict, "corpus_layout": dict, "splits": dict,
             "class_names": list, "head": str, "normalize": str, "corpus": str, "units": str,
             "embed_dim": int, "num_persons": int, "max_length": int, "overlap": int,
             "fps": (int, float)}
    for key, tp in types.items():
        if not isinstance(meta[key], tp) or isinstance(meta[key], bool):
            raise CheckpointError(f"{source}: {key} = {meta[key]!r} has the wrong type "
                                  f"(expected {getattr(tp, '__name__', 'a number')})")
    for part in ("train", "val", "test"):
        ids = meta["splits"].get(part)
        if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise CheckpointError(f"{source}: splits.{part} must be a list of sequence indices")
    if not all(isinstance(c, str) for c in meta["class_names"]):
        raise CheckpointError(f"{source}: class_names must be strings")
    if meta["joint_map"] is not None and not (
            isinstance(meta["joint_map"], list)
            and all(isinstance(j, int) and not isinstance(j, bool) for j in meta["joint_map"])):
        raise CheckpointError(f"{source}: joint_map must be null or a list of integers")


def check_layout(trained: TrainedLocalizer, layout, source: str) -> None:
    """Refuse input of a layout the localizer was not trained on."""
    want = trained.meta["corpus_layout"]
    names = [j["name"] for j in want["joints"]]
    if list(layout.joint_names) != names:
        raise ConfigError(
            f"{source}: layout {layout.name!r} ({layout.num_joints} joints) is not the layout "
            f"{want['name']!r} ({len(names)} joints) that {trained.path} was trained on; "
            f"convert the input to {want['name']!r} or finetune a localizer on this layout")


@torch.no_grad()
def sequence_probabilities(trained: TrainedLocalizer, corpus_path: str,
                           sequences: tuple[int, ...], loader_cfg, device: torch.device,
                           batch_size: int = 8) -> list[np.ndarray]:
    """Per sequence of ``sequences`` (in that order), (T, K + 1) float64 softmax scores.

    Args:
        loader_cfg: the run's ``LoaderConfig`` (its normalization must be the trained one).
    """
    from sscl.data.loader import make_loader
    from sscl.data.sampling import WindowSet, stitch

    if loader_cfg.normalize != trained.meta["normalize"]:
        raise ConfigError(f"normalization {loader_cfg.normalize!r} differs from the trained "
                          f"{trained.meta['normalize']!r}")
    lcfg = replace(loader_cfg, task="finetune", batch_size=batch_size, num_workers=0,
                   shuffle=False, train=False, max_length=trained.meta["max_length"],
                   overlap=trained.meta["overlap"], sequences=tuple(sequences))
    loader = make_loader(corpus_path, lcfg, engine="torch")
    windows = loader.info.windows
    scores: list[np.ndarray | None] = [None] * len(windows)
    for batch in loader.epoch(0):
        x = batch["x"].to(device)
        mask = batch["mask"].to(device)
        probs = torch.softmax(trained.model.logits(x, mask).float(), dim=1).cpu().numpy()
        for b in range(x.shape[0]):
            if batch["weight"][b] <= 0:
                continue
            w = int(batch["index"][b])
            scores[w] = probs[b, :, : int(windows.length[w])].T.astype(np.float64)
    missing = [w for w, s in enumerate(scores) if s is None]
    if missing:
        raise ConfigError(f"{len(missing)} evaluation windows got no scores")
    # stitch() indexes sequences 0..S-1: renumber the selected sequences in the given order.
    local = {s: i for i, s in enumerate(sequences)}
    from sscl.data.corpus import open_corpus

    lengths_all = open_corpus(corpus_path, memory_budget=0).lengths
    ws = WindowSet(np.array([local[int(s)] for s in windows.seq], np.int64), windows.start,
                   windows.span, windows.length)
    return stitch(scores, ws, np.asarray([lengths_all[s] for s in sequences], np.int64))
