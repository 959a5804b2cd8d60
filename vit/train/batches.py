"""Each step's micro-batches for this process: the examples a single process would take for its
slices, so that processes x accumulation steps give the full batch's update. Batches are a pure
function of (seed, step), which is what lets a resumed run continue unchanged."""
from __future__ import annotations

import concurrent.futures
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
    """The micro-batches of step after step. Images streamed from disk are read one step ahead in a
    thread while the current step trains."""
    x: object                      # the training images: a tensor, or data.Streamed
    y: object
    cfg: Config
    num_classes: int
    parts: list
    total: int                     # steps in the run: nothing is read ahead past the last
    _pool: concurrent.futures.ThreadPoolExecutor | None = field(default=None, init=False)
    _next: concurrent.futures.Future | None = field(default=None, init=False)

    def __post_init__(self):
        if isinstance(self.x, data.Streamed):
            self._pool = concurrent.futures.ThreadPoolExecutor(1)

    def read(self, step: int) -> list:
        return [data.train_batch(self.x, self.y, step, self.cfg.batch_size, self.cfg.seed, self.cfg.augment, part=p,
                                 mixup=self.cfg.mixup, num_classes=self.num_classes, size=self.cfg.img_size,
                                 randaugment_skip=tuple(self.cfg.randaugment_skip)) for p in self.parts]

    def get(self, step: int) -> list:
        """Step `step`'s micro-batches, (images, targets) pairs; steps are asked for in order."""
        batches = self._next.result() if self._next is not None else self.read(step)
        if self._pool is not None and step + 1 < self.total:
            self._next = self._pool.submit(self.read, step + 1)
        return batches

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
