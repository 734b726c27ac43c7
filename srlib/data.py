"""Training data: HR photographs kept in memory, random paired patches cut on the fly.

An LR patch is made the way the literature makes LR images: an HR crop of `max_scale * p`
pixels, MATLAB-bicubic downscaled (`srlib.resize.degrade`, antialiased, rounded to 8 bits).
The ground truth for every output scale s is the same crop downscaled by `max_scale / s`,
so a pyramid network is supervised at every level (LapSRN, Lai et al. 2017, section 3.2).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import Tensor

from srlib.errors import UsageError
from srlib.imageio import list_images, load_images
from srlib.resize import degrade

SOURCES = ("default", "train291", "div2k", "div2k-valid")


def hr_paths(data: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The HR image files of a training source.

    Args:
        data: 'default' (photographs inside scikit-image's wheel, no network needed),
            'train291' (T91 + BSD200, LapSRN's set), 'div2k' (DIV2K_train_HR), 'div2k-valid',
            or a folder of images.
        root: where 'train291' and 'div2k' live (None: `srlib.datasets`' search path).
    """
    if data not in SOURCES:
        folder = Path(data).expanduser()
        if not folder.is_dir():
            raise UsageError(f"{folder}: no such data folder (or use one of {', '.join(SOURCES)})")
        return list_images(folder)
    from srlib import datasets

    if data == "default":
        return datasets.default_images()
    if data == "train291":
        return [path for folder in datasets.train291_dirs(root) for path in list_images(folder)]
    split = "valid" if data == "div2k-valid" else "train"
    return list_images(datasets.div2k_dir(root, split))


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
        """Returns (lr (B, 3, p, p), {scale: hr (B, 3, s*p, s*p)}), float32 in [0, 1]."""
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
                if pose >= 4:
                    crop = crop.flip(-1)
            crops.append(crop)
        hr = torch.stack(crops).float() / 255  # (B, 3, Sp, Sp)
        targets = {
            scale: hr if scale == self.max_scale else degrade(hr, self.max_scale // scale)
            for scale in self.scales
        }
        lr = degrade(hr, self.max_scale)  # (B, 3, Sp, Sp) -> (B, 3, p, p)
        return lr, targets


def load_hr_images(paths: list[Path], min_size: int = 0) -> list[Tensor]:
    """Decode every image once into a uint8 tensor (3, H, W); too small or bad ones are skipped
    with a warning naming the file (`srlib.imageio.load_images`)."""
    return [
        torch.from_numpy(image).permute(2, 0, 1).contiguous()  # (H, W, 3) -> (3, H, W)
        for _, image in load_images(paths, min_size=min_size)
    ]
