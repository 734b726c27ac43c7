"""Benchmark evaluation under the published protocol, and the `srlib evaluate` command.

For every HR image of a set and every scale (SRCNN / VDSR / LapSRN / EDSR protocol):

1. crop the HR image to a multiple of the scale (`modcrop`);
2. make the LR image with MATLAB-style bicubic on the uint8 image (`degrade`);
3. upscale it with the method under test and round the output to 8 bits (`quantize`);
4. measure PSNR and SSIM on MATLAB rgb2ycbcr's Y channel, `scale` pixels shaved.

Two conventions that published tables mix (see REFERENCE.md) are explicit arguments and are
printed under every table: the SSIM variant (`ssim_padding`) and how a single-channel image
such as Set14's bridge.png is scored (`grey_as`):

- "grey" (default, as the published bicubic rows): the grey image is replicated to RGB,
  degraded and upscaled like any other, and the mean of the output's three channels,
  rounded to 8 bits, is compared with the grey values. Bicubic output has three equal
  channels, so this is exactly bicubic on the grey image;
- "ycbcr": the replicated RGB image is scored through Y like every other image.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from srlib.errors import SrlibError, UsageError
from srlib.imageio import list_images, load_image, save_image
from srlib.metrics import SSIM_PADDINGS, psnr, ssim
from srlib.model import check_scale
from srlib.resize import degrade, imresize, modcrop, quantize

__all__ = [
    "GREY_TREATMENTS",
    "Upscaler",
    "bicubic_upscaler",
    "configure_parser",
    "evaluate",
    "format_table",
    "run",
]

GREY_TREATMENTS = ("grey", "ycbcr")
DEFAULT_SETS = ("Set5", "Set14")
DEFAULT_BICUBIC_SCALES = (2, 3, 4, 8)

# (lr (1, 3, h, w) float in [0, 1], scale) -> sr (1, 3, scale*h, scale*w)
Upscaler = Callable[[Tensor, int], Tensor]


def bicubic_upscaler(lr: Tensor, scale: int) -> Tensor:
    """The bicubic baseline: MATLAB `imresize(lr, scale, 'bicubic')` in float64.

    Args:
        lr: (B, C, h, w) float in [0, 1].
        scale: integer factor.

    Returns:
        (B, C, scale*h, scale*w) float64, not rounded or clamped (evaluate rounds).
    """
    return imresize(lr.to(torch.float64), float(scale))


def _protocol(shave: int, y_channel: bool, ssim_padding: str, grey_as: str) -> dict:
    return {"y_channel": y_channel, "shave": shave, "ssim": ssim_padding, "grey": grey_as}


def _score_image(
    hr_uint8: np.ndarray, upscaler: Upscaler, scale: int, *,
    y_channel: bool, ssim_padding: str, grey_as: str, name: str, shave: int,
) -> tuple[float, float, Tensor]:
    """PSNR, SSIM and the rounded output (3, H, W) of one HR image at one scale."""
    is_grey = hr_uint8.ndim == 2
    rgb = np.repeat(hr_uint8[..., None], 3, axis=2) if is_grey else hr_uint8  # (H, W, 3)
    rgb = modcrop(rgb, scale)
    # float64 throughout: the quoted numbers must not depend on float32 rounding.
    hr = torch.from_numpy(rgb.astype(np.float64) / 255.0).permute(2, 0, 1)[None]  # (1,3,H,W)
    lr = degrade(hr, scale)  # (1, 3, H, W) -> (1, 3, H/s, W/s)
    # float32 for the upscaler, as models compute; values k/255 to float32 precision (the
    # bicubic baseline moves by < 1e-5 dB against a float64 LR).
    sr = upscaler(lr.float(), scale)
    if tuple(sr.shape) != tuple(hr.shape):
        raise ValueError(
            f"{name}: upscaler returned shape {tuple(sr.shape)}, expected {tuple(hr.shape)}"
        )
    # The published protocol scores 8-bit outputs, as saved images would be.
    sr = quantize(sr.detach().to("cpu", torch.float64))
    if is_grey and grey_as == "grey":
        # Score the grey values themselves: the output's channel mean, rounded to 8 bits.
        sr_scored = quantize(sr.mean(dim=1, keepdim=True))  # (1, 3, H, W) -> (1, 1, H, W)
        hr_scored, use_y = hr[:, :1], False
    else:
        sr_scored, hr_scored, use_y = sr, hr, y_channel
    value_psnr = psnr(sr_scored, hr_scored, shave=shave, y_channel=use_y)
    value_ssim = ssim(sr_scored, hr_scored, shave=shave, y_channel=use_y, padding=ssim_padding)
    return float(value_psnr), float(value_ssim), sr[0]


def evaluate(
    upscaler: Upscaler,
    sets: dict[str, Path],
    scales: Iterable[int],
    *,
    method: str = "bicubic",
    y_channel: bool = True,
    ssim_padding: str = "valid",
    grey_as: str = "grey",
    shave: int | None = None,
    save_images: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict]:
    """PSNR / SSIM of an upscaler on benchmark sets, the published protocol.

    Args:
        upscaler: callable (lr, scale) -> sr. lr is (1, 3, h, w) float32 on the CPU, in
            [0, 1] on the 8-bit grid; sr must be (1, 3, scale*h, scale*w), any float dtype
            and device; it is rounded to 8 bits before scoring.
        sets: set name -> folder of HR images (e.g. {"Set5": Path(".../Set5")}).
        scales: integer factors >= 2.
        method: the name written in each row.
        y_channel: score MATLAB rgb2ycbcr's Y (True, the literature) or RGB (False).
        ssim_padding: "valid" (Wang's ssim_index) or "replicate" (MATLAB's ssim()).
        grey_as: how single-channel HR images are scored: "grey" or "ycbcr" (module doc).
        shave: border pixels left out of the scores; None: `scale` (the literature's).
        save_images: folder to write outputs as `<set>/x<scale>/<name>.png`, or None.
        log: called with one line per finished (set, scale), or None for silence.

    Returns:
        One row per (scale, set), scales outer: {"set", "scale", "method", "psnr", "ssim"
        (means over the set), "n", "images": [{"name", "psnr", "ssim"}], "protocol":
        {"y_channel", "shave", "ssim", "grey"}}.
    """
    if ssim_padding not in SSIM_PADDINGS:
        raise UsageError(f"SSIM padding must be one of {SSIM_PADDINGS}, got {ssim_padding!r}")
    if grey_as not in GREY_TREATMENTS:
        raise UsageError(f"grey treatment must be one of {GREY_TREATMENTS}, got {grey_as!r}")
    scales = [check_scale(scale, network=False) for scale in scales]
    images = {}  # set name -> [(path, uint8 image)], read once for all scales
    for set_name, folder in sets.items():
        paths = list_images(folder)
        if not paths:
            raise UsageError(f"{folder}: no images in set folder {set_name}")
        # grey="keep": a single-channel file stays (H, W), so it can be scored as grey.
        images[set_name] = [(path, load_image(path, grey="keep")) for path in paths]
    rows = []
    for scale in scales:
        for set_name, entries in images.items():
            per_image = []
            for path, hr_uint8 in entries:
                value_psnr, value_ssim, sr = _score_image(
                    hr_uint8, upscaler, scale, y_channel=y_channel,
                    ssim_padding=ssim_padding, grey_as=grey_as, name=str(path),
                    shave=scale if shave is None else shave,
                )
                per_image.append({"name": path.name, "psnr": value_psnr, "ssim": value_ssim})
                if save_images is not None:
                    folder = Path(save_images) / set_name / f"x{scale}"
                    folder.mkdir(parents=True, exist_ok=True)
                    save_image(folder / f"{path.stem}.png", sr.float())
            row = {
                "set": set_name,
                "scale": scale,
                "method": method,
                # The literature averages per-image PSNR (not the PSNR of the mean MSE).
                "psnr": float(np.mean([image["psnr"] for image in per_image])),
                "ssim": float(np.mean([image["ssim"] for image in per_image])),
                "n": len(per_image),
                "images": per_image,
                "protocol": _protocol(scale if shave is None else shave, y_channel,
                                      ssim_padding, grey_as),
            }
            rows.append(row)
            if log is not None:
                log(f"{method} {set_name} x{scale}: {row['psnr']:.2f} dB / {row['ssim']:.4f} "
                    f"({row['n']} images)")
    return rows


def _describe(protocol: dict) -> str:
    channel = "Y channel (MATLAB rgb2ycbcr)" if protocol["y_channel"] else "RGB channels"
    ssim_text = {
        "valid": "SSIM: Wang's ssim_index (11x11 Gaussian, sigma 1.5, 'valid' filtering)",
        "replicate": "SSIM: MATLAB ssim() (11x11 Gaussian, sigma 1.5, replicate padding)",
    }[protocol["ssim"]]
    grey_text = {
        "grey": "single-channel images scored on their own grey values",
        "ycbcr": "single-channel images scored as RGB through YCbCr",
    }[protocol["grey"]]
    return (f"PSNR (dB) / SSIM on the {channel}, `scale` pixels shaved, HR cropped to a "
            f"multiple of the scale, LR by MATLAB bicubic on uint8, outputs rounded to 8 bits; "
            f"{ssim_text}; {grey_text}.")


def format_table(rows: Sequence[dict]) -> str:
    """A Markdown table (one line per scale and method, one column per set) plus conventions.

    Args:
        rows: rows as `evaluate` returns them (or loaded back from its JSON).

    Returns:
        The table, PSNR to 2 and SSIM to 4 decimals as published tables, followed by a line
        naming the conventions used (channel, shave, SSIM variant, grey treatment).
    """
    set_names = list(dict.fromkeys(row["set"] for row in rows))
    lines_by_key: dict[tuple[int, str], dict[str, dict]] = {}
    for row in rows:
        lines_by_key.setdefault((row["scale"], row["method"]), {})[row["set"]] = row
    header = "| scale | method | " + " | ".join(set_names) + " |"
    lines = [header, "|---|---|" + "---|" * len(set_names)]
    for (scale, method), by_set in sorted(lines_by_key.items(), key=lambda item: item[0][0]):
        cells = [
            f"{by_set[name]['psnr']:.2f}/{by_set[name]['ssim']:.4f}" if name in by_set else "-"
            for name in set_names
        ]
        lines.append(f"| x{scale} | {method} | " + " | ".join(cells) + " |")
    # The shave follows the scale, so the conventions differ only in the other fields.
    conventions = []
    for row in rows:
        protocol = {**row.get("protocol", {}), "shave": "scale"}
        if protocol.get("ssim") and protocol not in conventions:
            conventions.append(protocol)
    lines.append("")
    lines.extend(_describe(protocol) for protocol in conventions)
    return "\n".join(lines)


def _check_scale(scale: object) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise UsageError(f"unsupported scale {scale!r}: scales are integers >= 2")
    return int(scale)


def _resolve_sets(names: Sequence[str], data: Path | None) -> dict[str, Path]:
    """Set name -> folder of HR images, from --data or srlib.datasets."""
    if data is not None:
        if not data.is_dir():
            raise UsageError(f"{data}: no such folder (--data)")
        folders = {name: data / name for name in names}
        for name, folder in folders.items():
            if not folder.is_dir():
                raise UsageError(
                    f"{folder}: no folder for set {name} (one folder per set in --data)"
                )
        return folders
    hint = "pass --data DIR or run `srlib download benchmarks`"
    try:
        from srlib.datasets import benchmark_dir

        folders = {name: Path(benchmark_dir(name)) for name in names}
    except SrlibError:
        raise  # already one line saying where it looked and how to download
    except Exception as error:  # any other failure to locate: tell the user what to do
        raise UsageError(f"cannot locate benchmark sets ({error}); {hint}") from error
    for name, folder in folders.items():
        if not folder.is_dir():
            raise UsageError(f"{folder}: set {name} not found; {hint}")
    return folders


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise UsageError(f"unknown device {name!r}") from error


def _checkpoint_upscalers(
    checkpoint: str, scales: Sequence[int] | None, device: torch.device, tile: int | None
) -> tuple[Upscaler, list[int]]:
    """Load the model once per scale (errors surface before any work) and wrap infer.upscale."""
    # Lazy: the checkpoint and inference modules pull in the model; bicubic needs neither.
    from srlib.checkpoint import load_model
    from srlib.infer import upscale

    if scales is None:
        model, _ = load_model(checkpoint, scale=None, map_location="cpu")
        scales = [int(scale) for scale in model.output_scales]
    models = {}
    for scale in scales:
        model, _ = load_model(checkpoint, scale=scale, map_location="cpu")
        models[scale] = model.to(device).eval()

    def upscaler(lr: Tensor, scale: int) -> Tensor:
        lr = lr.to(device=device, dtype=torch.float32)  # (1, 3, h, w)
        with torch.no_grad():
            return upscale(models[scale], lr, scale, tile=tile)

    return upscaler, list(scales)


def _write_json(path: Path, rows: list[dict]) -> None:
    """Write atomically: a temporary file beside the target, then a rename."""
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent}: no such folder (--json {path})")
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(rows, file, indent=1)
            file.write("\n")
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `srlib evaluate`."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--method", choices=["bicubic"], help="a reference method")
    source.add_argument("--checkpoint", metavar="CKPT",
                        help="a checkpoint file, or 'pretrained' for the bundled weights")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="folder holding one folder of HR images per set (DIR/Set5, ...); "
                             "default: the sets `srlib download benchmarks` fetched")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), metavar="SET",
                        help="set names, folders under --data (default: Set5 Set14)")
    parser.add_argument("--scales", nargs="+", type=int, metavar="S",
                        help="integer factors (default: 2 3 4 8 for bicubic, the "
                             "checkpoint's output scales otherwise)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the rows, with per-image values, as JSON")
    parser.add_argument("--save-images", type=Path, metavar="DIR",
                        help="write the 8-bit outputs as DIR/<set>/x<scale>/<name>.png")
    parser.add_argument("--ssim", choices=SSIM_PADDINGS, default="valid",
                        help="SSIM variant: 'valid' (Wang's ssim_index, most tables) or "
                             "'replicate' (MATLAB's ssim()) (default: valid)")
    parser.add_argument("--grey", choices=GREY_TREATMENTS, default="grey",
                        help="single-channel HR images: score their grey values, or as RGB "
                             "through YCbCr (default: grey, as the published bicubic rows)")
    parser.add_argument("--rgb", action="store_true",
                        help="score RGB channels instead of Y (not comparable to the literature)")
    parser.add_argument("--tile", type=int, metavar="PIXELS",
                        help="upscale checkpoint models in tiles of this LR size (saves memory)")
    parser.add_argument("--device", default="auto",
                        help="device for checkpoint models: auto, cpu, cuda, cuda:1 ... "
                             "(default: auto)")


def run(args: argparse.Namespace) -> int:
    """Run `srlib evaluate`: print the Markdown table, optionally write JSON and images."""
    scales = None if args.scales is None else [_check_scale(scale) for scale in args.scales]
    if args.tile is not None and args.tile <= 0:
        raise UsageError(f"--tile must be a positive number of pixels, got {args.tile}")
    if args.save_images is not None and not args.save_images.parent.is_dir():
        raise UsageError(f"{args.save_images.parent}: no such folder (--save-images)")
    if args.json is not None and not args.json.parent.is_dir():
        raise UsageError(f"{args.json.parent}: no such folder (--json {args.json})")
    if args.checkpoint is not None:
        # Lazy, as in _checkpoint_upscalers: bicubic runs need no model code.
        from srlib.checkpoint import PRETRAINED_NAME, check_scale

        for scale in scales or ():
            check_scale(scale)  # bicubic serves x3; no network does
        if args.checkpoint != PRETRAINED_NAME and not Path(args.checkpoint).is_file():
            raise UsageError(f"{args.checkpoint}: no such checkpoint file (--checkpoint)")
    sets = _resolve_sets(args.sets, args.data)
    if args.checkpoint is not None:
        upscaler, scales = _checkpoint_upscalers(
            args.checkpoint, scales, _device(args.device), args.tile
        )
        method = "pretrained" if args.checkpoint == "pretrained" else Path(args.checkpoint).stem
    else:
        upscaler, method = bicubic_upscaler, "bicubic"
        scales = list(DEFAULT_BICUBIC_SCALES) if scales is None else scales
    rows = evaluate(
        upscaler, sets, scales, method=method, y_channel=not args.rgb,
        ssim_padding=args.ssim, grey_as=args.grey, save_images=args.save_images,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(format_table(rows))
    if args.json is not None:
        _write_json(args.json, rows)
    return 0
