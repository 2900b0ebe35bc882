"""Energy-based attention-guided drop (EADM) of AimCLR (Guo et al., AAAI 2022), simplified.

AimCLR drops the most attended joints and frames of the extreme view's feature map, so the
encoder must also explain the view from what is left; the dropped view's embedding then takes
part in the D3M loss beside the undropped one. The attention is SimAM's parameter-free energy
(Yang et al., ICML 2021): a unit's importance grows with its squared distance from its channel's
mean over (T, V). Here each joint and each frame is dropped with a probability proportional to
its mean importance (expected drop fraction 1 - keep_prob per axis), and the kept map is rescaled
per item to its kept fraction, as dropout and DropBlock do. AimCLR's block-shaped drops are not
reproduced. Draws are counter-based (`hashing.hash_uniform`), keyed by the caller.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .hashing import hash_uniform


def simam_importance(x_NCTV: Tensor, e_lambda: float = 1e-4) -> Tensor:
    """SimAM attention sigmoid(1 / energy) per unit. (N, C, T, V) -> (N, C, T, V) in (0.5, 1)."""
    _, _, T, V = x_NCTV.shape
    d = (x_NCTV - x_NCTV.mean(dim=(2, 3), keepdim=True)).pow(2)
    var = d.sum(dim=(2, 3), keepdim=True) / max(T * V - 1, 1)
    return torch.sigmoid(d / (4.0 * (var + e_lambda)) + 0.5)


def eadm_drop(x_NCTV: Tensor, keep_prob: float, key: Tensor, stream: int = 0) -> Tensor:
    """Drop important joints and frames of a feature map.

    Args:
        x_NCTV: (N, C, T, V) features (N may be N * M).
        keep_prob: expected fraction of joints (and of frames) kept.
        key: () int64 tensor keying the draws (the step counter); `stream` separates calls.

    Returns:
        (N, C, T, V): x with dropped joints/frames zeroed, rescaled by the kept fraction.
    """
    if keep_prob >= 1.0:
        return x_NCTV
    with torch.no_grad():
        att = simam_importance(x_NCTV.float())
        masks = []
        for axis, dims in enumerate(((1, 2), (1, 3))):  # per joint (N, V), per frame (N, T)
            a = att.mean(dim=dims)
            p = torch.clamp((1.0 - keep_prob) * a / a.mean(dim=1, keepdim=True), 0.0, 1.0)
            u = hash_uniform(tuple(p.shape), key, 2 * stream + axis)
            masks.append((u >= p).float())
        keep_NTV = masks[1].unsqueeze(2) * masks[0].unsqueeze(1)
        kept = keep_NTV.mean(dim=(1, 2), keepdim=True).clamp(min=1e-6)
        scale = (keep_NTV / kept).unsqueeze(1).to(x_NCTV.dtype)
    return x_NCTV * scale
