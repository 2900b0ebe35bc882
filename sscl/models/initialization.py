"""Weight initialization schemes of the backbones, chosen by name.

- ``"torch"``: PyTorch's constructor defaults (convolutions and linear layers
  ``kaiming_uniform_(a=sqrt(5))`` with bias U(+-1/sqrt(fan_in)), batch norm weight 1 and bias 0)
  and, for the graph convolution's (K, C', C) weight, U(+-1/sqrt(C)): the default of the 1x1
  ``Conv2d(C, K * C')`` it replaces. What a freshly built model has.
- ``"agcn"``: 2s-AGCN (Shi et al., CVPR 2019; its ``conv_init``, ``conv_branch_init`` and
  ``bn_init``): convolutions Kaiming-normal with fan-out (std sqrt(2 / fan_out)) and bias 0; the
  per-subset graph convolutions N(0, sqrt(2 / (C' * C * K))); batch norm weight 1, bias 0, except
  the BN that closes AGCN's graph unit, weight 1e-6, so each unit starts as its skip path.
  2s-AGCN has one convolution per subset where this code has one merged weight or conv per
  module, so fan-outs are per subset: (K, C', C) graph weights use C' * C * K as above, and the
  K * C_e-channel embeddings of the adaptive graph use std sqrt(2 / C_e), not sqrt(2 / (K C_e)).
  Linear layers (none in the backbones) N(0, sqrt(2 / out_features)), bias 0, as its classifier.
- ``"skeletonclr"``: the ST-GCN training code's ``weights_init``, used by SkeletonCLR, AimCLR
  and the seed's pretraining: convolution (graph convolutions included) and linear weights
  N(0, 0.02), biases 0; batch norm weights N(1, 0.02), biases 0.

Every scheme resets ST-GCN's edge importance to 1 and AGCN's learned offset B_k to 1e-6 (these
are not drawn). Modules own their reference rules through an optional method
``init_parameters(scheme, generator)``, called after the generic pass, so this module does not
need to know the block classes.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sscl.errors import ConfigError

INIT_SCHEMES = ("torch", "agcn", "skeletonclr")

_CONVS = (nn.Conv1d, nn.Conv2d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def check_scheme(scheme: str) -> str:
    """The scheme name, checked.

    Raises:
        ConfigError: not one of `INIT_SCHEMES`.
    """
    if scheme not in INIT_SCHEMES:
        raise ConfigError(
            f"init scheme {scheme!r}: expected one of {', '.join(INIT_SCHEMES)} "
            "(torch = PyTorch defaults, agcn = 2s-AGCN, skeletonclr = N(0, 0.02) convs)"
        )
    return scheme


def _torch_default(weight: torch.Tensor, bias: torch.Tensor | None, g: torch.Generator | None):
    # nn.Conv*/nn.Linear.reset_parameters, with an explicit generator.
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=g)
    if bias is not None:
        fan_in = weight[0].numel()
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound, generator=g)


def _init_generic(module: nn.Module, scheme: str, g: torch.Generator | None) -> None:
    if isinstance(module, (*_CONVS, nn.Linear)):
        if scheme == "torch":
            _torch_default(module.weight, module.bias, g)
            return
        if scheme == "skeletonclr":
            nn.init.normal_(module.weight, 0.0, 0.02, generator=g)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / module.out_features), generator=g)
        else:
            nn.init.kaiming_normal_(module.weight, mode="fan_out", generator=g)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, _NORMS) and module.affine:
        if scheme == "skeletonclr":
            nn.init.normal_(module.weight, 1.0, 0.02, generator=g)
        else:
            nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_weights(
    model: nn.Module, scheme: str, generator: torch.Generator | None = None
) -> nn.Module:
    """Re-initialize every parameter of `model` by a named scheme (module docstring).

    Args:
        model: a backbone (or any module built from these layers).
        scheme: "torch", "agcn" or "skeletonclr".
        generator: the random source; None draws from torch's global generator.

    Returns:
        `model`, initialized in place. Running batch-norm statistics are left as they are.

    Raises:
        ConfigError: unknown scheme.
    """
    check_scheme(scheme)
    with torch.no_grad():
        for module in model.modules():
            _init_generic(module, scheme, generator)
        for module in model.modules():
            hook = getattr(module, "init_parameters", None)
            if hook is not None:
                hook(scheme, generator)
    return model
