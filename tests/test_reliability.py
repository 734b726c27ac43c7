"""Training and checkpoints under failure (issue 7): crashes, kill -9, NaN/Inf, full or
unwritable disks, and checkpoints that are truncated, foreign, malicious or for another model.

Everything runs on the CPU with a network of a few thousand weights on 48x48 images; the
kill -9 test runs real `python` subprocesses.
"""

from __future__ import annotations

import errno
import importlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from srlib import files
from srlib.checkpoint import load_checkpoint, load_model, save_checkpoint
from srlib.errors import CheckpointError, TrainingError, UsageError
from srlib.files import atomic_write, ensure_writable_folder
from srlib.model import PRESETS, build_model, check_scale
from srlib.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
train_module = importlib.import_module("srlib.train")
# The small preset at width 8, for checkpoints that are built, never trained.
TINY_MODEL = PRESETS["small"].replace(feature_width=8, channels=8, se_reduction=4)
# For training at x2 alone: two residual blocks, ~200 kB checkpoints, the cheapest steps.
TRAIN_MODEL = TINY_MODEL.for_scale(2).replace(blocks_per_stage=(2,))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a busy shared CPU, two OpenMP threads made these tiny steps
    ten times slower; and the kill -9 test compares with subprocesses using one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def image_folder(make_image_folder):
    """Four smooth 48x48 colour images (a 2x network needs 16x16 HR patches)."""
    return make_image_folder(48)


def tiny_config(folder: Path, run_dir: Path, **changes) -> TrainConfig:
    return TrainConfig(model=TRAIN_MODEL, data=str(folder),
                       patch_size=8, batch_size=4, patches_per_image=4, lr=2e-3, loss="l1",
                       max_steps=4, epochs=100, checkpoint_every=2, run_dir=str(run_dir),
                       precision="fp32", device="cpu").replace(**changes)


def model_checkpoint(path: Path, scale: int | None = None) -> Path:
    """A checkpoint of an untrained tiny network (config + weights), written by srlib."""
    model = TINY_MODEL.for_scale(scale) if scale else TINY_MODEL
    config = TrainConfig(model=model)
    return save_checkpoint(path, {"config": config.to_dict(),
                                  "model": build_model(model).state_dict(), "step": 0})


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def assert_one_line(message: str, *parts: str) -> None:
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)


# ---------------------------------------------------------------------------------------
# Foreign, damaged and malicious checkpoints are refused, naming the file
# ---------------------------------------------------------------------------------------


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write_bad_checkpoint(kind: str, path: Path, good: bytes, marker: Path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "text":
        path.write_text("this is not a checkpoint\n")
    elif kind == "truncated to half":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "last byte cut":
        path.write_bytes(good[:-1])
    elif kind == "bit flipped in a tensor":
        data = bytearray(good)
        with zipfile.ZipFile(io.BytesIO(good)) as bundle:
            info = next(i for i in bundle.infolist() if "/data/" in i.filename and i.file_size)
        # torch stores members uncompressed; the data follows the 30-byte local header,
        # the name and the local extra field (torch pads it to align tensors).
        offset = info.header_offset
        name_length = int.from_bytes(data[offset + 26 : offset + 28], "little")
        extra_length = int.from_bytes(data[offset + 28 : offset + 30], "little")
        start = offset + 30 + name_length + extra_length
        data[start + info.file_size // 2] ^= 0x40  # torch.load alone would not notice
        path.write_bytes(bytes(data))
    elif kind == "plain dict without marker":
        torch.save({"config": {}, "model": {"w": torch.zeros(2)}}, path)
    elif kind == "bare state_dict":
        torch.save(build_model(TINY_MODEL).state_dict(), path)
    elif kind == "malicious torch.save":
        torch.save({"format": "srlib", "version": 1, "config": {}, "model": RunsCode(marker)},
                   path)
    elif kind == "malicious raw pickle":
        path.write_bytes(pickle.dumps({"format": "srlib", "model": RunsCode(marker)}))
    elif kind == "newer version":
        torch.save({"format": "srlib", "version": 99, "config": {}, "model": {}}, path)
    elif kind == "no model":
        torch.save({"format": "srlib", "version": 1, "config": {}}, path)
    else:
        raise AssertionError(kind)


BAD_CHECKPOINTS = {
    "empty": "empty file",
    "random bytes": "not a checkpoint",
    "text": "not a checkpoint",
    "truncated to half": "truncated or corrupt",
    "last byte cut": "truncated or corrupt",
    "bit flipped in a tensor": "CRC mismatch",
    "plain dict without marker": "not an srlib checkpoint",
    "bare state_dict": "not an srlib checkpoint",
    "malicious torch.save": "refused: holds Python objects",
    "malicious raw pickle": "not a checkpoint",
    "newer version": "newer than this srlib",
    "no model": "no 'model'",
}


@pytest.mark.parametrize("kind", list(BAD_CHECKPOINTS))
def test_bad_checkpoints_are_refused_with_the_reason(tmp_path, kind):
    good = model_checkpoint(tmp_path / "good.pt").read_bytes()
    path, marker = tmp_path / "bad.pt", tmp_path / "code-ran"
    _write_bad_checkpoint(kind, path, good, marker)
    for load in (load_checkpoint, lambda p: load_model(p, scale=2)):
        with pytest.raises(CheckpointError) as error:
            load(path)
        assert_one_line(str(error.value), str(path), BAD_CHECKPOINTS[kind])
    assert not marker.exists()  # nothing in the file ran


def test_weights_only_refusal_does_not_suggest_unsafe_loading(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "code-ran"
    _write_bad_checkpoint("malicious torch.save", path, b"", marker)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value).removeprefix(f"{path}: ")
    assert "system" in message and "data only" in message
    assert "weights_only" not in message and "will likely succeed" not in message
    assert not marker.exists()


def test_missing_path_and_folder_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


# ---------------------------------------------------------------------------------------
# A checkpoint for another scale or preset is refused with the reason
# ---------------------------------------------------------------------------------------


def test_checkpoint_of_another_scale_is_refused(tmp_path):
    only_x2 = model_checkpoint(tmp_path / "x2.pt", scale=2)
    model, config = load_model(only_x2, scale=2)
    assert model.output_scales == (2,) and config.model.output_scales == (2,)
    with pytest.raises(CheckpointError) as error:
        load_model(only_x2, scale=4)
    assert_one_line(str(error.value), str(only_x2), "serves x2, not x4")
    pyramid = model_checkpoint(tmp_path / "all.pt")  # small serves x2, x4, x8 at once
    assert load_model(pyramid, scale=8)[0].output_scales == (2, 4, 8)


@pytest.mark.parametrize("scale", [0, 1, 3, 6, -2])
def test_a_scale_no_network_can_serve_is_a_usage_error(tmp_path, scale):
    path = model_checkpoint(tmp_path / "x2.pt", scale=2)
    with pytest.raises(UsageError, match=f"unsupported scale {scale}"):
        load_model(path, scale=scale)
    with pytest.raises(UsageError):
        check_scale(scale)
    assert check_scale(8) == 8


def test_checkpoint_whose_config_or_weights_do_not_fit_is_refused(tmp_path):
    unknown = tmp_path / "unknown.pt"
    config = TrainConfig(model=TINY_MODEL).to_dict()
    save_checkpoint(unknown, {"config": {**config, "model": {**config["model"], "depth": 3}},
                              "model": {}})
    with pytest.raises(CheckpointError, match="no model this srlib can build.*depth"):
        load_model(unknown)
    misfit = tmp_path / "misfit.pt"
    wider = TINY_MODEL.replace(channels=16)
    save_checkpoint(misfit, {"config": config, "model": build_model(wider).state_dict()})
    with pytest.raises(CheckpointError, match="weights do not fit"):
        load_model(misfit)


# ---------------------------------------------------------------------------------------
# Atomic writes: crash, full disk, unwritable folder
# ---------------------------------------------------------------------------------------


def test_save_writes_atomically_and_leaves_no_temporary(tmp_path):
    path = model_checkpoint(tmp_path / "run" / "last.pt")  # the folder is created
    assert files_in(path.parent) == ["last.pt"]
    assert load_checkpoint(path)["step"] == 0
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fail_write_halfway(real_write):
    calls = []

    def write(descriptor, data):
        if not calls:  # the first chunk goes through, then the disk is full
            calls.append(1)
            return real_write(descriptor, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def _raise(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


@pytest.mark.parametrize(
    ("where", "code", "reason"),
    [
        ("write", errno.ENOSPC, "no space left on device"),  # disk full halfway through
        ("fsync", errno.ENOSPC, "no space left on device"),  # delayed allocation
        ("fsync", errno.EIO, "input/output error"),
        ("replace", errno.EROFS, "read-only file system"),
        ("open", errno.EACCES, "permission denied"),
    ],
)
def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, where, code, reason):
    path = model_checkpoint(tmp_path / "last.pt")
    before = path.read_bytes()
    failure = _fail_write_halfway(os.write) if where == "write" else _raise(code)
    monkeypatch.setattr(files.os, where, failure)
    with pytest.raises(CheckpointError) as error:
        model_checkpoint(path, scale=4)
    monkeypatch.undo()
    assert_one_line(str(error.value), str(path), reason, "previous file, if any, is intact")
    assert path.read_bytes() == before
    assert files_in(tmp_path) == ["last.pt"]  # the temporary file is gone
    assert tuple(load_checkpoint(path)["config"]["model"]["output_scales"]) == (2, 4, 8)


def test_output_folder_under_a_regular_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    for folder in (tmp_path / "file", tmp_path / "file" / "run", tmp_path / "file" / "a" / "b"):
        with pytest.raises(CheckpointError) as error:
            ensure_writable_folder(folder)
        assert_one_line(str(error.value), str(folder), f"{tmp_path / 'file'} is a file")
        with pytest.raises(CheckpointError, match="is a file, not a folder"):
            model_checkpoint(folder / "last.pt")
    assert ensure_writable_folder(tmp_path / "new" / "run").is_dir()
    assert files_in(tmp_path / "new" / "run") == []  # the write probe is removed


def test_unwritable_folder_is_reported_by_the_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "open", _raise(errno.EROFS))
    with pytest.raises(CheckpointError, match="not writable.*read-only file system"):
        ensure_writable_folder(tmp_path)


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # reaped: its pid now names no process
    dead = tmp_path / f".last.pt.{finished.pid}.tmp"
    alive = tmp_path / f".last.pt.{os.getppid()}.tmp"  # a live process's write in progress
    other = tmp_path / f".history.json.{finished.pid}.tmp"  # another file's temporary
    for stray in (dead, alive, other):
        stray.write_bytes(b"half a checkpoint")
    path = model_checkpoint(tmp_path / "last.pt")
    assert not dead.exists() and alive.exists() and other.exists()
    assert load_checkpoint(path)["step"] == 0
    atomic_write(tmp_path / "history.json", b"{}")
    assert not other.exists()


def test_weights_with_nan_or_inf_are_never_written(tmp_path):
    path = model_checkpoint(tmp_path / "last.pt")
    before = path.read_bytes()
    weights = build_model(TINY_MODEL).state_dict()
    name = next(iter(weights))
    weights[name][0] = float("inf")
    with pytest.raises(TrainingError) as error:
        save_checkpoint(path, {"config": TrainConfig(model=TINY_MODEL).to_dict(), "model": weights,
                               "step": 7})
    assert_one_line(str(error.value), str(path), "NaN or Inf at step 7", name, "is kept")
    assert path.read_bytes() == before


# ---------------------------------------------------------------------------------------
# Training: NaN/Inf loss, diverged weights, full disk, unwritable run folder
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_or_inf_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(
    image_folder, tmp_path, monkeypatch, bad
):
    real_loss, calls = train_module.pyramid_loss, []

    def loss_going_bad_at_step_5(*args, **kwargs):
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * bad if len(calls) == 5 else loss

    monkeypatch.setattr(train_module, "pyramid_loss", loss_going_bad_at_step_5)
    config = tiny_config(image_folder, tmp_path, max_steps=8)
    with pytest.raises(TrainingError) as error:
        train(config, progress=False)
    assert_one_line(str(error.value), "step 5:", f"loss is {bad}",
                    f"last good checkpoint {tmp_path / 'last.pt'} kept")
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    monkeypatch.undo()
    history = train(config, progress=False)  # resumes from step 4 and finishes
    assert history["step"] == list(range(1, 9))


def test_diverged_weights_never_overwrite_the_last_good_checkpoint(image_folder, tmp_path):
    train(tiny_config(image_folder, tmp_path, max_steps=2), progress=False)
    before = (tmp_path / "last.pt").read_bytes()
    # lr = inf: step 1's loss is finite but its update makes the weights NaN; with a
    # checkpoint after every step, only the weight check stops the bad write.
    poisoned = tiny_config(image_folder, tmp_path, lr=float("inf"), checkpoint_every=1)
    with pytest.raises(TrainingError, match=r"weights hold NaN or Inf at step 1"):
        train(poisoned, progress=False, resume=False)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_disk_full_during_training_keeps_the_old_checkpoint(image_folder, tmp_path, monkeypatch):
    config = tiny_config(image_folder, tmp_path, max_steps=2)
    train(config, progress=False)
    before = (tmp_path / "last.pt").read_bytes()
    monkeypatch.setattr(files.os, "fsync", _raise(errno.ENOSPC))
    longer = config.replace(max_steps=4)
    with pytest.raises(CheckpointError) as error:
        train(longer, progress=False)
    monkeypatch.undo()
    assert_one_line(str(error.value), str(tmp_path / "last.pt"), "no space left on device")
    assert (tmp_path / "last.pt").read_bytes() == before
    assert not [name for name in files_in(tmp_path) if name.endswith(".tmp")]
    assert train(longer, progress=False)["step"] == [1, 2, 3, 4]  # space freed: resumes


def test_unwritable_run_folder_is_a_clear_error(image_folder, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    config = tiny_config(image_folder, tmp_path / "file" / "run", max_steps=2)
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'file'} is a file, not a folder"):
        train(config, progress=False)


def test_corrupt_last_checkpoint_stops_resume_naming_it(image_folder, tmp_path):
    train(tiny_config(image_folder, tmp_path, max_steps=2), progress=False)
    data = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'last.pt'}: truncated"):
        train(tiny_config(image_folder, tmp_path), progress=False)


# ---------------------------------------------------------------------------------------
# kill -9 in the middle of training, then resume
# ---------------------------------------------------------------------------------------

DRIVER = textwrap.dedent("""
    import json, sys
    import torch
    torch.set_num_threads(1)  # as this test process (fixture one_thread)
    from srlib.train import TrainConfig, train
    train(TrainConfig.from_dict(json.loads(sys.argv[1])), progress=False)
""")


def _saved_step(path: Path) -> int:
    try:
        return load_checkpoint(path)["step"]
    except CheckpointError:
        return -1  # not written yet


def test_kill_9_mid_training_then_resume_continues_exactly(image_folder, tmp_path):
    run_dir = tmp_path / "killed"
    long_run = tiny_config(image_folder, run_dir, max_steps=100_000, checkpoint_every=2)
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, json.dumps(long_run.to_dict())], cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while _saved_step(run_dir / "last.pt") < 4:
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint of step 4 after 90 s"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL

    # Wherever the kill landed, last.pt is a whole checkpoint; at most a temporary file of
    # the killed writer is left beside it, which nothing reads.
    saved = load_checkpoint(run_dir / "last.pt")
    step = saved["step"]
    assert step >= 4 and step % 2 == 0 and saved["history"]["step"] == list(range(1, step + 1))
    assert set(files_in(run_dir)) <= {"last.pt", "history.json",
                                      f".last.pt.{process.pid}.tmp",
                                      f".history.json.{process.pid}.tmp"}

    # Resume here (another process than the killed one), three checkpoints further:
    # max_steps is one of the settings a resumed run may change.
    resumed = train(long_run.replace(max_steps=step + 6), progress=False)
    assert resumed["step"] == list(range(1, step + 7))
    assert load_checkpoint(run_dir / "last.pt")["step"] == step + 6
    assert files_in(run_dir) == ["history.json", "last.pt"]  # the killed writer's file is gone
    # The same run never killed: the same losses, those computed before the kill included.
    whole = train(long_run.replace(max_steps=step + 6, run_dir=str(tmp_path / "whole")),
                  progress=False)
    assert resumed["loss"] == whole["loss"]
    assert resumed["lr"] == whole["lr"]
