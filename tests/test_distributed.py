"""DDP: two gloo processes on one CPU take the same steps as one process with the same batch."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlib.errors import UsageError
from srlib.model import PRESETS
from srlib.tools import distributed
from srlib.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this PyTorch has no torch.distributed")

TINY_MODEL = {"feature_width": 8, "channels": 8, "se_reduction": 4}
STEPS = 6


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index in range(3):
        image = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"{index}.png")
    return folder


def tiny_config(folder, run_dir) -> dict:
    model = PRESETS["small"].replace(**TINY_MODEL).for_scale(2)
    return {"model": dataclasses.asdict(model), "data": str(folder),
            "patch_size": 8, "batch_size": 4, "patches_per_image": 8, "lr": 2e-3, "loss": "l1",
            "max_steps": STEPS, "epochs": 100, "checkpoint_every": 4, "run_dir": str(run_dir),
            "precision": "fp32", "device": "cpu", "seed": 3}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


LAUNCHED = """
import json, os, sys
from pathlib import Path
from srlib.tools.distributed import joined
from srlib.train import TrainConfig, train
with joined("cpu") as world:
    history = train(TrainConfig.from_dict(json.loads(sys.argv[1])), progress=False, world=world)
rank = os.environ["RANK"]
Path(sys.argv[2], f"rank{rank}.json").write_text(json.dumps({"rank": int(rank), "loss": history["loss"]}))
"""


def test_two_gloo_processes_match_one_process(image_folder, tmp_path):
    single = train(TrainConfig.from_dict(tiny_config(image_folder, tmp_path / "one")),
                   progress=False)
    script = tmp_path / "launched.py"
    script.write_text(LAUNCHED)
    config = tiny_config(image_folder, tmp_path / "two")
    # torchrun, as a user launches it; 127.0.0.1 so that gloo needs no network.
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
               "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
               str(script), json.dumps(config), str(tmp_path)]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert sorted(report["rank"] for report in reports) == [0, 1]
    for report in reports:
        # Every rank logs the global-batch loss, the same as the single process's.
        np.testing.assert_allclose(report["loss"], single["loss"], rtol=1e-4, atol=1e-6)
    # Rank 0 alone wrote the checkpoint and history, and they hold the same run.
    written = json.loads((tmp_path / "two" / "history.json").read_text())
    np.testing.assert_allclose(written["loss"], single["loss"], rtol=1e-4, atol=1e-6)
    assert written["patches"] == single["patches"] == STEPS * 4
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["model"]
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["model"]
    for name, tensor in one.items():
        torch.testing.assert_close(two[name], tensor, rtol=1e-4, atol=1e-5)


def test_shard_splits_the_global_batch_in_rank_order():
    batch = torch.arange(12).view(6, 2)
    world = distributed.World(rank=1, size=3)
    assert torch.equal(world.shard(batch), batch[2:4])
    with pytest.raises(UsageError, match="does not split evenly across 4 processes"):
        distributed.World(rank=0, size=4).shard(batch)


def test_one_process_without_torchrun_is_not_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.joined("cpu") as world:
        assert world.size == 1 and world.is_main
        assert world.place(torch.device("cpu")) == torch.device("cpu")
        value = torch.tensor(2.5)
        assert world.mean(value) is value
