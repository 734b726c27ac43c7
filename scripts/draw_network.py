"""Draw the book's network figure, book/images/network.svg, from the model itself.

Every shape in the figure is recorded by forward hooks on `build_model(PRESETS["small"])` run on
a (1, 3, 32, 32) input, so the labels cannot drift from the code. The residual block below it
is drawn with symbolic shapes (B, C, H, W).

    python scripts/draw_network.py [output.svg]

The SVG is deterministic (fixed hash salt, no date, text kept as text), so regenerating it
after a change to srlib.model shows up as a diff.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from srlib.model import PRESETS, build_model

OUTPUT = Path(__file__).resolve().parents[1] / "book" / "images" / "network.svg"
INPUT_SHAPE = (1, 3, 32, 32)


def shape(tensor) -> str:
    return "(" + ",".join(str(size) for size in tensor.shape) + ")"


def record_shapes(model, x) -> dict[str, str]:
    """name -> 'in -> out' or 'out' shape strings, from forward hooks."""
    shapes = {}

    def hook(name):
        def record(_, inputs, output):
            first = output[1] if isinstance(output, tuple) else output  # blocks: the residual
            shapes[name] = (shape(inputs[0]), shape(first))
        return record

    named = [("features", model.features)]
    named += [(f"skip{i}", skip) for i, skip in enumerate(model.skips)]
    named += [(f"compress{i}", stage.compress) for i, stage in enumerate(model.stages)]
    named += [(f"stage{i}", stage) for i, stage in enumerate(model.stages)]
    named += [(f"up{key}", module) for key, module in model.residual_up.items()]
    named += [(f"head{key}", module) for key, module in model.to_image.items()]
    named += [(f"block{i}", stage.blocks[0]) for i, stage in enumerate(model.stages)]
    hooks = [module.register_forward_hook(hook(name)) for name, module in named]
    with torch.no_grad():
        outputs = model(x)
    for handle in hooks:
        handle.remove()
    shapes.update({f"out{scale}": ("", shape(image)) for scale, image in outputs.items()})
    # The up-flow maps U of a block: its first output, which the hook above did not keep.
    for i, stage in enumerate(model.stages):
        with torch.no_grad():
            upsampled, _ = stage.blocks[0](torch.zeros(1, stage.compress.out_channels, *INPUT_SHAPE[2:]))
        shapes[f"U{i}"] = ("", shape(upsampled))
    return shapes


def box(axis, x, y, text, *, width=2.1, height=0.62, color="#e8eef7"):
    axis.add_patch(plt.Rectangle((x - width / 2, y - height / 2), width, height, fc=color,
                                 ec="#333333", lw=0.8))
    axis.text(x, y, text, ha="center", va="center", fontsize=7.5)


def arrow(axis, start, end, label="", *, offset=(0.06, 0.0), align="left", color="#333333"):
    axis.annotate("", xy=end, xytext=start,
                  arrowprops={"arrowstyle": "-|>", "lw": 0.8, "color": color, "shrinkA": 2, "shrinkB": 2})
    if label:
        mid = ((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1])
        axis.text(*mid, label, fontsize=6.5, ha=align, va="center", color="#1f3f77")


def draw_network(axis, model, shapes):
    axis.set(xlim=(-1.2, 14.2), ylim=(-0.9, 6.1), title="SRNet, preset 'small', input "
             f"{shape(torch.empty(INPUT_SHAPE))}: shapes recorded from the model")
    axis.title.set_fontsize(9)
    box(axis, -0.35, 0, "x (LR image)\n" + shapes["features"][0], width=1.7)
    box(axis, 1.8, 0, "features\nconv 3x3 3->32, ReLU\nconv 32->16, ReLU\nconv 16->16, ReLU",
        height=0.95)
    arrow(axis, (0.5, 0), (0.75, 0))
    previous_xy, chain_x = (1.8, 0.48), 1.8
    for i, stage in enumerate(model.stages):
        sx, s = 4.6 + 3.4 * i, stage.scale
        box(axis, sx, 0, f"stages[{i}]: {stage.num_blocks} x\nResidualBlock(s={s})",
            color="#f6ead8")
        arrow(axis, (chain_x + 1.05, 0), (sx - 1.05, 0), shapes[f"block{i}"][0], offset=(0, -0.2),
              align="center")
        chain_x = sx
        box(axis, sx, 1.6, f"cat {stage.num_blocks} x U, conv 3x3\n-> {shapes[f'compress{i}'][1]}")
        arrow(axis, (sx, 0.31), (sx, 1.29), f"{stage.num_blocks} x U {shapes[f'U{i}'][1]}\n"
              f"cat: {shapes[f'compress{i}'][0]}")
        box(axis, sx, 3.0, "+", width=0.42, height=0.42, color="white")
        arrow(axis, (sx, 1.91), (sx, 2.79))
        kind = "ConvT" if s > (model.stages[i - 1].scale if i else 1) else "conv stride 2"
        arrow(axis, previous_xy, (sx - 0.21, 3.0), f"skips[{i}] ({kind}):\n"
              f"{shapes[f'skip{i}'][0]} -> {shapes[f'skip{i}'][1]}", offset=(0.3, 0.3),
              align="center", color="#777777")
        previous_xy = (sx + 0.21, 3.0)
        if str(s) in model.to_image:
            draw_head(axis, model, shapes, sx, s, i)
    arrow(axis, (chain_x + 1.05, 0), (chain_x + 1.7, 0), shapes[f"block{len(model.stages) - 1}"][1],
          offset=(0.0, -0.2), align="center")


def draw_head(axis, model, shapes, sx, s, i):
    box(axis, sx + 0.9, 3.9, "+", width=0.42, height=0.42, color="white")
    arrow(axis, (sx + 0.21, 3.0), (sx + 0.75, 3.75))
    axis.annotate("", xy=(sx + 1.1, 3.75), xytext=(sx + 1.05, 0.0),
                  arrowprops={"arrowstyle": "-|>", "lw": 0.6, "color": "#999999", "ls": "--"})
    axis.text(sx + 1.12, 2.2, f"residual_up['{s}'] ConvT\n{shapes[f'up{s}'][0]}\n"
              f"-> {shapes[f'up{s}'][1]}", fontsize=6.5, color="#1f3f77")
    box(axis, sx + 0.9, 4.8, f"to_image['{s}']: conv, LReLU(0.2), conv\n"
        f"{shapes[f'head{s}'][0]} -> {shapes[f'head{s}'][1]}", width=2.9, color="#e3f1e0")
    arrow(axis, (sx + 0.9, 4.11), (sx + 0.9, 4.49))
    axis.text(sx + 0.9, 5.55, f"+ imresize(x, {s}) (global_skip)\n= x{s} image "
              f"{shapes[f'out{s}'][1]}", ha="center", va="center", fontsize=7.5,
              fontweight="bold")
    arrow(axis, (sx + 0.9, 5.11), (sx + 0.9, 5.33))


def draw_block(axis):
    axis.set(xlim=(-0.6, 14.2), ylim=(-1.3, 1.5), title="ResidualBlock(channels=C, scale=s): "
             "returns (U, R + A)")
    axis.title.set_fontsize(9)
    box(axis, 0.3, 0, "X\n(B,C,H,W)", width=1.3)
    box(axis, 2.6, 0.8, "up: ConvT k=s+2, stride s\nthen ReLU", width=2.3)
    arrow(axis, (0.95, 0.1), (1.45, 0.7))
    box(axis, 5.4, 0.8, "U (B,C,sH,sW)\n-> the stage's concat", width=2.3, color="#f6ead8")
    arrow(axis, (3.75, 0.8), (4.25, 0.8))
    box(axis, 5.4, -0.8, "down: conv 3x3, stride s\n(B,C,sH,sW) -> (B,C,H,W)", width=2.5)
    arrow(axis, (5.4, 0.49), (5.4, -0.49))
    box(axis, 7.7, 0, "R = X - down(U)\n(B,C,H,W)", width=1.8)
    arrow(axis, (0.95, -0.1), (6.8, -0.1), "X", offset=(0, -0.12), align="center")
    arrow(axis, (6.65, -0.75), (6.8, -0.25))
    box(axis, 10.0, 0.8, "refine: 3 x (conv 3x3, ReLU)\nthen SE: x * sigmoid(MLP(mean))",
        width=2.6)
    arrow(axis, (8.6, 0.15), (8.7, 0.6))
    box(axis, 12.6, 0, "R + A\n(B,C,H,W)\n-> next block", width=1.7, color="#f6ead8")
    arrow(axis, (11.3, 0.7), (11.75, 0.2), "A")
    arrow(axis, (8.6, -0.1), (11.75, -0.1), "R", offset=(0, -0.12), align="center")


def main(argv: list[str]) -> int:
    output = Path(argv[1]) if len(argv) > 1 else OUTPUT
    torch.manual_seed(0)
    model = build_model(PRESETS["small"]).eval()
    shapes = record_shapes(model, torch.rand(INPUT_SHAPE))
    plt.rcParams.update({"svg.hashsalt": "srbook", "svg.fonttype": "none"})
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8.2),
                                         gridspec_kw={"height_ratios": [3, 1.25]})
    for axis in (top, bottom):
        axis.axis("off")
    draw_network(top, model, shapes)
    draw_block(bottom)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, format="svg", metadata={"Date": None})
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
