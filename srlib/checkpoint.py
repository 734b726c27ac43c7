"""Checkpoints: the state of a run written atomically, read back as data, never as code.

A checkpoint is a `torch.save`d dict ``{"format": "srlib", "version": 1, "config": a TrainConfig
as dict, "model": a state_dict}``, plus optimizer, scheduler, scaler, rng, step, epoch and history
in one a run resumes from.
"""

from __future__ import annotations

import io
import os
import re
import warnings
import zipfile
import zlib
from pathlib import Path

import torch

from srlib.errors import CheckpointError, TrainingError, UsageError
from srlib.files import atomic_write
from srlib.model import build_model, check_scale

FORMAT = "srlib"
VERSION = 1
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PRETRAINED_NAME = "pretrained"
REQUIRED_KEYS = ("config", "model")
def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write `state` (at least "config" and "model" dicts) atomically, marked as srlib's.

    Raises:
        TrainingError: a floating-point weight is NaN or Inf; nothing is written.
        CheckpointError: as `atomic_write`.
    """
    path = Path(path)
    broken = [name for name, tensor in state.get("model", {}).items()
              if torch.is_tensor(tensor) and tensor.is_floating_point()
              and not bool(torch.isfinite(tensor).all())]
    if broken:
        step = f" at step {state['step']}" if "step" in state else ""
        raise TrainingError(f"{path}: not written: weights hold NaN or Inf{step} (e.g. "
                            f"{broken[0]}); training diverged, the previous checkpoint is kept")
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    return atomic_write(path, buffer.getbuffer())


def resolve(path: str | os.PathLike) -> Path:
    """The file behind a checkpoint argument: a path, or 'pretrained' for the shipped weights."""
    if str(path) == PRETRAINED_NAME:
        candidates = sorted(PRETRAINED_DIR.glob("*.pt"))
        if not candidates:
            raise CheckpointError(f"no pretrained checkpoint shipped in {PRETRAINED_DIR}")
        return candidates[0]
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint file (or 'pretrained') as data only; tensors go to `map_location`.

    Raises:
        CheckpointError: naming the file and the problem: missing, empty, truncated, corrupt, not
            srlib's, from a newer srlib, or holding objects other than tensors and plain data.
    """
    path = resolve(path)
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "no such checkpoint file"
        raise CheckpointError(f"{path}: {what}")
    _check_container(path)
    try:
        with warnings.catch_warnings():  # a foreign file gets one CheckpointError, no warnings
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 (each torch version raises its own types)
        raise CheckpointError(f"{path}: {_describe_load_error(error)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an srlib checkpoint (a PyTorch file without srlib's "
                              "format marker: a bare state_dict or another program's checkpoint?)")
    version = state.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"{path}: checkpoint has no valid version number")
    if version > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version} is newer than this "
                              f"srlib's ({VERSION}); upgrade srlib")
    for key in REQUIRED_KEYS:
        if not isinstance(state.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint has no {key!r} dict")
    return state


def _check_container(path: Path) -> None:
    """Refuse files that are not whole zip containers before torch parses them."""
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    with open(path, "rb") as file:
        magic = file.read(4)
    try:
        with zipfile.ZipFile(path) as container:
            damaged = container.testzip()  # reads every member, comparing CRC-32s
    except zipfile.BadZipFile:
        if magic == b"PK\x03\x04":  # starts like a zip, has no intact directory at the end
            raise CheckpointError(f"{path}: truncated or corrupt checkpoint (its zip "
                                  "directory is missing or damaged)") from None
        raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch zip file; srlib "
                              "writes checkpoints with torch.save)") from None
    except (OSError, EOFError, zlib.error) as error:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({error})") from None
    if damaged is not None:
        raise CheckpointError(f"{path}: corrupt checkpoint (CRC mismatch in {damaged!r})")


def _describe_load_error(error: Exception) -> str:
    text = str(error)
    if "Weights only load failed" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f" ({found[1]})" if found else ""
        return ("refused: holds Python objects other than tensors and plain data"
                f"{what}; srlib loads checkpoints as data only, never as code")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    detail = f"{type(error).__name__}: {first}" if first else type(error).__name__
    return f"not a readable checkpoint, truncated or corrupt ({detail[:200]})"


def load_model(path: str | os.PathLike, *, scale: int | None = None, map_location="cpu"):
    """Rebuild a checkpoint's (or 'pretrained') model: (model in eval mode, its TrainConfig).

    Raises:
        UsageError: `scale` is one no srlib network can serve (`srlib.model.check_scale`).
        CheckpointError: unreadable, or its model does not output `scale` (says which it does).
    """
    from srlib.train import TrainConfig  # train imports this module: import at call time
    if scale is not None:
        check_scale(scale)
    state = load_checkpoint(path, map_location)
    path = resolve(path)
    try:
        config = TrainConfig.from_dict(state["config"])
        model = build_model(config.model)
    except (UsageError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its config describes no model this srlib can build "
                              f"({error})") from None
    if scale is not None and scale not in model.output_scales:
        served = ", ".join(f"x{s}" for s in model.output_scales)
        raise CheckpointError(f"{path}: checkpoint serves {served}, not x{scale}")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes "
                              f"({str(error).splitlines()[0]})") from None
    return model.eval(), config


def export_model(path: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy a checkpoint without optimiser, schedule and random states: to ship, not resume."""
    state = load_checkpoint(path)
    kept = {key: state[key] for key in ("config", "model", "step", "history") if key in state}
    return save_checkpoint(destination, kept)


def widen_weights(weights: dict, narrow_channels: int, model: torch.nn.Module) -> dict:
    """A narrower network's `weights` grown to fit `model`, so that `model` computes exactly
    what the narrow network did (a function-preserving growth, as Net2Net's, Chen et al., ICLR
    2016, here with zeros instead of copied units).

    Every channel the narrow network had keeps its weights, at the front of its layer, and
    reads the new channels through weights of zero; the new channels keep `model`'s random
    initial weights and read everything. So the new channels carry features from the first
    step, and the zero weights that read them get gradients: training grows into the width.
    The one layout that is not "old channels first" is a stage's concatenation of its blocks'
    maps, where every block's old channels lead its own group.

    Args:
        weights: the narrow network's state_dict.
        narrow_channels: its `channels` (feature_width needs no special case).
        model: the wider network (same layout, every width at least the narrow one's).

    Raises:
        CheckpointError: a weight is missing, or narrower in `model` than in `weights`.
    """
    grown = {}
    for name, fresh in model.state_dict().items():
        if name not in weights:
            raise CheckpointError(f"the narrow network has no weight {name}")
        old = weights[name].to(fresh.dtype)
        if old.dim() != fresh.dim() or any(o > f for o, f in zip(old.shape, fresh.shape)):
            raise CheckpointError(f"{name}: {tuple(old.shape)} does not grow into "
                                  f"{tuple(fresh.shape)}")
        if old.shape == fresh.shape:
            grown[name] = old.clone()
            continue
        module = model.get_submodule(name.rpartition(".")[0])
        # Conv weights are (out, in, kh, kw); transposed convs store (in, out, kh, kw).
        transposed = isinstance(module, torch.nn.ConvTranspose2d) and old.dim() == 4
        new = fresh.clone().transpose(0, 1) if transposed else fresh.clone()
        old = old.transpose(0, 1) if transposed else old
        out_slots = torch.arange(old.shape[0])
        if old.dim() == 1:  # a bias
            new[out_slots] = old
        else:
            in_slots = torch.arange(old.shape[1])
            if name.endswith("compress.weight"):  # input: the blocks' maps, concatenated
                blocks = old.shape[1] // narrow_channels
                wide = new.shape[1] // blocks
                in_slots = torch.cat([block * wide + torch.arange(narrow_channels)
                                      for block in range(blocks)])
            new[out_slots] = 0  # old channels ignore the new ones ...
            new[out_slots[:, None], in_slots[None, :]] = old  # ... and keep their weights
        grown[name] = new.transpose(0, 1).contiguous() if transposed else new
    return grown
