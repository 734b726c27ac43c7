"""Checkpoints: the state of a run written atomically, read back as data, never as code.

A checkpoint is a dict saved with `torch.save`:
``{"format": "srlib", "version": 1, "config": a TrainConfig as dict, "model": state_dict,
"optimizer", "scheduler", "scaler", "rng", "step", "epoch", "history"}``.

Writing (`save_checkpoint`, `atomic_write`): the bytes go to a temporary file beside the
target, are flushed to disk (fsync), then renamed over it, and the folder entry is flushed
too. A crash, `kill -9`, a full disk or a read-only folder therefore leaves the previous
checkpoint as it was; a temporary file left by a killed writer is never read, and the next
successful write in that folder removes it. Weights holding NaN or Inf are never written.

Reading (`load_checkpoint`, `load_model`): the zip container's CRC-32s are checked (so a
truncated or bit-rotten file is refused, not half-loaded), then ``torch.load`` runs with
``weights_only=True``, which refuses anything but tensors and plain containers: a file
that would run code when unpickled is refused without running it. A file without srlib's
format marker, or built for another scale or preset than the one asked for, is refused
with the reason.
"""

from __future__ import annotations

import errno
import io
import os
import re
import warnings
import zipfile
import zlib
from pathlib import Path

import torch

from srlib.errors import CheckpointError, TrainingError, UsageError
from srlib.model import build_model, check_scale

FORMAT = "srlib"
VERSION = 1
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
PRETRAINED_NAME = "pretrained"
# What every checkpoint holds besides the marker; training state comes on top.
REQUIRED_KEYS = ("config", "model")
# Temporary files are named `.<target>.<pid>.tmp`, so a writer killed mid-write can be
# recognised (its process is gone) and its file removed by a later writer.
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.tmp")


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and check that a file can be written in it.

    Meant for the start of a run, so that a wrong output folder fails at once rather
    than at the first checkpoint, after minutes of training.

    Returns:
        `folder` as a Path.

    Raises:
        CheckpointError: a parent is a regular file, or the folder cannot be created or
            written (permissions, read-only file system, full disk).
    """
    folder = Path(folder)
    _make_folder(folder)
    probe = folder / f".write-test.{os.getpid()}.tmp"
    try:
        descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.write(descriptor, b"srlib")
        finally:
            os.close(descriptor)
    except OSError as error:
        raise CheckpointError(f"{folder}: output folder is not writable "
                              f"({_reason(error)})") from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return folder


def atomic_write(path: str | os.PathLike, data: bytes | memoryview) -> Path:
    """Write `data` to `path` so that `path` holds either its old bytes or all the new ones.

    Temporary file `.<name>.<pid>.tmp` beside `path`, write, fsync, rename over `path`,
    fsync the folder (POSIX). On any failure the temporary file is removed and `path` is
    untouched. A successful write also removes temporary files of `path` left by killed
    writers.

    Args:
        path: the file to (re)place; its folder is created if missing.
        data: the complete new content.

    Returns:
        `path` as a Path.

    Raises:
        CheckpointError: the folder cannot be created (a parent is a regular file) or
            written (permissions, read-only file system), or the disk is full; the
            message names `path` and the reason.
    """
    path = Path(path)
    _make_folder(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data).cast("B")
            while view:  # os.write may write less than asked
                view = view[os.write(descriptor, view):]
            # Without fsync the rename can reach the disk before the data: after a power
            # cut the "new" file would be empty or partial.
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except OSError as error:
        try:
            temporary.unlink(missing_ok=True)
        except OSError:
            pass
        raise CheckpointError(f"{path}: cannot write ({_reason(error)}); the previous "
                              "file, if any, is intact") from None
    _fsync_folder(path.parent)
    _remove_stale_temporaries(path)
    return path


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write a checkpoint atomically (see `atomic_write`), marked as srlib's.

    Args:
        path: the checkpoint file, e.g. ``run_dir / "last.pt"``.
        state: at least "config" (a TrainConfig as dict) and "model" (a state_dict) of
            tensors and plain containers; "step" is used in messages when present.

    Returns:
        `path` as a Path.

    Raises:
        TrainingError: a floating-point weight is NaN or Inf (training diverged); nothing
            is written, so the previous checkpoint stays the last good one.
        CheckpointError: the folder is missing and cannot be created, is unwritable, or
            the disk is full; any previous checkpoint at `path` is left as it was.
    """
    path = Path(path)
    broken = [name for name, tensor in state.get("model", {}).items()
              if torch.is_tensor(tensor) and tensor.is_floating_point()
              and not bool(torch.isfinite(tensor).all())]
    if broken:
        step = f" at step {state['step']}" if "step" in state else ""
        raise TrainingError(f"{path}: not written: weights hold NaN or Inf{step} (e.g. "
                            f"{broken[0]}); training diverged, the previous checkpoint "
                            "is kept")
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    return atomic_write(path, buffer.getbuffer())


def _make_folder(folder: Path) -> None:
    # mkdir under a regular file fails with "File exists" or "Not a directory": say which.
    for parent in (folder, *folder.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise CheckpointError(f"{folder}: cannot create the folder: {parent} is a "
                                      "file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CheckpointError(f"{folder}: cannot create the folder ({_reason(error)})") from None


def _reason(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "no space left on device"
    return (error.strerror or str(error) or type(error).__name__).lower()


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


def _remove_stale_temporaries(path: Path) -> None:
    """Delete `.<name>.<pid>.tmp` files of `path` whose writing process no longer exists."""
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        match = _TEMPORARY.fullmatch(candidate.name)
        if match is None or match["target"] != path.name:
            continue
        pid = int(match["pid"])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            candidate.unlink(missing_ok=True)
        except (PermissionError, OverflowError):
            pass  # alive under another user (or a pid no process can have): leave it


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


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

    Args:
        path: a checkpoint file, or 'pretrained'.
        map_location: where tensors go (``torch.load``'s argument).

    Returns:
        The state dict (see the module docstring), tensors on `map_location`.

    Raises:
        CheckpointError: missing, empty, truncated or corrupt (zip CRC), holding Python
            objects other than tensors and plain containers (refused before any of them
            is built), without srlib's format marker, or from a newer srlib.
    """
    path = resolve(path)
    if not path.is_file():
        what = "is a folder, not a checkpoint file" if path.is_dir() else "no such checkpoint file"
        raise CheckpointError(f"{path}: {what}")
    _check_container(path)
    try:
        # Why silence: torch warns about pickle protocols and the like on foreign files;
        # the outcome is reported below as one CheckpointError, not as stray stderr lines.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    # Why catch everything: torch.load raises UnpicklingError, RuntimeError, KeyError,
    # EOFError, ValueError, ... on malformed input, varying between versions; to a user
    # each means the same thing: this file cannot be used.
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"{path}: {_describe_load_error(error)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an srlib checkpoint (a PyTorch file without "
                              "srlib's format marker: a bare state_dict or another "
                              "program's checkpoint?)")
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
    """Rebuild the model stored in a checkpoint, for inference.

    Args:
        path: a checkpoint file, or 'pretrained'.
        scale: refuse the checkpoint unless its model outputs this scale.

    Returns:
        (model in eval mode, its `srlib.train.TrainConfig`).

    Raises:
        UsageError: `scale` is one no srlib network can serve (see `srlib.model.check_scale`).
        CheckpointError: unreadable, or built for another scale (says which).
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
    """Write the inference part of a training checkpoint: config, weights, step and history.

    The optimiser, schedule and random states (two thirds of a training checkpoint) are left
    out, so the file is small enough to ship; `load_model` reads it like any checkpoint, and
    it cannot be resumed from.
    """
    state = load_checkpoint(path)
    kept = {key: state[key] for key in ("config", "model", "step", "history")
            if key in state}
    return save_checkpoint(destination, kept)
