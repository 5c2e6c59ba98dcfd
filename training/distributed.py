"""Data-parallel training under ``torchrun``: the processes of one run, and what each one does.

    torchrun --standalone --nproc-per-node 2 -m training train digit ...                # one machine
    torchrun --nnodes 2 --node-rank R --nproc-per-node 8 \\
             --rdzv-backend c10d --rdzv-endpoint HEAD:29500 -m training train digit ... # several

torchrun starts the processes and tells each its ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
``join`` reads them (a plain ``python -m training`` is a world of one) and connects the processes
(gloo on the CPU, nccl on GPUs, one GPU per process). The model is wrapped in
``DistributedDataParallel``, which averages the gradients of every step over the processes.

One run means one result whatever the number of processes: the options' batch size is the
*global* batch. Every process draws the same shuffled order and the same augmentation from the
run's seed (the whole global batch: augmentation is cheap next to the network), then trains on its
own stride of it (``World.shard``: the share ``DistributedSampler`` would give it), so the
examples, their augmentation, the steps and the learning rates are those of one process. What
still differs with N: dropout masks, and on the CPU the batch-norm statistics, taken per process
over batch / N examples (on GPUs the batch norms are synchronised: ``SyncBatchNorm``, which
PyTorch implements for GPUs only). Only the first process (rank 0) shows progress, writes the
checkpoint, metrics and plots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from model.devices import select_device


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes (rank 0 of 1 when not under torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """The process that reports and writes: rank 0."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's part of a global batch: every ``size``-th example from its rank on."""
        return batch[self.rank :: self.size] if self.size > 1 else batch

    def total(self, *values: float) -> list[float]:
        """The sums of ``values`` over the processes (the same list on every process)."""
        if self.size == 1:
            return list(values)
        summed = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(summed)
        return summed.tolist()

    def gather(self, value: float) -> list[float]:
        """``value`` from every process, in rank order."""
        if self.size == 1:
            return [value]
        out: list[float] = [0.0] * self.size
        dist.all_gather_object(out, value)
        return out

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The model as this process trains it: itself alone, or under DistributedDataParallel."""
        if self.size == 1:
            return model
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DistributedDataParallel(model, device_ids=[device.index])
        return DistributedDataParallel(model)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def join(device: str) -> tuple[World, torch.device]:
    """This process's world and device. Under torchrun, connect to the other processes: nccl with
    one GPU per process (``LOCAL_RANK``) when GPUs are used, gloo otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), select_device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    chosen = select_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", device_id=chosen if chosen.type == "cuda" else None)
    return World(rank, size), chosen


def leave(world: World) -> None:
    """Disconnect from the other processes (after the last collective call)."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def current() -> World:
    """The world as torchrun describes it, without connecting (for code that only needs to know
    whether it is rank 0)."""
    return World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))
