"""A tiny `vtab-1k/` tree in the de-facto archive format (docs/datasets.md, VTAB-1k), for every task."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vit.plan.tasks import VTAB_TASKS

SIZES = {"train800": 6, "val200": 3, "test": 4}


def make_vtab_tree(data_root: Path, tasks=VTAB_TASKS, sizes=SIZES, side: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for task in tasks:
        root = data_root / "vtab-1k" / task.folder
        lines = {}
        for split, n in sizes.items():
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            lines[split] = []
            for i in range(n):
                rel = f"images/{split}/{i:06d}.jpg"
                Image.fromarray(rng.integers(0, 256, (side, side + 8, 3), dtype=np.uint8)).save(root / rel)
                lines[split].append(f"{rel} {(i * 7 + len(split)) % task.classes}")
            (root / f"{split}.txt").write_text("\n".join(lines[split]) + "\n")
        (root / "train800val200.txt").write_text("\n".join(lines["train800"] + lines["val200"]) + "\n")
    return data_root


def write_final_runs(path: Path, top1: dict) -> Path:
    """A runs.json as vit.train.finetune writes it for VTAB-1k final runs: top1 = {(task folder, seed): %}."""
    import json

    runs = [{"model": "vit", "upstream": "vtab", "task": f"vtab_{folder}", "group": "natural", "num_classes": 2,
             "steps": 1, "train_time_s": 1.0, "train_flops_per_img": 1.0, "images_seen": 1, "init": {},
             "config_hash": "x", "eval": {"test": {"top1": acc, "loss": 1.0, "n": 10}}, "dataset_files": {},
             "env": {}, "config": {"train_split": "train800+val200", "test_split": "test", "img_size": 384,
                                   "seed": seed, "augment": "crop_flip", "init": "", "out": str(path.parent)}}
            for (folder, seed), acc in top1.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(runs))
    return path
