"""The GPU check's inputs (vit.account.gpu_check), made on the spot since a GPU node may be offline: a JPEG
store of photograph-sized images, CIFAR-10 in torchvision's layout, and ViT weights in the paper's
released .npz layout; all random, all in the exact on-disk formats the pipeline reads."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch


def jpeg_store(work: Path, images: int, jpeg: tuple, img: int) -> tuple[Path, Path]:
    """`images` JPEGs of `jpeg` = (width, height) px with a photograph's entropy (vit.data.bench_input's
    generator) in 10 classes, prepared as a sharded store and as arrays at `img` px: (shards, arrays)."""
    from vit.data import bench as data_bench
    from vit.data import bench_input, prepare

    root = work / "jpegs"
    data_bench.write_tree(root / "tree" / "train", images, 10, f"{jpeg[0]}x{jpeg[1]}", bench_input._write_jpegs,
                          tuple(jpeg), step=max(1, images // 16))
    out = {}
    for store in ("shards", "arrays"):
        out[store] = root / store
        if not (out[store] / "manifest.json").exists():
            prepare.prepare(prepare.Config(name="jpegs", source="imagefolder", task="tree", group="upstream",
                                           data_root=str(root), out=str(out[store]), store=store, size=img))
    return out["shards"], out["arrays"]


def write_cifar10(root: Path, train: int) -> None:
    """CIFAR-10 in the layout torchvision reads (cifar-10-batches-py: five training batches, a test batch,
    pickled rows of 1024 R + 1024 G + 1024 B bytes), random pixels and labels."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def batch(n: int, path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, n).tolist(), "batch_label": "gpu check",
                         "filenames": [f"{i}.png" for i in range(n)]}, f, protocol=2)
    for b in range(1, 6):
        batch(train // 5, d / f"data_batch_{b}")
    batch(max(10, train // 5), d / "test_batch")
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class_{i}" for i in range(10)], "num_cases_per_batch": train // 5}, f, protocol=2)


def released_npz(work: Path, model: str) -> Path:
    """The timm ViT `model` with random weights, as the paper's release stores it (.npz, no head: the
    ImageNet-21k release's pre-logits and head are not used for transfer)."""
    import timm

    from vit.models.weights import vit_npz

    path = work / "released.npz"
    if not path.exists():
        torch.manual_seed(0)
        np.savez(path, **vit_npz(timm.create_model(model, num_classes=0)))
    return path


def import_released(work: Path, model: str, tag: str) -> Path:
    """The .npz imported as the paper presets import released weights (vit.models.weights, timm tag `tag`):
    the checkpoint.pt that fine-tuning reads."""
    from vit.models import weights

    out = work / "released"
    if not (out / "checkpoint.pt").exists():
        weights.import_weights(weights.Config(weights=tag, file=str(released_npz(work, model)), out=str(out)))
    return out / "checkpoint.pt"
