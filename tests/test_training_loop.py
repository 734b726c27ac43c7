"""The training loop written out in chapter 3 computes what `srlib.train.train` computes.

The chapter's cells tagged `imports` and `training-loop` are read from the chapter source
(jupytext), executed, and the loop's first losses compared with the library's for the same
config and seed: fp32, one thread, tiny patches and batches, the embedded images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from srlib.train import preset_config, train

CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "03_training.md"
STEPS = 5


def chapter_cells(tag: str) -> list[str]:
    import jupytext

    notebook = jupytext.read(CHAPTER)
    return [cell.source for cell in notebook.cells
            if cell.cell_type == "code" and tag in cell.metadata.get("tags", [])]


@pytest.fixture(scope="module")
def train_loop():
    namespace: dict = {}
    sources = chapter_cells("imports") + chapter_cells("training-loop")
    assert len(chapter_cells("training-loop")) == 1, "expected one cell tagged training-loop"
    # The imports cell reads parameters the parameters cell defines.
    for source in chapter_cells("parameters") + sources:
        exec(compile(source, str(CHAPTER), "exec"), namespace)  # noqa: S102 (our chapter)
    return namespace["train_loop"]


@pytest.fixture()
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("changes", [
    {"loss": "charbonnier", "schedule": "cosine", "warmup_steps": 2},
    {"loss": "0.84*dssim+0.16*l1", "schedule": "step", "seed": 3},
], ids=["charbonnier-cosine", "dssim+l1-step"])
def test_chapter_loop_matches_library(train_loop, one_thread, tmp_path, changes):
    config = preset_config("small", scale=2, data="default", patch_size=12, batch_size=2,
                           max_steps=STEPS, precision="fp32", channels_last=False,
                           device="cpu", run_dir=str(tmp_path / "run"), **changes)
    library = train(config, resume=False, progress=False)
    model, history = train_loop(config, STEPS)
    np.testing.assert_allclose(history["loss"], library["loss"], rtol=1e-5)
    np.testing.assert_allclose(history["lr"], library["lr"], rtol=1e-12)
    assert len(history["bicubic_loss"]) == STEPS
    assert not model.training


def test_loop_starts_at_bicubic(train_loop, one_thread):
    # Before the first step the network is bicubic, so the first loss is bicubic's (the
    # chapter's "loss minus bicubic" curve starts at zero).
    config = preset_config("small", scale=2, data="default", patch_size=12, batch_size=2,
                           precision="fp32", channels_last=False, device="cpu")
    _, history = train_loop(config, 1)
    assert history["loss"][0] == pytest.approx(history["bicubic_loss"][0], rel=1e-5)
