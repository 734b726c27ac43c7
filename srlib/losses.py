"""Training losses, each (sr, hr) of shape (B, C, H, W) in [0, 1] -> scalar; the seed's is DSSIM."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _msssim_ssim
from torch import Tensor

# The one SSIM (Wang et al. 2004, 'valid', K1 = 0.01, K2 = 0.03), shared with `srlib.metrics.ssim`.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def dssim(sr: Tensor, hr: Tensor) -> Tensor:
    """Structural dissimilarity (1 - SSIM) / 2 over RGB, data range 1: 0 for identical images."""
    similarity = _msssim_ssim(sr.float(), hr.float(), data_range=1.0, win_size=SSIM_WINDOW,
                              win_sigma=SSIM_SIGMA, size_average=True)
    return (1 - similarity) / 2


def mse(sr: Tensor, hr: Tensor) -> Tensor:
    """Mean squared error."""
    return F.mse_loss(sr, hr)


def l1(sr: Tensor, hr: Tensor) -> Tensor:
    """Mean absolute error."""
    return F.l1_loss(sr, hr)


def charbonnier(sr: Tensor, hr: Tensor, eps: float = 1e-3) -> Tensor:
    """sqrt((sr - hr)^2 + eps^2), a differentiable L1 (LapSRN, Lai et al. 2017, eq. 2)."""
    return torch.sqrt((sr - hr) ** 2 + eps**2).mean()


LOSSES = {"dssim": dssim, "mse": mse, "l1": l1, "charbonnier": charbonnier}


def parse_loss(spec: str):
    """Turn 'dssim', 'dssim+l1' or '0.8*dssim+0.2*l1' into a loss function (sr, hr) -> scalar.

    Raises:
        ValueError: an unknown loss name or a malformed weight.
    """
    terms = []
    for term in spec.replace(" ", "").split("+"):
        weight, _, name = term.rpartition("*")
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r} in {spec!r}; choose from {', '.join(LOSSES)}")
        try:
            terms.append((float(weight) if weight else 1.0, LOSSES[name]))
        except ValueError:
            raise ValueError(f"bad weight {weight!r} in loss {spec!r}") from None

    def combined(sr: Tensor, hr: Tensor) -> Tensor:
        return sum(weight * loss(sr, hr) for weight, loss in terms)

    combined.__name__ = spec
    return combined


def pyramid_loss(loss, outputs: dict[int, Tensor], targets: dict[int, Tensor]) -> Tensor:
    """Sum of `loss` (sr, hr) -> scalar over every output scale, each against its own target.

    Args:
        outputs: {scale: (B, 3, sH, sW)} as returned by `SRNet`.
        targets: {scale: (B, 3, sH, sW)} the HR patch resized to each scale.
    """
    return sum(loss(outputs[scale], targets[scale]) for scale in outputs)

