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
    except (json.JSONDecodeError, SafetensorError) as e:
        raise CheckpointError(f"{weights_path}: damaged localizer files: {e}") from None
    model_cfg = config_mod.build(ModelConfig, meta["model"], "model.")
    backbone = build_backbone(model_cfg, Layout.from_dict(meta["layout"]), meta["num_persons"])
    localizer = Localizer(backbone, len(meta["class_names"]), head=meta["head"],
                          embed_dim=meta["embed_dim"])
    try:
        localizer.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights_path} does not fit its metadata: {e}") from None
    model = FrameTask(localizer, "full", tuple(meta["joint_map"]) if meta["joint_map"] else None)
    return TrainedLocalizer(model.to(device).eval(), meta, weights_path)


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
    from sscl.data.reader import open_corpus

    lengths_all = open_corpus(corpus_path, memory_budget=0).lengths
    ws = WindowSet(np.array([local[int(s)] for s in windows.seq], np.int64), windows.start,
                   windows.span, windows.length)
    return stitch(scores, ws, np.asarray([lengths_all[s] for s in sequences], np.int64))
