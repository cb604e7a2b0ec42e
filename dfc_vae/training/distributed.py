"""Data parallelism under torchrun: the process group, global-batch BatchNorm, and agreed decisions.

One process runs with none of this (world size 1): every function here is then a no-op, so a
one-process run computes exactly what it would without this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class Processes:
    rank: int = 0
    world: int = 1
    made_group: bool = False  # whether `setup` made the process group (and so ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world_size() -> int:
    """Processes torchrun started (1 without torchrun), read before any process group exists."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_gpu() -> torch.device:
    """This process's GPU: LOCAL_RANK among the GPUs it sees. A launcher that gives each rank its own
    GPUs (SLURM's --gpus-per-task=1, CUDA_VISIBLE_DEVICES set per rank) leaves fewer visible than
    LOCAL_RANK counts, so the index wraps around what is visible instead of naming a GPU that is not."""
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % max(torch.cuda.device_count(), 1))


def backend_for(device: torch.device) -> str:
    """NCCL for CUDA tensors, gloo for CPU ones: chosen from the device training resolved, not from
    whether a GPU exists (`--device cpu` on a GPU host trains with gloo)."""
    return "nccl" if device.type == "cuda" else "gloo"


def setup(device: torch.device) -> tuple[Processes, torch.device]:
    """Join torchrun's process group (made here unless the caller made one) and take this process's
    GPU when training on CUDA; returns the processes and the device to train on."""
    world = world_size()
    if world == 1:
        return Processes(), device
    if device.type == "cuda":
        device = local_gpu()
        torch.cuda.set_device(device)
    made = not dist.is_initialized()
    if made:
        dist.init_process_group(backend_for(device), device_id=device if device.type == "cuda" else None)
    return Processes(dist.get_rank(), world, made), device


def teardown(procs: Processes) -> None:
    if procs.world > 1:
        dist.barrier()
        if procs.made_group:  # a process that exits with a live gloo group can abort in its teardown
            dist.destroy_process_group()


def barrier(procs: Processes) -> None:
    if procs.world > 1:
        dist.barrier()


def any_process(flag, procs: Processes, device: torch.device) -> bool:
    """True when `flag` (a bool or a 0-d bool tensor) holds on any process: all of them then take the
    same branch (skip a batch, stop), instead of one stopping while the others wait in a collective.
    With one process, the flag itself (no tensor is made)."""
    if procs.world == 1:
        return bool(flag)
    t = torch.as_tensor(flag, device=device).to(torch.int32).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_processes(t: torch.Tensor, procs: Processes) -> torch.Tensor:
    """`t` summed over all processes, in place (one process: `t` as it is)."""
    if procs.world > 1:
        dist.all_reduce(t)
    return t


class _AllReduceSum(torch.autograd.Function):
    """Sum a tensor over all processes; the gradient of every process's input is the sum of the
    gradients that reach the output in all processes (each process's loss depends on every input)."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are taken over the whole global batch of all processes.

    The CPU (gloo) counterpart of nn.SyncBatchNorm, which DistributedDataParallel accepts on GPUs
    only: per-channel sums and sums of squares are all-reduced (with gradient, so backpropagation
    sees the same global statistics as a one-process run over the global batch).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        c = x.shape[1]
        n = x.numel() // c * dist.get_world_size()
        xf = x.float()
        stats = _AllReduceSum.apply(torch.cat([xf.sum((0, 2, 3)), xf.pow(2).sum((0, 2, 3))]))
        mean = stats[:c] / n
        var = (stats[c:] / n - mean.pow(2)).clamp_min(0)  # biased, as BatchNorm normalizes with
        with torch.no_grad():  # running statistics as nn.BatchNorm2d keeps them (unbiased variance)
            self.num_batches_tracked += 1
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * (n / (n - 1)), self.momentum)
        scale = self.weight * torch.rsqrt(var + self.eps)
        return (xf * scale.view(1, c, 1, 1) + (self.bias - mean * scale).view(1, c, 1, 1)).to(x.dtype)


def global_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d in `module` (in place) for one with global-batch statistics:
    nn.SyncBatchNorm on CUDA, GlobalBatchNorm on the CPU."""
    if next(module.parameters()).is_cuda:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _swap_batchnorm(module)


def _swap_batchnorm(module: nn.Module) -> nn.Module:
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            bn = GlobalBatchNorm(child.num_features, child.eps, child.momentum)
            bn.weight, bn.bias = child.weight, child.bias  # the same parameters and buffers
            bn.running_mean, bn.running_var, bn.num_batches_tracked = (
                child.running_mean, child.running_var, child.num_batches_tracked)
            setattr(module, name, bn)
        else:
            _swap_batchnorm(child)
    return module


def data_parallel(step_module: nn.Module, procs: Processes, device: torch.device) -> nn.Module:
    """BatchNorm over the global batch, gradients averaged over processes (one process: as is)."""
    if procs.world == 1:
        return step_module
    return nn.parallel.DistributedDataParallel(
        global_batchnorm(step_module), device_ids=[device.index] if device.type == "cuda" else None)
