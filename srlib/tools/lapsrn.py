"""Inference speed of srlib's networks against LapSRN's architecture, in one process.

    python -m srlib.tools.lapsrn --out results/speed/lapsrn.json

LapSRN (Lai et al., CVPR 2017, section 3.1) as the paper describes it, with random weights
(speed does not depend on their values): per pyramid level, a feature-embedding branch of
`depth` 3x3 convolutions of 64 channels with leaky ReLU (slope 0.2), a transposed convolution
(4x4, stride 2) that upsamples the features, a 3x3 convolution to a residual image, and a
transposed convolution that upsamples the image; level k's output is its upsampled image plus
its residual. Both networks upscale the same LR image in fp32 on the CPU, interleaved, and the
time is reported per output megapixel: the figure a user waiting for an upscale feels.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn


class LapSRN(nn.Module):
    """LapSRN's pyramid with `levels` x2 levels (1: x2, 2: x4, 3: x8)."""

    def __init__(self, levels: int = 3, depth: int = 10, channels: int = 64):
        super().__init__()
        self.first = nn.Conv2d(3, channels, 3, padding=1)
        self.branches = nn.ModuleList()
        self.to_residual = nn.ModuleList()
        self.image_up = nn.ModuleList()
        for _ in range(levels):
            layers = []
            for _ in range(depth):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2)]
            layers += [nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1),
                       nn.LeakyReLU(0.2)]
            self.branches.append(nn.Sequential(*layers))
            self.to_residual.append(nn.Conv2d(channels, 3, 3, padding=1))
            self.image_up.append(nn.ConvTranspose2d(3, 3, 4, stride=2, padding=1))

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        features, image, outputs = nn.functional.leaky_relu(self.first(x), 0.2), x, {}
        for level, (branch, residual, up) in enumerate(
                zip(self.branches, self.to_residual, self.image_up)):
            features = branch(features)  # (B, 64, h, w) -> (B, 64, 2h, 2w)
            image = up(image) + residual(features)  # (B, 3, 2h, 2w)
            outputs[2 ** (level + 1)] = image
        return outputs


def _seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


@torch.no_grad()
def compare(lr_side: int = 256, scales=(2, 4, 8), repeats: int = 3, checkpoint: str = "pretrained",
            widths: tuple[int, int] | None = None,
            blocks: tuple[int, ...] | None = None) -> list[dict]:
    """Milliseconds per output megapixel of LapSRN and of `checkpoint`'s network, per scale;
    with `widths` (feature_width, channels) or `blocks` (blocks per stage), of that network
    rebuilt so, with random weights, instead (what a next stage could afford)."""
    from srlib.checkpoint import load_model
    from srlib.infer import upscale
    from srlib.model import build_model, count_parameters
    from srlib.tools.backends import configure_backends

    configure_backends(torch.device("cpu"))  # the allocator setting srlib upscale uses
    ours, config = load_model(checkpoint)
    changes = {}
    if widths is not None:
        changes.update(feature_width=widths[0], channels=widths[1])
    if blocks is not None:
        changes.update(blocks_per_stage=tuple(blocks))
    if changes:
        ours = build_model(config.model.replace(**changes)).eval()
    torch.manual_seed(0)
    x = torch.rand(1, 3, lr_side, lr_side)
    rows = []
    for scale in scales:
        theirs = LapSRN(levels=int(math.log2(scale))).eval()
        megapixels = (scale * lr_side) ** 2 / 1e6
        upscale(ours, x, scale)  # warm-up: allocations, oneDNN kernels
        theirs(x)
        # Interleaved, best of `repeats`: a machine shared with other work slows both alike.
        ours_s = _seconds(lambda scale=scale: upscale(ours, x, scale), repeats)
        theirs_s = _seconds(lambda theirs=theirs: theirs(x), repeats)
        rows.append({"scale": scale, "lr_side": lr_side,
                     "srnet_ms_per_mp": round(1000 * ours_s / megapixels, 1),
                     "lapsrn_ms_per_mp": round(1000 * theirs_s / megapixels, 1),
                     "srnet_params_m": round(count_parameters(ours) / 1e6, 3),
                     "lapsrn_params_m": round(count_parameters(theirs) / 1e6, 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(prog="python -m srlib.tools.lapsrn",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="pretrained")
    parser.add_argument("--widths", type=int, nargs=2, metavar=("FEATURE_WIDTH", "CHANNELS"),
                        help="time the checkpoint's network rebuilt at these widths instead")
    parser.add_argument("--blocks", type=int, nargs="+", metavar="N",
                        help="time it rebuilt with these blocks per stage (x2 stage first)")
    parser.add_argument("--lr-side", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the rows and provenance as JSON")
    args = parser.parse_args(argv)
    from srlib.tools.record import provenance

    started = time.perf_counter()
    rows = compare(args.lr_side, repeats=args.repeats, checkpoint=args.checkpoint,
                   widths=tuple(args.widths) if args.widths else None,
                   blocks=tuple(args.blocks) if args.blocks else None)
    print("| scale | srlib ms/MP | LapSRN ms/MP | srlib params (M) | LapSRN params (M) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| x{row['scale']} | {row['srnet_ms_per_mp']:.0f} | {row['lapsrn_ms_per_mp']:.0f} "
              f"| {row['srnet_params_m']:.3f} | {row['lapsrn_params_m']:.3f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        arguments = sys.argv[1:] if argv is None else argv
        record = provenance(" ".join(["python -m srlib.tools.lapsrn", *arguments]),
                            time.perf_counter() - started)
        # Which network the srnet columns time: the checkpoint's, or it rebuilt (random weights).
        rebuilt = {"feature_width_channels": args.widths, "blocks_per_stage": args.blocks}
        rebuilt = {key: value for key, value in rebuilt.items() if value} or None
        args.out.write_text(json.dumps({"checkpoint": args.checkpoint, "rebuilt": rebuilt,
                                        "rows": rows, "provenance": record}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
