"""Tiled inference: the same image as untiled inference, in bounded memory."""

import itertools

import pytest
import torch

from srlib.errors import UsageError
from srlib.infer import _cores, _positions, image_means, upscale
from srlib.model import SRNet

TINY = {"feature_width": 8, "channels": 8, "se_reduction": 4}


def detailed_model(**overrides) -> SRNet:
    """The quick topology at tiny widths whose heads add detail to the bicubic skip (a
    freshly built one starts at exactly bicubic, which tiles trivially)."""
    torch.manual_seed(0)
    model = SRNet.from_preset("quick", **{**TINY, **overrides})
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


def test_positions_cover_the_image_and_cores_partition_it():
    for length, tile, overlap in ((100, 40, 8), (40, 40, 8), (41, 40, 8), (97, 32, 15)):
        starts = _positions(length, tile, overlap)
        assert starts[0] == 0 and min(starts[-1] + tile, length) == length
        for before, after in itertools.pairwise(starts):
            assert after - before <= tile - overlap  # neighbours share at least `overlap`
        cores = _cores(starts, tile, length)
        assert cores[0][0] == 0 and cores[-1][1] == length
        for (_, end), (begin, _) in itertools.pairwise(cores):
            assert end == begin
        for start, (begin, end) in zip(starts, cores):
            assert start <= begin < end <= start + tile


@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_output_is_within_one_level_of_untiled(scale):
    model = detailed_model()
    lr = smooth_image(70, 53)
    whole = upscale(model, lr, scale)
    tiled = upscale(model, lr, scale, tile=32, overlap=12)
    assert tiled.shape == whole.shape == (1, 3, scale * 70, scale * 53)
    assert (tiled - whole).abs().max() <= 1 / 255


def test_image_statistics_gate_every_tile_alike():
    model = detailed_model()
    lr = smooth_image(64, 64)
    lr[..., :, :32] *= 0.3  # tiles with very different means
    layers = [m for m in model.modules() if hasattr(m, "image_means")]
    seen = []

    def record(module, inputs, output):
        if module.image_means is not None:  # set by the tiled pass, not by the first one
            seen.append(module.image_means.clone())

    hooks = [layer.register_forward_hook(record) for layer in layers]
    whole = upscale(model, lr, 2)
    assert not seen  # untiled: nothing set
    shared = upscale(model, lr, 2, tile=32, overlap=12, image_statistics=True)
    for hook in hooks:
        hook.remove()
    calls = len(seen) // 9  # 3 x 3 tiles, the same SE calls in each
    assert calls > 0 and len(seen) == 9 * calls
    for tile in range(1, 9):
        for call in range(calls):
            assert torch.equal(seen[tile * calls + call], seen[call])
    assert (shared - whole).abs().max() <= 1 / 255
    assert all(layer.image_means is None for layer in layers)


def test_image_means_equal_the_whole_images_for_the_first_layer():
    # The first SE layer's input depends only on pixels near it, so its tile-gathered mean is
    # the whole image's up to the receptive field at the core boundaries.
    model = detailed_model()
    lr = smooth_image(48, 48)
    captured = []
    first = next(m for m in model.modules() if hasattr(m, "image_means"))
    hook = first.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]))
    with torch.no_grad():
        model.residual_flow(lr)
    hook.remove()
    means = image_means(model, lr, tile=32, overlap=12)
    torch.testing.assert_close(means[0], captured[0].mean(dim=(2, 3)), rtol=0.02, atol=1e-3)
    assert all(mean.shape == (1, 8) for mean in means)
    assert all(getattr(m, "image_means", None) is None for m in model.modules())


def test_overlap_of_half_a_tile_is_refused():
    with pytest.raises(UsageError, match="overlap 16 must be under half the tile side 32"):
        upscale(detailed_model(), torch.rand(1, 3, 40, 40), 2, tile=32, overlap=16)
