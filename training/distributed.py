"""Data-parallel training under ``torchrun``: the processes of one run, and what each one does.

    torchrun --standalone --nproc-per-node 2 -m training train digit ...                # one machine
    torchrun --nnodes 2 --node-rank R --nproc-per-node 8 \\
             --rdzv-backend c10d --rdzv-endpoint HEAD:29500 -m training train digit ... # several

torchrun starts the processes and tells each its ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
``join`` reads them (a plain ``python -m training`` is a world of one) and connects the processes
(gloo on the CPU, nccl on GPUs, one GPU per process). The model is wrapped in
``DistributedDataParallel``, which averages the gradients of every step over the processes.

One run means one result whatever the number of processes (up to floating-point rounding): the
options' batch size is the *global* batch, and ``World.wrap`` makes each process compute what
its share of one process's computation would be:

- every process draws the same shuffled order and the same augmentation from the run's seed
  (of the whole global batch: augmentation is cheap next to the network), then trains on its
  own stride of it (``World.shard``: the share ``DistributedSampler`` would give it);
- the loss is scaled so that DDP's average of the processes' gradients is the gradient of the
  global batch's mean loss, however the batch divides (``World.mean_loss``);
- batch norm takes its statistics over the global batch (``SyncBatchNorm`` on GPUs; on the CPU,
  for which PyTorch has none, ``GlobalBatchNorm`` below);
- dropout draws the global batch's mask from the shared random stream, as one process would,
  and applies its stride of it (``GlobalDropout``).

On GPUs, CUDA's fused dropout consumes the random stream differently from ``bernoulli_``, so a
single GPU process draws its dropout with ``GlobalDropout`` too. That GPU path has not been run
here (no GPU); the CPU path is tested against a single process.

Only the first process (rank 0) shows progress, writes the checkpoint, metrics and plots.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as collectives
import torch.nn.functional as F
from torch import nn
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

    def mean_loss(self, summed: torch.Tensor, global_count: int) -> torch.Tensor:
        """The loss to back-propagate from this process's summed loss: DDP averages the
        processes' gradients, so each contributes its sum x processes / the global count."""
        return summed * self.size / global_count

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The model as this process trains it: itself alone; or, in a world of several, with
        batch norm and dropout working over the global batch (its modules replaced in place,
        weights unchanged) and under DistributedDataParallel."""
        if self.size == 1:
            if device.type == "cuda":  # CUDA's own dropout draws from the stream unlike bernoulli_
                _replace(model, self, cpu_batch_norm=False)
            return model
        if device.type == "cuda":
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            _replace(model, self, cpu_batch_norm=False)
            return DistributedDataParallel(model, device_ids=[device.index])
        _replace(model, self, cpu_batch_norm=True)
        return DistributedDataParallel(model)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


class GlobalBatchNorm(nn.Module):
    """Batch norm (1d or 2d) whose training statistics are those of the global batch: each
    process's sums are added over the processes (gradients flow through the sum), as PyTorch's
    ``SyncBatchNorm`` does on GPUs. Same parameters and buffers as the module it replaces."""

    def __init__(self, norm: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.eps, self.momentum = norm.eps, norm.momentum
        self.weight, self.bias = norm.weight, norm.bias
        self.register_buffer("running_mean", norm.running_mean)
        self.register_buffer("running_var", norm.running_var)
        self.register_buffer("num_batches_tracked", norm.num_batches_tracked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        dims = [d for d in range(x.dim()) if d != 1]
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype)
        sums = collectives.all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]), "sum", dist.group.WORLD)
        channels = x.shape[1]
        n = sums[-1]
        mean = sums[:channels] / n
        var = sums[channels : 2 * channels] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.mul_(1 - self.momentum).add_(mean.detach(), alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(var.detach() * n / (n - 1), alpha=self.momentum)
        shape = [1, channels] + [1] * (x.dim() - 2)
        scale = self.weight / torch.sqrt(var + self.eps)
        return (x - mean.view(shape)) * scale.view(shape) + self.bias.view(shape)


class GlobalDropout(nn.Module):
    """Dropout whose mask is drawn for the global batch, from the random stream every process
    shares (the same seed, the same draws), and applied by stride: the mask one process would
    have drawn. It draws as ``F.dropout`` does on the CPU (``empty_like(x).bernoulli_(1 - p)``,
    in the input's memory layout)."""

    def __init__(self, p: float, world: World) -> None:
        super().__init__()
        self.p, self.world = p, world

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        global_count = int(self.world.total(float(x.shape[0]))[0])
        layout = torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) \
            and not x.is_contiguous() else torch.contiguous_format
        noise = torch.empty((global_count, *x.shape[1:]), dtype=x.dtype, device=x.device, memory_format=layout)
        noise.bernoulli_(1 - self.p).div_(1 - self.p)
        return x * self.world.shard(noise)


def _replace(module: nn.Module, world: World, cpu_batch_norm: bool) -> None:
    for name, child in module.named_children():
        if cpu_batch_norm and isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            setattr(module, name, GlobalBatchNorm(child))
        elif type(child) is nn.Dropout:
            setattr(module, name, GlobalDropout(child.p, world))
        else:
            _replace(child, world, cpu_batch_norm)


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
