"""Small helpers the book's chapters share: the build modes, results files, pictures.

Modes (README, "How to run"): quick (`SRBOOK_QUICK=1`, CI) runs every cell on tiny budgets;
default loads the results of long runs from `results/` and trains something small live;
retrain (`SRBOOK_RETRAIN=1`, or a chapter's `retrain` parameter) recomputes those results.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from srlib.errors import UsageError
from srlib.files import atomic_write


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() not in ("", "0", "false", "no")


def quick_mode() -> bool:
    """True when the environment asks for the quick mode (SRBOOK_QUICK=1, as in CI)."""
    return _flag("SRBOOK_QUICK")


def retrain_mode() -> bool:
    """True when the environment asks to recompute the committed results (SRBOOK_RETRAIN=1)."""
    return _flag("SRBOOK_RETRAIN")


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The book's root: the folder holding ``_toc.yml`` above `start` (default: the cwd), else
    the checkout srlib is installed from (an editable install), else `start`."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "_toc.yml").is_file() else start


def book_run_dir(name: str, *, quick: bool | None = None) -> Path:
    """Where the chapters keep a run: ``runs/book/<name>``, ``-quick`` added in quick mode."""
    quick = quick_mode() if quick is None else quick
    return repo_root() / "runs" / "book" / (f"{name}-quick" if quick else name)


def results_dir(*parts: str) -> Path:
    """``results/<parts>`` of the book: what long runs produced, committed as data."""
    return repo_root().joinpath("results", *parts)


def write_json(path: str | os.PathLike, data) -> Path:
    """Write `data` as indented JSON, atomically."""
    return atomic_write(path, json.dumps(data, indent=1).encode())


def read_json(path: str | os.PathLike):
    """Read a JSON results file, naming it if it is missing or broken."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such results file") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"{path}: unreadable results file ({error})") from None


def describe_provenance(record: dict) -> str:
    """One sentence on where a results file came from, for the page."""
    hardware = record.get("hardware", record)
    seconds = record.get("wall_seconds") or record.get("cpu_seconds")
    duration = f", {seconds / 60:.0f} min" if seconds else ""
    return (f"computed on {record.get('date', '?')} with `{record.get('command', '?')}` at "
            f"commit {str(record.get('commit', '?'))[:8]} on {hardware.get('cpu', '?')} "
            f"({hardware.get('threads', '?')} threads, {hardware.get('precision', '?')})"
            f"{duration}")


def set_threads(threads: int | None) -> int:
    """Use `threads` CPU threads for torch (None or 0: leave torch's choice); the count used."""
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def as_image(image) -> np.ndarray:
    """A displayable (H, W, 3) or (H, W) array from a uint8 array or a [0, 1] float tensor
    shaped (H, W), (C, H, W) or (1, C, H, W) with C = 1 or 3."""
    if isinstance(image, Tensor):
        image = image.detach().float().cpu().clamp(0, 1)
        if image.ndim == 4:
            image = image[0]  # (1, C, H, W) -> (C, H, W)
        if image.ndim == 3:
            image = image.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
            image = image[..., 0] if image.shape[-1] == 1 else image
        image = image.numpy()
    return np.asarray(image)


def show_images(images, titles=None, *, columns: int | None = None, size: float = 3.0,
                title: str | None = None):
    """A grid of images without axes (nearest-neighbour, so pixels stay pixels); the figure."""
    import matplotlib.pyplot as plt

    images = [as_image(image) for image in images]
    columns = columns or len(images)
    rows = math.ceil(len(images) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows),
                                squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < len(images):
            axis.imshow(images[index], cmap="gray", interpolation="nearest")
            if titles is not None:
                axis.set_title(titles[index], fontsize=9)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def most_different_crop(images: list[Tensor], size: int) -> tuple[int, int]:
    """(top, left) of the `size` x `size` window where `images` (each (1, 3, H, W), same
    shape) disagree most: the largest mean over the window of their per-pixel variance."""
    stack = torch.cat([image.float() for image in images])  # (N, 3, H, W)
    spread = stack.var(dim=0).mean(dim=0)[None, None]  # (N, 3, H, W) -> (1, 1, H, W)
    stride = max(1, size // 4)
    windows = torch.nn.functional.avg_pool2d(spread, size, stride=stride)
    index = int(windows.flatten().argmax())
    return (index // windows.shape[-1]) * stride, (index % windows.shape[-1]) * stride


def crop(image: Tensor, top: int, left: int, size: int) -> Tensor:
    """The (..., size, size) window of a (..., H, W) tensor at (top, left)."""
    return image[..., top:top + size, left:left + size]


def residual_norms(model, x: Tensor) -> list[float]:
    """Mean |residual| each residual block of `model` (an SRNet) hands on, in the order the
    blocks run, for LR images `x` (B, 3, h, w) in [0, 1]."""
    from srlib.model import ResidualBlock

    norms = []

    def record(_, __, output) -> None:
        norms.append(output[1].abs().mean().item())  # output = (U, residual handed on)

    hooks = [module.register_forward_hook(record)
             for module in model.modules() if isinstance(module, ResidualBlock)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return norms


def published_rows(path: str | os.PathLike | None = None) -> list[dict]:
    """Published PSNR/SSIM rows (`results/published.csv`) as `srlib.evaluate` rows: {"set",
    "scale", "method" (suffixed " (published)"), "psnr", "ssim", "params_m", "training_data"}."""
    rows = read_csv(path or results_dir("published.csv"))
    return [{**row, "method": f"{row['method']} (published)"} for row in rows]


def read_csv(path: str | os.PathLike) -> list[dict]:
    """Rows of a results CSV as dicts, numbers as int or float, other values as strings."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such results file")

    def parse(value: str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
        return value

    with open(path, newline="") as file:
        lines = (line for line in file if not line.startswith("#"))  # comment lines: sources
        return [{key: parse(value) for key, value in row.items()} for row in csv.DictReader(lines)]


def late_gain(steps, values, fraction: float = 0.25) -> tuple[float, int, int]:
    """How much a curve (`values` against `steps`, in step order) still rose over the last
    `fraction` of the run: (last value - value at the first step >= (1 - fraction) * last
    step, that step, the last step)."""
    steps, values = list(steps), list(values)
    if not steps:
        raise UsageError("an empty curve")
    start = next(index for index, step in enumerate(steps) if step >= (1 - fraction) * steps[-1])
    return float(values[-1] - values[start]), steps[start], steps[-1]
