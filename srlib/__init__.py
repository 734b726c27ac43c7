"""srlib: multi-scale residual super-resolution networks, measured as the literature measures.

The core, one concept per module: `data`, `imageio`, `resize` (MATLAB bicubic), `model`,
`losses`, `train`, `checkpoint`, `hardware`, `metrics`, `infer`, `evaluate`, and `book` (what
the chapters share). The tooling (command line, downloads, benchmarks, notebook runner, DDP)
lives in `srlib.tools`, never imported here. Importing srlib has no side effects.
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
