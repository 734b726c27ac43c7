"""Checkpoints: the state of a run written atomically, read back as data, never as code.

A checkpoint is a dict saved with `torch.save`:
``{"format": "srlib", "version": 1, "config": TrainConfig as dict, "model": state_dict,
"optimizer", "scheduler", "scaler", "rng", "step", "epoch", "history"}``.
It is written to a temporary file beside the target, flushed to disk, then renamed over it,
so a crash or a full disk leaves the previous checkpoint intact. It is read with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from srlib.config import TrainConfig
from srlib.errors import CheckpointError, UsageError

FORMAT = "srlib"
VERSION = 1
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PRETRAINED_NAME = "pretrained"


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write `state` to `path` atomically: temp file, fsync, rename, fsync the folder.

    Raises:
        CheckpointError: the folder is missing or unwritable, or the disk is full; any previous
            checkpoint at `path` is left as it was.
    """
    path = Path(path)
    state = {"format": FORMAT, "version": VERSION, **state}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(handle, "wb") as file:
            file.write(buffer.getbuffer())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        temporary = None
        _fsync_folder(path.parent)
    except OSError as error:
        reason = error.strerror or str(error)
        raise CheckpointError(f"{path}: cannot write checkpoint ({reason}); "
                              "the previous checkpoint, if any, is intact") from None
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
    return path


def _fsync_folder(folder: Path) -> None:
    # The rename is durable only once the folder entry is on disk (POSIX; not on Windows).
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def resolve(path: str | os.PathLike) -> Path:
    """The file behind a checkpoint argument: a path, or 'pretrained' for the shipped weights."""
    if str(path) == PRETRAINED_NAME:
        candidates = sorted(PRETRAINED_DIR.glob("*.pt"))
        if not candidates:
            raise CheckpointError(f"no pretrained checkpoint shipped in {PRETRAINED_DIR}")
        return candidates[0]
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint`, as data only.

    Raises:
        CheckpointError: missing, truncated, not a checkpoint, or not srlib's.
    """
    path = resolve(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError,
            OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated, corrupt or "
                              f"not safe to load: {first_line})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an srlib checkpoint (no srlib format marker)")
    if state.get("version", 0) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state['version']} is newer than "
                              f"this srlib ({VERSION}); upgrade srlib")
    for key in ("config", "model"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    return state


def build_model(config: TrainConfig):
    """The `SRNet` a config describes (plain arguments; nothing else of the config goes in)."""
    from srlib.model import SRNet

    try:
        return SRNet.from_preset(config.preset, scale=config.scale, **config.model_options)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


def load_model(path: str | os.PathLike, *, scale: int | None = None, preset: str | None = None,
               map_location="cpu"):
    """Rebuild the model stored in a checkpoint, for inference.

    Args:
        path: a checkpoint file, or 'pretrained'.
        scale: refuse the checkpoint unless its model outputs this scale.
        preset: refuse the checkpoint unless it was trained from this preset.

    Returns:
        (model in eval mode, TrainConfig).

    Raises:
        CheckpointError: unreadable, or built for another scale or preset (says which).
    """
    state = load_checkpoint(path, map_location)
    path = resolve(path)
    try:
        config = TrainConfig.from_dict(state["config"])
    except TypeError as error:
        raise CheckpointError(f"{path}: checkpoint config is not a TrainConfig ({error})") from None
    if preset is not None and config.preset != preset:
        raise CheckpointError(f"{path}: checkpoint is a {config.preset!r} model, "
                              f"not {preset!r}")
    model = build_model(config)
    if scale is not None and scale not in model.output_scales:
        served = ", ".join(f"x{s}" for s in model.output_scales)
        raise CheckpointError(f"{path}: checkpoint serves {served}, not x{scale}")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes "
                              f"({str(error).splitlines()[0]})") from None
    return model.eval(), config
