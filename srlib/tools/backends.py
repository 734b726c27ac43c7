"""Process-wide speed switches the `srlib` command applies; the arithmetic stays as it is.

Kept apart from the core (issue "thin srlib"): a chapter computes the same numbers without
them. `srlib upscale`, `srlib train`, the bench and the LapSRN timing call `configure_backends`.
"""

from __future__ import annotations

import ctypes

import torch


def configure_backends(device: torch.device) -> None:
    """Process-wide switches for speed that leave the arithmetic as it is.

    CUDA: cuDNN autotuning (fixed sizes: the search pays once); TF32 stays off. CPU: glibc
    keeps freed blocks up to 1 GiB for reuse, where by default every block over 32 MiB is
    mapped afresh and each large activation pays a page fault per 4 KiB page.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    elif device.type == "cpu":
        _keep_freed_memory(1 << 30)


def _keep_freed_memory(limit: int) -> None:
    # mallopt(M_MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD); glibc only.
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, limit)
        libc.mallopt(-1, 2 * limit)
    except (OSError, AttributeError):
        pass
