"""Prepared datasets: the on-disk format, checksum verification, and batches for the training loop.

Format of `results/data/<name>/` (written by `vit.data.prepare`):
  <split>_images.npy   uint8 (N, H, W, 3), memory-mappable
  <split>_labels.npy   int64 (N,)
  manifest.json        name, source, group, classes, image_size, split sizes, SHA-256 of every file

Small sets live in memory as one uint8 tensor; crops and flips are done on the whole batch in torch,
which on a 2-core CPU is ~10x faster than per-sample transforms through a DataLoader (docs/cpu_performance.md).
Sets larger than the memory budget stay memory-mapped and are read and resized per batch (`Streamed`).
"""
from __future__ import annotations

import re
import resource
import time
from pathlib import Path

import numpy as np

from vit.errors import DataError
from vit.logs import WRITERS, read_json, redo, sha256_file, write_json

MANIFEST = "manifest.json"


def split_files(split: str) -> tuple[str, str]:
    return f"{split}_images.npy", f"{split}_labels.npy"


def write_manifest(stage: Path, *, name: str, source: str, group: str, seed: int, task: str, classes: list,
                   splits: list[str], files: dict, info: dict, started: float, store: dict | None = None) -> dict:
    """Write `stage`/manifest.json for the split files staged there and return it: the one manifest
    format that vit.data.prepare and vit.data.pseudo_label write and every reader of prepared data reads.
    Sizes and image size are read from the staged arrays, so they cannot disagree with the files."""
    sizes = {s: int(len(np.load(stage / split_files(s)[1], mmap_mode="r"))) for s in splits}
    if store:  # the sharded store (vit.data.shards): originals of many sizes; the median stands for them
        sides = np.load(stage / f"{splits[0]}_sides.npy")
        image_size = [int(v) for v in np.median(sides, axis=0)]
    else:
        image_size = list(np.load(stage / split_files(splits[0])[0], mmap_mode="r").shape[1:3])
    manifest = {
        "name": name, "source": source, "group": group, "seed": seed, "task": task,
        "classes": list(classes), "num_classes": len(classes), "image_size": image_size, "channels": 3,
        "splits": sizes, "files": files, "info": info, "seconds": round(time.time() - started, 2),
        # peak resident memory of this process and of its largest worker (forked workers share pages
        # with the parent, so the two are not additive)
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        **(store or {}),
    }
    write_json(stage / MANIFEST, manifest)
    return manifest


def read_manifest(data_dir: str | Path) -> dict:
    """The manifest of the prepared set in `data_dir`; a damaged one (or another JSON file in its place) is a
    DataError naming it and the fix: the whole folder is prepared again (its arrays are checked against it)."""
    path = Path(data_dir) / MANIFEST
    if not path.exists():
        raise DataError(f"{path}: no prepared dataset here. Prepare it with "
                        f"`snakemake --cores all {path}` (or `python -m vit.data.prepare ...`).")
    fix = redo(path, WRITERS["data"], delete=data_dir)
    manifest = read_json(path, fix, kind=dict)
    if not all(isinstance(manifest.get(k), dict) for k in ("splits", "files")):
        raise DataError(f"{path}: not a prepared dataset's manifest (no 'splits' and 'files'); {fix}")
    return manifest


def verify(data_dir: str | Path, files: list[str], manifest: dict | None = None) -> None:
    """Refuse data whose SHA-256 differs from the manifest: a half-copied or edited file would
    otherwise train silently on the wrong bytes."""
    data_dir = Path(data_dir)
    manifest = manifest or read_manifest(data_dir)
    for name in files:
        path = data_dir / name
        expected = manifest["files"].get(name)
        if expected is None:
            raise DataError(f"{path}: not listed in {data_dir / MANIFEST}; re-run the prepare step.")
        if not path.exists():
            raise DataError(f"{path}: missing (listed in the manifest); re-run the prepare step.")
        actual = sha256_file(path)
        if actual != expected:
            raise DataError(f"{path}: SHA-256 {actual[:16]}... does not match the manifest "
                            f"({expected[:16]}...). The file is corrupted or was changed after preparation; "
                            f"delete {data_dir} and prepare it again.")


_SLICE = re.compile(r"^(\w+)\[(\d*\.?\d*)%?:(\d*\.?\d*)%?\]$")


def parse_part(part: str) -> tuple[str, float, float]:
    """ "train" -> (train, 0, 100); "train[:98%]" -> (train, 0, 98); "train[98%:]" -> (train, 98, 100).
    The TFDS / big_vision slicing syntax, which the paper's code uses for its dev splits."""
    if "[" not in part:
        return part, 0.0, 100.0
    m = _SLICE.match(part)
    if not m:
        raise DataError(f"split {part!r}: expected <split> or a percent slice like train[:98%] / train[98%:]")
    lo, hi = float(m.group(2) or 0), float(m.group(3) or 100)
    if not 0 <= lo < hi <= 100:
        raise DataError(f"split {part!r}: percent bounds must satisfy 0 <= start < end <= 100")
    return m.group(1), lo, hi


def split_size(manifest: dict, split: str) -> int:
    """Examples in `split` ("train+val", "train[:98%]") of a prepared dataset, from its manifest alone:
    the rows load_split would return (a slice keeps round(n * hi%) - round(n * lo%), as slice_index)."""
    total = 0
    for part in split.split("+"):
        name, lo, hi = parse_part(part)
        if name not in manifest.get("splits", {}):
            raise DataError(f"dataset {manifest.get('name', '?')}: no split {name!r}; "
                            f"available: {', '.join(manifest.get('splits', {}))}")
        n = manifest["splits"][name]
        total += round(n * hi / 100) - round(n * lo / 100)
    return total


def slice_index(n: int, lo: float, hi: float) -> np.ndarray:
    """Rows of a percent slice: a fixed permutation (seed 0, independent of the run's seed) cut at the
    bounds, so train[:98%] and train[98%:] are disjoint and cover the split even when it is stored in
    class order (image folders are); returned sorted, for sequential reads."""
    perm = np.random.default_rng(0).permutation(n)
    return np.sort(perm[round(n * lo / 100):round(n * hi / 100)])


class Rows:
    """Rows `index` of a memory-mapped (N, ...) array, read on demand: a percent slice of a split too
    large to copy. Indexing returns an ndarray; np.asarray() reads all rows."""

    def __init__(self, array: np.ndarray, index: np.ndarray):
        self.array, self.index = array, index
        self.shape, self.dtype = (len(index),) + array.shape[1:], array.dtype

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx) -> np.ndarray:
        return self.array[self.index[idx]]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.array[self.index], dtype=dtype)


def load_split(data_dir: str | Path, split: str, soft: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images (N,H,W,3) uint8 and labels (N,) int64 of `split`. "train+val" concatenates splits;
    "train[:98%]" / "train[98%:]" take a percent slice (`parse_part`). A single split comes back
    memory-mapped (read when used), so a split larger than memory can still be trained on.
    `soft`: the labels are <split>_soft.npy instead, (N, K) float32 target distributions (Noisy
    Student's soft pseudo-labels, vit.data.pseudo_label --labels=soft)."""
    manifest = read_manifest(data_dir)
    sharded = manifest.get("store") == "shards"  # vit.data.shards: the originals, decoded per batch
    if sharded and soft:
        raise DataError(f"{data_dir}: soft labels are written for arrays (Noisy Student's pools), not shards")
    xs, ys = [], []
    for part in split.split("+"):
        name, lo, hi = parse_part(part)
        if name not in manifest["splits"]:
            raise DataError(f"{Path(data_dir) / MANIFEST}: no split {name!r}; "
                            f"available: {', '.join(manifest['splits'])}")
        files = [f"{name}_labels.npy", f"{name}_sides.npy", f"{name}.shards.json"] if sharded else split_files(name)
        if soft:
            files = (files[0], f"{name}_soft.npy")
            if files[1] not in manifest.get("files", {}):
                raise DataError(f"{Path(data_dir) / MANIFEST}: no soft labels for split {name!r} ({files[1]}); "
                                f"soft_targets needs a set pseudo-labelled with --labels=soft (noisy_student.labels)")
        verify(data_dir, list(files), manifest)
        if sharded:
            from vit.data.shards import ShardSplit

            y = np.load(Path(data_dir) / files[0])
            x = (ShardSplit(data_dir, name, manifest), np.arange(len(y)))
        else:
            x, y = np.load(Path(data_dir) / files[0], mmap_mode="r"), np.load(Path(data_dir) / files[1])
        if (lo, hi) != (0.0, 100.0):
            index = slice_index(len(y), lo, hi)
            x, y = (x[0], index) if sharded else Rows(x, index), y[index]
        xs.append(x)
        ys.append(y)
    if sharded:
        from vit.data.shards import ShardImages

        return ShardImages(xs), np.concatenate(ys).astype(np.int64), manifest
    x = np.concatenate([np.asarray(a) for a in xs]) if len(xs) > 1 else xs[0]
    y = np.concatenate(ys) if len(ys) > 1 else ys[0]
    return x, y.astype(np.float32 if soft else np.int64), manifest


# ----------------------------------------------------------------------------- torch side
from vit.data.pixels import _resize, normalize  # noqa: E402,F401  (the training loop and evaluators use them here)

def to_tensor(images, size: int):
    """uint8 (N,H,W,C) -> uint8 (N,C,size,size), resized once with antialiasing (not per batch)."""
    import torch

    if hasattr(images, "originals"):  # the sharded store: every image decoded and resized (small sets only)
        return images.at(size)[:]
    x = torch.from_numpy(np.require(np.asarray(images), requirements=["C", "W"])).permute(0, 3, 1, 2)  # copies a read-only memmap
    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(x), 4096):  # chunks bound the float32 temporary
        out[i:i + 4096] = _resize(x[i:i + 4096], size)
    return out


class Streamed:
    """A split read from disk batch by batch and resized on the fly: what `images` gives for a set too
    large for memory (ImageNet-21k at 224 px is ~2 TB). Indexing with row indices or a slice returns
    the same uint8 (B,C,size,size) tensor that `to_tensor(images, size)[idx]` would."""

    def __init__(self, images, size: int):
        self.images, self.size = images, size
        self.shape = (len(images), images.shape[-1], size, size)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx):
        import torch

        rows = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx).reshape(-1)
        order = np.argsort(rows, kind="stable")  # ascending reads are sequential on disk
        batch = np.empty((len(rows),) + tuple(self.images.shape[1:]), np.uint8)
        batch[order] = self.images[rows[order]]
        # contiguous like to_tensor's result: a channels-last batch takes other kernels and changes the loss
        # in its last digits, so streamed and in-memory evaluation would no longer agree exactly
        return _resize(torch.from_numpy(batch).permute(0, 3, 1, 2), self.size).contiguous()


def images(xs, size: int, max_gb: float):
    """The images of a split for the training loop: one uint8 tensor in memory when it fits in
    `max_gb`, else `Streamed` from the memory-mapped file (same values, read per batch)."""
    if hasattr(xs, "originals"):  # the sharded store: decoded per batch, whatever its size
        return xs.at(size)
    need = len(xs) * xs.shape[-1] * size * size / 2**30
    return to_tensor(xs, size) if need <= max_gb else Streamed(xs, size)


# the training batches (vit.data.augment): imported here, where the training loop and the tests find them
from vit.data.augment import (AUGMENTS, INCEPTION_AREA, INCEPTION_ASPECT, ZOOMS, bit_crop, inception_boxes,  # noqa: E402,F401
                              inception_crop, randaugment_ops, train_batch)
