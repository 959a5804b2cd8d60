"""Prepared datasets: the on-disk format, checksum verification, and batches for the training loop.

Format of `results/data/<name>/` (written by `vit.prepare`):
  <split>_images.npy   uint8 (N, H, W, 3), memory-mappable
  <split>_labels.npy   int64 (N,)
  manifest.json        name, source, group, classes, image_size, split sizes, SHA-256 of every file

Small sets live in memory as one uint8 tensor; crops and flips are done on the whole batch in torch,
which on a 2-core CPU is ~10x faster than per-sample transforms through a DataLoader (CPU_PERF.md).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vit.logs import read_json, sha256_file

MANIFEST = "manifest.json"


class DataError(RuntimeError):
    """Missing, corrupted or inconsistent prepared data; the message names the file and the fix."""


def split_files(split: str) -> tuple[str, str]:
    return f"{split}_images.npy", f"{split}_labels.npy"


def read_manifest(data_dir: str | Path) -> dict:
    path = Path(data_dir) / MANIFEST
    if not path.exists():
        raise DataError(f"{path}: no prepared dataset here. Prepare it with "
                        f"`snakemake --cores all {path}` (or `python -m vit.prepare ...`).")
    return read_json(path)


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


def load_split(data_dir: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Images (N,H,W,3) uint8 and labels (N,) int64 of `split`; "train+val" concatenates splits."""
    manifest = read_manifest(data_dir)
    xs, ys = [], []
    for part in split.split("+"):
        if part not in manifest["splits"]:
            raise DataError(f"{Path(data_dir) / MANIFEST}: no split {part!r}; "
                            f"available: {', '.join(manifest['splits'])}")
        files = split_files(part)
        verify(data_dir, list(files), manifest)
        xs.append(np.load(Path(data_dir) / files[0], mmap_mode="r"))
        ys.append(np.load(Path(data_dir) / files[1]))
    x = np.concatenate(xs) if len(xs) > 1 else np.asarray(xs[0])
    y = np.concatenate(ys) if len(ys) > 1 else ys[0]
    return x, y.astype(np.int64), manifest


# ----------------------------------------------------------------------------- torch side
def to_tensor(images: np.ndarray, size: int):
    """uint8 (N,H,W,C) -> uint8 (N,C,size,size), resized once with antialiasing (not per batch)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.require(images, requirements=["C", "W"])).permute(0, 3, 1, 2)  # copies a read-only memmap
    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(x), 4096):  # chunks bound the float32 temporary
        chunk = F.interpolate(x[i:i + 4096].float(), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False)
        out[i:i + 4096] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


def normalize(x):
    """uint8 -> float in [-1, 1], the ViT/BiT input convention."""
    return x.float().div_(127.5).sub_(1.0)


def train_batch(x, y, step: int, batch_size: int, seed: int, augment: str, part: slice = slice(None)):
    """Batch number `step` of an epoch-wise shuffle, or the `part` of it that one process or one
    accumulation micro-step trains on. A pure function of (seed, step): a resumed run, or the same run
    split across processes and micro-steps, sees exactly the examples and augmentations of a single
    process taking the whole batch at once."""
    import torch

    n = len(x)
    per_epoch = max(1, n // batch_size)
    epoch, i = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    idx = perm[i * batch_size:(i + 1) * batch_size]
    if augment == "crop_flip":
        # draw the whole batch's random crops and flips, then keep this part's: same values however split
        h = x.shape[-2]
        pad = max(1, h // 8)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        oy, ox = (torch.randint(0, 2 * pad + 1, (len(idx),), generator=gen) for _ in range(2))
        flip = torch.rand(len(idx), generator=gen) < 0.5
        idx, oy, ox, flip = idx[part], oy[part], ox[part], flip[part]
        return normalize(_crop_flip(x[idx], oy, ox, flip, pad)), y[idx]
    if augment != "none":
        raise ValueError(f"augment={augment!r}: expected 'none' or 'crop_flip'")
    idx = idx[part]
    return normalize(x[idx]), y[idx]


def _crop_flip(xb, oy, ox, flip, pad: int):
    """Random crop after reflect-padding by `pad` (1/8 of the side), and a horizontal flip."""
    import torch
    import torch.nn.functional as F

    b, c, h, w = xb.shape
    xp = F.pad(xb.float(), (pad, pad, pad, pad), mode="reflect")
    rows = (oy[:, None] + torch.arange(h)).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    cols = (ox[:, None] + torch.arange(w)).view(b, 1, 1, w).expand(b, c, h, w)
    out = xp.gather(2, rows).gather(3, cols)
    out[flip] = out[flip].flip(-1)
    return out.to(torch.uint8)
