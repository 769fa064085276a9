"""Process-group set-up for torchrun (DistributedDataParallel) and plain single-process runs alike."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from pipeline.utils.device import use_cuda


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and metrics."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> Context:
    """Join the process group torchrun describes in the environment (if any) and pick this process's device.

    ``device`` is ``auto`` (CUDA when there is one), ``cpu`` or ``cuda``. Distributed CUDA runs use
    NCCL with one GPU per process (``LOCAL_RANK``); CPU runs use gloo.
    """
    cuda = use_cuda(device, "train")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Context(rank, world_size, torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


def teardown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gather(context: Context, value: Any) -> list[Any]:
    """Every process's ``value``, in rank order (a one-element list without a process group)."""
    if not context.distributed:
        return [value]
    values: list[Any] = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values


def any_true(context: Context, flag: bool) -> bool:
    """Whether ``flag`` holds on any process, so that all of them stop together."""
    if not context.distributed:
        return flag
    tensor = torch.tensor([int(flag)], device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def barrier(context: Context) -> None:
    if context.distributed:
        dist.barrier()
