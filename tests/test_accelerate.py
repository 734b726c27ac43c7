"""accelerate(model): PyTorch's numbers, with the weight gradient done by BLAS."""

import pytest
import torch
from torch import nn

from srlib.tools.accelerate import MIN_CHANNELS, Conv2d, ConvTranspose2d, accelerate

CHANNELS = MIN_CHANNELS  # the smallest width that takes the fast route

CASES = [
    (Conv2d, nn.Conv2d, {"kernel_size": 3, "padding": 1}),
    (Conv2d, nn.Conv2d, {"kernel_size": 3, "stride": 2, "padding": 1}),
    (Conv2d, nn.Conv2d, {"kernel_size": 3, "stride": 8, "padding": 1}),
    (Conv2d, nn.Conv2d, {"kernel_size": 1}),
    (ConvTranspose2d, nn.ConvTranspose2d, {"kernel_size": 4, "stride": 2, "padding": 1}),
    (ConvTranspose2d, nn.ConvTranspose2d, {"kernel_size": 10, "stride": 8, "padding": 1}),
]


@pytest.mark.parametrize(("fast_class", "plain_class", "settings"), CASES)
@pytest.mark.parametrize("size", [(9, 9), (10, 7)])
def test_channels_last_route_matches_pytorch(fast_class, plain_class, settings, size):
    torch.manual_seed(0)
    fast = fast_class(CHANNELS, CHANNELS + 3, **settings)
    plain = plain_class(CHANNELS, CHANNELS + 3, **settings)
    plain.load_state_dict(fast.state_dict())
    fast = fast.to(memory_format=torch.channels_last)
    x = torch.randn(2, CHANNELS, *size)
    x_fast = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    x_plain = x.clone().requires_grad_()
    y_fast, y_plain = fast(x_fast), plain(x_plain)
    assert type(y_fast.grad_fn).__name__ == "_ConvolutionBackward"  # the fast route ran
    grad = torch.randn_like(y_plain)
    y_fast.backward(grad)
    y_plain.backward(grad)
    torch.testing.assert_close(y_fast, y_plain, rtol=1e-4, atol=1e-4)
    for ours, theirs in ((x_fast.grad, x_plain.grad), (fast.weight.grad, plain.weight.grad),
                         (fast.bias.grad, plain.bias.grad)):
        scale = theirs.abs().max()
        torch.testing.assert_close(ours / scale, theirs / scale, rtol=0, atol=2e-5)


def test_other_cases_take_pytorchs_own_route():
    conv = Conv2d(CHANNELS, CHANNELS, 3, padding=1)
    x = torch.randn(1, CHANNELS, 6, 6)
    assert type(conv(x).grad_fn).__name__ != "_ConvolutionBackward"  # NCHW
    channels_last = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert conv(channels_last).grad_fn is None  # inference
    narrow = Conv2d(8, 8, 3, padding=1)  # too few channels to pay
    narrow_input = torch.randn(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    assert type(narrow(narrow_input).grad_fn).__name__ != "_ConvolutionBackward"


def test_weight_gradient_is_accumulated_over_batch_chunks(monkeypatch):
    from srlib.tools import accelerate as layers

    torch.manual_seed(0)
    x = torch.randn(5, CHANNELS, 8, 8).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(5, CHANNELS, 8, 8).contiguous(memory_format=torch.channels_last)
    whole = layers.conv_weight_grad(grad, x, (3, 3), (1, 1), (1, 1))
    monkeypatch.setattr(layers, "_CHUNK_BYTES", 1)  # one sample per chunk
    chunked = layers.conv_weight_grad(grad, x, (3, 3), (1, 1), (1, 1))
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-4)


def test_accelerate_swaps_layers_in_place_keeping_the_state_dict():
    from srlib.model import PRESETS, build_model

    torch.manual_seed(0)
    model = build_model(PRESETS["small"])
    before = {key: value.clone() for key, value in model.state_dict().items()}
    assert accelerate(model) is model
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert convs and all(type(m) in (Conv2d, ConvTranspose2d) for m in convs)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)
    x = torch.rand(1, 3, 8, 8)
    reference = build_model(PRESETS["small"])
    reference.load_state_dict(before)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[2], reference(x)[2])
