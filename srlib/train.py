"""Training: a frozen config, and a function that runs it and returns a plain history.

    history = train(preset_config("small", max_steps=300))

The loop is chapter 3's. `run_dir/last.pt` holds all a run needs to continue where it
stopped; `init=CHECKPOINT` starts from a checkpoint's weights with a fresh optimiser and
schedule, and records its lineage; a config whose network is the checkpoint's made wider
(feature_width, channels) starts out computing exactly what the checkpoint did.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from srlib.checkpoint import load_checkpoint, resolve, save_checkpoint, widen_weights
from srlib.data import PatchSampler, hr_paths, load_hr_images
from srlib.errors import CheckpointError, TrainingError, UsageError
from srlib.evaluate import validate
from srlib.files import atomic_write, ensure_writable_folder
from srlib.hardware import autocast, describe_hardware, resolve_precision, select_device
from srlib.losses import parse_loss, pyramid_loss
from srlib.model import PRESETS as MODEL_PRESETS
from srlib.model import Preset, build_model, preset_from_config

CHECKPOINT_NAME = "last.pt"
HISTORY_NAME = "history.json"
LOG_NAME = "train.log"
# What a checkpoint must hold to continue a run (a shipped, exported one holds less).
RESUME_KEYS = ("optimizer", "scaler", "rng", "step", "history")
# Fields that may change between a run and its resumption without changing its results.
RESUMABLE_CHANGES = {"run_dir", "device", "max_steps", "epochs", "checkpoint_every",
                     "val_every", "val_data", "data_root"}
SCHEDULES = ("step", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. Defaults are the seed design's."""

    model: Preset = MODEL_PRESETS["seed"]  # the network (see `srlib.model.Preset`)
    # 'dssim', 'mse', 'l1', 'charbonnier' or a sum such as '0.84*dssim+0.16*l1', over every scale
    loss: str = "dssim"
    # Data: 'default' (photographs inside scikit-image), 'train291', 'div2k', or a folder.
    data: str = "div2k"
    data_root: str | None = None  # where 'div2k'/'train291' live; None: srlib.data.data_root()
    val_data: str | None = None  # folder of HR validation images (e.g. Set5); None: none
    patch_size: int = 64  # LR patch side; HR patches are scale times larger
    batch_size: int = 16
    patches_per_image: int = 16  # an epoch draws this many patches from every image
    augment: bool = True  # random flips and 90-degree rotations
    lr: float = 1e-4  # Adam's learning rate (Kingma & Ba 2015)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    # Schedule: 'step' multiplies lr by lr_decay every lr_decay_epochs epochs (the seed's:
    # x0.1 after 30); 'cosine' falls from lr to 0 over the run. Both after a linear warm-up.
    schedule: str = "step"
    warmup_steps: int = 0
    lr_decay_epochs: int = 30
    lr_decay: float = 0.1
    epochs: int = 40
    max_steps: int | None = None  # stop after this many optimiser steps (None: all epochs)
    init: str | None = None  # start from this checkpoint's weights ('pretrained' or a path)
    # 'auto': cuda, mps, else cpu; precision 'auto': bf16 where fast, fp16 on old GPUs, else fp32
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    gradient_checkpointing: bool = False
    seed: int = 0
    # Output: checkpoints, history and log go to run_dir, every checkpoint_every steps.
    run_dir: str = "runs/train"
    checkpoint_every: int = 200
    val_every: int | None = None  # steps between validations (None: every epoch) and at the end

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
        """A config from `to_dict`'s output (or a checkpoint of srlib 0.1)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {key: value for key, value in values.items() if key in names}
        kept["model"] = preset_from_config(values)
        if "betas" in kept:
            kept["betas"] = tuple(kept["betas"])
        if isinstance(kept.get("val_every"), int) and "preset" in values:
            kept["val_every"] = None  # srlib 0.1 counted epochs
        return cls(**kept)


PRESETS = {
    # The seed design: 512/128 widths, x2 output, DIV2K, DSSIM, Adam 1e-4, x0.1 after 30 epochs.
    "seed": TrainConfig(),
    # The 12-block pyramid at narrow widths on the embedded photographs: minutes on a CPU.
    "small": TrainConfig(
        model=MODEL_PRESETS["small"], data="default", patch_size=24, batch_size=8,
        patches_per_image=32, lr=1e-3, lr_decay_epochs=1000, epochs=1000, max_steps=300,
        precision="auto", channels_last=True, checkpoint_every=100, run_dir="runs/small"),
}


def preset_config(name: str = "small", *, scale: int | None = None, **changes) -> TrainConfig:
    """The named training preset with `changes` applied; `scale` narrows its network."""
    if name not in PRESETS:
        raise UsageError(f"unknown training preset {name!r}; choose from {', '.join(PRESETS)}")
    config = PRESETS[name].replace(**changes)
    if isinstance(config.model, str):
        if config.model not in MODEL_PRESETS:
            raise UsageError(f"unknown model {config.model!r}; choose from "
                             f"{', '.join(MODEL_PRESETS)}")
        config = config.replace(model=MODEL_PRESETS[config.model])
    if scale is not None:
        config = config.replace(model=config.model.for_scale(scale))
    return config


def learning_rate(config: TrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step `step` (0-based) of a run of `total_steps`."""
    if config.schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {config.schedule!r}; choose from {SCHEDULES}")
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "cosine":
        done = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))
    return config.lr * config.lr_decay ** (step // steps_per_epoch // config.lr_decay_epochs)


def training_step(model, optimizer, scaler, loss_function, lr_image: torch.Tensor,
                  targets: dict[int, torch.Tensor], device: torch.device,
                  dtype: torch.dtype = torch.float32, channels_last: bool = False,
                  world: OneProcess | None = None) -> torch.Tensor:
    """One optimiser step on a batch; returns the loss (a detached scalar tensor).

    Args:
        model: the network, or its compiled or DDP-wrapped version.
        optimizer, scaler: Adam and a `torch.amp.GradScaler` (disabled unless fp16).
        loss_function: (sr, hr) -> scalar, summed over the scales by `pyramid_loss`.
        lr_image: (B, 3, p, p) LR patches in [0, 1]; targets: {scale: (B, 3, s*p, s*p)}.
        device, dtype: where to compute, and the autocast dtype (torch.float32: none).
        channels_last: feed the batch in channels_last (NHWC) memory format.
        world: the processes (None: one); under DDP the loss returned is the global batch's.

    Raises:
        TrainingError: the loss is NaN or Inf (no step is taken; every process raises).
    """
    memory = torch.channels_last if channels_last else torch.contiguous_format
    lr_image = lr_image.to(device, memory_format=memory, non_blocking=True)
    targets = {scale: hr.to(device, non_blocking=True) for scale, hr in targets.items()}
    with autocast(device, dtype):
        outputs = model(lr_image)
    outputs = {scale: image.float() for scale, image in outputs.items()}
    loss = pyramid_loss(loss_function, outputs, targets)
    # Every process checks the global loss, so all of them stop together.
    global_loss = world.mean(loss.detach()) if world else loss.detach()
    if not torch.isfinite(global_loss):
        raise TrainingError(f"loss is {global_loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return global_loss


class Progress:
    """Progress lines (step, s/step, ETA, loss; the expected time after 10 steps) on stdout
    and appended to `log`, for a run of `total` steps resumed at step `start`."""

    def __init__(self, total: int, start: int = 0, log: Path | None = None, enabled: bool = True):
        self.total, self.start, self.log, self.enabled = total, start, log, enabled
        self.started = self.last_line = time.perf_counter()
        self.announced = False

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        print(text, flush=True)
        if self.log is not None:
            with open(self.log, "a") as file:
                file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def update(self, step: int, loss: float) -> None:
        now = time.perf_counter()
        done = step - self.start
        rate = (now - self.started) / done  # seconds per step
        left = rate * (self.total - step)
        # After 10 steps (or 20 s): the expected time of the whole run, measured, not guessed.
        if not self.announced and (done >= 10 or now - self.started > 20) and step < self.total:
            self.announced = True
            self.say(f"expected time: {_duration(left)} for the {self.total - step} steps left "
                     f"({rate:.2f} s/step over the first {done})")
        if now - self.last_line >= 30 or step == self.total or done == 1:
            self.last_line = now
            self.say(f"step {step}/{self.total}  {rate:.2f} s/step  ETA {_duration(left)}  "
                     f"loss {loss:.4f}")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class OneProcess:
    """A run in one process; `srlib.tools.distributed.World` is the DDP one, same methods."""

    rank, size, is_main = 0, 1, True

    def place(self, device):  # the device to compute on
        return device

    def shard(self, batch):  # this process's part of the global batch
        return batch

    def mean(self, value):  # the mean over the processes
        return value

    def wrap(self, model, device):  # the model as the processes train it
        return model

    def barrier(self):  # wait for every process
        pass


def train(config: TrainConfig, *, resume: bool = True, progress: bool = True,
          stop_after: int | None = None, world=None) -> dict:
    """Train the network `config` describes and return its history.

    Args:
        config: the run (see `TrainConfig`).
        resume: continue from `run_dir/last.pt` when it exists (its config must match).
        progress: print progress lines (and append them to `run_dir/train.log`).
        stop_after: stop (checkpointed) after this global step, as if killed there; for tests
            and for notebooks that train in slices.
        world: the processes of a DDP run (`srlib.tools.distributed.joined`); None: one.

    Returns:
        {"step": [int], "loss": [float], "lr": [float], "val": [{"step", "epoch", "set",
        "scale", "psnr", "ssim"}], "train_seconds": float, "patches": int,
        "hardware": {...}, "lineage": [stages before this one], "checkpoint": str}.

    Raises:
        TrainingError: the loss became NaN or Inf (the last good checkpoint is kept).
        CheckpointError: the run folder holds another config's checkpoint or cannot be
            written, or `init` does not fit this network.
        UsageError: the batch does not split evenly across the DDP processes.
    """
    world = world or OneProcess()
    device = world.place(select_device(config.device))
    if config.batch_size % world.size:
        raise UsageError(f"batch size {config.batch_size} does not split evenly across "
                         f"{world.size} processes")
    # Find an unwritable run folder now, not at the first checkpoint after minutes of work.
    run_dir = ensure_writable_folder(config.run_dir) if world.is_main else Path(config.run_dir)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed patch sizes: the autotuning pays once
    dtype = resolve_precision(config.precision, device)
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(device)
    model.set_gradient_checkpointing(config.gradient_checkpointing)
    lineage = []
    if config.init is not None:
        lineage = _load_init(model, config.init, config.model)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_function = parse_loss(config.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=tuple(config.betas),
                                 eps=config.eps)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    forward = world.wrap(model, device)
    forward = torch.compile(forward) if config.compile else forward

    generator = torch.Generator().manual_seed(config.seed)
    side = max(model.output_scales) * config.patch_size
    images = load_hr_images(hr_paths(config.data, config.data_root), min_size=side)
    sampler = PatchSampler(images, patch_size=config.patch_size, scales=model.output_scales,
                           augment=config.augment, generator=generator)
    steps_per_epoch = sampler.steps_per_epoch(config.patches_per_image, config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    val_every = config.val_every or steps_per_epoch

    checkpoint_path = run_dir / CHECKPOINT_NAME
    history = {"step": [], "loss": [], "lr": [], "val": [], "train_seconds": 0.0, "patches": 0,
               "hardware": describe_hardware(device, dtype), "lineage": lineage}
    step = 0
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        _check_resumable(state["config"], config, checkpoint_path)
        missing = [key for key in RESUME_KEYS if key not in state]
        if missing:
            raise CheckpointError(f"{checkpoint_path}: holds no training state "
                                  f"({', '.join(missing)}); cannot resume (use --no-resume)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        generator.set_state(state["rng"]["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        history, step = state["history"], state["step"]

    def save() -> None:
        if world.is_main:
            save_checkpoint(checkpoint_path, {
                "config": config.to_dict(), "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "step": step,
                "rng": {"sampler": generator.get_state(), "torch": torch.get_rng_state()},
                "history": history})
            atomic_write(run_dir / HISTORY_NAME, json.dumps(history).encode())

    model.train()
    last = total_steps if stop_after is None else min(total_steps, stop_after)
    report = Progress(total_steps, step, run_dir / LOG_NAME if world.is_main else None,
                      progress and world.is_main)
    report.say(f"training {config.model.channels}-channel network, {total_steps} steps of "
               f"{config.batch_size} x {config.patch_size}^2 patches on {device} "
               f"({history['hardware']['precision']}); starting at step {step}")
    started = time.perf_counter()
    while step < last:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step, total_steps, steps_per_epoch)
        # The whole global batch, drawn identically by every process; each keeps its slice.
        lr_image, targets = sampler.sample(config.batch_size)
        lr_image = world.shard(lr_image)
        targets = {scale: world.shard(hr) for scale, hr in targets.items()}
        try:
            loss = training_step(forward, optimizer, scaler, loss_function, lr_image, targets,
                                 device, dtype, config.channels_last, world)
        except TrainingError as error:
            kept = (f"last good checkpoint {checkpoint_path} kept" if checkpoint_path.exists()
                    else "no checkpoint written yet")
            raise TrainingError(f"step {step + 1}: {error}; stopped ({kept})") from None
        step += 1
        history["step"].append(step)
        history["loss"].append(loss.item())
        history["lr"].append(optimizer.param_groups[0]["lr"])
        history["patches"] += config.batch_size
        report.update(step, history["loss"][-1])
        if config.val_data and world.is_main and (step == total_steps or step % val_every == 0):
            validation_started = time.perf_counter()
            for row in validate(model, config.val_data, model.output_scales, device):
                history["val"].append({"step": step, "epoch": step / steps_per_epoch, **row})
            scores = ", ".join(f"x{row['scale']} {row['psnr']:.2f} dB"
                               for row in history["val"] if row["step"] == step)
            report.say(f"step {step}: validation on {Path(config.val_data).name}: {scores}")
            started += time.perf_counter() - validation_started  # train_seconds: training only
        if step % config.checkpoint_every == 0 or step == last:
            history["train_seconds"] += time.perf_counter() - started
            save()
            world.barrier()  # nobody runs ahead of (or reads) a half-written file
            started = time.perf_counter()
    history["checkpoint"] = str(checkpoint_path)
    return history


def _load_init(model, init: str, config_model: Preset) -> list[dict]:
    """Load the weights of checkpoint `init` into `model`; the lineage to record."""
    state = load_checkpoint(init)
    path = resolve(init)
    saved = preset_from_config(state["config"])
    differing = [field for field in saved.__dataclass_fields__
                 if getattr(saved, field) != getattr(config_model, field)]
    widths = ("feature_width", "channels")
    # A wider copy of the checkpoint's network starts out computing what the checkpoint did.
    widened = bool(differing) and set(differing) <= set(widths) and all(
        getattr(config_model, field) >= getattr(saved, field) for field in widths)
    if differing and not widened:
        raise CheckpointError(f"{path}: holds another network than the config's (differs in "
                              f"{', '.join(differing)}); pass the checkpoint's network as "
                              "the config's model, or one that only widens it")
    try:
        weights = state["model"]
        if widened:
            weights = widen_weights(weights, saved.channels, model)
        model.load_state_dict(weights)
    except (RuntimeError, CheckpointError) as error:
        raise CheckpointError(f"{path}: its weights do not fit this network "
                              f"({str(error).splitlines()[0]})") from None
    history = state.get("history", {})
    stage = {"init_from": str(path), "steps": state.get("step"),
             "patches": history.get("patches"), "train_seconds": history.get("train_seconds"),
             "hardware": history.get("hardware"), "config": state["config"]}
    if widened:
        stage["widened"] = {field: [getattr(saved, field), getattr(config_model, field)]
                            for field in widths}
    return list(history.get("lineage", [])) + [stage]


def _check_resumable(saved: dict, config: TrainConfig, path: Path) -> None:
    current = config.to_dict()
    saved = TrainConfig.from_dict(saved).to_dict()
    differing = sorted(key for key in current if key not in RESUMABLE_CHANGES
                       and _plain(saved.get(key)) != _plain(current[key]))
    if differing:
        raise CheckpointError(f"{path}: checkpoint was trained with a different config "
                              f"({', '.join(differing)}); use another run_dir, or resume=False "
                              "to start over")


def _plain(value):
    return json.loads(json.dumps(value))
