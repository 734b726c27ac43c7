"""srlib: multi-scale residual super-resolution networks, measured as the literature measures.

The public API, one concept per module:

- `srlib.model`: `SRNet` and its parts (`FeatureExtractor`, `ResidualBlock`), presets.
- `srlib.resize`: MATLAB-compatible bicubic `imresize`, `degrade`, `modcrop`.
- `srlib.metrics`: `psnr`, `ssim` (Y channel, shave, 8-bit, both SSIM conventions).
- `srlib.losses`: DSSIM, MSE, L1, Charbonnier, weighted sums, multi-scale supervision.
- `srlib.data`, `srlib.datasets`, `srlib.imageio`: images in, patches out, downloads.
- `srlib.config`, `srlib.train`, `srlib.checkpoint`: runs, checkpoints, resuming.
- `srlib.infer`, `srlib.evaluate`: tiled upscaling and benchmark tables.

Training and evaluation are `srlib.train.train` and `srlib.evaluate.evaluate`; they are not
re-exported here, where their names would hide their modules. Importing srlib loads modules
and nothing else happens: no downloads, prints or threads.
"""

from srlib.checkpoint import load_checkpoint, load_model, save_checkpoint
from srlib.config import TrainConfig, preset_config
from srlib.errors import (
    CheckpointError,
    DownloadError,
    ImageError,
    SrlibError,
    TrainingError,
    UsageError,
)
from srlib.imageio import load_image, save_image
from srlib.infer import upscale
from srlib.losses import charbonnier, dssim, parse_loss
from srlib.metrics import psnr, ssim
from srlib.model import FeatureExtractor, ResidualBlock, SRNet, preset_table
from srlib.resize import degrade, imresize, modcrop

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "DownloadError", "FeatureExtractor", "ImageError", "ResidualBlock",
    "SRNet", "SrlibError", "TrainConfig", "TrainingError", "UsageError", "charbonnier",
    "degrade", "dssim", "imresize", "load_checkpoint", "load_image", "load_model",
    "modcrop", "parse_loss", "preset_config", "preset_table", "psnr", "save_checkpoint",
    "save_image", "ssim", "upscale",
]
