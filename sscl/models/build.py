"""A backbone: built from the run's model config, and its pretrained weights saved and loaded.

Pretraining, finetuning, inference and the benchmarks build their backbones here, so the same
config gives the same network everywhere. Pretraining exports the query backbone as
``encoder.safetensors`` beside ``encoder.json``: what finetuning needs, without optimizer state
or queues.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from sscl.atomic import write_bytes_atomic, write_weights_atomic
from sscl.config import ModelConfig
from sscl.data.layouts import Layout
from sscl.errors import CheckpointError, ConfigError
from sscl.models.agcn import AGCN
from sscl.models.layers import GCNBackbone
from sscl.models.stgcn import STGCN


def build_backbone(model: ModelConfig, layout: Layout | str, num_persons: int) -> GCNBackbone:
    """The backbone of ``model`` for a corpus's layout and person count.

    Raises:
        ConfigError: an option of one backbone given to the other.
    """
    common = dict(num_persons=num_persons, width=model.width, input_norm=model.input_norm,
                  init=model.init)
    if model.adjacency is not None:
        common["adjacency"] = model.adjacency
    if model.backbone == "stgcn":
        return STGCN(layout, last_channels=model.last_channels, dropout=model.dropout, **common)
    if model.last_channels is not None:
        raise ConfigError("model.last_channels is an ST-GCN option; AGCN keeps its plan")
    return AGCN(layout, **common)


def save_encoder(weights: Path, backbone: GCNBackbone, meta: dict) -> Path:
    """Export pretrained backbone weights (``weights``, e.g. ``StageDir.encoder_weights``) and
    the ``.json`` beside them (backbone config, layout, persons, normalization, corpus, method),
    both atomically, the JSON last.

    Returns:
        The weights file.
    """
    out = write_weights_atomic(weights, backbone.state_dict())
    write_bytes_atomic(out.with_suffix(".json"), json.dumps(meta, indent=1).encode())
    return out


def encoder_meta(path: Path) -> dict | None:
    """The ``encoder.json`` beside pretrained weights, or None when there is none."""
    meta = Path(path).with_suffix(".json")
    return json.loads(meta.read_text()) if meta.is_file() else None


def load_encoder(backbone: GCNBackbone, path: Path) -> None:
    """Pretrained weights into ``backbone`` (strict).

    Raises:
        CheckpointError: the file is missing or damaged, or its weights do not fit
            ``backbone`` (the mismatch named).
    """
    if not Path(path).is_file():
        raise CheckpointError(
            f"pretrained encoder {path} does not exist; run the pretrain stage first, set "
            f"finetune.encoder to an encoder.safetensors, or use finetune.protocol=scratch")
    try:
        weights = load_file(str(path))
    except SafetensorError as e:
        raise CheckpointError(f"pretrained encoder {path} is damaged: {e}") from None
    try:
        backbone.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"pretrained encoder {path} does not fit model {type(backbone).__name__} of this "
            f"config (backbone, width, layout must match the pretraining run): {e}") from None
