"""Draw README's pictures: HR crop, bicubic x4 and the pretrained network x4, side by side;
and chapter 5's PSNR-against-compute figure, copied from the executed chapter.

    python scripts/readme_figure.py [--checkpoint pretrained] [--out book/images/readme_comparison.png]
    python scripts/readme_figure.py --compute-curve   # after bash scripts/build_book.sh

The crop comes from scikit-image's astronaut photograph (NASA, public domain), one of the
embedded default images; the LR input is made by `srlib.resize.degrade`, as in evaluation.
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from srlib.checkpoint import load_model
from srlib.data import default_images
from srlib.imageio import load_image, to_tensor
from srlib.infer import upscale
from srlib.metrics import psnr
from srlib.resize import degrade, imresize, quantize


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="pretrained")
    parser.add_argument("--out", type=Path, default=Path("book/images/readme_comparison.png"))
    parser.add_argument("--compute-curve", action="store_true",
                        help="copy chapter 5's PSNR-against-compute figure from the built book "
                             "to book/images/psnr_vs_compute.png")
    args = parser.parse_args()
    if args.compute_curve:
        copy_compute_curve(Path("_build/jupyter_execute/notebooks/05_results.ipynb"),
                           Path("book/images/psnr_vs_compute.png"))
        return
    scale = 4
    path = next(p for p in default_images() if p.stem == "astronaut")
    hr = to_tensor(load_image(path))[None, :, 40:232, 160:352]  # (1, 3, 192, 192): the face
    lr_image = degrade(hr, scale)
    model, _ = load_model(args.checkpoint, scale=scale)
    images = {
        "bicubic": quantize(imresize(lr_image, scale).clamp(0, 1)),
        "srlib pretrained": quantize(upscale(model, lr_image, scale)),
    }
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for axis, (title, image) in zip(axes, [*images.items(), ("ground truth", hr)]):
        if title != "ground truth":
            value = psnr(image, hr, shave=scale, y_channel=True).item()
            title = f"{title} x{scale}: {value:.2f} dB"
        axis.imshow(image[0].permute(1, 2, 0).clamp(0, 1).numpy())
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def copy_compute_curve(executed: Path, out: Path) -> None:
    """The PNG output of the cell that plots against training core-hours."""
    import base64
    import json

    for cell in json.loads(executed.read_text())["cells"]:
        if cell["cell_type"] == "code" and "training core-hours" in "".join(cell["source"]):
            image = next(output["data"]["image/png"] for output in cell["outputs"]
                         if "image/png" in output.get("data", {}))
            out.write_bytes(base64.b64decode(image))
            print(f"wrote {out}")
            return
    raise SystemExit(f"{executed}: no PSNR-against-compute figure (build the book first)")


if __name__ == "__main__":
    with torch.no_grad():
        main()
