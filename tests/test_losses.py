"""Losses against closed forms."""

import math

import pytest
import torch

from srlib.losses import charbonnier, dssim, l1, mse, parse_loss, pyramid_loss


def test_dssim_is_zero_for_identical_images_and_grows_with_noise():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert dssim(x, x).item() == pytest.approx(0.0, abs=1e-6)
    slightly = dssim((x + 0.02 * torch.randn_like(x)).clamp(0, 1), x)
    badly = dssim((x + 0.2 * torch.randn_like(x)).clamp(0, 1), x)
    assert 0 < slightly < badly <= 1


def test_dssim_is_half_of_one_minus_the_metric_ssim():
    from srlib.metrics import ssim

    torch.manual_seed(1)
    x, y = torch.rand(2, 1, 3, 40, 40)
    expected = (1 - ssim(x, y, data_range=1.0).mean().item()) / 2
    assert dssim(x, y).item() == pytest.approx(expected, abs=1e-5)


def test_pixel_losses_match_closed_forms():
    x = torch.zeros(1, 3, 4, 4)
    y = torch.full_like(x, 0.5)
    assert mse(x, y).item() == pytest.approx(0.25)
    assert l1(x, y).item() == pytest.approx(0.5)
    assert charbonnier(x, y, eps=1e-3).item() == pytest.approx(math.sqrt(0.25 + 1e-6))
    assert charbonnier(x, x, eps=1e-3).item() == pytest.approx(1e-3)


def test_weighted_sums_parse():
    x, y = torch.zeros(1, 3, 16, 16), torch.full((1, 3, 16, 16), 0.5)
    combined = parse_loss("0.5*mse + 2*l1")
    assert combined(x, y).item() == pytest.approx(0.5 * 0.25 + 2 * 0.5)
    assert parse_loss("mse")(x, y).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown loss 'ssim'"):
        parse_loss("ssim")
    with pytest.raises(ValueError, match="bad weight"):
        parse_loss("a*mse")


def test_pyramid_loss_sums_every_scale():
    outputs = {2: torch.zeros(1, 3, 4, 4), 4: torch.zeros(1, 3, 8, 8)}
    targets = {2: torch.full((1, 3, 4, 4), 0.1), 4: torch.full((1, 3, 8, 8), 0.2)}
    assert pyramid_loss(l1, outputs, targets).item() == pytest.approx(0.3)
