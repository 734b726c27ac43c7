"""MATLAB-compatible bicubic resizing: the degradation behind every published SR table.

The super-resolution literature (SRCNN, VDSR, LapSRN, EDSR, RCAN, SwinIR) makes its
low-resolution inputs with MATLAB's `imresize(hr, 1/scale, 'bicubic')` on uint8 images, and
its bicubic baseline with `imresize(lr, scale, 'bicubic')`. Numbers are only comparable when
the LR images are made the same way, so this module reproduces that function rather than
calling a library resize:

- the cubic convolution kernel of Keys (1981) with a = -0.5;
- pixel centres aligned (output pixel x maps to input u = x / scale + (1 - 1 / scale) / 2);
- antialiasing when downscaling: the kernel is stretched by 1 / scale, so it low-passes
  the image before sampling, as MATLAB does by default;
- symmetric edge handling: taps that fall outside the image read its mirror image
  (including the edge pixel), and the weights of each output pixel are normalised to sum 1;
- output size ceil(in * scale);
- one 1-D pass per dimension, the one with the smaller scale first (height first on ties);
  for a uint8 image MATLAB rounds to uint8 after each pass (`as_uint8=True` here).

PIL's bicubic (Pillow's `Image.resize(..., BICUBIC)`) uses the same a = -0.5 kernel, also
antialiased; it differs at the borders (it drops the taps outside the image instead of
mirroring them) and in the interior only through rounding and pass order. Chapter 1 measures
by how much, with `pil_vs_matlab`.

References:
    R. Keys, "Cubic convolution interpolation for digital image processing", IEEE TASSP 1981.
    MATLAB `imresize` (Image Processing Toolbox), method 'bicubic', 'Antialiasing' true.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["cubic", "degrade", "imresize", "modcrop", "pil_vs_matlab", "quantize"]

# Keys' cubic kernel is zero beyond |x| = 2: four taps at scale >= 1.
KERNEL_WIDTH = 4.0
# A product in * scale this close to an integer is taken as that integer, so that 10 * 0.3
# (3.0000000000000004 in floating point) gives 3 output pixels, not 4.
_SIZE_TOLERANCE = 1e-9


def cubic(x: Tensor) -> Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic').

    Args:
        x: distances in input pixels, any shape, float.

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


def _contributions(
    in_size: int, out_size: int, scale: float, antialias: bool
) -> tuple[Tensor, Tensor]:
    """MATLAB's contributions(): input indices (out, taps) int64 and weights float64."""
    kernel_width = KERNEL_WIDTH
    stretch = 1.0
    if scale < 1 and antialias:
        # Why: sampling below the Nyquist rate aliases. MATLAB low-passes by stretching the
        # kernel by 1/scale (h(x) = scale * cubic(scale * x)), which widens its support too.
        stretch = scale
        kernel_width = KERNEL_WIDTH / scale
    # Output pixel x (1-based, as in MATLAB) sits at input coordinate u: pixel centres, not
    # corners, are aligned, so a 2x downscale averages pixels 1 and 2 around u = 1.5.
    x = torch.arange(1, out_size + 1, dtype=torch.float64)  # (out,)
    u = x / scale + 0.5 * (1 - 1 / scale)  # (out,)
    left = torch.floor(u - kernel_width / 2)  # (out,)
    # ceil(width) + 2 candidate taps always cover the support; zero ones are dropped below.
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)  # (out, taps), 1-based
    weights = stretch * cubic(stretch * (u[:, None] - indices))  # (out, taps)
    # Why normalise: near the edges and for the stretched kernel the taps do not sum to
    # exactly 1; MATLAB divides each row by its sum so a flat image stays flat.
    weights = weights / weights.sum(dim=1, keepdim=True)
    # Why mirror: MATLAB reads outside taps from the image reflected about its edge, edge
    # pixel included (..., 2, 1 | 1, 2, ..., n | n, n-1, ...), a period of 2n.
    mirror = torch.cat([torch.arange(in_size), torch.arange(in_size - 1, -1, -1)])  # (2n,)
    indices = mirror[torch.remainder(indices.long() - 1, 2 * in_size)]  # (out, taps), 0-based
    # Drop the tap columns that are zero for every output pixel (MATLAB does the same); this
    # changes no value, only the work.
    keep = (weights != 0).any(dim=0)
    return indices[:, keep], weights[:, keep]


@functools.lru_cache(maxsize=128)
def _weight_matrix(
    in_size: int, out_size: int, scale: float, antialias: bool,
    device: torch.device, dtype: torch.dtype,
) -> Tensor:
    """The (out, in) matrix of one 1-D resize, cached per sizes, scale, device and dtype."""
    # float64 whatever the image dtype: the weights are the reference, cast once at the end.
    indices, weights = _contributions(in_size, out_size, scale, antialias)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    # Mirrored taps can land on the same input pixel twice: their weights add up.
    matrix.scatter_add_(1, indices, weights)  # (out, in)
    return matrix.to(device=device, dtype=dtype)


def _output_size(in_size: int, scale: float) -> int:
    product = in_size * scale
    nearest = round(product)
    if abs(product - nearest) < _SIZE_TOLERANCE:
        return int(nearest)
    return math.ceil(product)


def _resize_along(x: Tensor, dim: int, out_size: int, scale: float, antialias: bool) -> Tensor:
    """One 1-D MATLAB bicubic pass of x (..., H, W) along dim -2 (height) or -1 (width)."""
    matrix = _weight_matrix(x.shape[dim], out_size, scale, antialias, x.device, x.dtype)
    # A dense matrix product: the matrix is mostly zeros, but BLAS beats a gather of a few
    # taps at every size measured (up to 1000 -> 4000 pixels), and it is deterministic and
    # differentiable on every device.
    if dim == -2:
        return torch.matmul(matrix, x)  # (out, H) @ (..., H, W) -> (..., out, W)
    return torch.matmul(x, matrix.T)  # (..., H, W) @ (W, out) -> (..., H, out)


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
        x: images (..., H, W), typically (C, H, W) or (B, C, H, W); float (use float64 for
            reference numbers), any range, no clamping; CPU or CUDA; differentiable.
        scale: resize factor (2 upsamples, 0.5 downsamples); output size ceil(H * scale),
            ceil(W * scale). Give exactly one of `scale` and `size`.
        size: output (height, width); each dimension's scale is then out / in.
        antialias: stretch the kernel when downscaling (MATLAB's default, True).
        as_uint8: emulate MATLAB on a uint8 image: clamp and round to the 8-bit grid after
            each 1-D pass, as MATLAB's mex returns the input's class. `x` must then be in
            [0, 1] on the 8-bit grid; the result is on it too.

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
        scales = (float(scale), float(scale))
        out_h, out_w = _output_size(in_h, scale), _output_size(in_w, scale)
    else:
        out_h, out_w = int(size[0]), int(size[1])
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"imresize: size must be positive, got {size}")
        scales = (out_h / in_h, out_w / in_w)
    # MATLAB resizes along the dimension with the smaller scale first (height on a tie):
    # the first pass then shrinks the data the second pass has to touch.
    order = (-2, -1) if scales[0] <= scales[1] else (-1, -2)
    out_sizes = {-2: out_h, -1: out_w}
    dim_scales = {-2: scales[0], -1: scales[1]}
    if as_uint8:
        # Work on the integer levels 0..255, as MATLAB's mex does on uint8 data: with the
        # dyadic weights of x2, x4, x8 every product and sum is then exact in float64, so a
        # value exactly halfway between two levels rounds up as in MATLAB rather than
        # whichever way the rounding error of k/255 happens to fall.
        x = _round_levels(x * 255.0)
    for dim in order:
        x = _resize_along(x, dim, out_sizes[dim], dim_scales[dim], antialias)
        if as_uint8:
            x = _round_levels(x)  # MATLAB returns uint8 after each pass
    return x / 255.0 if as_uint8 else x


def _round_levels(levels: Tensor) -> Tensor:
    """Clamp to [0, 255] and round half away from zero (MATLAB's uint8 conversion)."""
    return levels.clamp(0.0, 255.0).add_(0.5).floor_()  # in place: one allocation


def quantize(x: Tensor) -> Tensor:
    """Round to the 8-bit grid, as MATLAB's uint8 conversion does, staying float.

    Args:
        x: images, any shape, float, nominally [0, 1].

    Returns:
        Same shape and dtype, values k / 255 for integers k in [0, 255]. Clamped first, then
        rounded half away from zero (floor(v + 0.5)); not torch.round, which rounds half to
        even. The gradient is zero almost everywhere.
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
            already cropped to a multiple of `scale` (see `modcrop`).
        scale: integer downscale factor >= 1.

    Returns:
        LR images (..., H / scale, W / scale), hr's dtype, on the 8-bit grid: rounded after
        each 1-D pass exactly as MATLAB does for a uint8 image.
    """
    height, width = hr.shape[-2], hr.shape[-1]
    if height % scale or width % scale:
        raise ValueError(
            f"degrade: HR size {height}x{width} is not a multiple of scale {scale}; modcrop first"
        )
    return imresize(hr, 1.0 / scale, as_uint8=True)


def pil_vs_matlab(hr_paths: Sequence[str | Path], scale: int) -> dict:
    """Measure how far PIL's bicubic is from MATLAB's on a set of HR images.

    For each image (cropped to a multiple of scale) both pipelines make the LR image and
    upscale it back: PIL's `Image.resize(..., BICUBIC)` for both steps, and `degrade` then
    `imresize` + `quantize` for both steps. PSNR is on the Y channel (MATLAB rgb2ycbcr),
    float64, `scale` pixels shaved for the upscaled images, none for the LR images.

    Args:
        hr_paths: HR image files.
        scale: integer factor >= 2.

    Returns:
        {"scale", "n", "lr_differing" (fraction of LR values that differ), "lr_max_levels"
        (largest LR difference, in 8-bit levels), "lr_psnr" (PIL LR vs MATLAB LR, dB),
        "matlab_psnr", "pil_psnr" (bicubic-upscaled vs HR, dB), "difference_db" (pil_psnr -
        matlab_psnr), "images": [the same per image, with "name"]}; top-level values are
        means over the images (lr_max_levels: the maximum).
    """
    from PIL import Image

    from srlib.imageio import load_image
    from srlib.metrics import psnr

    rows = []
    for path in map(Path, hr_paths):
        hr_uint8 = modcrop(load_image(path), scale)  # (H, W, 3), a grey file replicated
        height, width = hr_uint8.shape[:2]
        hr = torch.from_numpy(hr_uint8.astype(np.float64) / 255).permute(2, 0, 1)[None]
        lr_matlab = degrade(hr, scale)  # (1, 3, H/s, W/s)
        sr_matlab = quantize(imresize(lr_matlab, float(scale)))  # (1, 3, H, W)
        bicubic = Image.Resampling.BICUBIC
        lr_pil_image = Image.fromarray(hr_uint8).resize((width // scale, height // scale), bicubic)
        sr_pil_image = lr_pil_image.resize((width, height), bicubic)
        lr_pil, sr_pil = (
            torch.from_numpy(np.asarray(im).astype(np.float64) / 255).permute(2, 0, 1)[None]
            for im in (lr_pil_image, sr_pil_image)
        )
        lr_levels = (lr_pil - lr_matlab).abs() * 255  # (1, 3, h, w) grey levels
        rows.append({
            "name": path.name,
            "lr_differing": float((lr_levels > 0.5).double().mean()),
            "lr_max_levels": int(lr_levels.max().round()),
            "lr_psnr": float(psnr(lr_pil, lr_matlab, y_channel=True)),
            "matlab_psnr": float(psnr(sr_matlab, hr, shave=scale, y_channel=True)),
            "pil_psnr": float(psnr(sr_pil, hr, shave=scale, y_channel=True)),
        })
    summary = {
        key: float(np.mean([row[key] for row in rows]))
        for key in ("lr_differing", "lr_psnr", "matlab_psnr", "pil_psnr")
    }
    summary["lr_max_levels"] = max(row["lr_max_levels"] for row in rows)
    return {
        "scale": scale,
        "n": len(rows),
        **summary,
        "difference_db": summary["pil_psnr"] - summary["matlab_psnr"],
        "images": rows,
    }
