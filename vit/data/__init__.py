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
                   splits: list[str], files: dict, info: dict, started: float) -> dict:
    """Write `stage`/manifest.json for the split files staged there and return it: the one manifest
    format that vit.data.prepare and vit.data.pseudo_label write and every reader of prepared data reads.
    Sizes and image size are read from the staged arrays, so they cannot disagree with the files."""
    sizes = {s: int(len(np.load(stage / split_files(s)[1], mmap_mode="r"))) for s in splits}
    image_size = list(np.load(stage / split_files(splits[0])[0], mmap_mode="r").shape[1:3])
    manifest = {
        "name": name, "source": source, "group": group, "seed": seed, "task": task,
        "classes": list(classes), "num_classes": len(classes), "image_size": image_size, "channels": 3,
        "splits": sizes, "files": files, "info": info, "seconds": round(time.time() - started, 2),
        # peak resident memory of this process and of its largest worker (forked workers share pages
        # with the parent, so the two are not additive)
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
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
    xs, ys = [], []
    for part in split.split("+"):
        name, lo, hi = parse_part(part)
        if name not in manifest["splits"]:
            raise DataError(f"{Path(data_dir) / MANIFEST}: no split {name!r}; "
                            f"available: {', '.join(manifest['splits'])}")
        files = split_files(name)
        if soft:
            files = (files[0], f"{name}_soft.npy")
            if files[1] not in manifest.get("files", {}):
                raise DataError(f"{Path(data_dir) / MANIFEST}: no soft labels for split {name!r} ({files[1]}); "
                                f"soft_targets needs a set pseudo-labelled with --labels=soft (noisy_student.labels)")
        verify(data_dir, list(files), manifest)
        x, y = np.load(Path(data_dir) / files[0], mmap_mode="r"), np.load(Path(data_dir) / files[1])
        if (lo, hi) != (0.0, 100.0):
            index = slice_index(len(y), lo, hi)
            x, y = Rows(x, index), y[index]
        xs.append(x)
        ys.append(y)
    x = np.concatenate([np.asarray(a) for a in xs]) if len(xs) > 1 else xs[0]
    y = np.concatenate(ys) if len(ys) > 1 else ys[0]
    return x, y.astype(np.float32 if soft else np.int64), manifest


# ----------------------------------------------------------------------------- torch side
def to_tensor(images, size: int):
    """uint8 (N,H,W,C) -> uint8 (N,C,size,size), resized once with antialiasing (not per batch)."""
    import torch

    x = torch.from_numpy(np.require(np.asarray(images), requirements=["C", "W"])).permute(0, 3, 1, 2)  # copies a read-only memmap
    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8)
    for i in range(0, len(x), 4096):  # chunks bound the float32 temporary
        out[i:i + 4096] = _resize(x[i:i + 4096], size)
    return out


def _resize(x, size: int):
    """uint8 (B,C,H,W) -> uint8 (B,C,size,size): bilinear with antialias, per image."""
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(x.dtype)


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
    need = len(xs) * xs.shape[-1] * size * size / 2**30
    return to_tensor(xs, size) if need <= max_gb else Streamed(xs, size)


def normalize(x):
    """uint8 -> float in [-1, 1], the ViT/BiT input convention."""
    return x.float().div_(127.5).sub_(1.0)


AUGMENTS = ("none", "crop_flip", "randaugment", "inception_crop", "inception_crop+randaugment")


def train_batch(x, y, step: int, batch_size: int, seed: int, augment: str, part: slice = slice(None),
                mixup: float = 0.0, num_classes: int = 0, size: int = 0, randaugment_skip: tuple = ()):
    """Batch number `step` of an epoch-wise shuffle, or the `part` of it that one process or one
    accumulation micro-step trains on. A pure function of (seed, step): a resumed run, or the same run
    split across processes and micro-steps, sees exactly the examples and augmentations of a single
    process taking the whole batch at once.

    `augment`: crop_flip reflect-pads by 1/8 of the side, crops back and flips; inception_crop takes an
    inception crop of the stored image (`inception_boxes`) resized to `size` (0 = the stored side), and
    flips, as the paper's code does in pre-training and fine-tuning; +randaugment adds RandAugment (Noisy
    Student's input noise; "randaugment" alone is crop_flip+randaugment), without the ops named in
    `randaugment_skip` (those that would change what the label is about). Without inception_crop the
    images must already be at the training resolution.

    With `mixup` = alpha > 0 (BiT-HyperRule, Zhang et al. 2018), each image is blended with a partner
    from the same global batch, lam ~ Beta(alpha, alpha) once per step as in BiT's code, and the labels
    become the same blend of one-hot targets (num_classes wide), which F.cross_entropy takes as
    probabilities."""
    import numpy as np
    import torch

    n = len(x)
    per_epoch = max(1, n // batch_size)
    epoch, i = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    idx = perm[i * batch_size:(i + 1) * batch_size]
    if augment not in AUGMENTS:
        raise ValueError(f"augment={augment!r}: expected one of {', '.join(AUGMENTS)}")
    inception = augment.startswith("inception_crop")
    h = x.shape[-2]
    size = size or h
    if size != h and not inception:
        raise ValueError(f"augment={augment!r} trains at the stored side ({h} px), not at {size} px")
    if augment != "none":
        # draw the whole batch's random crops and flips, then keep this part's: same values however split
        pad = max(1, h // 8)
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        if inception:
            boxes = inception_boxes(np.random.default_rng([seed, step]), len(idx), h, x.shape[-1])
        else:
            oy, ox = (torch.randint(0, 2 * pad + 1, (len(idx),), generator=gen) for _ in range(2))
        flip = torch.rand(len(idx), generator=gen) < 0.5

    def load(pos):
        """Images and labels at positions `pos` of the global batch, augmented."""
        xb = x[idx[pos]]
        if inception:
            xb = inception_crop(xb, boxes[pos.numpy()], flip[pos], size)
        elif augment != "none":
            xb = _crop_flip(xb, oy[pos], ox[pos], flip[pos], pad)
        if augment.endswith("randaugment"):
            xb = _randaugment(xb, [seed * 1_000_003 + step * 65_537 + int(p) for p in pos], randaugment_skip)
        return normalize(xb), y[idx[pos]]

    pos = torch.arange(len(idx))[part]
    xb, yb = load(pos)
    if mixup <= 0:
        return xb, yb
    if num_classes < 2:
        raise ValueError("mixup needs num_classes (the width of the blended one-hot targets)")
    rng = np.random.default_rng(seed * 7_000_003 + step)
    lam = float(rng.beta(mixup, mixup))
    partner = torch.from_numpy(rng.permutation(len(idx)))[pos]
    xp, yp = load(partner)
    def one_hot(t):  # soft targets (N, K) are distributions already
        return t.float() if t.ndim == 2 else torch.nn.functional.one_hot(t.long(), num_classes).float()
    return lam * xb + (1 - lam) * xp, lam * one_hot(yb) + (1 - lam) * one_hot(yp)


INCEPTION_AREA = (0.05, 1.0)      # the paper's code: tf.image.sample_distorted_bounding_box's area_range,
INCEPTION_ASPECT = (3 / 4, 4 / 3)  # aspect_ratio_range (big_vision pp/ops_image.py inception_crop)


def inception_boxes(rng: np.random.Generator, n: int, h: int, w: int, attempts: int = 10) -> np.ndarray:
    """n random crop boxes (top, left, height, width) of an h x w image, as torchvision's
    RandomResizedCrop draws them (its `make_params`), vectorised over the batch: area uniform in
    INCEPTION_AREA of the image, aspect log-uniform in INCEPTION_ASPECT, the first of `attempts` draws
    that fits; else the whole image cropped to the nearest allowed aspect, centred."""
    area = h * w * rng.uniform(*INCEPTION_AREA, (n, attempts))
    aspect = np.exp(rng.uniform(np.log(INCEPTION_ASPECT[0]), np.log(INCEPTION_ASPECT[1]), (n, attempts)))
    cw, ch = np.round(np.sqrt(area * aspect)).astype(np.int64), np.round(np.sqrt(area / aspect)).astype(np.int64)
    fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = fits.argmax(1)
    cw, ch = cw[np.arange(n), first], ch[np.arange(n), first]
    ratio = w / h  # the fallback: torchvision's centre crop at the clamped aspect
    if ratio < INCEPTION_ASPECT[0]:
        fw, fh = w, int(round(w / INCEPTION_ASPECT[0]))
    elif ratio > INCEPTION_ASPECT[1]:
        fw, fh = int(round(h * INCEPTION_ASPECT[1])), h
    else:
        fw, fh = w, h
    ok = fits.any(1)
    cw, ch = np.where(ok, cw, fw), np.where(ok, ch, fh)
    top = np.where(ok, (rng.random(n) * (h - ch + 1)).astype(np.int64), (h - fh) // 2)
    left = np.where(ok, (rng.random(n) * (w - cw + 1)).astype(np.int64), (w - fw) // 2)
    return np.stack([top, left, ch, cw], 1)


def inception_crop(xb, boxes: np.ndarray, flip, size: int):
    """uint8 (B,C,H,W) -> uint8 (B,C,size,size): each image's box resized to size x size (bilinear with
    antialiasing: torchvision's resized_crop, image by image), then flipped where `flip`."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    out = torch.empty((len(xb), xb.shape[1], size, size), dtype=torch.uint8)
    for i, (top, left, hh, ww) in enumerate(boxes.tolist()):
        out[i] = TF.resized_crop(xb[i], top, left, hh, ww, [size, size], antialias=True)
    out[flip] = out[flip].flip(-1)
    return out


RANDAUGMENT = {"num_ops": 2, "magnitude": 9}  # torchvision's defaults (Cubuk et al. 2020)


def randaugment_ops() -> tuple[str, ...]:
    """The ops torchvision's RandAugment draws from (Identity, ShearX, ..., Solarize, AutoContrast, Equalize)."""
    from torchvision.transforms import v2

    return tuple(v2.RandAugment._AUGMENTATION_SPACE)


def _randaugment(xb, seeds: list[int], skip: tuple = ()):
    """RandAugment, the input noise of Noisy Student students: each image its own two random ops,
    drawn from its own seed, so the result does not depend on how a batch is split; the ops in `skip`
    are left out of the draw (torchvision keeps its op table in a class attribute: an instance copy
    without them changes nothing else)."""
    import torch
    from torchvision.transforms import v2

    ra = v2.RandAugment(**RANDAUGMENT)
    if skip:
        unknown = sorted(set(skip) - set(ra._AUGMENTATION_SPACE))
        if unknown:
            raise ValueError(f"randaugment_skip names {unknown}: RandAugment's ops are {', '.join(randaugment_ops())}")
        ra._AUGMENTATION_SPACE = {k: v for k, v in ra._AUGMENTATION_SPACE.items() if k not in skip}
    out = torch.empty_like(xb)
    with torch.random.fork_rng(devices=[]):  # leave the training RNG (dropout, resume state) untouched
        for i, s in enumerate(seeds):
            torch.manual_seed(s)
            out[i] = ra(xb[i])
    return out


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
