"""The action localizer and its files.

``Localizer``: backbone + head mapping a skeleton batch to per-frame logits (N, K + 1, T)
(METHOD.md section 4): the U-shaped fusion of blocks 1, 7 and 10 (``sscl.models.fusion``) or the
"simple" ablation head; with a joint map it reads input of another layout (transfer), and the
linear protocol freezes its backbone.

Its files: ``localizer.safetensors`` (weights, no pickle) beside ``localizer.json`` (what
inference needs: model and head config, layouts, joint map, persons, classes, fps, units,
normalization, windowing, corpus and the sequences of each split). :func:`save_localizer` is
their one producer and :func:`load_localizer` their one reader; the JSON is data (paths in it are
opened as corpora, never imported or executed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from sscl import presets
from sscl.atomic import write_bytes_atomic, write_weights_atomic
from sscl.config import FinetuneConfig, ModelConfig
from sscl.data.layouts import Layout
from sscl.errors import CheckpointError, ConfigError
from sscl.models.build import build_backbone
from sscl.models.fusion import FUSION_BLOCKS, HEADS, UShapeFusion, upsample_frames
from sscl.models.layers import GCNBackbone, downsample_mask, pool_joints_persons
from sscl.rundir import find_localizer


class Localizer(nn.Module):
    """Backbone + fusion head mapping a skeleton batch to per-frame class logits.

    Args:
        backbone: an `STGCN` or `AGCN` (any `GCNBackbone` with at least 10 blocks).
        num_classes: K action classes; the logits have K + 1 rows, index K = background.
        head: "ushape" (U-shaped fusion of blocks 1, 7, 10, then Linear(embed_dim -> K + 1)) or
            "simple" (Linear(C_10 -> K + 1) on block 10, logits linearly interpolated to T).
        embed_dim: output width of the fusion's final 1x1 conv (ushape only).
        joint_map: transfer to another layout: for each joint of the backbone's layout, the
            index of the input's joint that stands for it (-1: none, zeros). None: the input has
            the backbone's layout.
    """

    def __init__(
        self, backbone: GCNBackbone, num_classes: int, head: str = "ushape", embed_dim: int = 512,
        joint_map: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("joint_map", None if joint_map is None
                             else torch.tensor(tuple(joint_map), dtype=torch.long),
                             persistent=False)
        self.frozen_backbone = False
        if head not in HEADS:
            raise ConfigError(f"head must be one of {HEADS}, got {head!r}")
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.head = head
        self.num_classes = num_classes
        channels = tuple(backbone.block_channels[b - 1] for b in FUSION_BLOCKS)
        self.factors = tuple(backbone.time_factors[b - 1] for b in FUSION_BLOCKS)
        if head == "ushape":
            self.fusion = UShapeFusion(channels, self.factors, embed_dim)
            self.classifier = nn.Linear(embed_dim, num_classes + 1)
        else:
            self.classifier = nn.Linear(channels[-1], num_classes + 1)

    def freeze_backbone(self) -> None:
        """Linear protocol: the backbone's weights stop training and it stays in eval mode, so
        its BN statistics stay too; the head trains."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.frozen_backbone = True
        self.train(self.training)

    def train(self, mode: bool = True) -> Localizer:
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()
        return self

    def map_joints(self, x_NCTVM: Tensor) -> Tensor:
        """The input in the backbone's layout (unchanged without a joint map)."""
        if self.joint_map is None:
            return x_NCTVM
        out = x_NCTVM.index_select(3, self.joint_map.clamp(min=0))
        return out * (self.joint_map >= 0).to(out.dtype).view(1, 1, 1, -1, 1)

    def embed(self, x_NCTVM: Tensor, mask_NT: Tensor | None = None) -> Tensor:
        """The backbone's pooled embedding of the input (what the kNN probe compares)."""
        return self.backbone.embed(self.map_joints(x_NCTVM), mask_NT)

    def forward(self, x_NCTVM: Tensor, mask_NT: Tensor | None = None) -> Tensor:
        """Per-frame logits.

        Args:
            x_NCTVM: (N, C, T, V, M) skeleton batch in the input's layout, any T >= 1
                (zero-padded if variable).
            mask_NT: (N, T) bool, True on real frames, or None. With a mask, real frames' logits
                do not depend on the padding in eval mode (both heads); logits of padded frames
                are meaningless and must be ignored by the loss.

        Returns:
            (N, K + 1, T) logits.
        """
        T = x_NCTVM.shape[2]
        x_NCTVM = self.map_joints(x_NCTVM)
        blocks = (FUSION_BLOCKS[-1],) if self.head == "simple" else FUSION_BLOCKS
        feats = self.backbone(x_NCTVM, return_blocks=blocks, mask_NT=mask_NT)
        maps = [pool_joints_persons(f, self.backbone.num_persons) for f in feats]
        if self.head == "simple":
            logits_NKT = self.classifier(maps[0].transpose(1, 2)).transpose(1, 2)
            if mask_NT is not None:
                logits_NKT = _hold_last_real_frame(logits_NKT, mask_NT, self.factors[-1])
            # Scale by the stride (not to size T) so the frame alignment matches the ushape head.
            logits_NKT = F.interpolate(
                logits_NKT,
                scale_factor=float(self.factors[-1]),
                mode="linear",
                align_corners=False,
            )
            return logits_NKT[..., :T]
        fused_NCT = self.fusion(*maps, mask_NT=mask_NT)
        logits_NKT = self.classifier(fused_NCT.transpose(1, 2)).transpose(1, 2)
        return upsample_frames(logits_NKT, self.factors[0], T)


def _hold_last_real_frame(x_NCT: Tensor, mask_NT: Tensor, factor: int) -> Tensor:
    """Repeat each sequence's last real frame over its padding (masks are real-frames-first).

    Linear interpolation near the end of a sequence then reads the same values as the border
    clamping of an unpadded sequence does.
    """
    real = downsample_mask(mask_NT.to(torch.bool), factor).sum(dim=1)
    frames = torch.arange(x_NCT.shape[-1], device=x_NCT.device)
    idx_NT = torch.minimum(frames.unsqueeze(0), (real - 1).clamp(min=0).unsqueeze(1))
    return x_NCT.gather(2, idx_NT.unsqueeze(1).expand(-1, x_NCT.shape[1], -1))


# ---------------------------------------------------------------- files


META_KEYS = ("model", "head", "embed_dim", "layout", "corpus_layout", "joint_map", "num_persons",
             "class_names", "fps", "units", "normalize", "max_length", "overlap", "corpus",
             "splits")


def localizer_meta(model: ModelConfig, ft: FinetuneConfig, *, layout: Layout,
                   corpus_layout: Layout, num_persons: int, class_names: Sequence[str],
                   fps: float, units: str, normalize: str, corpus: str,
                   splits: Mapping[str, Sequence[int]], encoder: Path | None) -> dict:
    """The metadata an exported localizer carries (``localizer.json``).

    Args:
        layout, corpus_layout: the backbone's layout (the pretraining corpus's) and the
            finetuning corpus's.
        splits: sequence indices of ``train``, ``val`` and ``test``.
        encoder: the pretrained encoder the backbone started from (None: from scratch).
    """
    return {
        "model": presets.to_dict(model), "head": ft.head, "embed_dim": ft.embed_dim,
        "layout": layout.to_dict(), "corpus_layout": corpus_layout.to_dict(),
        "joint_map": list(ft.joint_map) if ft.joint_map is not None else None,
        "num_persons": int(num_persons), "class_names": list(class_names), "fps": float(fps),
        "units": units, "normalize": normalize, "max_length": ft.max_length,
        "overlap": ft.overlap, "corpus": corpus,
        "splits": {part: [int(i) for i in splits[part]] for part in ("train", "val", "test")},
        "protocol": ft.protocol, "encoder": str(encoder) if encoder else None,
    }


def save_localizer(weights: str | Path, localizer: Localizer, meta: dict) -> Path:
    """Export a localizer: its weights (``weights``, e.g. ``StageDir.localizer_weights``) and
    the ``.json`` beside them, both atomically (the JSON last: with the JSON, the weights are
    there).

    Args:
        weights: the ``.safetensors`` file to write (folders created if needed).
        localizer: its ``state_dict`` is saved (tensors only).
        meta: :func:`localizer_meta`'s mapping (JSON-serialisable).

    Returns:
        The weights file.

    Raises:
        CheckpointError: ``meta`` lacks a key inference needs.
    """
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"localizer metadata lacks {missing}; expected keys {META_KEYS}")
    out = write_weights_atomic(weights, localizer.state_dict())
    write_bytes_atomic(out.with_suffix(".json"), json.dumps(meta, indent=1).encode())
    return out


@dataclass
class TrainedLocalizer:
    """A loaded localizer (eval mode, its joint map applied) with its metadata."""

    model: Localizer
    meta: dict
    path: Path

    @property
    def class_names(self) -> list[str]:
        return self.meta["class_names"]

    def check_layout(self, layout: Layout, source: str) -> None:
        """Refuse input of a layout the localizer was not trained on.

        Raises:
            ConfigError: both layouts named, and the fix.
        """
        want = self.meta["corpus_layout"]
        names = [j["name"] for j in want["joints"]]
        if list(layout.joint_names) != names:
            raise ConfigError(
                f"{source}: layout {layout.name!r} ({layout.num_joints} joints) is not the layout "
                f"{want['name']!r} ({len(names)} joints) that {self.path} was trained on; "
                f"convert the input to {want['name']!r} or finetune a localizer on this layout")


def load_localizer(path: str | Path, device: torch.device | str = "cpu") -> TrainedLocalizer:
    """Load weights (safetensors, no pickle) and rebuild the model from its metadata.

    Args:
        path: a run directory, its finetune folder or a ``localizer.safetensors``.

    Raises:
        CheckpointError: missing or damaged files, or weights that do not fit the metadata.
    """
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
        model_cfg = presets.build(ModelConfig, meta["model"], "model.")
        backbone = build_backbone(model_cfg, Layout.from_dict(meta["layout"]),
                                  meta["num_persons"])
        localizer = Localizer(backbone, len(meta["class_names"]), head=meta["head"],
                              embed_dim=meta["embed_dim"], joint_map=meta["joint_map"])
    except (KeyError, TypeError, ValueError) as e:  # SsclError's config errors are ValueErrors
        raise CheckpointError(f"{meta_path}: the model it describes cannot be built: "
                              f"{type(e).__name__}: {e}") from None
    try:
        localizer.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{weights_path} does not fit its metadata: {e}") from None
    return TrainedLocalizer(localizer.to(device).eval(), meta, weights_path)


def check_meta(meta: object, source: str | Path) -> None:
    """The metadata's keys and the types inference relies on.

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
