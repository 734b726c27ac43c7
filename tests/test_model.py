"""The network: shapes at every preset and scale, all 12 blocks alive, the original's collapse."""

from pathlib import Path

import pytest
import torch

from srlib.errors import UsageError
from srlib.model import (
    PRESETS,
    ResidualBlock,
    build_model,
    count_parameters,
    preset_from_config,
)

TINY = {"feature_width": 8, "channels": 8, "se_reduction": 4}


def tiny(name: str, scale: int | None = None, **changes):
    preset = PRESETS[name].replace(**{**TINY, **changes})
    return build_model(preset.for_scale(scale) if scale else preset)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_outputs_its_scales(name):
    model = tiny(name)
    outputs = model(torch.rand(2, 3, 6, 5))
    assert sorted(outputs) == list(model.output_scales)
    for scale, image in outputs.items():
        assert image.shape == (2, 3, 6 * scale, 5 * scale)
    assert sum(stage.num_blocks for stage in model.stages) == 12


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_every_preset_serves_every_scale(name, scale):
    model = tiny(name, scale)
    assert scale in model.output_scales
    assert max(model.output_scales) == scale
    assert model(torch.rand(1, 3, 4, 4))[scale].shape == (1, 3, 4 * scale, 4 * scale)
    assert sum(stage.num_blocks for stage in model.stages) == 12


def test_presets_have_the_described_layout():
    seed = build_model(PRESETS["seed"])
    assert seed.stage_scales == (8, 4, 2) and seed.output_scales == (2,)
    assert [stage.num_blocks for stage in seed.stages] == [2, 4, 6]
    assert seed.features[0].out_channels == 512 and seed.features[2].out_channels == 128
    pyramid = build_model(PRESETS["pyramid"])
    assert pyramid.stage_scales == (2, 4, 8) and pyramid.output_scales == (2, 4, 8)
    assert [stage.num_blocks for stage in pyramid.stages] == [6, 4, 2]


def test_unservable_scales_are_refused():
    with pytest.raises(UsageError, match="scale 3"):
        PRESETS["pyramid"].for_scale(3)
    with pytest.raises(UsageError, match="scale 16"):
        PRESETS["pyramid"].for_scale(16)


def test_residual_block_flows():
    block = ResidualBlock(8, 4, se_reduction=4)
    x = torch.rand(2, 8, 5, 6)
    upsampled, residual = block(x)
    assert upsampled.shape == (2, 8, 20, 24)
    assert residual.shape == x.shape
    # The back-projection flow: residual = (x - down(U)) + attention(refine(x - down(U))).
    back_projected = x - block.down(upsampled)
    expected = back_projected + block.attention(block.refine(back_projected))
    torch.testing.assert_close(residual, expected)


def test_gradients_reach_all_twelve_distinct_blocks():
    torch.manual_seed(0)
    # Without the global skip: its zero-initialised heads pass no gradient at step 0.
    model = tiny("small", global_skip=False)
    outputs = model(torch.rand(2, 3, 6, 6))
    sum(image.square().mean() for image in outputs.values()).backward()
    blocks = [block for stage in model.stages for block in stage.blocks]
    assert len(blocks) == 12
    gradients = [torch.cat([p.grad.flatten() for p in block.parameters()]) for block in blocks]
    for gradient in gradients:
        assert gradient.abs().sum() > 0
    for i in range(12):
        for j in range(i + 1, 12):
            if gradients[i].shape == gradients[j].shape:  # blocks of the same stage
                assert not torch.allclose(gradients[i], gradients[j])


def test_chained_blocks_give_distinct_maps_and_tied_blocks_collapse():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 6, 6)
    captured = {}

    def capture(stage, name):
        def hook(module, inputs, output):
            captured[name] = inputs[0].chunk(stage.num_blocks, dim=1)
        stage.compress.register_forward_hook(hook)

    for tied in (False, True):
        model = tiny("seed", tied=tied)
        capture(model.stages[2], tied)
        model(x)
    distinct = captured[False]
    assert all(not torch.allclose(distinct[0], other) for other in distinct[1:])
    # What the original code computed: six identical copies in the 2x stage.
    assert all(torch.equal(captured[True][0], other) for other in captured[True][1:])
    tied = tiny("seed", tied=True)
    assert sum(len(stage.blocks) for stage in tied.stages) == 3


def test_global_skip_starts_at_bicubic():
    from srlib.resize import imresize

    model = tiny("small")
    x = torch.rand(1, 3, 8, 8)
    outputs = model(x)
    for scale, image in outputs.items():
        torch.testing.assert_close(image, imresize(x, scale))


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = tiny("small", global_skip=False)
    x = torch.rand(1, 3, 6, 6)
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.set_gradient_checkpointing(flag)
        sum(image.sum() for image in model(x).values()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def chapter_count_macs():
    """The MAC counter chapter 2 writes out (its cell tagged `count-macs`)."""
    import jupytext

    chapter = Path(__file__).resolve().parents[1] / "notebooks" / "02_architecture.md"
    namespace = {"torch": torch}
    for cell in jupytext.read(chapter).cells:
        if "count-macs" in cell.metadata.get("tags", []):
            exec(compile(cell.source, str(chapter), "exec"), namespace)  # noqa: S102
    return namespace["count_macs"]


def test_counts_match_closed_forms():
    count_macs = chapter_count_macs()
    # One 3x3 conv of 3 -> 8 channels on a 4x4 input: 3*8*9*16 MACs and 3*8*9 + 8 parameters.
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_parameters(conv) == 3 * 8 * 9 + 8
    assert count_macs(conv, lr_size=4) == 3 * 8 * 9 * 16
    gmacs = {name: count_macs(build_model(PRESETS[name]).to("meta"), 64) / 1e9
             for name in ("seed", "small", "pyramid")}
    # ANALYSIS.md: the original spent about 214 GMAC per 64x64 LR patch at the seed sizes.
    assert gmacs["seed"] == pytest.approx(214, rel=0.02)
    assert gmacs["small"] < gmacs["pyramid"] / 10


def test_design_switches_change_the_block():
    x = torch.rand(1, 8, 5, 5)
    plain = ResidualBlock(8, 2, se_reduction=0, back_projection=False)
    assert plain.down is None and plain.attention is None
    upsampled, residual = plain(x)
    # Without back-projection the block hands on X (refined), not X - down(U).
    torch.testing.assert_close(residual, x + plain.refine(x))
    assert upsampled.shape == (1, 8, 10, 10)
    model = tiny("small", se_reduction=0, back_projection=False)
    assert model(torch.rand(1, 3, 4, 4))[8].shape == (1, 3, 32, 32)


def test_legacy_configs_rebuild_the_network_they_trained():
    legacy = {"preset": "quick", "scale": 2, "model_options": {"channels": 8}}
    preset = preset_from_config(legacy)
    assert preset == PRESETS["small"].replace(channels=8, leaky_head=False).for_scale(2)
    assert preset_from_config({"model": {**preset.__dict__, "stage_scales": [2]}}) == preset
    with pytest.raises(UsageError, match="not a network description"):
        preset_from_config({"preset": "huge"})


def test_leaky_heads_keep_learning_where_relu_heads_stall():
    """The stall: with the heads' last conv at zero, Adam switches ReLU heads off for good.

    L1 on smooth images, 80 steps at lr 1e-3 from the same start: the ReLU head has no hidden
    unit left that fires anywhere and its output stays at bicubic; the LeakyReLU head keeps
    most units alive and moves away from bicubic.
    """
    from srlib.losses import l1, pyramid_loss
    from srlib.resize import degrade, imresize

    torch.manual_seed(0)
    hr = torch.rand(1, 3, 8, 8).repeat_interleave(8, -1).repeat_interleave(8, -2)  # (1, 3, 64, 64)
    hr = torch.nn.functional.avg_pool2d(hr, 9, stride=1, padding=4)
    results = {}
    for leaky in (False, True):
        torch.manual_seed(0)
        model = tiny("small", 2, channels=16, feature_width=16, leaky_head=leaky)
        head = model.to_image["2"].body
        alive = {}

        def record(module, inputs, output, alive=alive):
            # A hidden unit is alive when it fires somewhere in the batch.
            alive["fraction"] = (output > 0).flatten(2).any(-1).float().mean().item()

        head[1].register_forward_hook(record)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        generator = torch.Generator().manual_seed(0)
        for _ in range(80):
            top, left = torch.randint(0, 33, (2,), generator=generator).tolist()
            target = hr[..., top:top + 32, left:left + 32]
            loss = pyramid_loss(l1, model(degrade(target, 2)), {2: target})
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        x = degrade(hr, 2)
        with torch.no_grad():
            moved = (model(x)[2] - imresize(x, 2)).abs().max().item()
        results[leaky] = (alive["fraction"], moved)
    assert results[True][0] >= 0.5, results
    assert results[True][1] > 1 / 255, results
    assert results[False][0] < results[True][0], results
