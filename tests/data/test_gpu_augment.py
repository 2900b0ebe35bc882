"""Device-side augmentation on a CUDA device equals the same ops on the CPU (and the numpy twins).

Kept apart from test_pipeline.py so it imports nothing beyond torch, numpy and numba: GPU images
without zarr or DALI can still run it (`pytest -m gpu`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sscl.data import augment, gpu_augment

# torch's ops against the numpy twins, at tolerances that must hold on every ISA.
pytestmark = pytest.mark.isa


def _batch(n: int = 6, t: int = 40):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, 3, t, 25, 2)).astype(np.float32)
    valid = rng.random((n, t, 25, 2)) > 0.15
    x[~np.broadcast_to(valid[:, None], x.shape)] = 0
    params = augment.params_for(
        11, 3, np.arange(100, 100 + n), augment.AugmentConfig(noise_prob=1.0), extreme=True
    )
    return x, valid, params.extreme


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_augment_on_cuda_matches_numpy_twins():
    x, valid, view = _batch()
    want = augment.gaussian_noise_ref(
        augment.linear_transform_ref(x, valid, view.mat), valid, view.noise_std, view.noise_seed
    )
    xt, vt = torch.from_numpy(x).cuda(), torch.from_numpy(valid).cuda()
    got = gpu_augment.apply_view(xt, vt, view)
    assert got.device.type == "cuda"
    got = got.cpu().numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-6)
    assert np.all(got[~np.broadcast_to(valid[:, None], x.shape)] == 0)
    # Float64 noise alone: the counter hash gives the same normals on the device.
    noise = gpu_augment.gaussian_noise(xt.double(), vt, view.noise_std, view.noise_seed)
    ref = augment.gaussian_noise_ref(x, valid, view.noise_std, view.noise_seed)
    np.testing.assert_allclose(noise.cpu().numpy(), ref, rtol=0, atol=1e-6)


def test_gpu_augment_cpu_tensors_match_numpy_twins():
    x, valid, view = _batch()
    assert np.all(view.noise_std > 0)
    want = augment.gaussian_noise_ref(
        augment.linear_transform_ref(x, valid, view.mat), valid, view.noise_std, view.noise_seed
    )
    xt, vt = torch.from_numpy(x), torch.from_numpy(valid)
    got = gpu_augment.apply_view(xt, vt, view).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
    assert np.all(got[~np.broadcast_to(valid[:, None], x.shape)] == 0)
    # Float64 noise alone: the same counter-hash normals as the twin, up to its float32 output.
    noise = gpu_augment.gaussian_noise(xt.double(), vt, view.noise_std, view.noise_seed)
    ref = augment.gaussian_noise_ref(x, valid, view.noise_std, view.noise_seed)
    np.testing.assert_allclose(noise.numpy(), ref, rtol=0, atol=1e-6)
