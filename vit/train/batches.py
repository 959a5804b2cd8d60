"""Each step's micro-batches for this process: the examples a single process would take for its
slices, so that processes x accumulation steps give the full batch's update. Batches are a pure
function of (seed, step), which is what lets a resumed run continue unchanged: a DataLoader over step
numbers (the sharded store's path) gives the same batches in worker processes."""
from __future__ import annotations

import concurrent.futures
import os
import signal
from dataclasses import dataclass, field

from vit import data
from vit.train.config import Config
from vit.train.distributed import Dist


def slices(micro: int, accum_steps: int, dist: Dist) -> list[slice]:
    """This process's slice of each micro-batch of the global batch."""
    return [slice((a * dist.world + dist.rank) * micro, (a * dist.world + dist.rank + 1) * micro)
            for a in range(accum_steps)]


@dataclass
class Feed:
    """The micro-batches of step after step. From arrays (in memory or memory-mapped), the next step's are
    read and augmented in a thread while the current step trains (torch's kernels release the GIL): ~5 %
    more images/s for a ViT on 2 cores (docs/cpu_performance.md, data path). Not with RandAugment, whose
    torchvision ops draw from torch's global generator, which the step's dropout draws from too. A
    sharded store's images are decoded and cropped in DataLoader worker processes (`workers`, each a step
    at a time, up to two steps ahead each)."""
    x: object                      # the training images: a tensor, data.Streamed or shards.ShardImages
    y: object
    cfg: Config
    num_classes: int
    parts: list
    total: int                     # steps in the run: nothing is read ahead past the last
    workers: int = 0               # DataLoader processes for a sharded store (0 = default_workers())
    uint8: bool = False            # arrays' batches stay uint8, for the training device to normalise (a GPU:
                                   # a quarter of the bytes to copy, and no float conversion on the CPU)
    _pool: concurrent.futures.ThreadPoolExecutor | None = field(default=None, init=False)
    _next: concurrent.futures.Future | None = field(default=None, init=False)
    _loader: object = field(default=None, init=False)

    def __post_init__(self):
        if not hasattr(self.x, "originals") and not self.cfg.augment.endswith("randaugment"):
            self._pool = concurrent.futures.ThreadPoolExecutor(1)

    def read(self, step: int, as_uint8: bool | None = None) -> list:
        as_uint8 = self.uint8 if as_uint8 is None else as_uint8
        return [data.train_batch(self.x, self.y, step, self.cfg.batch_size, self.cfg.seed, self.cfg.augment, part=p,
                                 mixup=self.cfg.mixup, num_classes=self.num_classes, size=self.cfg.img_size,
                                 randaugment_skip=tuple(self.cfg.randaugment_skip), as_uint8=as_uint8)
                for p in self.parts]

    def get(self, step: int) -> list:
        """Step `step`'s micro-batches, (images, targets) pairs; steps are asked for in order. Images from
        DataLoader workers come as uint8 (without mixup) for the training process to normalise on its device,
        as timm's PrefetchLoader does."""
        if hasattr(self.x, "originals"):
            return self._from_workers(step)
        batches = self._next.result() if self._next is not None else self.read(step)
        if self._pool is not None and step + 1 < self.total:
            self._next = self._pool.submit(self.read, step + 1)
        return batches

    def _from_workers(self, step: int) -> list:
        import torch

        if self._loader is None:  # started at the first step asked for: a resumed run's
            workers = self.workers or default_workers()
            loader = torch.utils.data.DataLoader(_Steps(self), batch_size=None, sampler=range(step, self.total),
                                                 num_workers=workers, prefetch_factor=2, worker_init_fn=_worker_init,
                                                 multiprocessing_context="fork", pin_memory=torch.cuda.is_available())
            self._loader, self._at = iter(loader), step
        if step != self._at:
            raise RuntimeError(f"steps are read in order: asked for {step}, the workers are at {self._at}")
        self._at += 1
        return next(self._loader)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        self._loader = None  # the iterator's end shuts its workers down


def default_workers() -> int:
    """DataLoader workers per training process: this node's cores shared by its torchrun processes
    (LOCAL_WORLD_SIZE), one core each left to the process itself."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1)


class _Steps:
    """Step number -> that step's micro-batches: a map-style dataset, so each worker builds whole steps."""

    def __init__(self, feed: Feed):
        self.feed = feed

    def __len__(self) -> int:
        return self.feed.total

    def __getitem__(self, step: int) -> list:
        return self.feed.read(step, as_uint8=True)


def _worker_init(_: int) -> None:
    """Stop signals are the training process's to act on (it saves and exits; vit.stops): a worker killed
    by SLURM's SIGTERM before the state is saved would fail the step being read. Workers end with it."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)
