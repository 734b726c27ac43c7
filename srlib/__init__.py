"""srlib: multi-scale residual super-resolution networks, measured as the literature measures.

The core, one concept per module, in the order the book meets them:

- `srlib.data`, `srlib.imageio`: where images are, images in, paired patches out.
- `srlib.resize`: MATLAB-compatible bicubic `imresize`, `degrade`, `modcrop`.
- `srlib.model`: `SRNet` and its parts, `Preset`, `build_model`.
- `srlib.losses`: DSSIM, MSE, L1, Charbonnier, weighted sums, multi-scale supervision.
- `srlib.train`, `srlib.checkpoint`, `srlib.hardware`: runs, checkpoints, devices.
- `srlib.metrics`, `srlib.infer`, `srlib.evaluate`: PSNR/SSIM, tiled upscaling, tables.
- `srlib.book`: small helpers the chapters share.

The tooling (command line, downloads, benchmarks, notebook runner, sweeps) lives apart in
`srlib.tools` and is never imported here. Importing srlib loads modules and nothing else
happens: no downloads, prints or threads.
"""

from srlib.checkpoint import load_checkpoint, load_model, save_checkpoint
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
from srlib.model import PRESETS, FeatureExtractor, Preset, ResidualBlock, SRNet, build_model
from srlib.resize import degrade, imresize, modcrop
from srlib.train import TrainConfig, preset_config

__version__ = "0.2.0"

__all__ = [
    "PRESETS", "CheckpointError", "DownloadError", "FeatureExtractor", "ImageError", "Preset",
    "ResidualBlock", "SRNet", "SrlibError", "TrainConfig", "TrainingError", "UsageError",
    "build_model", "charbonnier", "degrade", "dssim", "imresize", "load_checkpoint",
    "load_image", "load_model", "modcrop", "parse_loss", "preset_config", "psnr",
    "save_checkpoint", "save_image", "ssim", "upscale",
]
