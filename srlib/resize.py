"""MATLAB-compatible bicubic resizing: the degradation behind every published SR table.

SR papers (SRCNN, VDSR, LapSRN, EDSR, RCAN, SwinIR) make LR inputs with MATLAB's
`imresize(hr, 1/scale, 'bicubic')` on uint8 images and their bicubic baseline with
`imresize(lr, scale, 'bicubic')`. Numbers compare only between LR images made the same way,
so this module reproduces that function step by step (Pillow's bicubic differs at the borders
and in rounding; chapter 1 measures by how much).

References:
    R. Keys, "Cubic convolution interpolation for digital image processing", IEEE TASSP 1981.
    MATLAB `imresize` (Image Processing Toolbox), method 'bicubic', 'Antialiasing' true.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["cubic", "degrade", "imresize", "modcrop", "quantize"]

# Keys' cubic kernel is zero beyond |x| = 2: four taps at scale >= 1.
KERNEL_WIDTH = 4.0
# A product in * scale this close to an integer is that integer: 10 * 0.3 gives 3 pixels, not 4.
_SIZE_TOLERANCE = 1e-9


def cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel, a = -0.5 (MATLAB's 'bicubic'), at `x` input pixels away.

    Returns:
        Kernel values, same shape and dtype: 1 at 0, 0 at every other integer, 0 for |x| >= 2.
    """
    absx = x.abs()
    absx2 = absx * absx
    absx3 = absx2 * absx
    # a = -0.5 is the value for which the interpolant reproduces quadratics (Keys 1981).
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return inner + outer


@functools.lru_cache(maxsize=128)
def _weight_matrix(
    in_size: int, out_size: int, scale: float, antialias: bool,
    device: torch.device, dtype: torch.dtype,
) -> Tensor:
    """The (out, in) matrix of one 1-D resize, as MATLAB's contributions(), cached."""
    kernel_width, stretch = KERNEL_WIDTH, 1.0
    if scale < 1 and antialias:
        # Sampling below the Nyquist rate aliases: MATLAB low-passes by stretching the kernel,
        # h(x) = scale * cubic(scale * x), which widens its support by 1 / scale.
        kernel_width, stretch = KERNEL_WIDTH / scale, scale
    # Output pixel x (1-based, as in MATLAB) sits at input coordinate u: pixel centres, not
    # corners, are aligned, so a 2x downscale averages pixels 1 and 2 around u = 1.5.
    x = torch.arange(1, out_size + 1, dtype=torch.float64)  # (out,)
    u = x / scale + 0.5 * (1 - 1 / scale)  # (out,)
    left = torch.floor(u - kernel_width / 2)  # (out,)
    # ceil(width) + 2 candidate taps always cover the support; zero ones add nothing.
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)  # (out, taps), 1-based
    # float64 whatever the image dtype: the weights are the reference, cast once at the end.
    weights = stretch * cubic(stretch * (u[:, None] - indices))  # (out, taps)
    # Sampled (and stretched), the taps do not sum to exactly 1: MATLAB normalises each row.
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Outside taps read the image mirrored about its edge, edge pixel included
    # (..., 2, 1 | 1, 2, ..., n | n, n-1, ...), a period of 2n.
    mirror = torch.cat([torch.arange(in_size), torch.arange(in_size - 1, -1, -1)])  # (2n,)
    indices = mirror[torch.remainder(indices.long() - 1, 2 * in_size)]  # (out, taps), 0-based
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    matrix.scatter_add_(1, indices, weights)  # (out, in); mirrored taps on one pixel add up
    return matrix.to(device=device, dtype=dtype)


def _output_size(in_size: int, scale: float) -> int:
    product = in_size * scale
    nearest = round(product)
    return int(nearest) if abs(product - nearest) < _SIZE_TOLERANCE else math.ceil(product)


def imresize(
    x: Tensor,
    scale: float | None = None,
    *,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    as_uint8: bool = False,
) -> Tensor:
    """Resize like MATLAB's `imresize(x, scale, 'bicubic')`.

    Args:
        x: images (..., H, W), float (float64 for reference numbers), any range, no clamping;
            any device; differentiable.
        scale: resize factor (2 upsamples, 0.5 downsamples); output ceil(H * scale),
            ceil(W * scale). Give exactly one of `scale` and `size`.
        size: output (height, width); each dimension's scale is then out / in.
        antialias: stretch the kernel when downscaling (MATLAB's default, True).
        as_uint8: emulate MATLAB on a uint8 image: `x` in [0, 1] on the 8-bit grid, clamped
            and rounded to it after each 1-D pass, as MATLAB's mex returns uint8.

    Returns:
        Tensor (..., H', W'), x's dtype and device.
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"imresize expects a float tensor, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"imresize expects (..., H, W), got shape {tuple(x.shape)}")
    if (scale is None) == (size is None):
        raise ValueError("imresize: give exactly one of scale and size")
    in_h, in_w = x.shape[-2], x.shape[-1]
    if scale is not None:
        if scale <= 0:
            raise ValueError(f"imresize: scale must be positive, got {scale}")
        scales = {-2: float(scale), -1: float(scale)}
        out_sizes = {-2: _output_size(in_h, scale), -1: _output_size(in_w, scale)}
    else:
        out_sizes = {-2: int(size[0]), -1: int(size[1])}
        if out_sizes[-2] <= 0 or out_sizes[-1] <= 0:
            raise ValueError(f"imresize: size must be positive, got {size}")
        scales = {-2: out_sizes[-2] / in_h, -1: out_sizes[-1] / in_w}
    if as_uint8:
        # Work on the levels 0..255 as MATLAB's mex does: with the dyadic weights of x2, x4, x8
        # every sum is then exact in float64, so a value exactly halfway between two levels
        # rounds up as in MATLAB, whatever the rounding error of k/255.
        x = _round_levels(x * 255.0)
    # MATLAB resizes the dimension with the smaller scale first (height on a tie): the first
    # pass then shrinks the data the second pass touches.
    for dim in (-2, -1) if scales[-2] <= scales[-1] else (-1, -2):
        matrix = _weight_matrix(x.shape[dim], out_sizes[dim], scales[dim], antialias,
                                x.device, x.dtype)
        # A dense product: mostly zeros, but BLAS beats gathering a few taps at every size
        # measured, and it is deterministic and differentiable on every device.
        if dim == -2:
            x = torch.matmul(matrix, x)  # (out, H) @ (..., H, W) -> (..., out, W)
        else:
            x = torch.matmul(x, matrix.T)  # (..., H, W) @ (W, out) -> (..., H, out)
        if as_uint8:
            x = _round_levels(x)  # MATLAB returns uint8 after each pass
    return x / 255.0 if as_uint8 else x


def _round_levels(levels: Tensor) -> Tensor:
    """Clamp to [0, 255] and round half away from zero (MATLAB's uint8 conversion)."""
    return levels.clamp(0.0, 255.0).add_(0.5).floor_()  # in place: one allocation


def quantize(x: Tensor) -> Tensor:
    """Round images `x` (float, nominally [0, 1]) to the 8-bit grid k / 255, staying float.

    As MATLAB's uint8 conversion: clamped, then rounded half away from zero (not torch.round's
    half to even). Same shape and dtype; zero gradient.
    """
    return _round_levels(x * 255.0) / 255.0


def modcrop(x: Tensor | np.ndarray, scale: int) -> Tensor | np.ndarray:
    """Crop height and width down to multiples of scale, keeping the top-left corner.

    Args:
        x: a tensor (..., H, W) or a numpy image (H, W) / (H, W, C).
        scale: the integer factor.

    Returns:
        The same type, (..., H - H % scale, W - W % scale) or (H', W'[, C]); a view, no copy.
    """
    if isinstance(x, np.ndarray):
        height, width = x.shape[0], x.shape[1]
        return x[: height - height % scale, : width - width % scale]
    height, width = x.shape[-2], x.shape[-1]
    return x[..., : height - height % scale, : width - width % scale]


def degrade(hr: Tensor, scale: int) -> Tensor:
    """The LR image as the literature makes it: MATLAB `imresize(hr, 1/scale, 'bicubic')` on uint8.

    Args:
        hr: HR images (C, H, W) or (B, C, H, W), float in [0, 1] on the 8-bit grid (k/255),
            H and W multiples of `scale` (see `modcrop`).
        scale: integer downscale factor >= 1.

    Returns:
        LR images (..., H / scale, W / scale), hr's dtype, on the 8-bit grid, rounded after
        each 1-D pass as MATLAB does for a uint8 image.
    """
    height, width = hr.shape[-2], hr.shape[-1]
    if height % scale or width % scale:
        raise ValueError(f"degrade: HR size {height}x{width} is not a multiple of scale "
                         f"{scale}; modcrop first")
    return imresize(hr, 1.0 / scale, as_uint8=True)
