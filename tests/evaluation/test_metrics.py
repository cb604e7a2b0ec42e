"""Reconstruction metrics against values known in closed form, and the linear attribute probe on
latent vectors with a planted linear attribute."""

import math

import numpy as np
import pytest
import torch

from dfc_vae.evaluation.metrics import L2_GRID, linear_probe, mse, psnr, ssim


def test_psnr_of_a_known_noise_level():
    x = torch.full((2, 3, 16, 16), 0.5)
    sign = torch.ones(16, 16)
    sign[::2] = -1  # +-0.1 on alternate rows: MSE exactly 0.01, so PSNR = 10 log10(1 / 0.01) = 20 dB
    y = x + 0.1 * sign
    assert torch.allclose(mse(x, y), torch.tensor([0.01, 0.01]), rtol=1e-5)
    assert torch.allclose(psnr(x, y), torch.tensor([20.0, 20.0]), atol=1e-4)
    y2 = x + 0.01 * sign  # ten times less noise: 20 dB more
    assert torch.allclose(psnr(x, y2), torch.tensor([40.0, 40.0]), atol=1e-3)


def test_psnr_of_gaussian_noise_follows_its_variance():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 64, 64, generator=g)
    y = x + 0.05 * torch.randn(x.shape, generator=g)
    assert psnr(x, y).mean().item() == pytest.approx(-10 * math.log10(0.05 ** 2), abs=0.1)


def test_ssim_of_identical_images_is_one_and_noise_lowers_it():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 32, 32, generator=g)
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    noisy = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    s = ssim(x, noisy)
    assert (s < 0.9).all() and (s > 0).all()
    assert torch.allclose(s, ssim(noisy, x), atol=1e-6)  # symmetric


def test_ssim_of_two_flat_images_is_the_luminance_term():
    # flat images: no variance, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1) with C1 = (0.01 * 1)^2
    a, b = 0.5, 0.6
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    c1 = 0.01 ** 2
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-4)


def test_ssim_refuses_images_smaller_than_its_window():
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def _toy(n, g):
    """Latents (n, 10); attribute 0 is a planted linear function of them, attribute 1 is noise at
    rate 0.3, attribute 2 is always False."""
    z = torch.randn(n, 10, generator=g)
    y = np.zeros((n, 3), bool)
    y[:, 0] = (2 * z[:, 3] - z[:, 7] > 0.5).numpy()
    y[:, 1] = (torch.rand(n, generator=g) < 0.3).numpy()
    return z, y


def test_probe_finds_a_planted_linear_attribute_and_not_noise():
    g = torch.Generator().manual_seed(0)
    train, valid, test = _toy(3000, g), _toy(1000, g), _toy(1000, g)
    r = linear_probe(*train, *valid, *test, names=["planted", "noise", "never"])
    t = r.table().set_index("attribute")
    assert t.loc["planted", "test_accuracy"] > 0.97
    assert t.loc["planted", "gain"] > 0.2
    assert np.isfinite(t.loc["planted", "l2"])  # a real linear model was chosen
    # noise: the latents say nothing, so the probe stays at the majority label
    assert abs(t.loc["noise", "test_accuracy"] - t.loc["noise", "majority_baseline"]) <= 0.02
    assert t.loc["never", "test_accuracy"] == 1.0 and t.loc["never", "majority_baseline"] == 1.0
    assert list(r.table().columns) == ["attribute", "test_accuracy", "majority_baseline", "gain", "valid_accuracy",
                                       "l2", "test_positive_rate"]


def test_majority_baseline_is_the_train_majority_scored_on_test():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(40, 4, generator=g)
    y_train = np.array([[True]] * 30 + [[False]] * 10)  # train majority: True
    y_test = np.array([[True]] * 10 + [[False]] * 30)  # ... right on 25% of test
    r = linear_probe(z, y_train, z, y_train, z, y_test, names=["a"], l2_grid=(math.inf,))
    assert r.majority_baseline[0] == pytest.approx(0.25)
    assert r.test_accuracy[0] == pytest.approx(0.25)  # intercept-only model = the majority label


def test_default_grid_starts_with_the_intercept_only_model():
    assert math.isinf(L2_GRID[0]) and all(a > b for a, b in zip(L2_GRID, L2_GRID[1:]))
