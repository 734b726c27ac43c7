"""srlib.metrics against closed forms and the SSIM the DSSIM loss uses."""

from __future__ import annotations

import math

import pytest
import pytorch_msssim
import torch

from srlib.metrics import gaussian_window, psnr, rgb_to_y, ssim, ssim_map


def _images(seed: int, shape=(2, 3, 40, 36), dtype=torch.float64) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_psnr_of_a_constant_offset_is_closed_form():
    hr = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)
    value = psnr(hr + 1 / 255, hr)
    # MSE = (1/255)^2, so PSNR = 20 log10(255) = 48.1308 dB.
    assert value.item() == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert round(value.item(), 2) == 48.13
    # A data range of 255 on 0..255 values is the same number.
    assert psnr((hr + 1 / 255) * 255, hr * 255, data_range=255).item() == pytest.approx(48.1308, abs=1e-4)


def test_psnr_symmetric_per_image_and_infinite_on_equal():
    sr, hr = _images(0), _images(1)
    torch.testing.assert_close(psnr(sr, hr), psnr(hr, sr))
    values = psnr(sr, hr)
    assert values.shape == (2,)
    torch.testing.assert_close(values[1:], psnr(sr[1:], hr[1:]))
    assert math.isinf(psnr(hr, hr)[0].item())


def test_shave_crops_exactly():
    hr = torch.zeros(1, 1, 20, 20, dtype=torch.float64)
    sr = hr.clone()
    sr[..., :3, :] = 1.0  # damage confined to the top 3 rows
    sr[..., :, -3:] = 1.0  # and the right 3 columns
    assert math.isinf(psnr(sr, hr, shave=3).item())
    assert ssim(sr, hr, shave=3).item() == pytest.approx(1.0, abs=1e-12)
    assert not math.isinf(psnr(sr, hr, shave=2).item())
    # shave=2 keeps one damaged row and column of the 16 x 16 interior: MSE = 31 / 256.
    assert psnr(sr, hr, shave=2).item() == pytest.approx(10 * math.log10(256 / 31), abs=1e-9)
    with pytest.raises(ValueError):
        psnr(sr, hr, shave=10)


def test_rgb_to_y_matches_matlab_rgb2ycbcr():
    rgb = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0],
                        [0.0, 0.0, 1.0]], dtype=torch.float64).T.reshape(1, 3, 1, 5)
    y = rgb_to_y(rgb).flatten() * 255
    expected = torch.tensor([16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966],
                            dtype=torch.float64)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


def test_y_channel_changes_the_number():
    sr, hr = _images(2), _images(3)
    assert psnr(sr, hr, y_channel=True).shape == (2,)
    assert not torch.allclose(psnr(sr, hr, y_channel=True), psnr(sr, hr))


@pytest.mark.parametrize("padding", ["valid", "replicate"])
def test_ssim_of_an_image_with_itself_is_one(padding):
    x = _images(4)
    torch.testing.assert_close(ssim(x, x, padding=padding), torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(ssim(x, x, y_channel=True, shave=4, padding=padding),
                               torch.ones(2, dtype=torch.float64))


def test_ssim_matches_pytorch_msssim_used_by_the_dssim_loss():
    sr, hr = _images(5, dtype=torch.float32), _images(6, dtype=torch.float32)
    sr = (0.7 * hr + 0.3 * sr).clamp(0, 1)  # correlated, like an SR output
    ours = ssim(sr, hr, padding="valid", y_channel=False, shave=0)
    theirs = pytorch_msssim.ssim(sr, hr, data_range=1, size_average=False, win_size=11,
                                 win_sigma=1.5)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_ssim_paddings_differ_and_have_the_right_map_sizes():
    sr, hr = _images(7), _images(8)
    assert ssim_map(sr, hr, padding="valid").shape == (2, 3, 30, 26)
    assert ssim_map(sr, hr, padding="replicate").shape == (2, 3, 40, 36)
    assert not torch.allclose(ssim(sr, hr), ssim(sr, hr, padding="replicate"))
    with pytest.raises(ValueError):
        ssim(sr, hr, padding="reflect")


def test_ssim_symmetric_and_bounded():
    sr, hr = _images(9), _images(10)
    torch.testing.assert_close(ssim(sr, hr), ssim(hr, sr))
    assert ((ssim(sr, hr) > -1) & (ssim(sr, hr) < 1)).all()


def test_gaussian_window_is_matlab_fspecial():
    window = gaussian_window(11, 1.5)
    assert window.sum().item() == pytest.approx(1.0, abs=1e-15)
    # The 2-D window's peak is close to the continuous 1 / (2 pi sigma^2) = 0.0707.
    assert (window[5] ** 2).item() == pytest.approx(0.07076, abs=1e-5)
    with pytest.raises(ValueError):
        gaussian_window(10)


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
