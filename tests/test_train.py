"""Training: it learns, it checkpoints, and a killed run resumes to the same losses."""

import numpy as np
import pytest
import torch

from srlib.checkpoint import export_model, load_checkpoint, load_model, widen_weights
from srlib.errors import CheckpointError, TrainingError
from srlib.model import PRESETS, build_model
from srlib.train import TrainConfig, learning_rate, preset_config, train

TINY_MODEL = {"feature_width": 8, "channels": 8, "se_reduction": 4}


@pytest.fixture(scope="module")
def image_folder(make_image_folder):
    """Four smooth 96x96 colour images."""
    return make_image_folder(96)


def tiny_config(folder, run_dir, **changes) -> TrainConfig:
    model = PRESETS["small"].replace(**{**TINY_MODEL, **changes.pop("model_changes", {})})
    values = {"model": model.for_scale(2), "data": str(folder),
              "patch_size": 8, "batch_size": 4, "patches_per_image": 4, "lr": 2e-3,
              "loss": "l1", "max_steps": 12, "epochs": 100, "checkpoint_every": 4,
              "run_dir": str(run_dir), "precision": "fp32", "device": "cpu"}
    values.update(changes)
    return TrainConfig(**values)


def test_tiny_overfit_drives_the_loss_down(image_folder, tmp_path):
    # Without the bicubic skip the network starts far from the target and must learn it all.
    config = tiny_config(image_folder, tmp_path, max_steps=60,
                         model_changes={"global_skip": False})
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


def test_training_presets_are_valid_configs():
    for name in ("small", "seed"):
        config = preset_config(name)
        assert TrainConfig.from_dict(config.to_dict()) == config
    assert preset_config("small").model == PRESETS["small"]
    assert preset_config("small", scale=2).model.output_scales == (2,)


def test_learning_rate_schedules_match_their_closed_forms():
    step = TrainConfig(lr=1.0, lr_decay_epochs=2, lr_decay=0.1)
    assert [learning_rate(step, s, 100, 10) for s in (0, 19, 20, 40)] == [1.0, 1.0, 0.1,
                                                                          pytest.approx(0.01)]
    cosine = TrainConfig(lr=1.0, schedule="cosine", warmup_steps=10)
    assert learning_rate(cosine, 0, 110, 10) == pytest.approx(0.1)  # warm-up: (step+1)/10
    assert learning_rate(cosine, 9, 110, 10) == pytest.approx(1.0)
    assert learning_rate(cosine, 60, 110, 10) == pytest.approx(0.5)  # half-way down
    assert learning_rate(cosine, 110, 110, 10) == pytest.approx(0.0)


def test_init_starts_from_weights_with_a_fresh_schedule_and_records_lineage(image_folder,
                                                                             tmp_path):
    first = train(tiny_config(image_folder, tmp_path / "first", max_steps=4), progress=False)
    exported = export_model(first["checkpoint"], tmp_path / "first.pt")
    config = tiny_config(image_folder, tmp_path / "second", max_steps=4, init=str(exported))
    second = train(config, progress=False)
    assert second["step"] == [1, 2, 3, 4]  # a fresh run: its own steps and schedule
    (stage,) = second["lineage"]
    assert stage["init_from"] == str(exported) and stage["steps"] == 4
    assert stage["patches"] == first["patches"]
    # It started from the first run's weights: its first loss is the first run's last level,
    # not a fresh network's.
    fresh = train(tiny_config(image_folder, tmp_path / "fresh", max_steps=1), progress=False)
    assert abs(second["loss"][0] - first["loss"][-1]) < abs(fresh["loss"][0] - first["loss"][-1])
    for changes in ({"se_reduction": 2}, {"channels": 4}):  # not the same network widened
        with pytest.raises(CheckpointError, match="another network"):
            other = tiny_config(image_folder, tmp_path / "other", max_steps=1,
                                init=str(exported), model_changes=changes)
            train(other, progress=False)
    # The same network made wider starts where the checkpoint stood: same first loss.
    wide = train(tiny_config(image_folder, tmp_path / "wide", max_steps=1, init=str(exported),
                             model_changes={"feature_width": 12, "channels": 16}),
                 progress=False)
    assert wide["loss"][0] == pytest.approx(second["loss"][0], rel=1e-4)
    assert wide["lineage"][0]["widened"] == {"feature_width": [8, 12], "channels": [8, 16]}


def test_widening_keeps_what_the_network_computes_and_lets_the_new_channels_learn():
    torch.manual_seed(0)
    narrow_preset = PRESETS["small"].replace(**TINY_MODEL)
    narrow = build_model(narrow_preset)
    for head in narrow.to_image.values():  # they start at zero: make every output depend on them
        torch.nn.init.normal_(head.body[-1].weight, std=0.1)
    x = torch.rand(2, 3, 10, 12)
    expected = narrow(x)
    # 12 channels: not a multiple of the narrow 8, so every concatenation slot moves.
    wide = build_model(narrow_preset.replace(feature_width=20, channels=12))
    wide.load_state_dict(widen_weights(narrow.state_dict(), 8, wide))
    outputs = wide(x)
    for scale, image in expected.items():
        assert torch.allclose(outputs[scale], image, atol=1e-5), scale
    # The weights by which old channels read new ones start at zero but get gradients.
    sum(image.square().mean() for image in outputs.values()).backward()
    compress = wide.stages[0].compress.weight.grad  # (12, 6 blocks x 12, 3, 3)
    assert compress[:8, 8:12].abs().sum() > 0 and compress[:8, 20:24].abs().sum() > 0
    assert wide.features[2].weight.grad[:8, 8:].abs().sum() > 0
    with pytest.raises(CheckpointError, match="does not grow"):
        widen_weights(wide.state_dict(), 12, narrow)


def test_progress_lines_go_to_the_terminal_and_the_log(image_folder, tmp_path, capsys):
    train(tiny_config(image_folder, tmp_path, max_steps=12), progress=True)
    printed = capsys.readouterr().out
    assert "step 12/12" in printed and "ETA" in printed and "loss" in printed
    assert "expected time:" in printed
    assert "step 12/12" in (tmp_path / "train.log").read_text()
