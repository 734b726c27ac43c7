"""The network: shapes at every preset and scale, all 12 blocks alive, the original's collapse."""

import pytest
import torch

from srlib.model import PRESETS, ResidualBlock, SRNet, count_macs, count_parameters, preset_table

TINY = {"feature_width": 8, "channels": 8, "se_reduction": 4}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_outputs_its_scales(name):
    model = SRNet.from_preset(name, **TINY)
    outputs = model(torch.rand(2, 3, 6, 5))
    assert sorted(outputs) == list(model.output_scales)
    for scale, image in outputs.items():
        assert image.shape == (2, 3, 6 * scale, 5 * scale)
    assert sum(stage.num_blocks for stage in model.stages) == 12


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_every_preset_serves_every_scale(name, scale):
    model = SRNet.from_preset(name, scale=scale, **TINY)
    assert scale in model.output_scales
    assert max(model.output_scales) == scale
    assert model(torch.rand(1, 3, 4, 4))[scale].shape == (1, 3, 4 * scale, 4 * scale)
    assert sum(stage.num_blocks for stage in model.stages) == 12


def test_presets_have_the_described_layout():
    seed = SRNet.from_preset("seed")
    assert seed.stage_scales == (8, 4, 2) and seed.output_scales == (2,)
    assert [stage.num_blocks for stage in seed.stages] == [2, 4, 6]
    assert seed.features[0].out_channels == 512 and seed.features[2].out_channels == 128
    pyramid = SRNet.from_preset("pyramid")
    assert pyramid.stage_scales == (2, 4, 8) and pyramid.output_scales == (2, 4, 8)
    assert [stage.num_blocks for stage in pyramid.stages] == [6, 4, 2]


def test_unknown_preset_and_unservable_scale_are_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        SRNet.from_preset("huge")
    with pytest.raises(ValueError, match="scale 3"):
        SRNet.from_preset("pyramid", scale=3)


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
    model = SRNet.from_preset("quick", global_skip=False, **TINY)
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
        model = SRNet.from_preset("seed", tied=tied, **TINY)
        capture(model.stages[2], tied)
        model(x)
    distinct = captured[False]
    assert all(not torch.allclose(distinct[0], other) for other in distinct[1:])
    # What the original code computed: six identical copies in the 2x stage.
    assert all(torch.equal(captured[True][0], other) for other in captured[True][1:])
    tied = SRNet.from_preset("seed", tied=True, **TINY)
    assert sum(len(stage.blocks) for stage in tied.stages) == 3


def test_global_skip_starts_at_bicubic():
    from srlib.resize import imresize

    model = SRNet.from_preset("quick", **TINY)
    x = torch.rand(1, 3, 8, 8)
    outputs = model(x)
    for scale, image in outputs.items():
        torch.testing.assert_close(image, imresize(x, scale))


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = SRNet.from_preset("quick", **TINY)
    x = torch.rand(1, 3, 6, 6)
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.gradient_checkpointing = flag
        sum(image.sum() for image in model(x).values()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_counts_match_closed_forms():
    # One 3x3 conv of 8 -> 8 channels on a 4x4 input: 8*8*9*16 MACs and 8*8*9 + 8 parameters.
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_parameters(conv) == 3 * 8 * 9 + 8
    assert count_macs(conv, lr_size=4) == 3 * 8 * 9 * 16
    rows = {row["preset"]: row for row in preset_table()}
    # ANALYSIS.md: the original spent about 214 GMAC per 64x64 LR patch at the seed sizes.
    assert rows["seed"]["gmacs"] == pytest.approx(214, rel=0.02)
    assert rows["quick"]["gmacs"] < rows["pyramid"]["gmacs"] / 10
