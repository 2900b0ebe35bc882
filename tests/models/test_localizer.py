"""Tests of the U-shaped fusion and the localizer heads (sscl.models.fusion)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sscl.errors import ConfigError
from sscl.models.agcn import AGCN
from sscl.models.fusion import UShapeFusion, upsample_frames
from sscl.models.localizer import Localizer
from sscl.models.stgcn import STGCN

BACKBONES = {"stgcn": STGCN, "agcn": AGCN}


def fixed_input(shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# Golden values (torchtune style). Produced once by: torch.manual_seed(0); loc =
# Localizer(cls("ntu25", num_persons=2, width=0.25), 4, head=head); y =
# loc(fixed_input((2, 3, 24, 25, 2))) in training mode; then (y.mean(), y.std()).
# Regenerated with the backbones' reference graphs (NTU-25 graph centre and hand edges, AGCN's
# stack(I, In, Out), ST-GCN's V * C input norm).
GOLDEN_LOGITS = {
    ("stgcn", "ushape"): (0.059101883322000504, 0.2333936244249344),
    ("stgcn", "simple"): (0.2796589434146881, 0.38608211278915405),
    ("agcn", "ushape"): (0.04030947759747505, 0.21240898966789246),
    ("agcn", "simple"): (0.14415571093559265, 0.5077012181282043),
}


@pytest.mark.parametrize("name, head", GOLDEN_LOGITS)
def test_models_localizer_golden_values(name, head):
    torch.manual_seed(0)
    loc = Localizer(BACKBONES[name]("ntu25", num_persons=2, width=0.25), 4, head=head)
    y = loc(fixed_input((2, 3, 24, 25, 2)))
    assert y.shape == (2, 5, 24)
    assert (y.mean().item(), y.std().item()) == pytest.approx(
        GOLDEN_LOGITS[(name, head)], rel=1e-4, abs=1e-5
    )


def test_models_fusion_widths_follow_the_backbone():
    full = Localizer(AGCN("ntu25", width=1.0), 4)
    assert full.fusion.widths == {"x01": 192, "x11": 384, "x02": 640, "out_in": 896}
    assert full.fusion.out.in_channels == 896 and full.fusion.out.out_channels == 512
    assert full.classifier.in_features == 512 and full.classifier.out_features == 5
    quarter = Localizer(AGCN("ntu25", width=0.25), 4)
    assert quarter.fusion.widths == {"x01": 48, "x11": 96, "x02": 160, "out_in": 224}
    simple = Localizer(AGCN("ntu25", width=1.0), 4, head="simple")
    assert simple.classifier.in_features == 256 and not hasattr(simple, "fusion")


def test_models_fusion_equals_nearest_interpolation_when_lengths_divide():
    x = fixed_input((2, 3, 5))
    torch.testing.assert_close(upsample_frames(x, 4, 20), F.interpolate(x, size=20, mode="nearest"))
    assert upsample_frames(x, 4, 18).shape == (2, 3, 18)
    torch.manual_seed(0)
    fusion = UShapeFusion((4, 8, 16), (1, 4, 8), embed_dim=12)
    out = fusion(fixed_input((2, 4, 40)), fixed_input((2, 8, 10)), fixed_input((2, 16, 5)))
    assert out.shape == (2, 12, 40)
    with pytest.raises(ConfigError, match="divide"):
        UShapeFusion((4, 8, 16), (1, 3, 8))


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("head", ["ushape", "simple"])
@pytest.mark.parametrize("layout, C, M, T", [("ntu25", 3, 2, 77), ("coco17", 2, 1, 20)])
def test_models_localizer_shapes(name, head, layout, C, M, T):
    loc = Localizer(BACKBONES[name](layout, num_persons=M, width=0.125), 3, head=head)
    V = loc.backbone.layout.num_joints
    y = loc(fixed_input((2, C, T, V, M)))
    assert y.shape == (2, 4, T)  # exact input T, also when T is not a multiple of 8
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("head", ["ushape", "simple"])
def test_models_localizer_gradient_reaches_every_parameter(head):
    torch.manual_seed(0)
    loc = Localizer(AGCN("ntu25", num_persons=2, width=0.125), 3, head=head, embed_dim=32)
    labels = torch.randint(0, 4, (2, 21), generator=torch.Generator().manual_seed(3))
    F.cross_entropy(loc(fixed_input((2, 3, 21, 25, 2))), labels).backward()
    missing = [n for n, p in loc.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


@pytest.mark.parametrize("name", BACKBONES)
@pytest.mark.parametrize("head", ["ushape", "simple"])
def test_models_localizer_padding_does_not_leak_in_eval(name, head):
    torch.manual_seed(0)
    loc = Localizer(BACKBONES[name]("ntu25", width=0.125), 3, head=head, embed_dim=32)
    with torch.no_grad():  # move the BN running statistics away from the identity
        loc(fixed_input((4, 3, 24, 25, 1), seed=5) * 3 + 1)
    loc.eval()
    short, full = fixed_input((1, 3, 37, 25, 1), seed=2), fixed_input((1, 3, 53, 25, 1), seed=4)
    batch = torch.full((2, 3, 53, 25, 1), 5.0)  # garbage in the padding
    batch[0, :, :37], batch[1] = short[0], full[0]
    mask = torch.arange(53).unsqueeze(0) < torch.tensor([[37], [53]])
    with torch.no_grad():
        y = loc(batch, mask)
        torch.testing.assert_close(y[:1, :, :37], loc(short), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(y[1:], loc(full), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BACKBONES)
def test_models_localizer_bf16_autocast_close_to_fp32(name):
    # bf16 keeps 8 mantissa bits (relative step 2**-8 ~ 0.4%); through ~25 layers the logits
    # stay within a few percent of fp32, norm-wise. Tolerance: 5% relative.
    torch.manual_seed(0)
    loc = Localizer(BACKBONES[name]("ntu25", num_persons=2, width=0.125), 3, embed_dim=32)
    loc.eval()
    x = fixed_input((1, 3, 16, 25, 2))
    with torch.no_grad():
        ref = loc(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = loc(x)
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    assert ((low.float() - ref).norm() / ref.norm()).item() < 0.05


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_models_localizer_cuda_autocast_close_to_fp32(dtype):
    # Same judgement as on CPU: finite, and within 5% of fp32 norm-wise (fp16 has 11 mantissa
    # bits, bf16 8). T = 300 exercises the similarity sum of C_k over many frames in fp16.
    torch.manual_seed(0)
    loc = Localizer(AGCN("ntu25", num_persons=2, width=0.25), 4).cuda().eval()
    x = fixed_input((2, 3, 300, 25, 2)).cuda()
    with torch.no_grad():
        ref = loc(x)
        with torch.autocast("cuda", dtype=dtype):
            low = loc(x)
    assert low.dtype == dtype
    assert torch.isfinite(low).all()
    assert ((low.float() - ref).norm() / ref.norm()).item() < 0.05


def test_models_localizer_bf16_autocast_backward():
    torch.manual_seed(0)
    loc = Localizer(AGCN("openni15", width=0.125), 3, embed_dim=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = loc(fixed_input((2, 3, 16, 15, 1)))
    F.cross_entropy(y.float(), torch.zeros(2, 16, dtype=torch.long)).backward()
    for name, p in loc.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name


def test_models_localizer_rejects_bad_config():
    with pytest.raises(ConfigError, match="head"):
        Localizer(AGCN("ntu25", width=0.125), 3, head="mlp")
    with pytest.raises(ConfigError, match="num_classes"):
        Localizer(AGCN("ntu25", width=0.125), 0)


# Golden loss curve (torchtitan style). Produced once by: torch.manual_seed(0); loc =
# Localizer(AGCN("ntu25", num_persons=2, width=0.125), 3, embed_dim=32); Adam(lr=1e-3); six
# steps of frame cross-entropy on fixed_input((2, 3, 20, 25, 2)) against labels
# torch.randint(0, 4, (2, 20), generator seeded 3). The fused op and graph_conv_ref agreed to 3e-7.
# Regenerated when AGCN took 2s-AGCN's stack(I, In, Out) over the ST-GCN NTU-25 graph.
GOLDEN_LOSSES = [1.415616, 1.284417, 1.192525, 1.12033, 1.059657, 1.003495]


@pytest.mark.isa
def test_models_localizer_golden_loss_curve():
    torch.manual_seed(0)
    loc = Localizer(AGCN("ntu25", num_persons=2, width=0.125), 3, embed_dim=32)
    opt = torch.optim.Adam(loc.parameters(), lr=1e-3)
    x = fixed_input((2, 3, 20, 25, 2))
    labels = torch.randint(0, 4, (2, 20), generator=torch.Generator().manual_seed(3))
    losses = []
    for _ in range(len(GOLDEN_LOSSES)):
        opt.zero_grad()
        loss = F.cross_entropy(loc(x), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses == pytest.approx(GOLDEN_LOSSES, rel=1e-4)
