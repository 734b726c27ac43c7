"""Files written whole or not at all: every file srlib writes goes through `atomic_write`."""

from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from srlib.errors import CheckpointError, SrlibError

# `.<target>.<pid>.tmp`: a killed writer's file is recognised (its pid is gone) and removed.
_TEMPORARY = re.compile(r"\.(?P<target>.+)\.(?P<pid>\d+)\.tmp")


def ensure_writable_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and check it takes files; else `CheckpointError` saying why."""
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
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
    return folder


def atomic_write(path: str | os.PathLike, data: bytes | memoryview, *,
                 error: type[SrlibError] = CheckpointError) -> Path:
    """Write `data` so `path` holds its old bytes or all the new ones; else `error` says why."""
    path = Path(path)
    _make_folder(path.parent, error)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            view = memoryview(data).cast("B")
            while view:  # os.write may write less than asked
                view = view[os.write(descriptor, view):]
            os.fsync(descriptor)  # else the rename can reach the disk before the data
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except OSError as reason:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise error(f"{path}: cannot write ({_reason(reason)}); the previous file, if any, is "
                    "intact") from None
    with contextlib.suppress(OSError):  # the rename is durable once the folder is (POSIX)
        descriptor = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    _remove_stale_temporaries(path)
    return path


def _make_folder(folder: Path, error: type[SrlibError] = CheckpointError) -> None:
    # mkdir under a regular file fails with "File exists" or "Not a directory": say which.
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p.is_symlink())
    if not existing.is_dir():
        raise error(f"{folder}: cannot create the folder: {existing} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as reason:
        raise error(f"{folder}: cannot create the folder ({_reason(reason)})") from None


def _reason(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "no space left on device"
    return (error.strerror or str(error) or type(error).__name__).lower()


def _remove_stale_temporaries(path: Path) -> None:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return
    for candidate in path.parent.glob(f".{path.name}.*.tmp"):
        match = _TEMPORARY.fullmatch(candidate.name)
        if match is None or match["target"] != path.name or int(match["pid"]) == os.getpid():
            continue
        try:
            os.kill(int(match["pid"]), 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            candidate.unlink(missing_ok=True)
        except (PermissionError, OverflowError):
            pass  # alive under another user (or a pid no process can have): leave it
