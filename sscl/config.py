"""Typed run configuration: frozen dataclasses, YAML presets, strict ``--set`` overrides.

The dataclasses are the schema (torchtitan's job config); presets in ``sscl/configs/*.yaml`` are
data that fill them in; ``--set a.b=v`` must name an existing field and is coerced to its type
(nanoGPT's configurator guard: an unknown key fails with the list of valid ones). A resolved
config is a plain dict of JSON-able values (:func:`to_dict`) written into the run directory and
into every checkpoint.

Sections: ``run`` (where, how long, threads, precision, checkpoints), ``data`` (corpus and the
input pipeline: ``sscl.data.loader.LoaderConfig``), ``model`` (backbone), ``optim``,
``pretrain`` (the contrastive method: ``sscl.contrastive.ContrastiveConfig``), ``probe`` (the
kNN monitor), ``finetune`` and ``evaluate`` (localization).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from sscl.contrastive.config import ContrastiveConfig
from sscl.data.loader_config import LoaderConfig
from sscl.errors import ConfigError

STAGES = ("pretrain", "finetune", "eval", "all")


@dataclass(frozen=True)
class RunConfig:
    """Where a run lives and how it uses the machine.

    Attributes:
        name: run name; the run directory defaults to ``./runs/<name>``.
        stage: what ``sscl/train.py`` does: ``pretrain``, ``finetune``, ``eval`` or ``all``.
        seed: seeds every draw (samples, augmentation, initialisation, dropout).
        threads: torch intra-op threads per process: ``"auto"`` (cores / local processes) or
            a number. ``accelerate launch`` exports OMP_NUM_THREADS=1; this overrides it.
        deterministic: deterministic algorithms and a pinned thread count, so a resumed run is
            bitwise identical to an uninterrupted one (CPU).
        precision: ``auto`` (bf16 on GPUs that have it, fp32 on CPUs without native bf16),
            ``fp32``, ``bf16`` or ``fp16`` (with a gradient scaler).
        cpu: run on the CPU even where CUDA is present.
        checkpoint_every_s: checkpoint when this many seconds passed since the last one.
        checkpoint_every_steps: also checkpoint every this many optimizer steps (0: off).
        keep_last: checkpoints kept (older ones are deleted after a new one is complete).
        log_every: optimizer steps between TensorBoard/log lines.
        max_nonfinite: consecutive non-finite steps skipped before the run aborts.
        dist_timeout_s: collective timeout: a dead rank ends the others within about this.
    """

    name: str = "demo"
    stage: str = "pretrain"
    seed: int = 0
    threads: str = "auto"
    deterministic: bool = True
    precision: str = "auto"
    cpu: bool = False
    checkpoint_every_s: float = 30.0
    checkpoint_every_steps: int = 0
    keep_last: int = 3
    log_every: int = 10
    max_nonfinite: int = 10
    dist_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ConfigError(f"run.stage must be one of {STAGES}, got {self.stage!r}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(
                f"run.precision must be auto, fp32, bf16 or fp16, got {self.precision!r}"
            )
        if self.threads != "auto" and not (self.threads.isdigit() and int(self.threads) > 0):
            raise ConfigError(f"run.threads must be 'auto' or a positive integer, got "
                              f"{self.threads!r}")
        if self.keep_last < 1:
            raise ConfigError(f"run.keep_last must be >= 1, got {self.keep_last}")
        # The run directory is ./runs/<name>: a name that is a path could escape ./runs.
        if (not self.name or self.name in (".", "..") or "/" in self.name or "\\" in self.name
                or "\0" in self.name):
            raise ConfigError(
                f"run.name must be one folder name (no '/', '\\', '..'), got {self.name!r}; "
                f"to put the run elsewhere pass --run-dir PATH")
        if not 0 < self.dist_timeout_s < 1e7:
            raise ConfigError(f"run.dist_timeout_s must be a positive number of seconds, got "
                              f"{self.dist_timeout_s}")


@dataclass(frozen=True)
class DataConfig:
    """The training corpus and its input pipeline.

    Attributes:
        corpus: a corpus path or URL, or ``"demo"`` (the embedded synthetic corpus, generated
            once under ``$SSCL_CACHE``).
        split: split tag of the sequences to train on (e.g. ``xsub:train``); None: all.
        engine: input engine, ``auto``, ``torch`` or ``dali`` (``sscl.data.loader.make_loader``).
        loader: the input pipeline's config; its ``seed`` is replaced by ``run.seed`` and its
            ``task`` by the stage.
    """

    corpus: str = "demo"
    split: str | None = "xsub:train"
    engine: str = "auto"
    loader: LoaderConfig = field(default_factory=LoaderConfig)


@dataclass(frozen=True)
class ModelConfig:
    """The backbone (METHOD.md section 3).

    Attributes:
        backbone: ``stgcn`` or ``agcn``.
        width: channel multiplier of the 10-block plan (0.25: the SSL 16..64 channels).
        last_channels: channels of block 10 (None: from ``width``); AimCLR's SSL ST-GCN keeps
            256.
        dropout: dropout after the temporal BN of blocks 2-10 (ST-GCN).
        input_norm: batch norm of the input coordinates (off in the AGCN localizer preset).
        init: initialisation scheme: ``torch``, ``agcn`` or ``skeletonclr``.
        adjacency: graph partition: None (the backbone's own: ``spatial`` for ST-GCN, the
            2s-AGCN ``agcn`` stack(I, In, Out) for AGCN), ``spatial``, ``stgcn`` (the partition
            ST-GCN's released code computes; AimCLR trains with it) or ``agcn``.
    """

    backbone: str = "stgcn"
    width: float = 0.25
    last_channels: int | None = None
    dropout: float = 0.0
    input_norm: bool = True
    init: str = "torch"
    adjacency: str | None = None

    def __post_init__(self) -> None:
        if self.backbone not in ("stgcn", "agcn"):
            raise ConfigError(f"model.backbone must be 'stgcn' or 'agcn', got {self.backbone!r}")
        if not 0 < self.width <= 4:
            raise ConfigError(f"model.width must be in (0, 4], got {self.width}")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and schedule (the schedule is a pure function of the step: exact on resume).

    Attributes:
        name: ``sgd``, ``adam`` or ``adamw``.
        lr: base learning rate (after warm-up).
        momentum, nesterov: SGD.
        weight_decay: L2 / decoupled weight decay.
        epochs: epochs to train.
        max_steps: stop after this many optimizer steps (None: ``epochs`` decides).
        warmup_epochs: linear warm-up from ``lr / (warmup steps)`` to ``lr``.
        schedule: ``step`` (x ``gamma`` at each of ``milestones``, in epochs), ``cosine`` (to 0
            at the end) or ``constant``.
        milestones, gamma: step schedule.
        accumulate: micro-batches per optimizer step (gradient accumulation).
        clip_norm: clip the gradient's global L2 norm to this (None: no clipping).
    """

    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    epochs: int = 600
    max_steps: int | None = None
    warmup_epochs: float = 0.0
    schedule: str = "step"
    milestones: tuple[float, ...] = (550,)
    gamma: float = 0.1
    accumulate: int = 1
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        if self.name not in ("sgd", "adam", "adamw"):
            raise ConfigError(f"optim.name must be sgd, adam or adamw, got {self.name!r}")
        if self.schedule not in ("step", "cosine", "constant"):
            raise ConfigError(
                f"optim.schedule must be step, cosine or constant, got {self.schedule!r}"
            )
        if self.accumulate < 1:
            raise ConfigError(f"optim.accumulate must be >= 1, got {self.accumulate}")
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")


@dataclass(frozen=True)
class ProbeConfig:
    """The kNN monitor of pretraining: does the encoder learn?

    Top-1 of a k-nearest-neighbour classifier (cosine) on embeddings of labelled clips, train
    split as the memory, test split as the queries. Step 0's figure is the random-init encoder.

    Attributes:
        corpus: a labelled corpus (path, URL or ``"demo"``); None: no probe.
        train_split, test_split: split tags of the memory and the queries.
        every_epochs: probe every this many epochs (and at the end).
        clip_length: frames per clip (the pretraining view length is the natural choice).
        max_clips: clips per split at most (a seeded subset).
        k: neighbours.
    """

    corpus: str | None = "demo"
    train_split: str = "xsub:train"
    test_split: str = "xsub:test"
    every_epochs: int = 2
    clip_length: int = 100
    max_clips: int = 800
    k: int = 20


PROTOCOLS = ("full", "linear", "scratch")
DECODERS = ("auto", "reference", "reference_code", "argmax")


@dataclass(frozen=True)
class FinetuneConfig:
    """Finetuning the localizer on frame labels (METHOD.md section 4).

    Attributes:
        protocol: ``full`` (everything trained), ``linear`` (backbone frozen; fusion and head
            trained) or ``scratch`` (random initialisation: the control). The kNN probe is
            ``probe`` (run during pretraining and by ``sscl evaluate --knn``).
        encoder: pretrained encoder weights (``encoder.safetensors``); ``auto``: the run's own
            pretraining output; ignored by ``scratch``.
        corpus: the labelled corpus; ``null``: ``data.corpus`` (a different one is transfer).
        train_split, test_split: split tags.
        val_fraction: share of the labelled training sequences held out for validation (choice
            of the decoder; never the test split).
        label_fraction: share of the remaining training sequences whose labels are used
            (semi-supervised; seeded, every class keeps at least one sequence).
        joint_map: transfer to another layout: for each joint of the pretraining layout, the
            index of the finetuning corpus's joint that stands for it (-1: none, zeros).
        head: ``ushape`` or ``simple``.
        embed_dim: fusion output width.
        max_length: frames read in one piece; longer sequences are overlapping windows.
        overlap: frames shared by consecutive windows (evaluation stitches their scores).
        train_long: training-time policy for long sequences: ``windows``, ``crop``, ``skip``.
        batch_size, num_workers: finetuning loader.
        optim: finetuning optimizer (Adam, lr 1e-4 U-shaped, 40 epochs, x0.1 at 30 and 35,
            10 warm-up epochs in the paper's preset).
    """

    protocol: str = "full"
    encoder: str | None = "auto"
    corpus: str | None = None
    train_split: str = "xsub:train"
    test_split: str = "xsub:test"
    val_fraction: float = 0.1
    label_fraction: float = 1.0
    joint_map: tuple[int, ...] | None = None
    head: str = "ushape"
    embed_dim: int = 512
    max_length: int = 1000
    overlap: int = 250
    train_long: str = "crop"
    batch_size: int = 8
    num_workers: int = 2
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        name="adam", lr=1e-4, weight_decay=1e-4, epochs=40, warmup_epochs=10.0,
        schedule="step", milestones=(30.0, 35.0), gamma=0.1))

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(f"finetune.protocol must be one of {PROTOCOLS}, got "
                              f"{self.protocol!r}")
        if not 0 < self.label_fraction <= 1:
            raise ConfigError(f"finetune.label_fraction must be in (0, 1], got "
                              f"{self.label_fraction}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"finetune.val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation (METHOD.md section 5).

    Attributes:
        decoder: ``auto`` (chosen on the validation split), ``reference`` (METHOD.md section
            5, NMS on IoU), ``reference_code`` (the reference code's NMS overlap, intersection
            over the other segment's length: METHOD.md section 7) or ``argmax``.
        tiou: temporal IoU thresholds of the mAP table.
        timelines: timeline PNGs written (``-1``: every sequence).
    """

    decoder: str = "auto"
    tiou: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)
    timelines: int = 20

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ConfigError(f"evaluate.decoder must be one of {DECODERS}, got "
                              f"{self.decoder!r}")


@dataclass(frozen=True)
class Config:
    """A whole run."""

    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


# ---------------------------------------------------------------- presets, overrides, coercion


def presets() -> dict[str, str]:
    """Preset name -> its first comment line (the description), from ``sscl/configs``."""
    out = {}
    for entry in sorted(resources.files("sscl.configs").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".yaml"):
            first = entry.read_text().splitlines()[:1]
            out[entry.name[:-5]] = first[0].lstrip("# ").strip() if first else ""
    return out


def load_preset(name_or_path: str) -> dict:
    """The raw mapping of a preset name or a YAML path (data only: ``yaml.safe_load``)."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {name_or_path} does not exist")
        text, origin = path.read_text(), str(path)
    else:
        known = presets()
        if name_or_path not in known:
            raise ConfigError(
                f"unknown preset {name_or_path!r}; presets: {', '.join(known)} (or a .yaml path)"
            )
        text = (resources.files("sscl.configs") / f"{name_or_path}.yaml").read_text()
        origin = f"preset {name_or_path}"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(data).__name__}")
    return data


def build(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested mapping, strictly (unknown keys fail)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(
                f"unknown config key {where + key!r}; valid keys of {where or 'the config'}"
                f"{'' if not where else ''}: {', '.join(names)}"
            )
        f = next(f for f in fields(cls) if f.name == key)
        if isinstance(value, dict) and f.default_factory is not dataclasses.MISSING:
            # A partial section overrides the field's own default (finetune.optim is Adam),
            # not the section class's defaults.
            default = f.default_factory()
            if is_dataclass(default):
                value = _deep_merge(to_dict(default), value)
        kwargs[key] = _coerce(hints[key], value, where + key)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where or 'config'}: {e}") from None


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if is_dataclass(tp):
        if is_dataclass(value):
            return value
        return build(tp, value, where + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} fits none of {tp}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {value!r}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; a float field takes it as a number.
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if tp is Any:
        return value
    raise ConfigError(f"{where}: cannot read a value of type {tp}")


def to_dict(cfg: Any) -> dict:
    """The config as nested plain dicts and lists (JSON/YAML-able)."""

    def conv(v: Any) -> Any:
        if is_dataclass(v):
            return {f.name: conv(getattr(v, f.name)) for f in fields(v) if f.init}
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        return v

    return conv(cfg)


def parse_set(item: str) -> tuple[list[str], Any]:
    """``a.b=v`` -> (["a", "b"], v) with ``v`` read as a YAML scalar or list."""
    if "=" not in item:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. optim.lr=0.05), got {item!r}")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _merge(base: dict, keys: list[str], value: Any) -> None:
    node = base
    for k in keys[:-1]:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            node[k] = nxt
        node = nxt
    node[keys[-1]] = value


def _check_path(keys: list[str]) -> None:
    """Fail on an unknown ``--set`` key, listing the valid keys at the level it broke."""
    cls: Any = Config
    for depth, k in enumerate(keys):
        if not is_dataclass(cls):
            raise ConfigError(f"--set {'.'.join(keys)}: {'.'.join(keys[:depth])} is a value, "
                              "not a section")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in fields(cls) if f.init]
        if k not in names:
            where = ".".join(keys[:depth]) or "the config"
            raise ConfigError(
                f"unknown config key {'.'.join(keys)!r}; valid keys of {where}: {', '.join(names)}"
            )
        tp = hints[k]
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(tp) if is_dataclass(a)]
            tp = inner[0] if inner else tp
        cls = tp


def resolve(config: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Preset (name or path; None: ``demo``) + ``--set`` overrides -> a validated Config."""
    data = load_preset(config or "demo")
    for item in overrides:
        keys, value = parse_set(item)
        _check_path(keys)
        _merge(data, keys, value)
    return build(Config, data)


def from_dict(data: dict) -> Config:
    """Rebuild a Config from :func:`to_dict`'s output (a checkpoint's or run's config)."""
    return build(Config, data)


def dumps(cfg: Config) -> str:
    """The resolved config as YAML text (what the run directory keeps)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)
