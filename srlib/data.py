"""Training and test images: where they are on disk, and random paired patches cut from them.

A data root holds what `srlib download` writes: `benchmarks/<set>/`, `train/{T91,BSD200}/`, DIV2K.
An LR patch is an HR crop of `max_scale * p` pixels through `degrade`; the target at scale s is that
crop degraded by `max_scale / s`: a pyramid supervised at every level (LapSRN, Lai 2017, sec. 3.2).
"""

from __future__ import annotations

import math
import os
from importlib.util import find_spec
from pathlib import Path

import torch
from torch import Tensor

from srlib.errors import UsageError
from srlib.imageio import list_images, load_images
from srlib.resize import degrade

SOURCES = ("default", "train291", "div2k", "div2k-valid")
ENV_DATA_ROOT = "SRLIB_DATA"
DEFAULT_DATA_ROOT = Path("~/.cache/srlib")
BENCHMARK_SETS = {"Set5": 5, "Set14": 14, "BSD100": 100, "Urban100": 100}  # -> HR images
BENCHMARK_ALIASES = {"BSD100": ("BSD100", "B100", "BSDS100")}  # EDSR's archive says "B100"
DIV2K_COUNTS = {"train": 800, "valid": 100}
COMPLETE_MARKER = ".complete"  # written last into a folder `srlib download` extracted

# Five colour photographs from scikit-image's wheel (skimage/data), no download; the smallest is
# 451 x 300. Left out: retina.jpg, the mostly black hubble_deep_field.jpg, motorcycle_right.png.
DEFAULT_IMAGE_NAMES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
                       "motorcycle_left.png")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: `root` if given, else $SRLIB_DATA, else ~/.cache/srlib."""
    root = root if root is not None else os.environ.get(ENV_DATA_ROOT) or DEFAULT_DATA_ROOT
    return Path(root).expanduser()


def benchmark_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of HR images of a benchmark set: `<root>/<name>`, else `<root>/benchmarks/<name>`.

    Args:
        name: Set5, Set14, BSD100, Urban100 (any case; BSD100's other names and EDSR's `HR/`
            subfolder count too), or any folder name under the root.
        root: a data folder; None: `data_root()`.

    Raises:
        UsageError: not found; the message lists where it looked and how to download.
    """
    canonical = {key.lower(): key for key in BENCHMARK_SETS}.get(name.lower(), name)
    base = data_root(root)
    looked = []
    for parent in (base, base / "benchmarks"):
        for alias in BENCHMARK_ALIASES.get(canonical, (canonical,)):
            for folder in (parent / alias, parent / alias / "HR"):
                looked.append(str(folder))
                if folder.is_dir() and list_images(folder):
                    return folder
    hint = (f"; download it with `srlib download benchmarks --root {base}` or set "
            f"{ENV_DATA_ROOT}" if canonical in BENCHMARK_SETS else "")
    raise UsageError(f"benchmark set {name!r} not found (looked in {', '.join(looked)}){hint}")


def div2k_dir(root: str | os.PathLike | None, split: str) -> Path:
    """The DIV2K HR folder of a split ("train", "valid"); `UsageError` if missing or partial."""
    if split not in DIV2K_COUNTS:
        raise UsageError(f"unknown DIV2K split {split!r}; choose from {sorted(DIV2K_COUNTS)}")
    name, expected = f"DIV2K_{split}_HR", DIV2K_COUNTS[split]
    base = data_root(root)
    candidates = [base / "DIV2K" / name, base / name]
    for folder in candidates:
        if folder.is_dir():
            count = len(list_images(folder))
            if not (folder / COMPLETE_MARKER).exists() and count != expected:
                raise UsageError(f"{folder}: holds {count} images where DIV2K {split} has "
                                 f"{expected}; it looks incomplete: run `srlib download div2k "
                                 f"--root {base}`")
            return folder
    raise UsageError(f"DIV2K {split} not found (looked in {', '.join(map(str, candidates))}); "
                     f"download it with `srlib download div2k --root {base}` (about 4 GB)")


def train291_dirs(root: str | os.PathLike | None = None) -> list[Path]:
    """[T91, BSD200] (VDSR's, LapSRN's 291 images) in `<root>/train` or `<root>`, or UsageError."""
    base = data_root(root)
    for parent in (base / "train", base):
        folders = [parent / "T91", parent / "BSD200"]
        if all(folder.is_dir() and list_images(folder) for folder in folders):
            return folders
    raise UsageError(f"the 291-image training set (T91/ and BSD200/) was not found in "
                     f"{base / 'train'}, {base}; download it with `srlib download "
                     f"train291 --root {base}` or set {ENV_DATA_ROOT}")


def default_images() -> list[Path]:
    """`DEFAULT_IMAGE_NAMES` inside scikit-image's package; `UsageError` if any is missing."""
    spec = find_spec("skimage")  # found without importing scikit-image
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("scikit-image is not installed; `pip install scikit-image`")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    paths = [folder / name for name in DEFAULT_IMAGE_NAMES]
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: missing from scikit-image's data; reinstall scikit-image")
    return paths


def hr_paths(data: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The HR image files of `data`, one of `SOURCES` or a folder; `root` as for `data_root`."""
    if data == "default":
        return default_images()
    if data == "train291":
        return [path for folder in train291_dirs(root) for path in list_images(folder)]
    if data in ("div2k", "div2k-valid"):
        return list_images(div2k_dir(root, "valid" if data == "div2k-valid" else "train"))
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such data folder (or use one of {', '.join(SOURCES)})")
    return list_images(folder)


class PatchSampler:
    """Random paired (LR, {scale: HR}) patches from images held in memory as uint8.

    Args:
        images: HR images, each a uint8 tensor (3, H, W) at least `max(scales) * patch_size`.
        patch_size: LR patch side p.
        scales: output scales to supervise; the HR patch of scale s is (3, s*p, s*p).
        augment: random horizontal flips and 90-degree rotations (the 8 dihedral poses).
        generator: the only source of randomness, so a run can be replayed and resumed.
    """

    def __init__(self, images: list[Tensor], *, patch_size: int, scales, augment: bool = True,
                 generator: torch.Generator | None = None):
        self.images = images
        self.patch_size = patch_size
        self.scales = tuple(sorted(scales))
        self.max_scale = self.scales[-1]
        self.augment = augment
        self.generator = generator or torch.Generator().manual_seed(0)
        side = self.max_scale * patch_size
        small = [i for i, image in enumerate(images) if min(image.shape[-2:]) < side]
        if small:
            raise UsageError(f"images {small} are smaller than the {side}px HR patch")

    def steps_per_epoch(self, patches_per_image: int, batch_size: int) -> int:
        return max(1, math.ceil(len(self.images) * patches_per_image / batch_size))

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def sample(self, batch_size: int) -> tuple[Tensor, dict[int, Tensor]]:
        """Returns (lr_image (B, 3, p, p), {scale: hr (B, 3, s*p, s*p)}), float32 in [0, 1]."""
        side = self.max_scale * self.patch_size
        crops = []
        for _ in range(batch_size):
            image = self.images[self._randint(len(self.images))]
            top = self._randint(image.shape[-2] - side + 1)
            left = self._randint(image.shape[-1] - side + 1)
            crop = image[:, top:top + side, left:left + side]  # (3, H, W) -> (3, Sp, Sp)
            if self.augment:
                pose = self._randint(8)
                crop = torch.rot90(crop, pose % 4, dims=(-2, -1))
                crop = crop.flip(-1) if pose >= 4 else crop
            crops.append(crop)
        hr = torch.stack(crops).float() / 255  # (B, 3, Sp, Sp)
        targets = {scale: hr if scale == self.max_scale else degrade(hr, self.max_scale // scale)
                   for scale in self.scales}  # {s: (B, 3, s*p, s*p)}
        lr_image = degrade(hr, self.max_scale)  # (B, 3, Sp, Sp) -> (B, 3, p, p)
        return lr_image, targets


def load_hr_images(paths: list[Path], min_size: int = 0) -> list[Tensor]:
    """Decode every image once into a uint8 tensor (3, H, W); bad or small ones skipped, warned."""
    return [torch.from_numpy(image).permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)
            for _, image in load_images(paths, min_size=min_size)]
