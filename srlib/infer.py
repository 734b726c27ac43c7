"""Inference: upscale an image with a trained network, in overlapping tiles when it is large.

Tiles keep memory bounded whatever the image size: besides the input and the output image,
only one tile's activations are alive at a time. Neighbouring tiles share `overlap` LR
pixels and are blended across them. Two things make a tile differ from the same region of
the whole image:

* the receptive field: a pixel near a tile edge sees zero padding instead of its neighbours,
  and is wrong by up to tens of 8-bit levels right at the edge. The blend gives the outer
  quarter of each overlap zero weight and ramps over its middle half (`_ramp`).
  Measured max |tiled - untiled| in 8-bit levels, quick preset trained 300 steps, Set5/Set14
  images (baby, barbara, comic), tiles of 48-96 LR pixels:

  | overlap (LR px) | 8 | 16 (default) | 24 | 32 |
  |---|---|---|---|---|
  | x2 | 1.0-2.3 | 0.11-0.17 | 0.007-0.014 | 0.001 |
  | x4 | 1.8-2.8 | 0.12-0.19 | 0.012-0.023 | |
  | x8 | 1.2-2.3 | 0.14-0.21 | | |

  (a linear ramp over the whole overlap, which weights the edge pixels, left 0.7-1.4 levels
  at overlap 32);
* squeeze-excitation gates every map by its mean over the *whole* input, a tile by its own.
  With `image_statistics=True` a first pass over all tiles, running only the blocks'
  back-projection flow (`SRNet.residual_flow`), collects each SE layer's mean over the image
  and the second pass gates every tile with it. Measured on the same model, switching it on
  changed the output by at most 0.002 levels (the gates sit on the refinement branch of the
  residual only), against ~35% more time: it is off by default.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from torch import Tensor, nn

from srlib.errors import UsageError
from srlib.hardware import autocast, configure_backends, resolve_precision, select_device


def _positions(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side `tile` covering [0, length), neighbours sharing `overlap`."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _cores(starts: list[int], tile: int, length: int) -> list[tuple[int, int]]:
    """A partition of [0, length) into one interval per tile: the middle of each overlap."""
    ends = [min(start + tile, length) for start in starts]
    cuts = [0] + [(starts[i + 1] + ends[i]) // 2 for i in range(len(starts) - 1)] + [length]
    return list(itertools.pairwise(cuts))


def _ramp(length: int, ramp: int, fade_in: bool, fade_out: bool) -> Tensor:
    """1-D blending weights over a tile, 1 except on the sides that overlap a neighbour.

    Across an overlap of `ramp` pixels a tile's weight is 0 on the outer quarter (the pixels
    nearest its edge, which saw zero padding instead of the image), rises linearly over the
    middle half and is 1 on the inner quarter; the neighbour's weight is the mirror image, so
    the two sum to 1. (A ramp over the whole overlap gave the edge pixels, wrong by tens of
    levels, enough weight to put seams of 1-2 levels into a trained network's output.)
    """
    weight = torch.ones(length)
    if ramp > 0:
        rising = ((torch.arange(ramp) + 0.5 - ramp / 4) / (ramp / 2)).clamp(0, 1)
        if fade_in:
            weight[:ramp] = rising
        if fade_out:
            weight[-ramp:] = torch.minimum(weight[-ramp:], rising.flip(0))
    return weight


def _attention_layers(model: nn.Module) -> list[nn.Module]:
    # Any module with an `image_means` slot (srlib.model.SqueezeExcitation).
    return [module for module in model.modules() if hasattr(module, "image_means")]


def _forward_arguments(model, scale: int) -> dict:
    # An SRNet can stop after the stage that makes `scale` (the pyramid's x2 needs one stage).
    from srlib.model import SRNet

    return {"scales": (scale,)} if isinstance(model, SRNet) else {}


@torch.no_grad()
def image_means(model, lr: Tensor, tile: int, overlap: int, scale: int | None = None
                ) -> list[Tensor]:
    """Each squeeze-excitation layer's input mean over the whole image, gathered tile by tile.

    Every tile runs the back-projection flow; each SE layer sums its input over the tile's
    share of a partition of the image (the middle of every overlap), so each LR pixel counts
    once and pixels near tile edges count not at all.

    Args:
        model: an `SRNet`.
        lr: (1, 3, h, w) float in [0, 1].
        tile, overlap: the tiling `upscale` uses.
        scale: the output `upscale` makes (only the stages it needs are run); None: all.

    Returns:
        One (1, C) float32 tensor per SE call, in call order.
    """
    height, width = lr.shape[-2:]
    rows, columns = _positions(height, tile, overlap), _positions(width, tile, overlap)
    row_cores, column_cores = _cores(rows, tile, height), _cores(columns, tile, width)
    sums: list[Tensor] = []
    window = {}

    def accumulate(module, inputs):
        (top, bottom), (left, right) = window["core"]
        x = inputs[0][..., top:bottom, left:right]  # (1, C, tile core)
        index = window["calls"]
        window["calls"] += 1
        part = x.float().sum(dim=(2, 3))  # (1, C)
        if index == len(sums):
            sums.append(part)
        else:
            sums[index] += part

    hooks = [layer.register_forward_pre_hook(accumulate) for layer in _attention_layers(model)]
    try:
        for top, (core_top, core_bottom) in zip(rows, row_cores):
            for left, (core_left, core_right) in zip(columns, column_cores):
                window["calls"] = 0
                window["core"] = ((core_top - top, core_bottom - top),
                                  (core_left - left, core_right - left))
                model.residual_flow(lr[..., top:top + tile, left:left + tile],
                                    None if scale is None else (scale,))
    finally:
        for hook in hooks:
            hook.remove()
    return [total / (height * width) for total in sums]


@torch.no_grad()
def upscale(model, lr: Tensor, scale: int, *, tile: int | None = None, overlap: int = 16,
            dtype: torch.dtype = torch.float32, image_statistics: bool = False) -> Tensor:
    """Super-resolve `lr` by `scale` with `model`.

    Args:
        model: an `SRNet` (any module returning {scale: image}) whose outputs include `scale`.
        lr: (1, 3, h, w) float in [0, 1], on the model's device.
        scale: the output scale to return.
        tile: LR tile side; None or 0 runs the whole image at once.
        overlap: LR pixels shared by neighbouring tiles (16 keeps a trained network within
            0.2 8-bit levels of untiled inference; see the module docstring).
        dtype: autocast dtype (torch.float32: none).
        image_statistics: when tiling, gate squeeze-excitation with means over the whole
            image (one extra pass of the back-projection flow) instead of each tile's own.

    Returns:
        (1, 3, scale*h, scale*w) float32 in [0, 1] (clamped, not quantised).
    """
    device = lr.device
    arguments = _forward_arguments(model, scale)

    def run(x: Tensor) -> Tensor:
        with autocast(device, dtype):
            return model(x, **arguments)[scale].float().clamp_(0, 1)

    height, width = lr.shape[-2:]
    if not tile or (height <= tile and width <= tile):
        return run(lr)
    if overlap >= tile // 2:
        raise UsageError(f"tile overlap {overlap} must be under half the tile side {tile}")
    layers = _attention_layers(model) if image_statistics else []
    calls = {"index": 0}
    if layers:
        with autocast(device, dtype):
            means = image_means(model, lr, tile, overlap, scale)

    def set_means(module, inputs):
        module.image_means = means[calls["index"]].to(inputs[0].dtype)
        calls["index"] += 1

    hooks = [layer.register_forward_pre_hook(set_means) for layer in layers]
    rows, columns = _positions(height, tile, overlap), _positions(width, tile, overlap)
    output = torch.zeros(1, 3, scale * height, scale * width, device=device)
    # The weights are separable (a row ramp times a column ramp), so their sum over all
    # tiles is the outer product of two 1-D sums: no full-size weight map is kept.
    total_y = torch.zeros(scale * height, device=device)
    total_x = torch.zeros(scale * width, device=device)
    try:
        for row_index, top in enumerate(rows):
            bottom = min(top + tile, height)
            weight_y = _ramp(scale * (bottom - top), scale * overlap, top > 0,
                             bottom < height).to(device)
            total_y[scale * top:scale * bottom] += weight_y
            for left in columns:
                right = min(left + tile, width)
                weight_x = _ramp(scale * (right - left), scale * overlap, left > 0,
                                 right < width).to(device)
                if row_index == 0:
                    total_x[scale * left:scale * right] += weight_x
                calls["index"] = 0
                patch = run(lr[..., top:bottom, left:right])  # (1, 3, t, t) -> (1, 3, st, st)
                patch *= weight_y[:, None] * weight_x[None, :]
                output[..., scale * top:scale * bottom, scale * left:scale * right] += patch
    finally:
        for hook in hooks:
            hook.remove()
        for layer in layers:
            layer.image_means = None
    return output.div_(total_y[:, None] * total_x[None, :])


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
    configure_backends(device)
    dtype = resolve_precision(args.precision, device)
    image = load_image(args.input)
    model, _ = load_model(args.checkpoint, scale=args.scale)
    scale = args.scale or min(model.output_scales)
    lr = to_tensor(image).unsqueeze(0).to(device)  # (h, w, 3) -> (1, 3, h, w)
    # channels_last: oneDNN's NHWC convolutions ran this network ~2x faster on a 2-core CPU.
    model = model.to(device, memory_format=torch.channels_last)
    sr = upscale(model, lr, scale, tile=args.tile, overlap=args.overlap, dtype=dtype)
    save_image(args.output, to_uint8(sr[0].cpu()))
    height, width = image.shape[:2]
    print(f"{args.input} ({width}x{height}) -> {args.output} "
          f"({scale * width}x{scale * height}, x{scale})")
    return 0
