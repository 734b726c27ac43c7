"""`accelerate(model)`: convolutions whose weight gradient takes a faster route on a CPU in
channels_last, swapped into a model with one call.

Why: oneDNN (PyTorch's CPU convolution library) runs the forward pass and the input gradient
of a convolution fast in channels_last (NHWC), but its NHWC *weight* gradient was several times
slower than its NCHW one on the 2-core AVX2 EPYC this was written on. These layers keep oneDNN
for the forward pass and the input gradient and compute the weight gradient themselves, as a
few large matrix products, which BLAS runs near the machine's peak:

* the weight gradient of a convolution is a sum over kernel taps ``(ky, kx)`` of
  ``grad_out^T @ input_shifted(ky, kx)``; for a stride-1 convolution every shifted input is a
  contiguous slice of the zero-padded NHWC input flattened to rows (the tap's offset in the
  flat index is ``ky * padded_width + kx``), so no copy per tap is needed;
* with a stride, or for a transposed convolution, the tap's operand is a strided slice, copied
  once per tap (still cheap next to the product).

Everything else (NCHW inputs, CUDA, autocast, inference, fewer than `MIN_CHANNELS` channels)
is the plain PyTorch layer, and the parameters are the same, so checkpoints do not see the
difference. Whether it pays depends on the CPU: `srlib bench` measures the fast path with and
without it on the machine at hand.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

# Work on at most this many bytes of padded input per matrix product: the weight gradient is
# accumulated over batch chunks, so its scratch memory stays small whatever the batch.
_CHUNK_BYTES = 64 * 2**20


def _pairs(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


# Below this many input or output channels oneDNN's NHWC weight gradient is as fast as the
# matrix products (16-channel layers measured: the products are thin and the copies dominate).
MIN_CHANNELS = 64


def _fast_route(x: Tensor, weight: Tensor) -> bool:
    """Whether to use the layout-aware backward: a CPU NHWC float32 input that needs a grad."""
    return (
        torch.is_grad_enabled()
        and min(weight.shape[0], weight.shape[1]) >= MIN_CHANNELS
        and (x.requires_grad or weight.requires_grad)
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.dim() == 4
        and x.shape[1] > 1
        and x.is_contiguous(memory_format=torch.channels_last)
        and not x.is_contiguous()
        and not torch.is_autocast_enabled("cpu")
    )


def _pad_rows(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Zero-pad (b, H, W, C) in H and W; only the border is zeroed (F.pad fills it all)."""
    batch, height, width, channels = x.shape
    out = x.new_empty(batch, height + top + bottom, width + left + right, channels)
    out[:, :top].zero_()
    out[:, top + height:].zero_()
    out[:, top:top + height, :left].zero_()
    out[:, top:top + height, left + width:].zero_()
    out[:, top:top + height, left:left + width] = x
    return out


def _batch_chunks(batch: int, bytes_per_sample: int) -> list[slice]:
    size = max(1, _CHUNK_BYTES // max(1, bytes_per_sample))
    return [slice(start, min(start + size, batch)) for start in range(0, batch, size)]


def conv_weight_grad(grad: Tensor, x: Tensor, kernel: tuple[int, int],
                     stride: tuple[int, int], padding: tuple[int, int]) -> Tensor:
    """Weight gradient of `F.conv2d(x, w, stride=stride, padding=padding)` (groups 1, dilation 1).

    Args:
        grad: dL/d(output), (B, Co, Ho, Wo) float32, any memory format.
        x: the convolution's input, (B, Ci, H, W) float32.
        kernel, stride, padding: the convolution's (height, width) settings.

    Returns:
        dL/dw, (Co, Ci, kh, kw) float32.
    """
    batch, in_channels, height, width = x.shape
    out_channels, out_height, out_width = grad.shape[1:]
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    padded_height, padded_width = height + 2 * ph, width + 2 * pw
    result = torch.zeros(kh, kw, out_channels, in_channels, dtype=x.dtype)
    row_bytes = padded_height * padded_width * (in_channels + out_channels) * x.element_size()
    for part in _batch_chunks(batch, row_bytes):
        # (b, Ci, H, W) -> (b, H + 2ph, W + 2pw, Ci): NHWC, zero border, one copy.
        padded = _pad_rows(x[part].permute(0, 2, 3, 1), ph, ph, pw, pw)
        grad_rows = grad[part].permute(0, 2, 3, 1)  # (b, Ho, Wo, Co)
        if (sh, sw) == (1, 1) and out_height + kh - 1 == padded_height \
                and out_width + kw - 1 == padded_width:
            # Stride 1: lay the output gradient on the padded grid (zeros where no output
            # pixel sits), so that every tap's input is a contiguous run of the flat rows.
            grid = _pad_rows(grad_rows, 0, kh - 1, 0, kw - 1)  # (b, Hp, Wp, Co)
            flat_x = padded.reshape(-1, in_channels)  # (b*Hp*Wp, Ci)
            flat_grad = grid.reshape(-1, out_channels)
            rows = flat_x.shape[0] - (kh - 1) * padded_width - (kw - 1)
            grad_t = flat_grad[:rows].t()  # (Co, rows)
            for ky in range(kh):
                for kx in range(kw):
                    offset = ky * padded_width + kx
                    result[ky, kx].addmm_(grad_t, flat_x[offset:offset + rows])  # (Co, Ci)
        else:
            grad_t = grad_rows.reshape(-1, out_channels).t()  # (Co, b*Ho*Wo)
            for ky in range(kh):
                for kx in range(kw):
                    # The input pixels tap (ky, kx) saw: rows ky, ky + sh, ... of the padding.
                    taps = padded[:, ky:ky + sh * (out_height - 1) + 1:sh,
                                  kx:kx + sw * (out_width - 1) + 1:sw]  # (b, Ho, Wo, Ci)
                    result[ky, kx].addmm_(grad_t, taps.reshape(-1, in_channels))
    return result.permute(2, 3, 0, 1)  # (kh, kw, Co, Ci) -> (Co, Ci, kh, kw)


def conv_transpose_weight_grad(grad: Tensor, x: Tensor, kernel: tuple[int, int],
                               stride: tuple[int, int], padding: tuple[int, int]) -> Tensor:
    """Weight gradient of `F.conv_transpose2d(x, w, stride=stride, padding=padding)`.

    Input pixel (i, j) spreads through tap (ky, kx) onto output pixel
    (sh * i + ky - ph, sw * j + kx - pw), so the tap's gradient is x^T times the output
    gradient read on that strided grid.

    Args:
        grad: dL/d(output), (B, Co, Ho, Wo) float32.
        x: the layer's input, (B, Ci, H, W) float32.

    Returns:
        dL/dw, (Ci, Co, kh, kw) float32 (ConvTranspose2d's weight layout).
    """
    batch, in_channels, height, width = x.shape
    out_channels = grad.shape[1]
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    result = torch.zeros(kh, kw, in_channels, out_channels, dtype=x.dtype)
    per_sample = grad[0].numel() * 2 * grad.element_size()
    for part in _batch_chunks(batch, per_sample):
        x_t = x[part].permute(0, 2, 3, 1).reshape(-1, in_channels).t()  # (Ci, b*H*W)
        # Pad so that every tap's grid lies inside: rows -ph .. Ho + ph - 1.
        padded = _pad_rows(grad[part].permute(0, 2, 3, 1), ph, ph, pw, pw)  # (b, Hp, Wp, Co)
        for ky in range(kh):
            for kx in range(kw):
                taps = padded[:, ky:ky + sh * (height - 1) + 1:sh,
                              kx:kx + sw * (width - 1) + 1:sw]  # (b, H, W, Co)
                result[ky, kx].addmm_(x_t, taps.reshape(-1, out_channels))
    return result.permute(2, 3, 0, 1)  # (kh, kw, Ci, Co) -> (Ci, Co, kh, kw)


class _Convolution(torch.autograd.Function):
    """oneDNN forward and input gradient, BLAS weight gradient (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, transposed):
        ctx.save_for_backward(x, weight)
        ctx.settings = (stride, padding, transposed, bias is not None)
        if transposed:
            return F.conv_transpose2d(x, weight, bias, stride, padding)
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, transposed, has_bias = ctx.settings
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_input = grad_weight = grad_bias = None
        if need_input:
            bias_sizes = None
            grad_input = torch.ops.aten.convolution_backward(
                grad, x, weight, bias_sizes, list(stride), list(padding), [1, 1], transposed,
                [0, 0], 1, [True, False, False])[0]
        if need_bias and has_bias:
            grad_bias = grad.sum(dim=(0, 2, 3))
        if need_weight:
            kernel = tuple(weight.shape[-2:])
            if transposed:
                grad_weight = conv_transpose_weight_grad(grad, x, kernel, stride, padding)
            else:
                grad_weight = conv_weight_grad(grad, x, kernel, stride, padding)
            # In the weight's own layout, as DDP's gradient buckets expect.
            layout = (torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last)
                      else torch.contiguous_format)
            grad_weight = grad_weight.contiguous(memory_format=layout)
        return grad_input, grad_weight, grad_bias, None, None, None


class Conv2d(nn.Conv2d):
    """`nn.Conv2d` (same parameters and results) with the fast NHWC weight gradient on CPU."""

    def _apply_weight(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if (_fast_route(x, weight) and self.groups == 1 and self.dilation == (1, 1)
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)):
            return _Convolution.apply(x, weight, bias, _pairs(self.stride),
                                      _pairs(self.padding), False)
        return self._conv_forward(x, weight, bias)

    def forward(self, x: Tensor) -> Tensor:
        return self._apply_weight(x, self.weight, self.bias)


class ConvTranspose2d(nn.ConvTranspose2d):
    """`nn.ConvTranspose2d` (same parameters and results) with the fast NHWC weight gradient."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if (output_size is None and _fast_route(x, self.weight) and self.groups == 1
                and self.dilation == (1, 1) and self.output_padding == (0, 0)):
            return _Convolution.apply(x, self.weight, self.bias, _pairs(self.stride),
                                      _pairs(self.padding), True)
        return super().forward(x, output_size)


def accelerate(model: nn.Module) -> nn.Module:
    """Swap every `nn.Conv2d` / `nn.ConvTranspose2d` of `model`, in place, for the versions
    above; the parameters, buffers and state_dict keys stay the same.

    Args:
        model: any module (its own class is left alone unless it is one of the two layers).

    Returns:
        `model`, for chaining: `model = accelerate(SRNet(...))`.
    """
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = Conv2d
        elif type(module) is nn.ConvTranspose2d:
            module.__class__ = ConvTranspose2d
    return model
