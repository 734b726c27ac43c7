"""Which device and number format to compute in.

bf16 autocast pays on a CPU only when it has native bf16 matrix units (AMX or AVX512-BF16):
there, 3x3 convs in channels_last run several times faster than fp32. Without them PyTorch
emulates bf16 and it runs slower than fp32 (measured on a 2-core AMD EPYC with AVX2 only:
a 128-channel 3x3 conv, batch 8 at 64x64, took 0.06 s in fp32 channels_last and 0.62 s in
bf16). So 'auto' asks the hardware instead of assuming.
"""

from __future__ import annotations

import contextlib

import torch

from srlib.errors import UsageError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def select_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda if available, else mps, else cpu; any other name is checked and used."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"device {name!r} asked for, but MPS is not available")
    return device


def cpu_has_fast_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (AMX tiles or AVX512-BF16)."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype for `precision` on `device` (torch.float32 means no autocast)."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast context for `dtype`, or a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def configure_backends(device: torch.device) -> None:
    """Backend switches for speed.

    On CUDA: cuDNN autotuning (training feeds fixed sizes, so the search pays once) and TF32
    matrix products and convolutions on Ampere and newer (fp32 storage, 10-bit-mantissa
    products: the fp32 runs' rounding changes, not their meaning). On a CPU nothing is switched: oneDNN picks its
    kernels itself, and the thread count is the process's (see `srlib.bench` for the
    OMP_WAIT_POLICY setting that matters on a shared machine).
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
