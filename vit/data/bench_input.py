"""Benchmark of the paper presets' input pipeline: images/s per CPU core, decode + augment + collate, from
the sharded store (vit.data.shards) against what a user would otherwise run (torchvision's ImageFolder with
RandomResizedCrop and a flip through a DataLoader, from the same JPEG files), side by side in one process.

    python -m vit.data.bench_input --root=results/bench/input --n=50000 --out=results/bench/input_pipeline.json

Writes `n` JPEGs of `width` x `height` px (ImageNet's typical 500 x 375; 100 classes) under <root>/tree/ once
and prepares them as shards (`store: shards`); then at each resolution draws the same `sample` images for
both pipelines, in alternation, and times them with one thread (images/s per core: what one DataLoader
worker delivers) and with every core (`workers` DataLoader processes). vit.account.cost reads `per_core`
to say how many cores per GPU a preset needs.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vit import cli
from vit.data.bench import write_tree
from vit.logs import write_json


@dataclass
class Config:
    root: str = "results/bench/input"
    out: str = "results/bench/input_pipeline.json"
    n: int = 50_000
    width: int = 500
    height: int = 375
    classes: int = 100
    resolutions: list = field(default_factory=lambda: [224, 384])
    sample: int = 1536       # images timed per pipeline, resolution and core count
    batch: int = 64


def _write_jpegs(args):
    """JPEGs of a photograph's size and entropy: smooth colour fields (a bank of 16, shifted per image), a
    few flat discs and sensor-like noise (sliced from one noise block), written at quality 90."""
    from PIL import Image

    folder, start, stop, w, h, classes = args
    rng = np.random.default_rng(start)
    yy, xx = np.mgrid[0:2 * h, 0:2 * w].astype(np.float32)
    bank = [np.stack([127 + 100 * np.sin(xx * f0 + yy * f1 + ph) for f0, f1, ph in rng.uniform(0.005, 0.05, (3, 3))],
                     -1).astype(np.int16) for _ in range(16)]
    noise = rng.normal(0, 12, (2 * h, 2 * w, 3)).astype(np.int16)
    for i in range(start, stop):
        oy, ox, ny, nx = rng.integers(0, h), rng.integers(0, w), rng.integers(0, h), rng.integers(0, w)
        img = bank[i % 16][oy:oy + h, ox:ox + w] + noise[ny:ny + h, nx:nx + w]
        for _ in range(4):
            x0, y0, r = rng.integers(0, w), rng.integers(0, h), int(rng.integers(10, 120))
            ys, xs = slice(max(0, y0 - r), min(h, y0 + r)), slice(max(0, x0 - r), min(w, x0 + r))
            disc = (yy[ys, xs] - y0) ** 2 + (xx[ys, xs] - x0) ** 2 < r * r
            img[ys, xs][disc] = rng.integers(0, 256, 3)
        path = Path(folder) / f"class_{i % classes:03d}" / f"img_{i:07d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)


def make_tree(cfg: Config) -> Path:
    return write_tree(Path(cfg.root) / "tree" / "train", cfg.n, cfg.classes, f"{cfg.width}x{cfg.height}", _write_jpegs,
                      (cfg.width, cfg.height), step=500)


def _shards(cfg: Config) -> tuple[Path, float]:
    from vit.data import prepare

    out = Path(cfg.root) / "shards"
    if (out / "manifest.json").exists():
        return out, float("nan")
    t = time.time()
    prepare.prepare(prepare.Config(name="bench", source="imagefolder", task="tree", group="upstream",
                                   data_root=cfg.root, out=str(out), store="shards"))
    return out, time.time() - t


class _Ours:
    """The sharded store through the training loop's own batches (vit.data.train_batch)."""

    def __init__(self, x, y, res, batch):
        self.x, self.y, self.res, self.batch = x, y, res, batch

    def __len__(self):
        return len(self.x) // self.batch

    def __getitem__(self, step):
        from vit import data

        # as the training loop's DataLoader workers return them: uint8, normalised on the training device
        return data.train_batch(self.x, self.y, step, self.batch, 0, "inception_crop", size=self.res, as_uint8=True)


def _torchvision(tree: Path, res: int):
    import torch
    from torchvision import datasets
    from torchvision.transforms import v2

    tf = v2.Compose([v2.PILToTensor(), v2.RandomResizedCrop(res, scale=(0.05, 1.0), ratio=(3 / 4, 4 / 3),
                                                            antialias=True),
                     v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.5] * 3)])
    return datasets.ImageFolder(str(tree), transform=tf)


def _time(loader, images: int, skip: int) -> float:
    """Images/s after each worker's first batch (process start-up, opening the shards and the first decode
    are not the steady state)."""
    seen, t = 0, None
    for i, (xb, _) in enumerate(loader):
        if i < skip:
            continue
        if t is None:
            t = time.perf_counter()
            continue
        seen += len(xb)
        if seen >= images:
            break
    return seen / (time.perf_counter() - t)


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def bench(cfg: Config) -> dict:
    import torch

    from vit import data

    t0 = time.time()
    tree = make_tree(cfg)
    made = time.time() - t0
    store, prepared = _shards(cfg)
    x, y, _ = data.load_split(store, "train")
    jpeg_kb = float(np.mean([p.stat().st_size for p in list(tree.glob("class_000/*.jpg"))[:200]]) / 1024)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rows = []
    torch.set_num_threads(1)
    for res in cfg.resolutions:
        for workers in sorted({0, cores}):
            steps = cfg.sample // cfg.batch
            start = int(np.random.default_rng(res).integers(0, len(x) // cfg.batch - steps))
            rows_tv = torch.randperm(len(x), generator=torch.Generator().manual_seed(res))[:cfg.sample].tolist()
            ours = torch.utils.data.DataLoader(_Ours(x, torch.from_numpy(y), res, cfg.batch), batch_size=None,
                                               sampler=range(start, start + steps + 4), num_workers=workers,
                                               multiprocessing_context="fork" if workers else None)
            theirs = torch.utils.data.DataLoader(torch.utils.data.Subset(_torchvision(tree, res), rows_tv),
                                                 batch_size=cfg.batch, num_workers=workers,
                                                 multiprocessing_context="fork" if workers else None)
            for name, loader in (("shards", ours), ("torchvision ImageFolder", theirs)):
                rate = _time(loader, cfg.sample - (max(1, workers) + 2) * cfg.batch, max(1, workers) - 1)
                used = max(1, workers)
                rows.append({"pipeline": name, "augment": "inception_crop", "res": res, "workers": workers,
                             "cores": used, "images_per_s": round(rate, 1), "images_per_s_per_core": round(rate / used, 1)})
                print(f"{name:>24} {res} px, {used} core(s): {rate:7.1f} img/s ({rate / used:.1f} per core)", flush=True)
    per_core = {str(r["res"]): r["images_per_s_per_core"] for r in rows if r["pipeline"] == "shards" and r["workers"] == 0}
    result = {"images": cfg.n, "image_size": [cfg.width, cfg.height], "jpeg_kb": round(jpeg_kb, 1), "classes": cfg.classes,
              "cpu": _cpu(), "cores": cores, "sample": cfg.sample,
              "batch": cfg.batch, "tree_seconds": round(made, 1), "shards_seconds": round(prepared, 1),
              "shards_gb": round(sum(f.stat().st_size for f in store.glob("*.tar")) / 2**30, 2),
              "rows": rows, "per_core": per_core,
              "command": f"python -m vit.data.bench_input --root={cfg.root} --n={cfg.n} --out={cfg.out}"}
    write_json(cfg.out, result)
    return result


if __name__ == "__main__":
    cli.main_guard(bench, Config)
