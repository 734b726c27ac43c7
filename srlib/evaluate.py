"""Benchmark evaluation under the published protocol (SRCNN / VDSR / LapSRN / EDSR).

For every HR image and scale: crop the HR image to a multiple of the scale (`modcrop`), make
the LR image with MATLAB bicubic on the uint8 image (`degrade`), upscale it, round the output
to 8 bits (`quantize`), and score PSNR and SSIM on MATLAB rgb2ycbcr's Y, `scale` pixels shaved.

Two conventions published tables mix (REFERENCE.md) are arguments, printed under every table:
the SSIM variant (`ssim_padding`) and how a single-channel image such as Set14's bridge.png is
scored (`grey_as`): "grey" (default, as the published bicubic rows) replicates it to RGB and
compares the rounded mean of the output's channels with the grey values (exactly bicubic on
the grey image, for bicubic); "ycbcr" scores the replicated RGB image through Y.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from srlib.errors import UsageError
from srlib.imageio import list_images, load_image, save_image
from srlib.infer import as_upscaler
from srlib.metrics import SSIM_PADDINGS, psnr, ssim
from srlib.model import check_scale
from srlib.resize import degrade, imresize, modcrop, quantize

GREY_TREATMENTS = ("grey", "ycbcr")

# (lr_image (1, 3, h, w) float in [0, 1], scale) -> sr (1, 3, scale*h, scale*w)
Upscaler = Callable[[Tensor, int], Tensor]


def bicubic_upscaler(lr_image: Tensor, scale: int) -> Tensor:
    """The bicubic baseline: MATLAB `imresize(lr_image, scale, 'bicubic')` in float64,
    (B, C, h, w) in [0, 1] -> (B, C, scale*h, scale*w), not rounded or clamped."""
    return imresize(lr_image.to(torch.float64), float(scale))


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
    lr_image = degrade(hr, scale)  # (1, 3, H, W) -> (1, 3, H/s, W/s)
    # float32 for the upscaler, as models compute; values k/255 to float32 precision (the
    # bicubic baseline moves by < 1e-5 dB against a float64 LR).
    sr = upscaler(lr_image.float(), scale)
    if tuple(sr.shape) != tuple(hr.shape):
        raise ValueError(f"{name}: upscaler returned shape {tuple(sr.shape)}, expected "
                         f"{tuple(hr.shape)}")
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
        upscaler: callable (lr_image, scale) -> sr. lr_image is (1, 3, h, w) float32 on the CPU, in
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
                    hr_uint8, upscaler, scale, y_channel=y_channel, ssim_padding=ssim_padding,
                    grey_as=grey_as, name=str(path), shave=scale if shave is None else shave)
                per_image.append({"name": path.name, "psnr": value_psnr, "ssim": value_ssim})
                if save_images is not None:
                    folder = Path(save_images) / set_name / f"x{scale}"
                    folder.mkdir(parents=True, exist_ok=True)
                    save_image(folder / f"{path.stem}.png", sr.float())
            protocol = {"y_channel": y_channel, "shave": scale if shave is None else shave,
                        "ssim": ssim_padding, "grey": grey_as}
            # The literature averages per-image PSNR (not the PSNR of the mean MSE).
            row = {"set": set_name, "scale": scale, "method": method,
                   "psnr": float(np.mean([image["psnr"] for image in per_image])),
                   "ssim": float(np.mean([image["ssim"] for image in per_image])),
                   "n": len(per_image), "images": per_image, "protocol": protocol}
            rows.append(row)
            if log is not None:
                log(f"{method} {set_name} x{scale}: {row['psnr']:.2f} dB / {row['ssim']:.4f} "
                    f"({row['n']} images)")
    return rows


def validate(model, folder: str | Path, scales, device: torch.device) -> list[dict]:
    """PSNR/SSIM (Y channel, published protocol) of `model` on the HR images in `folder`."""
    was_training = model.training
    try:
        rows = evaluate(as_upscaler(model, device), {Path(folder).name: Path(folder)}, scales,
                        method="model")
    finally:
        model.train(was_training)
    return [{"set": row["set"], "scale": row["scale"], "psnr": row["psnr"], "ssim": row["ssim"]}
            for row in rows]


def _describe(protocol: dict) -> str:
    channel = "Y channel (MATLAB rgb2ycbcr)" if protocol["y_channel"] else "RGB channels"
    ssim_text = {"valid": "Wang's ssim_index (11x11 Gaussian, sigma 1.5, 'valid' filtering)",
                 "replicate": "MATLAB ssim() (11x11 Gaussian, sigma 1.5, replicate padding)"}
    grey_text = {"grey": "on their own grey values", "ycbcr": "as RGB through YCbCr"}
    return (f"PSNR (dB) / SSIM on the {channel}, `scale` pixels shaved, HR cropped to a "
            f"multiple of the scale, LR by MATLAB bicubic on uint8, outputs rounded to 8 bits; "
            f"SSIM: {ssim_text[protocol['ssim']]}; single-channel images scored "
            f"{grey_text[protocol['grey']]}.")


def format_table(rows: Sequence[dict]) -> str:
    """`evaluate`'s rows as a Markdown table (a line per scale and method, a column per set,
    PSNR to 2 and SSIM to 4 decimals), then a line naming the conventions used."""
    set_names = list(dict.fromkeys(row["set"] for row in rows))
    lines_by_key: dict[tuple[int, str], dict[str, dict]] = {}
    for row in rows:
        lines_by_key.setdefault((row["scale"], row["method"]), {})[row["set"]] = row
    header = "| scale | method | " + " | ".join(set_names) + " |"
    lines = [header, "|---|---|" + "---|" * len(set_names)]
    for (scale, method), by_set in sorted(lines_by_key.items(), key=lambda item: item[0][0]):
        cells = [f"{by_set[name]['psnr']:.2f}/{by_set[name]['ssim']:.4f}" if name in by_set
                 else "-" for name in set_names]
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
