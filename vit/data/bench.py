"""Benchmark of the streaming preparation on a generated ImageFolder of small JPEGs (issue: prepare
ImageNet-21k-sized data in bounded memory on all cores).

    python -m vit.data.bench --root=results/bench/jpegs --n=50000 --out=results/bench/prepare.json

Writes `n` JPEGs (`side` px, 100 classes) under <root>/jpegs/train/ once, then prepares them at `size`
px with 1 worker and with all cores, recording images/s and peak resident memory of each run
(the main process plus its workers), measured in a fresh child process per run.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vit import cli
from vit.logs import write_json


@dataclass
class Config:
    root: str = "results/bench/jpegs"
    out: str = "results/bench/prepare.json"
    n: int = 50_000
    side: int = 48          # JPEG side in pixels
    size: int = 32          # prepared side
    classes: int = 100


def _write_jpegs(args):
    from PIL import Image

    folder, start, stop, side, classes = args
    rng = np.random.default_rng(start)
    t = np.linspace(0, 1, side, dtype=np.float32)
    for i in range(start, stop):
        c = i % classes
        base = (np.outer(t, t)[..., None] * rng.random(3) * 255).astype(np.uint8)
        img = np.clip(base + rng.integers(0, 40, (side, side, 3)), 0, 255).astype(np.uint8)
        path = Path(folder) / f"class_{c:03d}" / f"img_{i:07d}.jpg"
        Image.fromarray(img).save(path, quality=90)


def write_tree(folder: Path, n: int, classes: int, tag: str, write, extra: tuple, step: int = 2000) -> Path:
    """<folder>/class_<c>/*.jpg for images 0..n-1, written once by `write((folder, start, stop, *extra,
    classes))` over a pool of every core; a marker naming n and `tag` (the image settings) skips it next time."""
    marker = folder.parent / f"complete-{n}-{tag}"
    if marker.exists():
        return folder
    for c in range(classes):
        (folder / f"class_{c:03d}").mkdir(parents=True, exist_ok=True)
    with multiprocessing.get_context("fork").Pool() as pool:
        pool.map(write, [(folder, s, min(n, s + step), *extra, classes) for s in range(0, n, step)])
    marker.touch()
    return folder


def make_tree(cfg: Config) -> Path:
    return write_tree(Path(cfg.root) / "jpegs" / "train", cfg.n, cfg.classes, str(cfg.side), _write_jpegs, (cfg.side,))


def _one_run(cfg: Config, workers: int) -> dict:
    """Prepare in a child process, so its peak memory is its own."""
    out = Path(cfg.root) / f"prepared_w{workers}"
    code = ("import sys, json, resource, time; from vit import prepare; t=time.time(); "
            f"m = prepare.prepare(prepare.Config(name='jpegs', source='imagefolder', task='jpegs', group='upstream', "
            f"data_root={str(cfg.root)!r}, out={str(out)!r}, size={cfg.size}, workers={workers})); "
            "print(json.dumps({'seconds': time.time() - t, 'peak_rss_mb': m['peak_rss_mb'], 'peak_rss_worker_mb': m['peak_rss_worker_mb'], 'n': m['splits']['train']}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"workers": workers, "images": r["n"], "seconds": round(r["seconds"], 2),
            "img_per_s": round(r["n"] / r["seconds"]), "peak_rss_mb": r["peak_rss_mb"],
            "peak_rss_worker_mb": r["peak_rss_worker_mb"],
            "prepared_mb": round(sum(f.stat().st_size for f in out.iterdir()) / 2**20, 1)}


def bench(cfg: Config) -> dict:
    t0 = time.time()
    make_tree(cfg)
    made = time.time() - t0
    runs = [_one_run(cfg, w) for w in sorted({1, os.cpu_count() or 1})]
    result = {"n": cfg.n, "jpeg_side": cfg.side, "size": cfg.size, "tree_seconds": round(made, 1), "runs": runs,
              "cpu_count": os.cpu_count()}
    write_json(cfg.out, result)
    for r in runs:
        print(f"{r['workers']} worker(s): {r['images']} JPEGs in {r['seconds']} s = {r['img_per_s']} img/s, "
              f"peak RSS {r['peak_rss_mb']} MB (largest worker {r['peak_rss_worker_mb']} MB), {r['prepared_mb']} MB written")
    return result


if __name__ == "__main__":
    cli.main_guard(bench, Config)
