"""Inference: upscale an image with a trained network, in overlapping tiles when it is large.

Tiles keep memory bounded whatever the image size. Each tile is run with `overlap` extra LR
pixels of real context on every inner side, and the overlapping outputs are blended with
linear ramps, so seams vanish: the result agrees with whole-image inference to within the
rounding of 8-bit output (tested) except for what squeeze-excitation's image-wide average
sees differently in a tile.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from srlib.errors import UsageError
from srlib.hardware import autocast, resolve_precision, select_device


def _positions(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side `tile` covering [0, length), neighbours sharing `overlap`."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _ramp(length: int, ramp: int, fade_in: bool, fade_out: bool) -> Tensor:
    """1-D blending weights: linear ramps on the sides that overlap a neighbour, 1 elsewhere."""
    weight = torch.ones(length)
    if ramp > 0:
        rising = (torch.arange(ramp) + 0.5) / ramp
        if fade_in:
            weight[:ramp] = rising
        if fade_out:
            weight[-ramp:] = rising.flip(0)
    return weight


@torch.no_grad()
def upscale(model, lr: Tensor, scale: int, *, tile: int | None = None, overlap: int = 16,
            dtype: torch.dtype = torch.float32) -> Tensor:
    """Super-resolve `lr` by `scale` with `model`.

    Args:
        model: an `SRNet` (any module returning {scale: image}) whose outputs include `scale`.
        lr: (1, 3, h, w) float in [0, 1], on the model's device.
        scale: the output scale to return.
        tile: LR tile side; None or 0 runs the whole image at once.
        overlap: LR pixels shared by neighbouring tiles (blended linearly).
        dtype: autocast dtype (torch.float32: none).

    Returns:
        (1, 3, scale*h, scale*w) float32 in [0, 1] (clamped, not quantised).
    """
    device = lr.device

    def run(x: Tensor) -> Tensor:
        with autocast(device, dtype):
            return model(x)[scale].float().clamp_(0, 1)

    height, width = lr.shape[-2:]
    if not tile or (height <= tile and width <= tile):
        return run(lr)
    if overlap >= tile // 2:
        raise UsageError(f"tile overlap {overlap} must be under half the tile side {tile}")
    output = torch.zeros(1, 3, scale * height, scale * width, device=device)
    total = torch.zeros(1, 1, scale * height, scale * width, device=device)
    rows, columns = _positions(height, tile, overlap), _positions(width, tile, overlap)
    for top in rows:
        for left in columns:
            bottom, right = min(top + tile, height), min(left + tile, width)
            patch = run(lr[..., top:bottom, left:right])  # (1, 3, t, t) -> (1, 3, st, st)
            weight_y = _ramp(scale * (bottom - top), scale * overlap, top > 0, bottom < height)
            weight_x = _ramp(scale * (right - left), scale * overlap, left > 0, right < width)
            weight = (weight_y[:, None] * weight_x[None, :]).to(device)  # (st, st)
            rows_out = slice(scale * top, scale * bottom)
            columns_out = slice(scale * left, scale * right)
            output[..., rows_out, columns_out] += patch * weight
            total[..., rows_out, columns_out] += weight
    return output / total


def configure_parser(parser) -> None:
    parser.add_argument("input", type=Path, help="PNG or JPEG image to upscale")
    parser.add_argument("output", type=Path, help="where to write the upscaled image")
    parser.add_argument("--checkpoint", default="pretrained",
                        help="checkpoint file, or 'pretrained' for the shipped weights (default)")
    parser.add_argument("--scale", type=int, help="output scale (default: the model's smallest)")
    parser.add_argument("--tile", type=int, default=256,
                        help="LR tile side for bounded memory; 0 = whole image (default 256)")
    parser.add_argument("--overlap", type=int, default=16, help="LR pixels tiles share")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 or auto")


def run(args) -> int:
    from srlib.checkpoint import PRETRAINED_NAME, check_scale, load_model
    from srlib.imageio import IMAGE_SUFFIXES, load_image, save_image, to_tensor, to_uint8

    # Argument checks first (exit 2), before any file is read or any model built.
    if not args.input.is_file():
        what = "is a folder, not an image file" if args.input.is_dir() else "no such file"
        raise UsageError(f"{args.input}: {what} (input)")
    if args.output.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"{args.output}: unsupported output type {args.output.suffix!r} "
                         f"(use one of {', '.join(IMAGE_SUFFIXES)})")
    if not args.output.parent.resolve().is_dir():
        raise UsageError(f"{args.output.parent}: output folder does not exist")
    if args.tile < 0 or args.overlap < 0:
        raise UsageError("--tile and --overlap must not be negative")
    if args.tile and args.overlap >= args.tile // 2:
        raise UsageError(f"--overlap {args.overlap} must be under half of --tile {args.tile}")
    if args.scale is not None:
        check_scale(args.scale)
    if args.checkpoint != PRETRAINED_NAME and not Path(args.checkpoint).is_file():
        raise UsageError(f"{args.checkpoint}: no such checkpoint file (--checkpoint)")
    device = select_device(args.device)
    dtype = resolve_precision(args.precision, device)
    image = load_image(args.input)
    model, _ = load_model(args.checkpoint, scale=args.scale)
    scale = args.scale or min(model.output_scales)
    lr = to_tensor(image).unsqueeze(0).to(device)  # (h, w, 3) -> (1, 3, h, w)
    sr = upscale(model.to(device), lr, scale, tile=args.tile, overlap=args.overlap, dtype=dtype)
    save_image(args.output, to_uint8(sr[0].cpu()))
    height, width = image.shape[:2]
    print(f"{args.input} ({width}x{height}) -> {args.output} "
          f"({scale * width}x{scale * height}, x{scale})")
    return 0
