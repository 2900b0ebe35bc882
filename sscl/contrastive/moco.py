"""One pretraining step of the snippet-contrastive method: `Pretrainer.forward(batch, epoch)`.

Base methods (METHOD.md section 2): SkeletonCLR (MoCo v2 on two views), AimCLR (plus the extreme
view's D3M loss, optional EADM), RVTCLR (relative tempo pairs: the other-tempo key is a second
positive and the tempo head ranks the keys). The snippet branch adds L_snip with weight 1.5;
`ContrastiveConfig.snippet` switches it, so base versus base + snippet is one key.

Order of one step (MoCo's):
1. keys: the key encoder (no gradient; shuffle-BN across ranks, see `collectives`) encodes the
   key clips of all ranks; the global key batch, in rank order, is the same on every rank;
2. queries: the query encoder encodes this rank's query (and extreme) clips;
3. losses against the queues as they were before this step;
4. enqueue (training mode only): the global keys of all ranks with weight > 0, in rank order.
   (Keys are written after the loss, so the logits use a copy of the queue: autograd keeps it.)
The trainer then runs backward and the optimizer step, and calls `after_optimizer_step(step)`,
the key encoder's EMA update, after each optimizer step (MoCo updates the key encoder at the
start of the next forward, which is the same thing). Under DistributedDataParallel call it on
the unwrapped module.

Weights: padding items (weight 0) contribute nothing. The returned loss is this rank's share
sum_i w_i l_i * W / sum_all w: DDP averages gradients over the W ranks, so the update is the
gradient of the global weighted mean, exactly as one process with the whole batch would take.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

from sscl.config import ContrastiveConfig
from sscl.errors import ConfigError

from .collectives import all_gather_cat, encode_in_splits, encode_keys, world
from .eadm import eadm_drop
from .encoder import Encoder, check_snippets, momentum_update
from .hashing import hash_keys
from .losses import (
    d3m_kl,
    info_nce,
    match_snippets,
    mined_positives,
    queue_logits,
    snippet_logits,
    tempo_ranking,
    top1,
    weighted_mean,
)
from .memory import KeyQueue
from .tempo import tempo_clips, tempo_is_2x

BackboneSource = nn.Module | Callable[[], nn.Module]


class Pretrainer(nn.Module):
    """Query encoder, its EMA key encoder, the queues, and the loss of one step.

    Args:
        cfg: the method's settings.
        backbone: a backbone instance (e.g. `sscl.models.STGCN(...)`) or a zero-argument factory
            returning one. It becomes the query encoder's backbone; the key encoder is a deep copy.

    Submodules and buffers (all in `state_dict()`, all needed for an exact resume):
        encoder_q: `Encoder` (backbone + heads), trained by the optimizer.
        encoder_k: its EMA copy (requires_grad False; exclude it from the optimizer).
        queue: `KeyQueue` of global keys (buffers keys_KD, ptr, filled).
        snippet_queue: `KeyQueue` of the snippet branch's negatives, one key per past key video
            (`cfg.snippet_negatives`: its time-averaged dense embedding, one sampled snippet, or
            the reference code's static queue); None without the snippet branch.
        calls: () int64 step counter; keys the shuffle-BN permutations and EADM draws.
    """

    def __init__(self, cfg: ContrastiveConfig, backbone: BackboneSource) -> None:
        super().__init__()
        for name, size in (("queue_size", cfg.queue_size),
                           ("snippet_queue_size", cfg.snippet_queue)):
            if not isinstance(size, int):
                raise ConfigError(
                    f"pretrain.{name}={size!r} must be resolved to a number before the model is "
                    f"built (sscl.stages.pretraining.resolve_queue_sizes does it from the corpus)")
        if not isinstance(backbone, nn.Module):
            backbone = backbone()
        self.cfg = cfg
        self.encoder_q = Encoder(
            backbone,
            cfg.feature_dim,
            cfg.num_snippets if cfg.snippet else 0,
            tempo_head=cfg.method == "rvtclr",
        )
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.queue = KeyQueue(cfg.queue_size, cfg.feature_dim, seed=cfg.seed)
        self.snippet_queue = (
            KeyQueue(cfg.snippet_queue, cfg.feature_dim, seed=cfg.seed + 1)
            if cfg.snippet else None
        )
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        self._tempo_checked = False

    @property
    def backbone(self) -> nn.Module:
        """The query encoder's backbone (what finetuning and the kNN probe use)."""
        return self.encoder_q.backbone

    def momentum_update(self, step: int | None = None) -> None:
        """EMA step of the key encoder (k = m k + (1 - m) q, buffers copied) after optimizer step
        ``step``, at that step's momentum (`ContrastiveConfig.momentum_at`; None: the final
        momentum)."""
        m = self.cfg.momentum if step is None else self.cfg.momentum_at(step)
        momentum_update(self.encoder_k, self.encoder_q, m)

    def after_optimizer_step(self, step: int) -> None:
        """The trainer's hook after optimizer step ``step``: the key encoder's EMA update."""
        self.momentum_update(step)

    def sync_key_encoder(self) -> None:
        """Make the key encoder an exact copy of the query encoder (parameters and buffers).

        Call it after re-initialising or loading weights into `encoder_q` alone (e.g.
        `sscl.models.init_weights(p.encoder_q, "skeletonclr")`, the reference code's init of
        backbone and heads), so the EMA starts from the query encoder as MoCo's does.
        """
        momentum_update(self.encoder_k, self.encoder_q, 0.0)

    def clip_length(self, window: int) -> int:
        """Frames the backbone sees of a `window`-frame view (RVTCLR plays half of it)."""
        return window // 2 if self.cfg.method == "rvtclr" else window

    def check_window(self, window: int) -> None:
        """Raise ConfigError now if `window`-frame views are too short for the snippet count."""
        if self.cfg.snippet:
            check_snippets(self.clip_length(window), self.cfg.num_snippets,
                           self.encoder_q.time_factor, self._length_note(window))

    def forward(self, batch: Mapping[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss of one step (and, in training mode, the enqueue of this step's keys).

        Args:
            batch: device tensors: "query", "key" (and "extreme" for aimclr / extreme_view)
                (B, C, L, V, M) float; "weight" (B,) float (0 = padding item); "position" (B,)
                int64 (rvtclr). Other keys are ignored. The batch size must be the same on
                every rank and divisible by bn_splits.
            epoch: 0-based epoch (nearest-neighbour mining starts at cfg.mine_from_epoch).

        Returns:
            (loss, metrics): loss a scalar with gradient (this rank's share, see the module
            docstring); metrics detached scalars over this rank's real items: "loss" (the
            unscaled weighted mean), "loss_global", "top1_global", "queue_fill", and by method
            "loss_global_tempo", "loss_tempo" (rvtclr), "loss_d3m" (extreme view),
            "loss_snippet", "top1_snippet", "snippet_queue_fill", "snippet_coherence" (snippet
            branch; see `Encoder.forward`: a value falling towards 0 says the snippet task is
            being solved by making time-means uninformative). Average them over ranks.

        Raises:
            ConfigError: a view is missing or misshapen, or too short for the snippets.
        """
        cfg = self.cfg
        self._check_batch(batch)
        rank, W = world()
        weight = batch["weight"].float()
        B = weight.shape[0]
        x_q, x_k, x_other = batch["query"], batch["key"], None
        if cfg.method == "rvtclr":
            two_x = tempo_is_2x(batch["position"], epoch, cfg.seed)
            x_q, _ = tempo_clips(x_q, two_x)
            x_k, x_other = tempo_clips(x_k, two_x)
        if cfg.snippet:
            check_snippets(x_q.shape[2], cfg.num_snippets, self.encoder_q.time_factor,
                           self._length_note(batch["query"].shape[2]))
        shuffle = cfg.bn_mode == "shuffle"

        # 1. keys of all ranks, then this rank's rows.
        def key_fn(x: Tensor) -> dict[str, Tensor]:
            return self.encoder_k(x, snippets=cfg.snippet)

        k_all = encode_keys(key_fn, x_k, cfg.bn_splits, shuffle, self.calls, stream=0)
        other_all = (
            encode_keys(key_fn, x_other, cfg.bn_splits, shuffle, self.calls, stream=1)
            if x_other is not None else None
        )
        mine = slice(rank * B, (rank + 1) * B)
        k = {n: v[mine] for n, v in k_all.items()}
        k_other = None if other_all is None else {n: v[mine] for n, v in other_all.items()}
        weight_all = all_gather_cat(weight)

        # 2. queries (and the extreme view).
        q = encode_in_splits(lambda x: self.encoder_q(x, snippets=cfg.snippet), x_q,
                             cfg.bn_splits)
        e = self._encode_extreme(batch["extreme"]) if cfg.uses_extreme else None

        # 3. loss terms, one value per item; in float32 even inside an autocast region (logits
        # of similarities / 0.07 lose too much in bf16).
        with torch.autocast(device_type=weight.device.type, enabled=False):
            terms, metrics = self._terms(q, k, k_other, e, epoch, weight)
        scale = {"snippet": cfg.snippet_weight, "d3m": cfg.d3m_weight, "tempo": cfg.tempo_weight}
        total_N = sum(scale.get(name, 1.0) * v for name, v in terms.items())
        loss = (weight * total_N).sum() * W / weight_all.sum().clamp(min=1e-12)
        metrics["loss"] = weighted_mean(total_N.detach(), weight)
        for name, v in terms.items():
            metrics[f"loss_{name}"] = weighted_mean(v.detach(), weight)

        # 4. enqueue the keys of all ranks (rvtclr: the other-tempo keys, as the reference).
        if self.training:
            enq = k_all if other_all is None else other_all
            self.queue.enqueue(enq["global"], weight_all)
            if self.snippet_queue is not None:
                self.snippet_queue.enqueue(self.snippet_keys(enq), weight_all,
                                           advance=cfg.snippet_negatives != "reference")
            self.calls += 1
        metrics["queue_fill"] = self.queue.filled.float() / self.queue.size
        if self.snippet_queue is not None:
            metrics["snippet_queue_fill"] = (
                self.snippet_queue.filled.float() / self.snippet_queue.size
            )
        return loss, metrics

    def _terms(
        self,
        q: dict[str, Tensor],
        k: dict[str, Tensor],
        k_other: dict[str, Tensor] | None,
        e: dict[str, Tensor] | None,
        epoch: int,
        weight: Tensor,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Per-item loss terms (N,) by name, and the top-1 metrics."""
        cfg = self.cfg
        T = cfg.temperature
        mining = cfg.mining(epoch)
        queue_KD = self.queue.keys_KD.clone()  # enqueue writes in place before backward
        terms: dict[str, Tensor] = {}
        metrics: dict[str, Tensor] = {}
        logits = queue_logits(q["global"], k["global"], queue_KD, T)
        neg_rows = [logits[:, 1:]]
        if e is not None:
            logits_e = queue_logits(e["global"], k["global"], queue_KD, T)
            neg_rows.append(logits_e[:, 1:])
        pos_mask = (
            mined_positives(neg_rows, cfg.mine_topk_global, self.queue.valid_mask())
            if mining else None
        )
        terms["global"] = info_nce(logits, pos_mask)
        metrics["top1_global"] = weighted_mean(top1(logits), weight)
        if k_other is not None:
            logits_o = queue_logits(q["global"], k_other["global"], queue_KD, T)
            terms["global_tempo"] = info_nce(logits_o, pos_mask)
            terms["tempo"] = tempo_ranking(q["tempo"], k["tempo"], k_other["tempo"], T,
                                           cfg.tempo_margin)
        if e is not None:
            d3m = d3m_kl(logits, logits_e)
            if "global_drop" in e:  # AimCLR averages the extreme and the dropped extreme terms
                logits_ed = queue_logits(e["global_drop"], k["global"], queue_KD, T)
                d3m = 0.5 * (d3m + d3m_kl(logits, logits_ed))
            terms["d3m"] = d3m
        if self.snippet_queue is not None:
            # RVTCLR base: the snippets match the other-tempo key, the key that is enqueued.
            ks = k if k_other is None else k_other
            match = match_snippets(q["snip_feat"], ks["snip_feat"],
                                   cosine=cfg.snippet_match == "cosine")
            s_logits = snippet_logits(q["dense"], ks["dense"], match,
                                      self.snippet_queue.keys_KD.clone(), T)
            s_mask = (
                mined_positives([s_logits[..., 1:]], cfg.mine_topk_snippet,
                                self.snippet_queue.valid_mask())
                if mining else None
            )
            terms["snippet"] = info_nce(s_logits, s_mask).mean(dim=1)
            metrics["top1_snippet"] = weighted_mean(top1(s_logits).mean(dim=1), weight)
            metrics["snippet_coherence"] = weighted_mean(q["dense_coherence"].detach(), weight)
        return terms, metrics

    def snippet_keys(self, keys: dict[str, Tensor]) -> Tensor:
        """(W*B, D) what each key video of the step leaves in the snippet queue."""
        if self.cfg.snippet_negatives != "sampled":
            return keys["dense_mean"]
        dense_NDS = keys["dense"]
        N, _, S = dense_NDS.shape
        # One snippet per video from a counter-based hash of (step, global item): the same
        # choice on any number of processes, and no global generator state to save.
        pick_N = hash_keys(N, self.calls, stream=3).remainder(S)
        return dense_NDS[torch.arange(N, device=dense_NDS.device), :, pick_N]

    def _encode_extreme(self, x_extreme: Tensor) -> dict[str, Tensor]:
        """The extreme view through the query encoder (and EADM's dropped copy)."""
        cfg = self.cfg
        streams = iter(range(cfg.bn_splits))

        def drop(feat: Tensor) -> Tensor:
            return eadm_drop(feat, cfg.eadm_keep_prob, self.calls, next(streams))

        return encode_in_splits(
            lambda x: self.encoder_q(x, snippets=False, drop=drop if cfg.eadm else None),
            x_extreme, cfg.bn_splits,
        )

    def _length_note(self, window: int) -> str:
        if self.cfg.method != "rvtclr":
            return ""
        return (f"; rvtclr plays half of each {window}-frame view (1x: the first half, 2x: every "
                "second frame), so views must be twice that long")

    def _check_batch(self, batch: Mapping[str, Tensor]) -> None:
        cfg = self.cfg
        need = ["query", "key", "weight"]
        if cfg.uses_extreme:
            need.append("extreme")
        if cfg.method == "rvtclr":
            need.append("position")
        missing = [n for n in need if n not in batch]
        if missing:
            why = " (aimclr / extreme_view needs the loader's extreme view)" if (
                "extreme" in missing) else ""
            raise ConfigError(
                f"pretraining batch lacks {missing} for method={cfg.method!r}{why}; it has "
                f"{sorted(batch)}"
            )
        shape = tuple(batch["query"].shape)
        for n in ["query", "key"] + (["extreme"] if cfg.uses_extreme else []):
            if batch[n].dim() != 5 or tuple(batch[n].shape) != shape:
                raise ConfigError(
                    f"batch[{n!r}] must be (B, C, L, V, M) like batch['query'] {shape}, got "
                    f"{tuple(batch[n].shape)}"
                )
        if tuple(batch["weight"].shape) != shape[:1]:
            raise ConfigError(
                f"batch['weight'] must be (B,) = ({shape[0]},), got {tuple(batch['weight'].shape)}"
            )
        if cfg.method == "rvtclr" and not self._tempo_checked:
            # One host sync, once: the tempo pairs are built here from 1x views.
            for n in ("query_tempo", "key_tempo"):
                if n in batch and bool((batch[n] != 1.0).any()):
                    raise ConfigError(
                        f"method=rvtclr builds its 1x/2x pairs in the model from 1x views, but "
                        f"batch[{n!r}] has tempos other than 1.0; set the loader's tempo_2x_prob "
                        "to 0 for rvtclr"
                    )
            self._tempo_checked = True
