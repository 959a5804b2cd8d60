"""Micro-batches from a per-device memory budget: the recipe's global batch, learning rate and steps stay
fixed whatever the hardware, and only how a step is split changes (gradient accumulation, vit.train).

Training memory = what the step keeps for every image until backward (the tensors autograd saves,
measured by running one image through the model with `saved_tensors_hooks`; the same count on CPU and
GPU, with no allocator statistics needed) x the micro-batch, plus the weights, their gradients and the
optimiser's state. `accum_steps_for` picks the fewest accumulation steps whose micro-batch fits.
Allocator overhead and temporary buffers are not in the count, hence the `headroom` factor.
"""
from __future__ import annotations

import torch


def saved_bytes_per_image(model: torch.nn.Module, img_size: int, device: torch.device, forward=None) -> int:
    """Bytes autograd keeps for backward for one image (distinct storages, so views count once).
    `forward(model, x)` returns the loss (default: the sum of the model's outputs)."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor):
        if t.device.type != "meta":
            storage = t.untyped_storage()
            seen[(storage.data_ptr(), t.device)] = storage.nbytes()
        return t

    was_training = model.training
    model.train()
    # two images: BatchNorm in train mode refuses one value per channel (EfficientNet at 32 px)
    x = torch.zeros(2, 3, img_size, img_size, device=device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward(model, x) if forward else model(x).float().sum()
    del out
    model.train(was_training)
    return sum(seen.values()) // 2


def state_bytes(model: torch.nn.Module, optimizer: str) -> int:
    """Weights + gradients + optimiser state (Adam: 2 moments; SGD with momentum: 1), in fp32."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4 * n * (2 + (2 if optimizer == "adam" else 1))


def accum_steps_for(batch_size: int, world: int, budget_bytes: float, per_image: int, fixed: int,
                    headroom: float = 1.5) -> int:
    """The fewest accumulation steps that split this process's share of the batch evenly into
    micro-batches with fixed + headroom x micro x per_image <= budget."""
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} does not split over {world} processes")
    share = batch_size // world
    for accum in range(1, share + 1):
        if share % accum == 0 and fixed + headroom * (share // accum) * per_image <= budget_bytes:
            return accum
    need = (fixed + headroom * per_image) / 2**30
    raise ValueError(f"even a micro-batch of 1 needs ~{need:.2f} GiB ({per_image / 2**20:.1f} MiB saved per image, "
                     f"{fixed / 2**20:.0f} MiB of weights, gradients and optimiser state), over the "
                     f"{budget_bytes / 2**30:.2f} GiB budget: raise device_memory_gb or use more processes")
