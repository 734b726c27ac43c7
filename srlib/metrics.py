"""PSNR and SSIM, with every convention that changes a quoted number made explicit.

Published SR tables (SRCNN, VDSR, LapSRN, EDSR, RCAN, SwinIR) measure on the luma Y of
MATLAB's BT.601 `rgb2ycbcr`, `scale` pixels shaved at each border, on outputs rounded to 8 bits:
here `y_channel`, `shave` and `srlib.resize.quantize`, never hidden defaults (RGB PSNR is about
2 dB below Y PSNR). SSIM (Wang et al., IEEE TIP 2004: 11x11 Gaussian, sigma 1.5, K1 = 0.01,
K2 = 0.03) is the one the DSSIM loss uses; its borders are "valid" (Wang's `ssim_index.m`, most
tables) or "replicate" (MATLAB's `ssim()`, LapSRN's evaluation), up to ~0.0025 apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SSIM_PADDINGS", "gaussian_window", "psnr", "rgb_to_y", "ssim", "ssim_map"]

SSIM_PADDINGS = ("valid", "replicate")
# Wang et al. 2004: constants stabilising the divisions, relative to the data range.
SSIM_K1, SSIM_K2 = 0.01, 0.03
# MATLAB rgb2ycbcr, BT.601 studio swing: Y = 16 + 65.481 R + 128.553 G + 24.966 B in [16, 235].
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0


def rgb_to_y(x: Tensor) -> Tensor:
    """RGB (B, 3, H, W) in [0, 1] -> (B, 1, H, W) luma Y of MATLAB's `rgb2ycbcr`, divided by 255.

    Values in [16/255, 235/255], x's dtype, not rounded (as MATLAB does for doubles).
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"rgb_to_y expects (B, 3, H, W), got shape {tuple(x.shape)}")
    red, green, blue = x[:, 0:1], x[:, 1:2], x[:, 2:3]  # (B, 3, H, W) -> 3 x (B, 1, H, W)
    luma = _Y_OFFSET + _Y_WEIGHTS[0] * red + _Y_WEIGHTS[1] * green + _Y_WEIGHTS[2] * blue
    return luma / 255.0  # (B, 1, H, W)


def _prepare(sr: Tensor, hr: Tensor, shave: int, y_channel: bool) -> tuple[Tensor, Tensor]:
    """Check shapes, convert to Y if asked, and shave the borders."""
    if sr.shape != hr.shape:
        raise ValueError(f"sr and hr differ in shape: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if sr.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) images, got shape {tuple(sr.shape)}")
    if shave < 0 or 2 * shave >= min(sr.shape[-2:]):
        raise ValueError(f"shave={shave} leaves nothing of a {sr.shape[-2]}x{sr.shape[-1]} image")
    if y_channel:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)  # (B, 3, H, W) -> (B, 1, H, W)
    if shave:
        # Border pixels depend on how a method pads: compare methods on the same interior.
        sr = sr[..., shave:-shave, shave:-shave]  # (B, C, H, W) -> (B, C, H-2s, W-2s)
        hr = hr[..., shave:-shave, shave:-shave]
    return sr, hr


def psnr(
    sr: Tensor, hr: Tensor, *, data_range: float = 1.0, shave: int = 0, y_channel: bool = False
) -> Tensor:
    """Peak signal-to-noise ratio, 10 log10(data_range^2 / MSE), one value per image.

    Args:
        sr, hr: output and reference images (B, C, H, W), float (float64 for numbers you quote);
            the published protocol quantises `sr` to 8 bits first (`srlib.resize.quantize`).
        data_range: the peak value (1.0 for images in [0, 1]).
        shave: pixels dropped at each border before measuring (the protocol uses `scale`).
        y_channel: measure on MATLAB rgb2ycbcr's Y (C must be 3) instead of all channels.

    Returns:
        (B,) PSNR in dB, sr's dtype; inf where the images are equal. Symmetric in sr, hr.
    """
    sr, hr = _prepare(sr, hr, shave, y_channel)
    mse = (sr - hr).pow(2).flatten(1).mean(dim=1)  # (B, C, H, W) -> (B,)
    return 10.0 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5, *, dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None) -> Tensor:
    """SSIM's 1-D Gaussian (size,), size odd, sum 1; its outer square is MATLAB's fspecial."""
    if size % 2 != 1:
        raise ValueError(f"gaussian_window: size must be odd, got {size}")
    coords = torch.arange(size, dtype=dtype, device=device) - size // 2
    window = torch.exp(-(coords**2) / (2 * sigma**2))
    return window / window.sum()


def ssim_map(x: Tensor, y: Tensor, *, data_range: float = 1.0, padding: str = "valid",
             window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """The local SSIM map of Wang et al. (2004), equation (13), per channel.

    Args:
        x, y: images (B, C, H, W), float, same shape, H and W >= window_size for "valid".
        data_range: the peak value L (C1 = (0.01 L)^2, C2 = (0.03 L)^2).
        padding: "valid" (Wang's ssim_index: map (H-10, W-10)) or "replicate" (MATLAB's
            ssim(): edges replicated, map (H, W)).

    Returns:
        (B, C, H', W') SSIM values in [-1, 1], x's dtype.
    """
    if padding not in SSIM_PADDINGS:
        raise ValueError(f"ssim padding must be one of {SSIM_PADDINGS}, got {padding!r}")
    if padding == "valid" and min(x.shape[-2:]) < window_size:
        raise ValueError(f"ssim: image {x.shape[-2]}x{x.shape[-1]} is smaller than the window")
    window = gaussian_window(window_size, sigma, dtype=x.dtype, device=x.device)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    # The five local moments in one filtering pass, a separable Gaussian per channel.
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5C, H, W)
    radius, groups = window_size // 2, moments.shape[1]
    if padding == "replicate":
        moments = F.pad(moments, (radius,) * 4, mode="replicate")  # -> (B, 5C, H+2r, W+2r)
    rows = window.view(1, 1, window_size, 1).expand(groups, 1, window_size, 1)
    cols = window.view(1, 1, 1, window_size).expand(groups, 1, 1, window_size)
    moments = F.conv2d(moments, rows, groups=groups)  # 'valid' rows: height shrinks by 2r
    moments = F.conv2d(moments, cols, groups=groups)  # columns too: -> (B, 5C, H', W')
    mu_x, mu_y, mean_xx, mean_yy, mean_xy = moments.chunk(5, dim=1)
    # Local (co)variances as E[xy] - E[x]E[y] under the Gaussian window, as ssim_index.m.
    var_x = mean_xx - mu_x**2
    var_y = mean_yy - mu_y**2
    cov_xy = mean_xy - mu_x * mu_y
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    contrast_structure = (2 * cov_xy + c2) / (var_x + var_y + c2)
    return luminance * contrast_structure


def ssim(sr: Tensor, hr: Tensor, *, data_range: float = 1.0, shave: int = 0,
         y_channel: bool = False, padding: str = "valid") -> Tensor:
    """Structural similarity, the mean of `ssim_map`, one value per image.

    Args:
        sr, hr: output and reference images (B, C, H, W), float (float64 for numbers you
            quote); quantise `sr` to 8 bits first to follow the published protocol.
        data_range: the peak value (1.0 for images in [0, 1]).
        shave: pixels dropped at each border before filtering (the protocol uses `scale`).
        y_channel: measure on MATLAB rgb2ycbcr's Y (C must be 3) instead of all channels.
        padding: "valid" (Wang's ssim_index, the default) or "replicate" (MATLAB's ssim()).

    Returns:
        (B,) SSIM, sr's dtype; 1 where the images are equal; with several channels, the mean
        of per-channel SSIMs (as pytorch_msssim).
    """
    sr, hr = _prepare(sr, hr, shave, y_channel)
    return ssim_map(sr, hr, data_range=data_range, padding=padding).flatten(1).mean(dim=1)
