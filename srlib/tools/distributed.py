"""Data-parallel training across processes (torch.distributed DDP), launched with torchrun.

    torchrun --nproc_per_node=2 -m srlib train --config small            # 2 CPU processes
    torchrun --nproc_per_node=8 -m srlib train --config seed --device cuda
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d \\
             --rdzv_endpoint=HOST:29500 -m srlib train --config seed --device cuda

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address in each process's
environment; `joined` reads them and hands `srlib.train.train` a `World`. The config is the
same as for one process: `batch_size` stays the *global* batch, and each of the N processes
computes `batch_size / N` of it. Every process draws the whole global batch from the same
seeded sampler and keeps its own slice (the role a DistributedSampler plays for a dataset),
and DDP averages the gradients, so N processes take exactly the steps one process would, up
to floating-point summation order. Rank 0 alone writes checkpoints, history and progress.

In a script of your own under torchrun:

    with joined() as world:
        history = train(config, world=world)
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from srlib.errors import UsageError


@dataclass(frozen=True)
class World:
    """This process's rank among `size` processes; the methods `srlib.train.OneProcess` has."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """The device this process computes on: cuda:LOCAL_RANK for CUDA."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's contiguous slice of a global batch (B, ...) -> (B / N, ...).

        Raises:
            UsageError: the global batch does not split evenly across the processes.
        """
        size = batch.shape[0]
        if size % self.size:
            raise UsageError(f"batch size {size} does not split evenly across {self.size} "
                             "processes")
        per_rank = size // self.size
        return batch[self.rank * per_rank:(self.rank + 1) * per_rank]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The average of a scalar tensor over all processes."""
        if self.size == 1:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.size

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """`model` under DDP (itself in a world of one)."""
        if self.size == 1:
            return model
        # channels_last weights of 1x1 convs get NCHW-strided gradients: the same memory.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                       else None)

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.size > 1:
            dist.barrier()


@contextmanager
def joined(device: str = "auto"):
    """The `World` torchrun describes, its process group open for the `with` block.

    Uses a process group the caller made; else starts one from the environment when
    WORLD_SIZE > 1 (NCCL for CUDA, gloo otherwise) and ends it afterwards; else yields a world
    of one process.
    """
    from srlib.hardware import select_device

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            yield World()
            return
        cuda = select_device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(local_rank)  # one GPU per process, set before NCCL starts
        dist.init_process_group(backend="nccl" if cuda else "gloo")
        owns = True
    try:
        yield World(dist.get_rank(), dist.get_world_size(), local_rank)
    finally:
        if owns and dist.is_initialized():
            dist.destroy_process_group()
