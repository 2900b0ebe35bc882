"""The stages of the main job and the summary a run ends with.

``pretrain`` runs the contrastive loop (``sscl.engine``); ``finetune``, ``eval`` and ``all``
(pretrain, finetune, evaluate) run the localization stages.
"""

from __future__ import annotations

from sscl.config import Config
from sscl.errors import ConfigError
from sscl.runtime import RunDir


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def run_stages(cfg: Config, rd: RunDir, acc, resume: str | None) -> list[str]:
    """Run the configured stage(s); returns the summary lines (the last begins ``final:``)."""
    stage = cfg.run.stage
    if stage != "pretrain":
        raise ConfigError(f"run.stage={stage!r} is not available in this build; use pretrain")
    from sscl.engine import pretrain

    state = pretrain(cfg, rd, acc, resume)
    knn = {int(k): v for k, v in state.knn.items()}
    first = knn.get(0)
    last = knn[max(knn)] if knn else None
    lines = [
        f"run directory: {rd.root}",
        f"  log:         {rd.log_file}",
        f"  config:      {rd.config_file}",
        f"  checkpoints: {rd.checkpoints} (last: {state.final_checkpoint.name})",
        f"  encoder:     {rd.root / 'encoder.safetensors'}",
        f"  tensorboard: tensorboard --logdir {rd.events}",
    ]
    if state.skipped:
        lines.append(f"  skipped steps (non-finite): {state.skipped}")
    lines.append(f"final: step {state.step}, loss {state.last_loss:.4f}, kNN top-1 {_fmt(last)}"
                 f" (random init {_fmt(first)})")
    return lines
