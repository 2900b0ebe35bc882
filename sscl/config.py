"""The run configuration's schema: one frozen dataclass per section, validated on creation.

The dataclasses are the schema (torchtitan's job config); ``sscl.presets`` fills them from YAML
presets and strict ``--set`` overrides. Sections: ``run`` (where, how long, threads, precision,
checkpoints), ``data`` (corpus and the input pipeline: ``sscl.data.loader.LoaderConfig``),
``model`` (backbone), ``optim``, ``pretrain`` (the contrastive method, METHOD.md section 2),
``probe`` (the kNN monitor), ``finetune`` and ``evaluate`` (localization).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

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


METHODS = ("skeletonclr", "aimclr", "rvtclr")
BN_MODES = ("shuffle", "local")
SNIPPET_NEGATIVES = ("mean", "sampled", "reference")
SNIPPET_MATCHES = ("cosine", "dot")
AUTO = "auto"


@dataclass(frozen=True)
class ContrastiveConfig:
    """Settings of the pretraining method (`Pretrainer`).

    Attributes:
        method: base method, "skeletonclr" (two views), "aimclr" (adds the extreme view and its
            D3M loss) or "rvtclr" (relative tempo pairs built in the model; needs `position`).
        queue_size: keys in the global queue (MoCo's K), or "auto": a quarter of the distinct
            windows of an epoch (``sscl.stages.pretraining.resolve_queue_sizes``; the number is
            what the run's config.yaml records). A queue as large as the corpus holds stale
            copies of the query's own clip as negatives.
        snippet_queue_size: keys in the snippet queue; None = `queue_size`; "auto" as above.
        momentum: EMA momentum of the key encoder (after the ramp, if any).
        momentum_start: None: `momentum` from the first step. A number: the key encoder's
            momentum at step 0, raised to `momentum` along a half cosine over
            `momentum_ramp_steps` optimizer steps (BYOL / MoCo v3's schedule, on the step
            alone, so a resumed run is exact). With 0.999 from the start, a run of a few hundred
            steps leaves the key encoder mostly at its initial weights.
        momentum_ramp_steps: length of that ramp.
        snippet_negatives: what a key video leaves in the snippet queue. "mean": its dense
            embeddings averaged over snippets (METHOD.md section 2); "sampled": one of its
            snippets, drawn by a counter-based hash of (step, item) (the same on any number of
            processes); "reference": the published code's queue, whose write pointer never
            moves, so it holds the last step's time-mean keys and, in every other slot, its
            initial random unit vectors (METHOD.md section 7). With "mean", position alone can
            solve the snippet task (METHOD.md section 8), so the default is "sampled"
            (docs/RESULTS.md: the shortcut diagnostics before and after); the reproduction
            presets set "reference".
        snippet_match: how a query snippet finds its positive among the key's snippets:
            argmax of the "cosine" similarity of backbone snippet features (DenseCL), or of
            their raw "dot" product (the reference code).
        diagnostics_every: optimizer steps between the snippet branch's shortcut diagnostics
            (``Pretrainer.shortcut_diagnostics``, logged to TensorBoard; 0: never).
        temperature: InfoNCE temperature, shared by every logit of the method.
        feature_dim: width of the global and dense embeddings.
        snippet: add the snippet branch (the paper's contribution); False = the base method
            alone, so the ablation is this one key.
        num_snippets: N, snippets per clip (adaptive pooling of the last block along time).
        snippet_weight: weight of L_snip in L = L_base + w * L_snip.
        mine_from_epoch: first epoch (0-based, as handed to `forward`) of nearest-neighbour
            mining; None = never.
        mine_topk_global: queue neighbours of the query taken as extra global positives.
        mine_topk_snippet: snippet-queue neighbours of each query snippet taken as extra
            snippet positives.
        bn_mode: key-encoder batch statistics across ranks: "shuffle" (MoCo's shuffle-BN) or
            "local" (each rank's own keys, no shuffle).
        bn_splits: batch-norm groups per rank: the local batch is encoded in this many equal
            slices (query and key encoders alike), so one process can emulate the BN grouping
            of `bn_splits` ranks (MoCo's single-device SplitBatchNorm idea).
        extreme_view: add AimCLR's extreme view and D3M loss to skeletonclr/rvtclr (the
            reference code's RVTCLR base has it); aimclr always uses it.
        d3m_weight: weight of the D3M term.
        eadm: AimCLR's energy-based attention-guided drop on the extreme view's feature map
            (a second, dropped extreme embedding; the D3M term averages both).
        eadm_keep_prob: expected fraction of joints/frames kept by the drop.
        tempo_weight: weight of RVTCLR's relative-tempo ranking loss.
        tempo_margin: its margin, in logit units (similarity / temperature).
        seed: seeds the initial random queue keys, the shuffle-BN permutations, RVTCLR's tempo
            choice and the EADM draws (identical on every rank).
    """

    method: str = "skeletonclr"
    queue_size: int | str = 32768
    snippet_queue_size: int | str | None = None
    momentum: float = 0.999
    momentum_start: float | None = None
    momentum_ramp_steps: int = 1000
    snippet_negatives: str = "sampled"
    snippet_match: str = "cosine"
    diagnostics_every: int = 50
    temperature: float = 0.07
    feature_dim: int = 128
    snippet: bool = True
    num_snippets: int = 19
    snippet_weight: float = 1.5
    mine_from_epoch: int | None = None
    mine_topk_global: int = 1
    mine_topk_snippet: int = 5
    bn_mode: str = "shuffle"
    bn_splits: int = 1
    extreme_view: bool = False
    d3m_weight: float = 1.0
    eadm: bool = False
    eadm_keep_prob: float = 0.9
    tempo_weight: float = 1.0
    tempo_margin: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(field: str, expected: str) -> ConfigError:
            return ConfigError(
                f"contrastive config: {field}={getattr(self, field)!r}; expected {expected}"
            )

        if self.method not in METHODS:
            raise bad("method", f"one of {', '.join(METHODS)}")
        if self.bn_mode not in BN_MODES:
            raise bad("bn_mode", f"one of {', '.join(BN_MODES)}")
        for name in ("feature_dim", "num_snippets", "bn_splits", "mine_topk_global",
                     "mine_topk_snippet", "momentum_ramp_steps"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise bad(name, "an integer >= 1")
        if not (self.queue_size == AUTO or (isinstance(self.queue_size, int)
                                            and self.queue_size >= 1)):
            raise bad("queue_size", "an integer >= 1 or 'auto'")
        if not (self.snippet_queue_size in (None, AUTO) or (
                isinstance(self.snippet_queue_size, int) and self.snippet_queue_size >= 1)):
            raise bad("snippet_queue_size", "an integer >= 1, 'auto', or None for queue_size")
        if not 0.0 <= self.momentum < 1.0:
            raise bad("momentum", "0 <= momentum < 1 (MoCo: 0.999)")
        if self.momentum_start is not None and not 0.0 <= self.momentum_start <= self.momentum:
            raise bad("momentum_start", f"None or a number in [0, momentum={self.momentum}]")
        if self.snippet_negatives not in SNIPPET_NEGATIVES:
            raise bad("snippet_negatives", f"one of {', '.join(SNIPPET_NEGATIVES)}")
        if self.snippet_match not in SNIPPET_MATCHES:
            raise bad("snippet_match", f"one of {', '.join(SNIPPET_MATCHES)}")
        if not (isinstance(self.diagnostics_every, int) and self.diagnostics_every >= 0):
            raise bad("diagnostics_every", "an integer >= 0 (0: no diagnostics)")
        if not self.temperature > 0.0:
            raise bad("temperature", "a positive number (MoCo v2: 0.07)")
        for name in ("snippet_weight", "d3m_weight", "tempo_weight", "tempo_margin"):
            if not getattr(self, name) >= 0.0:
                raise bad(name, "a number >= 0")
        if self.mine_from_epoch is not None and self.mine_from_epoch < 0:
            raise bad("mine_from_epoch", "an epoch >= 0, or None to switch mining off")
        if isinstance(self.queue_size, int) and self.mine_topk_global > self.queue_size:
            raise bad("mine_topk_global", f"at most queue_size={self.queue_size}")
        if isinstance(self.snippet_queue, int) and self.mine_topk_snippet > self.snippet_queue:
            raise bad("mine_topk_snippet", f"at most the snippet queue's {self.snippet_queue}")
        if not 0.0 < self.eadm_keep_prob <= 1.0:
            raise bad("eadm_keep_prob", "0 < keep_prob <= 1 (AimCLR: 0.9)")
        if self.eadm and not self.uses_extreme:
            raise ConfigError(
                f"contrastive config: eadm=True needs the extreme view, but method="
                f"{self.method!r} with extreme_view=False has none; set method=aimclr or "
                "extreme_view=true"
            )

    @property
    def snippet_queue(self) -> int | str:
        """Size of the snippet queue (or "auto")."""
        return self.queue_size if self.snippet_queue_size is None else self.snippet_queue_size

    def momentum_at(self, step: int) -> float:
        """The key encoder's EMA momentum after optimizer step ``step`` (0-based)."""
        if self.momentum_start is None or step >= self.momentum_ramp_steps:
            return self.momentum
        ramp = 0.5 * (1.0 - math.cos(math.pi * step / self.momentum_ramp_steps))
        return self.momentum_start + (self.momentum - self.momentum_start) * ramp

    @property
    def uses_extreme(self) -> bool:
        """Whether batches must carry the `extreme` view (aimclr, or extreme_view=True)."""
        return self.method == "aimclr" or self.extreme_view

    def mining(self, epoch: int) -> bool:
        """Whether nearest-neighbour mining is on at `epoch`."""
        return self.mine_from_epoch is not None and epoch >= self.mine_from_epoch

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The valid keys, for error messages of config loaders."""
        return tuple(f.name for f in fields(cls))


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
        scratch_control: also finetune the from-scratch control on the same labelled
            sequences with the same schedule and seed, into ``<run>/finetune-scratch/``, and
            evaluate it beside the run's localizer (the main job shows both).
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
    scratch_control: bool = False
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
