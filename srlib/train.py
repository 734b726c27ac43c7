"""Training: a function that runs a config and returns a plain history a notebook can plot.

    history = train(preset_config("quick"))
    plt.plot(history["step"], history["loss"])

Checkpoints (`run_dir/last.pt`) hold everything a run needs to continue exactly where it
stopped: weights, optimiser, schedule, the data sampler's random state and the history so far.
Calling `train` again with the same config resumes; a run killed and resumed gives the same
losses as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path

import torch

from srlib import distributed
from srlib.checkpoint import (
    atomic_write,
    build_model,
    ensure_writable_folder,
    load_checkpoint,
    save_checkpoint,
)
from srlib.config import PRESETS as TRAIN_PRESETS
from srlib.config import TrainConfig, preset_config
from srlib.data import PatchSampler, hr_paths, load_hr_images
from srlib.errors import CheckpointError, TrainingError, UsageError
from srlib.hardware import autocast, configure_backends, resolve_precision, select_device
from srlib.losses import parse_loss, pyramid_loss

CHECKPOINT_NAME = "last.pt"
HISTORY_NAME = "history.json"
# What a checkpoint must hold to continue a run (a shipped, exported one holds less).
RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "step", "history")
# Fields that may change between a run and its resumption without changing its results.
RESUMABLE_CHANGES = {"run_dir", "device", "max_steps", "epochs", "checkpoint_every",
                     "val_every", "val_data", "data_root"}


def _new_history() -> dict:
    return {"step": [], "loss": [], "lr": [], "val": [], "train_seconds": 0.0, "patches": 0}


def _check_resumable(saved: dict, config: TrainConfig, path: Path) -> None:
    current = config.to_dict()
    differing = sorted(
        key for key in current
        if key not in RESUMABLE_CHANGES and _plain(saved.get(key)) != _plain(current[key])
    )
    if differing:
        raise CheckpointError(
            f"{path}: checkpoint was trained with a different config ({', '.join(differing)}); "
            "use another run_dir, or resume=False to start over"
        )


def _plain(value):
    return json.loads(json.dumps(value))


def validate(model, folder: str | Path, scales, device: torch.device) -> list[dict]:
    """PSNR/SSIM (Y channel, published protocol) of `model` on the HR images in `folder`."""
    from srlib.evaluate import evaluate
    from srlib.infer import upscale

    was_training = model.training
    model.eval()
    try:
        rows = evaluate(lambda lr, scale: upscale(model, lr.to(device), scale).cpu(),
                        {Path(folder).name: Path(folder)}, scales, method="model")
    finally:
        model.train(was_training)
    return [{"scale": row["scale"], "psnr": row["psnr"], "ssim": row["ssim"]} for row in rows]


def training_step(forward, optimizer, scaler, loss_function, lr: torch.Tensor,
                  targets: dict[int, torch.Tensor], device: torch.device, dtype: torch.dtype,
                  channels_last: bool = False,
                  world: distributed.World | None = None) -> torch.Tensor:
    """One optimiser step on a batch; returns the loss (a detached scalar tensor).

    Under DDP each process passes its slice of the global batch and gets back the loss of the
    whole global batch (the mean of the slices' mean-reduced losses).

    Args:
        forward: the model, or its compiled or DDP-wrapped version.
        optimizer, scaler: the optimiser and the `torch.amp.GradScaler` (disabled unless fp16).
        loss_function: (sr, hr) -> scalar, summed over the scales by `pyramid_loss`.
        lr: (B, 3, p, p) float in [0, 1], any device.
        targets: {scale: (B, 3, s*p, s*p)} float in [0, 1].
        device, dtype: where to compute, and the autocast dtype (torch.float32: none).
        channels_last: feed the batch in channels_last (NHWC) memory format.
        world: the DDP process group (None: one process).

    Raises:
        TrainingError: the loss is NaN or Inf (no step is taken; every process raises).
    """
    memory = torch.channels_last if channels_last else torch.contiguous_format
    lr = lr.to(device, memory_format=memory, non_blocking=True)
    targets = {scale: hr.to(device, non_blocking=True) for scale, hr in targets.items()}
    with autocast(device, dtype):
        outputs = forward(lr)
    outputs = {scale: image.float() for scale, image in outputs.items()}
    loss = pyramid_loss(loss_function, outputs, targets)
    # Every process checks the global loss, so all of them stop together.
    global_loss = distributed.mean(loss.detach(), world) if world else loss.detach()
    if not torch.isfinite(global_loss):
        raise TrainingError(f"loss is {global_loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return global_loss


def train(config: TrainConfig, *, resume: bool = True, progress: bool = True,
          stop_after: int | None = None) -> dict:
    """Train the network `config` describes and return its history.

    Args:
        config: the run (see `srlib.config.TrainConfig`).
        resume: continue from `run_dir/last.pt` when it exists (its config must match).
        progress: show a tqdm progress bar.
        stop_after: stop (checkpointed) after this global step, as if killed there; for tests
            and for notebooks that train in slices.

    Returns:
        {"step": [int], "loss": [float], "lr": [float], "val": [{"epoch", "step", "scale",
        "psnr", "ssim"}], "train_seconds": float, "patches": int, "checkpoint": str}.

    Launched by torchrun (WORLD_SIZE > 1), every process runs this function with the same
    config and trains its share of each global batch under DDP (`srlib.distributed`); rank 0
    writes checkpoints and history, and its returned history is the run's.

    Raises:
        TrainingError: the loss became NaN or Inf (the last good checkpoint is kept).
        CheckpointError: the run folder holds a checkpoint of another config, or cannot be written.
        UsageError: the batch does not split evenly across the DDP processes.
    """
    world, device = distributed.setup(select_device(config.device))
    try:
        return _train(config, world, device, resume=resume, progress=progress,
                      stop_after=stop_after)
    finally:
        distributed.teardown(world)


def _train(config: TrainConfig, world: distributed.World, device: torch.device, *,
           resume: bool, progress: bool, stop_after: int | None) -> dict:
    from tqdm.auto import tqdm

    if config.batch_size % world.size:
        raise UsageError(f"batch size {config.batch_size} does not split evenly across "
                         f"{world.size} processes")
    # Find an unwritable run folder now, not at the first checkpoint after minutes of work.
    run_dir = ensure_writable_folder(config.run_dir) if world.is_main else Path(config.run_dir)
    configure_backends(device)
    dtype = resolve_precision(config.precision, device)
    torch.manual_seed(config.seed)
    model = build_model(config).to(device)
    model.gradient_checkpointing = config.gradient_checkpointing
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_function = parse_loss(config.loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=tuple(config.betas),
                                 eps=config.eps)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_decay_epochs, config.lr_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    forward = model
    if world.enabled:
        from torch.nn.parallel import DistributedDataParallel

        # Squeeze-excitation's 1x1 weights (used as matrices) get gradients in NCHW strides,
        # which for a 1x1 kernel is the same memory as channels_last: nothing to fix.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")

        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                          else None)
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

    checkpoint_path = run_dir / CHECKPOINT_NAME
    history, step = _new_history(), 0
    if resume and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path)
        _check_resumable(state["config"], config, checkpoint_path)
        missing = [key for key in RESUME_KEYS if key not in state]
        if missing:
            raise CheckpointError(f"{checkpoint_path}: holds no training state "
                                  f"({', '.join(missing)}); cannot resume (use --no-resume)")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        generator.set_state(state["rng"]["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        history, step = state["history"], state["step"]

    def checkpoint() -> None:
        if not world.is_main:
            return
        state = {
            "config": config.to_dict(), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "epoch": step // steps_per_epoch,
            "rng": {"sampler": generator.get_state(), "torch": torch.get_rng_state()},
            "history": history,
        }
        save_checkpoint(checkpoint_path, state)
        atomic_write(run_dir / HISTORY_NAME, json.dumps(history).encode())

    model.train()
    last = total_steps if stop_after is None else min(total_steps, stop_after)
    bar = tqdm(total=total_steps, initial=step, disable=not (progress and world.is_main),
               desc="train", unit="step")
    started = time.perf_counter()
    while step < last:
        # The whole global batch, drawn identically by every process; each keeps its slice.
        lr, targets = sampler.sample(config.batch_size)
        lr = distributed.shard(lr, world)
        targets = {scale: distributed.shard(hr, world) for scale, hr in targets.items()}
        try:
            loss = training_step(forward, optimizer, scaler, loss_function, lr, targets, device,
                                 dtype, config.channels_last, world)
        except TrainingError as error:
            bar.close()
            kept = f"last good checkpoint {checkpoint_path} kept" if checkpoint_path.exists() \
                else "no checkpoint written yet"
            raise TrainingError(f"step {step + 1}: {error}; stopped ({kept})") from None
        step += 1
        history["step"].append(step)
        history["loss"].append(loss.item())
        history["lr"].append(optimizer.param_groups[0]["lr"])
        history["patches"] += config.batch_size
        bar.update(1)
        bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
        epoch_done = step % steps_per_epoch == 0
        if epoch_done:
            scheduler.step()
        if config.val_data and world.is_main and (
                step == total_steps
                or (epoch_done and (step // steps_per_epoch) % config.val_every == 0)):
            for row in validate(model, config.val_data, model.output_scales, device):
                history["val"].append({"epoch": step / steps_per_epoch, "step": step, **row})
        if step % config.checkpoint_every == 0 or step == last:
            history["train_seconds"] += time.perf_counter() - started
            checkpoint()
            distributed.barrier(world)  # nobody runs ahead of (or reads) a half-written file
            started = time.perf_counter()
    bar.close()
    history["checkpoint"] = str(checkpoint_path)
    return history


def configure_parser(parser) -> None:
    parser.add_argument("--config", default="quick", choices=sorted(TRAIN_PRESETS),
                        help="training preset to start from (default: quick)")
    parser.add_argument("--preset", help="model preset (seed, pyramid, quick)")
    parser.add_argument("--scale", type=int, help="train for this scale alone (2, 4, 8)")
    parser.add_argument("--loss", help="dssim, mse, l1, charbonnier or a sum like dssim+0.5*l1")
    parser.add_argument("--data", help="default, train291, div2k, or a folder of HR images")
    parser.add_argument("--data-root", help="where train291 / div2k live")
    parser.add_argument("--val-data", help="folder of HR validation images, e.g. Set5")
    parser.add_argument("--steps", type=int, dest="max_steps", help="optimiser steps")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--patch-size", type=int, help="LR patch side")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    parser.add_argument("--precision", help="auto, fp32, bf16, fp16")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--run-dir", help="where checkpoints and history go")
    parser.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over even if run-dir holds a checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    changes = {
        name: getattr(args, name)
        for name in ("preset", "scale", "loss", "data", "data_root", "val_data", "max_steps",
                     "epochs", "batch_size", "patch_size", "lr", "device", "precision", "seed",
                     "run_dir", "checkpoint_every")
        if getattr(args, name) is not None
    }
    config = preset_config(args.config, **changes)
    for name in ("batch_size", "patch_size", "max_steps", "epochs", "checkpoint_every"):
        value = getattr(config, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    history = train(config, resume=not args.no_resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun, rank 0 reports
    seconds = history["train_seconds"]
    final = history["loss"][-1] if history["loss"] else math.nan
    rate = history["patches"] / seconds if seconds else math.nan
    print(f"trained {len(history['loss'])} steps ({history['patches']} patches, {rate:.1f} "
          f"patches/s); final loss {final:.4f}; checkpoint {history['checkpoint']}")
    if history["val"]:
        last_step = history["val"][-1]["step"]
        for row in history["val"]:
            if row["step"] == last_step:
                print(f"validation x{row['scale']}: {row['psnr']:.2f} dB / {row['ssim']:.4f}")
    return 0
