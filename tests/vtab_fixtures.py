"""A tiny `vtab-1k/` tree in the de-facto archive format (DATASETS.md sec. 2.3), for every task."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vit.datasets import VTAB_TASKS

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
