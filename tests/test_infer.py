"""Tiled inference: the same image as untiled inference, in bounded memory."""

import itertools

import pytest
import torch

from srlib.errors import UsageError
from srlib.infer import _positions, as_upscaler, upscale
from srlib.model import PRESETS, SRNet, build_model

TINY = {"feature_width": 8, "channels": 8, "se_reduction": 4}


def detailed_model(**overrides) -> SRNet:
    """The quick topology at tiny widths whose heads add detail to the bicubic skip (a
    freshly built one starts at exactly bicubic, which tiles trivially)."""
    torch.manual_seed(0)
    model = build_model(PRESETS["small"].replace(**{**TINY, **overrides}))
    for head in model.to_image.values():
        head.body[-1].reset_parameters()
    return model.eval()


def smooth_image(height: int, width: int) -> torch.Tensor:
    """(1, 3, h, w) in [0, 1]: gradients and a texture patch, like a photograph's mix."""
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    torch.manual_seed(1)
    channels = [0.5 + 0.3 * torch.sin(7 * x + 5 * y * (c + 1)) for c in range(3)]
    image = torch.stack(channels)[None]
    image[..., height // 3:height // 2, width // 4:width // 2] += 0.1 * torch.rand(
        3, height // 2 - height // 3, width // 2 - width // 4)
    return image.clamp(0, 1)


def test_positions_cover_the_image():
    for length, tile, overlap in ((100, 40, 8), (40, 40, 8), (41, 40, 8), (97, 32, 15)):
        starts = _positions(length, tile, overlap)
        assert starts[0] == 0 and min(starts[-1] + tile, length) == length
        for before, after in itertools.pairwise(starts):
            assert after - before <= tile - overlap  # neighbours share at least `overlap`


@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_output_is_within_one_level_of_untiled(scale):
    model = detailed_model()
    lr = smooth_image(70, 53)
    whole = upscale(model, lr, scale)
    tiled = upscale(model, lr, scale, tile=32, overlap=12)
    assert tiled.shape == whole.shape == (1, 3, scale * 70, scale * 53)
    assert (tiled - whole).abs().max() <= 1 / 255


def test_as_upscaler_returns_cpu_images_the_evaluation_can_score():
    model = detailed_model()
    lr_image = smooth_image(20, 18)
    output = as_upscaler(model, tile=16, overlap=4)(lr_image, 4)
    assert output.device.type == "cpu" and output.shape == (1, 3, 80, 72)
    torch.testing.assert_close(output, upscale(model, lr_image, 4, tile=16, overlap=4))


def test_overlap_of_half_a_tile_is_refused():
    with pytest.raises(UsageError, match="overlap 16 must be under half the tile side 32"):
        upscale(detailed_model(), torch.rand(1, 3, 40, 40), 2, tile=32, overlap=16)
