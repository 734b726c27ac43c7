"""Data-parallel training across processes (torch.distributed DDP), launched with torchrun.

    torchrun --nproc_per_node=2 -m srlib train --config small            # 2 CPU processes
    torchrun --nproc_per_node=8 -m srlib train --config seed --device cuda
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d \\
             --rdzv_endpoint=HOST:29500 -m srlib train --config seed --device cuda

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address in each process's
environment; `setup` reads them. The config and the command line are the same as for one
process: `batch_size` stays the *global* batch, and each of the N processes computes
`batch_size / N` of it. Every process draws the whole global batch from the same seeded
sampler and keeps its own slice (the role a DistributedSampler plays for a dataset), and DDP
averages the gradients, so N processes take exactly the steps one process would, up to
floating-point summation order. Rank 0 alone writes checkpoints, history and progress.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from srlib.errors import UsageError


@dataclass(frozen=True)
class World:
    """Where this process stands: its rank among `size` processes (1: not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when `setup` created the process group (and must end it)

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> tuple[World, torch.device]:
    """Join the process group torchrun describes, if any.

    Uses an existing process group when the caller made one; else initialises one from the
    environment when WORLD_SIZE > 1 (NCCL for CUDA, gloo for CPU); else returns a world of one.

    Args:
        device: the device `srlib.hardware.select_device` chose.

    Returns:
        (World, the device this process computes on: cuda:LOCAL_RANK for CUDA).
    """
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return World(), device
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            # One GPU per process: the local rank picks it (set before NCCL starts).
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        owns = True
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
    return World(dist.get_rank(), dist.get_world_size(), local_rank, owns), device


def shard(batch: torch.Tensor, world: World) -> torch.Tensor:
    """This process's contiguous slice of a global batch (B, ...) -> (B / N, ...).

    Raises:
        UsageError: the global batch does not split evenly across the processes.
    """
    if not world.enabled:
        return batch
    size = batch.shape[0]
    if size % world.size:
        raise UsageError(f"batch size {size} does not split evenly across {world.size} processes")
    per_rank = size // world.size
    return batch[world.rank * per_rank:(world.rank + 1) * per_rank]


def mean(value: torch.Tensor, world: World) -> torch.Tensor:
    """The average of a scalar tensor over all processes (itself when not distributed)."""
    if not world.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world.size


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """`model` under DDP when there are several processes, else `model` itself."""
    if not world.enabled:
        return model
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    # channels_last weights of 1x1 convs get NCHW-strided gradients: the same memory.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def barrier(world: World) -> None:
    """Wait until every process gets here (no-op when not distributed)."""
    if world.enabled:
        dist.barrier()


def teardown(world: World) -> None:
    """End the process group if `setup` created it."""
    if world.owns_group and dist.is_initialized():
        dist.destroy_process_group()
