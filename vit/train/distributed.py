"""The processes a run spans (one, or torchrun's) and their device.

Data parallelism keeps the single process's update: every process takes its slice of each
micro-batch and DDP averages the gradients (tests/test_distributed.py).
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch


@dataclass
class Dist:
    """The processes a run spans: one, unless started by torchrun (which sets WORLD_SIZE, RANK, ...)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:  # rank 0 alone logs, evaluates and writes files
        return self.rank == 0


def init() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not torch.distributed.is_initialized():  # once per process: vit.train.finetune trains many runs in one
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(torch.distributed.destroy_process_group)
    return Dist(rank=torch.distributed.get_rank(), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def device(dist: Dist) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(dist.local_rank)
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def wrap(module: torch.nn.Module, dist: Dist, dev: torch.device) -> torch.nn.Module:
    """What a training step calls: the module itself, or under torchrun DDP's wrapper around it."""
    if dist.world == 1:
        return module
    ids = [dist.local_rank] if dev.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def _collective_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def rank0_int(dist: Dist, value: int) -> int:
    """Rank 0's `value` on every rank, so that all processes take the same branch (stop at the same step)."""
    if dist.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_collective_device())
    torch.distributed.broadcast(t, 0)
    return int(t.item())


def any_rank(dist: Dist, flag: bool) -> bool:
    """Whether `flag` holds on any rank, known to every rank."""
    if dist.world == 1:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64, device=_collective_device())
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def rank0_value(dist: Dist, value):
    """Rank 0's `value` (any picklable object) on every rank."""
    if dist.world == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        torch.distributed.barrier()
