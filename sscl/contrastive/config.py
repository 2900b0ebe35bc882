"""The schema of the contrastive pretraining method: one frozen dataclass, validated on creation.

Defaults are the paper's settings (METHOD.md section 2; (code) = the SnipCLR reference code's
value): MoCo v2 with a 32768-key queue, momentum 0.999, temperature 0.07, 128-d embeddings, the
snippet branch on with N = 19 snippets and weight 1.5, nearest-neighbour mining off.
`required_window` turns the snippet count into the window length a backbone needs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from sscl.errors import ConfigError

METHODS = ("skeletonclr", "aimclr", "rvtclr")
BN_MODES = ("shuffle", "local")


def required_window(num_snippets: int, time_factor: int) -> int:
    """Smallest clip length T whose last-block map has at least `num_snippets` frames.

    A backbone with cumulative stride f maps T frames to T' = ceil(T / f), so T' >= N exactly
    when T >= (N - 1) * f + 1: 73 frames for ST-GCN (f = 4) and 145 for AGCN (f = 8) at N = 19.

    Args:
        num_snippets: N.
        time_factor: the backbone's cumulative temporal stride (`backbone.time_factors[-1]`).

    Returns:
        The minimal T.
    """
    return (num_snippets - 1) * time_factor + 1


@dataclass(frozen=True)
class ContrastiveConfig:
    """Settings of the pretraining method (`Pretrainer`).

    Attributes:
        method: base method, "skeletonclr" (two views), "aimclr" (adds the extreme view and its
            D3M loss) or "rvtclr" (relative tempo pairs built in the model; needs `position`).
        queue_size: keys in the global queue (MoCo's K).
        snippet_queue_size: keys in the snippet queue; None = `queue_size`.
        momentum: EMA momentum of the key encoder.
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
    queue_size: int = 32768
    snippet_queue_size: int | None = None
    momentum: float = 0.999
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
        for name in ("queue_size", "feature_dim", "num_snippets", "bn_splits",
                     "mine_topk_global", "mine_topk_snippet"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise bad(name, "an integer >= 1")
        if self.snippet_queue_size is not None and not self.snippet_queue_size >= 1:
            raise bad("snippet_queue_size", "an integer >= 1, or None for queue_size")
        if not 0.0 <= self.momentum < 1.0:
            raise bad("momentum", "0 <= momentum < 1 (MoCo: 0.999)")
        if not self.temperature > 0.0:
            raise bad("temperature", "a positive number (MoCo v2: 0.07)")
        for name in ("snippet_weight", "d3m_weight", "tempo_weight", "tempo_margin"):
            if not getattr(self, name) >= 0.0:
                raise bad(name, "a number >= 0")
        if self.mine_from_epoch is not None and self.mine_from_epoch < 0:
            raise bad("mine_from_epoch", "an epoch >= 0, or None to switch mining off")
        if self.mine_topk_global > self.queue_size:
            raise bad("mine_topk_global", f"at most queue_size={self.queue_size}")
        if self.mine_topk_snippet > self.snippet_queue:
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
    def snippet_queue(self) -> int:
        """Size of the snippet queue."""
        return self.queue_size if self.snippet_queue_size is None else self.snippet_queue_size

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
