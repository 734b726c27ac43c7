"""Training configuration: one frozen dataclass, named presets, used at the edges.

The CLI and the notebooks build a `TrainConfig`; the training function reads it and hands
plain arguments to the model, data and optimiser. A checkpoint stores it (as a dict) so the
model can be rebuilt and training resumed exactly.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from srlib.errors import UsageError


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are the seed design's."""

    # Model: a preset of `srlib.model.PRESETS`, narrowed to one scale or (None) all its outputs.
    preset: str = "seed"
    scale: int | None = None
    model_options: dict = field(default_factory=dict)  # any SRNet argument, e.g. channels
    # Loss: 'dssim', 'mse', 'l1', 'charbonnier' or a weighted sum such as 'dssim+0.5*l1',
    # summed over every output scale (LapSRN's multi-scale supervision).
    loss: str = "dssim"
    # Data: 'default' (photographs inside scikit-image), 'train291', 'div2k', or a folder.
    data: str = "div2k"
    data_root: str | None = None  # where 'div2k'/'train291' live; None: srlib.datasets' search
    val_data: str | None = None  # folder of HR validation images (e.g. Set5); None: no validation
    patch_size: int = 64  # LR patch side; HR patches are scale times larger
    batch_size: int = 16
    patches_per_image: int = 16  # an epoch draws this many patches from every image
    augment: bool = True  # random flips and 90-degree rotations
    # Optimiser (Adam, Kingma & Ba 2015) and schedule: lr x0.1 after 30 epochs.
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    lr_decay_epochs: int = 30
    lr_decay: float = 0.1
    epochs: int = 40
    max_steps: int | None = None  # stop after this many optimiser steps (None: all epochs)
    # Hardware: device 'auto' picks cuda, then mps, then cpu; precision 'auto' picks bf16
    # autocast where the hardware has fast bf16, fp16 on older GPUs, else fp32.
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    gradient_checkpointing: bool = False
    seed: int = 0
    # Output: checkpoints and history go to run_dir, every checkpoint_every steps.
    run_dir: str = "runs/train"
    checkpoint_every: int = 200
    val_every: int = 1  # epochs between validations

    def replace(self, **changes) -> TrainConfig:
        """A copy with `changes` applied (unknown names raise UsageError)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise UsageError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)


PRESETS = {
    # The seed design: 512/128 widths, x2 output, DIV2K, DSSIM, Adam 1e-4, x0.1 after 30 epochs.
    "seed": TrainConfig(),
    # The same 12-block pyramid at narrow widths on the embedded photographs: minutes on a CPU.
    "quick": TrainConfig(
        preset="quick", data="default", patch_size=24, batch_size=8, patches_per_image=32,
        lr=1e-3, lr_decay_epochs=1000, epochs=1000, max_steps=300, precision="auto",
        channels_last=True, checkpoint_every=100, run_dir="runs/quick",
    ),
}


def preset_config(name: str = "quick", **changes) -> TrainConfig:
    """The named training preset with `changes` applied."""
    if name not in PRESETS:
        raise UsageError(f"unknown training preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name].replace(**changes)


def quick_mode() -> bool:
    """True when the environment asks for the quick mode (SRBOOK_QUICK=1, as in CI)."""
    return os.environ.get("SRBOOK_QUICK", "0").strip().lower() not in ("", "0", "false", "no")
