"""Which device and number format to compute in.

bf16 autocast pays on a CPU only with native bf16 units (AMX or AVX512-BF16); elsewhere it is
emulated, several times slower than fp32 (README, "Performance"): 'auto' asks the hardware.
"""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

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


def cpu_name() -> str:
    """The CPU's model name (e.g. 'AMD EPYC 9R14'), as /proc/cpuinfo or the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_features() -> list[str]:
    """The vector and matrix extensions this CPU has that matter for speed here."""
    found = {"avx2": torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512"),
             "avx512": torch.backends.cpu.get_cpu_capability() == "AVX512",
             "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
             "amx": bool(torch.cpu._is_amx_tile_supported())}
    return [name for name, present in found.items() if present]


def describe_hardware(device: torch.device, dtype: torch.dtype = torch.float32) -> dict:
    """What a measurement ran on, for results files: device, CPU model, threads, precision."""
    description = {"device": str(device), "cpu": cpu_name(), "cpu_features": cpu_features(),
                   "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                   "precision": str(dtype).replace("torch.", ""), "torch": str(torch.__version__)}
    if device.type == "cuda":
        description["gpu"] = torch.cuda.get_device_name(device)
    return description
