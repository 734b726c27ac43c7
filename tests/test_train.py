"""Training: it learns, it checkpoints, and a killed run resumes to the same losses."""

import numpy as np
import pytest
import torch

from srlib.checkpoint import export_model, load_checkpoint, load_model
from srlib.config import TrainConfig, preset_config
from srlib.errors import CheckpointError, TrainingError
from srlib.train import train

TINY_MODEL = {"feature_width": 8, "channels": 8, "se_reduction": 4}


@pytest.fixture(scope="module")
def image_folder(make_image_folder):
    """Four smooth 96x96 colour images."""
    return make_image_folder(96)


def tiny_config(folder, run_dir, **changes) -> TrainConfig:
    values = {"preset": "quick", "scale": 2, "model_options": TINY_MODEL, "data": str(folder),
              "patch_size": 8, "batch_size": 4, "patches_per_image": 4, "lr": 2e-3,
              "loss": "l1", "max_steps": 12, "epochs": 100, "checkpoint_every": 4,
              "run_dir": str(run_dir), "precision": "fp32", "device": "cpu"}
    values.update(changes)
    return TrainConfig(**values)


def test_tiny_overfit_drives_the_loss_down(image_folder, tmp_path):
    # Without the bicubic skip the network starts far from the target and must learn it all.
    options = {**TINY_MODEL, "global_skip": False}
    config = tiny_config(image_folder, tmp_path, max_steps=60, model_options=options)
    history = train(config, progress=False)
    assert len(history["loss"]) == 60
    first, last = np.mean(history["loss"][:5]), np.mean(history["loss"][-5:])
    assert last < 0.7 * first


def test_killed_and_resumed_run_gives_the_same_losses(image_folder, tmp_path):
    whole = train(tiny_config(image_folder, tmp_path / "whole"), progress=False)
    config = tiny_config(image_folder, tmp_path / "split")
    first = train(config, progress=False, stop_after=8)
    assert len(first["loss"]) == 8
    resumed = train(config, progress=False)
    assert resumed["loss"] == whole["loss"]
    assert resumed["lr"] == whole["lr"]


def test_resume_refuses_a_checkpoint_of_another_config(image_folder, tmp_path):
    train(tiny_config(image_folder, tmp_path, max_steps=4), progress=False)
    with pytest.raises(CheckpointError, match="different config.*loss"):
        train(tiny_config(image_folder, tmp_path, loss="mse"), progress=False)


def test_checkpoint_round_trip_rebuilds_the_same_network(image_folder, tmp_path):
    config = tiny_config(image_folder, tmp_path, max_steps=4)
    train(config, progress=False)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == 4 and state["config"]["loss"] == "l1"
    model, loaded_config = load_model(tmp_path / "last.pt", scale=2)
    assert loaded_config == config
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, state["model"][name])
    with pytest.raises(CheckpointError, match="serves x2, not x4"):
        load_model(tmp_path / "last.pt", scale=4)
    with pytest.raises(CheckpointError, match="'quick' model, not 'seed'"):
        load_model(tmp_path / "last.pt", preset="seed")
    exported = export_model(tmp_path / "last.pt", tmp_path / "shipped.pt")
    assert "optimizer" not in load_checkpoint(exported)
    shipped, _ = load_model(exported, scale=2)
    for name, tensor in shipped.state_dict().items():
        torch.testing.assert_close(tensor, state["model"][name])


def test_nan_loss_stops_with_the_step_and_keeps_the_checkpoint(image_folder, tmp_path):
    config = tiny_config(image_folder, tmp_path, max_steps=4)
    train(config, progress=False)
    before = (tmp_path / "last.pt").read_bytes()
    # A learning rate of infinity poisons the weights at the first step of the resumed run.
    poisoned = tiny_config(image_folder, tmp_path, max_steps=8, lr=float("inf"))
    with pytest.raises(TrainingError, match=r"step \d+: loss is nan"):
        train(poisoned, progress=False, resume=False)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_quick_preset_is_a_valid_config():
    config = preset_config("quick")
    assert config.preset == "quick" and config.data == "default"
    assert TrainConfig.from_dict(config.to_dict()) == config
