"""The input pipeline's schema and what it reports: :class:`LoaderConfig` (what the pipeline
needs from the run config) and :class:`LoaderInfo` (what a trainer needs to know about it).

Both engines (``sscl.data.loader``'s torch DataLoader, ``sscl.data.pipeline``'s DALI source),
the batch stages (``sscl.data.batch_source``) and the packed layouts (``sscl.data.packing``)
take these types, so they live here, in a module that imports none of those: every import
between the pipeline's modules then points one way. ``sscl.data.loader`` re-exports
``LoaderConfig`` with ``make_loader`` (the README's import); code in this repository imports it
from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sscl.data.augment import AugmentConfig
from sscl.data.layouts import Layout
from sscl.data.normalize import check_mode
from sscl.data.sampling import EpochPlan, WindowSet
from sscl.errors import ConfigError


@dataclass(frozen=True)
class LoaderConfig:
    """What the input pipeline needs from the run config.

    Attributes:
        task: ``"pretrain"`` (augmented views) or ``"finetune"`` (whole sequences / windows).
        seed: run seed; with the epoch and the global sample index it seeds every draw.
        batch_size: per-rank batch size.
        num_workers: reader/augment worker processes (0: in the main process, torch engine).
        prefetch: batches prefetched per worker (torch) / queue depth (DALI).
        shuffle: shuffle the epoch order (training); False keeps corpus order (evaluation).
        raw_length: pretraining: frames R read per window before crop + resize to L.
        window_mode: pretraining: ``"per_sequence"`` or ``"dense"`` (see sampling).
        dense_stride: pretraining dense mode: frames per window (default ``raw_length``).
        max_length: finetuning: longest window read in one piece.
        overlap: finetuning: frames shared by consecutive sliding windows.
        train: finetuning: apply the training-time cap policy ``train_long``.
        train_long: finetuning: ``"windows"``, ``"crop"`` or ``"skip"`` for long sequences.
        sequences: restrict to these sequence indices (e.g. a label-fraction subset); None: all.
        augment: augmentation parameters for pretraining (``sscl.data.augment.AugmentConfig``).
        normalize: NTU-style normalisation (``sscl.data.normalize``, METHOD.md section 1) of
            every window, inside the batch kernels: ``"first"`` (default: centred on person 0's
            spine middle at the sequence's first tracked frame, which keeps global translation),
            ``"frame"`` (each frame centred on its own spine middle) or ``"none"``; both
            rotate the sequence to its first tracked frame's body axes (spine +z, shoulders
            +x). References are per sequence, so every window of a sequence agrees.
        extreme: pretraining: also make AimCLR's extremely augmented third view.
        strong_key: pretraining: draw the key view with the extreme recipe (noise, blur, axis
            mask, ...) instead of a third view: SkeletonCLR with a strong second view, the
            AimCLR feeder's two-view mode. Excludes ``extreme``.
        pin_memory: with CUDA available (torch engine), hand out batches in page-locked
            memory: copied from the workers' shared ring slot into a buffer of torch's caching
            host allocator (see :class:`TorchLoader`), ready for ``non_blocking`` copies.
        memory_budget: bytes of decoded corpus each worker may hold (None: the reader's
            default); bounds a worker's private memory on corpora larger than it.
        map_joints: on a corpus larger than ``memory_budget``, memory-map the raw joints
            (``sscl.data.open_corpus``): pages come from the page cache, shared by the workers,
            and windows are read in place. False reads through each worker's chunk cache
            (every decoded byte inside the budget).
        dali_group: pretraining, DALI engine: batches per DALI sample. DALI's own work in the
            training process (scheduling a worker task, receiving its shared-memory batch, the
            pipeline run and the PyTorch plugin) is paid once per sample, so grouping divides
            it (measured: see ``sscl.data.pipeline``). Changes no batch, only the hand-off.
        locality: training order. 0: windows shuffled uniformly. k > 0: block-local shuffle:
            blocks of ``loader.LOCALITY_BLOCK`` corpus frames in random order, k consecutive
            blocks interleaved, so on a corpus larger than ``memory_budget`` each worker decodes a
            chunk about once a pass instead of once a window (batches then draw from about k
            blocks). Part of the sample order: set it in the config, never by the machine.
        nonfinite: a NaN or infinite coordinate at a valid joint of the corpus (which the
            writer never stores; a foreign or damaged corpus may): ``"refuse"`` (a CorpusError
            with their count, the default) or ``"mask"`` (the joint is marked missing, its
            coordinates zeroed, and counted: ``sscl.data.reader.Corpus.nonfinite_masked``).
            ``"mask"`` needs ``map_joints`` off on corpora larger than ``memory_budget``
            (mapped joints are read-only).
    """

    task: str = "pretrain"
    seed: int = 0
    batch_size: int = 64
    num_workers: int = 2
    prefetch: int = 2
    shuffle: bool = True
    raw_length: int = 300
    window_mode: str = "per_sequence"
    dense_stride: int | None = None
    max_length: int = 1000
    overlap: int = 0
    train: bool = True
    train_long: str = "windows"
    sequences: tuple[int, ...] | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    normalize: str = "first"
    extreme: bool = False
    strong_key: bool = False
    pin_memory: bool = True
    memory_budget: int | None = None
    map_joints: bool = True
    dali_group: int = 4
    locality: int = 0
    nonfinite: str = "refuse"

    def __post_init__(self) -> None:
        check_mode(self.normalize)
        if self.nonfinite not in ("refuse", "mask"):
            raise ConfigError(
                f"loader.nonfinite must be 'refuse' or 'mask', got {self.nonfinite!r}")
        if self.dali_group < 1:
            raise ConfigError(
                f"loader.dali_group must be >= 1 (batches per DALI sample), got {self.dali_group}"
            )
        if self.extreme and self.strong_key:
            raise ConfigError(
                "loader.extreme and loader.strong_key are both set; strong_key puts the extreme "
                "recipe on the key view, extreme adds it as a third view: choose one"
            )


@dataclass(frozen=True, eq=False)  # eq=False: holds arrays (windows); compared by identity
class LoaderInfo:
    """What a trainer needs to know about its input pipeline, read from the corpus header (no
    frame data is loaded): ``loader.info`` on both engines.

    Attributes:
        layout: the corpus's skeleton layout (joints, bones, adjacency, flip pairs).
        num_persons: persons per frame M.
        class_names: the K action classes (label K is background).
        fps: corpus frame rate.
        units: coordinate units (the corpus format stores metres, right-handed, y up).
        normalize: the normalisation applied to every window (``LoaderConfig.normalize``).
        frame_shape: (V, C, M) of one frame; batches are (B, C, T, V, M).
        windows: the epoch's window set (``sscl.data.sampling.WindowSet``; for ``stitch``).
        task: ``"pretrain"`` or ``"finetune"``.
        views: the pretraining views in batch order (``("query", "key")``, plus
            ``"extreme"``); empty for finetuning.
        tempos: the tempo set every view draws from (``AugmentConfig.tempos``); batch key
            ``<view>_tempo`` holds each sample's draw, float32.
        out_len: frames L of every pretraining view.
        batch_size: per-rank batch size B.
        world_size: number of ranks; rank: this rank.
        engine: ``"torch"`` or ``"dali"``, the engine that runs.
    """

    layout: Layout
    num_persons: int
    class_names: tuple[str, ...]
    fps: float
    units: str
    normalize: str
    frame_shape: tuple[int, int, int]
    windows: WindowSet = field(repr=False)
    task: str
    views: tuple[str, ...]
    tempos: tuple[float, ...]
    out_len: int
    batch_size: int
    world_size: int
    rank: int
    engine: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def num_steps(self, epoch: int) -> int:
        """Batches this rank yields in ``epoch`` (every rank the same; the last padded)."""
        return EpochPlan(0, epoch, len(self.windows), self.world_size, self.batch_size).num_steps
