"""The sharded store of original encoded images, for the image sets users bring at paper scale
(ImageNet, ImageNet-21k, image folders, VTAB-1k, torchvision sets): `store: shards` in a preset.

Format of `results/data/<name>/` (written by `vit.data.prepare`; manifest.json as for arrays):
  <split>-000000.tar ...    WebDataset shards: per image <key>.<jpg|png|...> (the original file's bytes,
                            never re-encoded; PNG for a source that gives decoded pixels), <key>.cls
                            (the label) and <key>.txt (the source file's name); keys in store order
  <split>.shards.json       the shard list in wids' descriptor format (`nsamples` per shard)
  <split>_labels.npy        int64 (N,) and <split>_sides.npy int32 (N, 2): labels and (height, width) in
                            store order, so batches are planned without opening an image

Why WebDataset tars read with wids: tar shards are the field's maintained format for large image sets
(webdataset, timm's readers, Hugging Face datasets read them): thousands of large files instead of
millions of small ones, read without unpacking. wids (the webdataset project's indexed reader,
`IndexedTarSamples`) gives random access into them through an mmap, which keeps the training batches a
pure function of (seed, step), so a resumed or multi-process run reads exactly the images an unbroken one
does; webdataset's streaming shuffle buffer cannot resume mid-epoch without replaying it.

Images are written in a fixed random order (seed 0): a source in class order (image folders are) would
otherwise fill each shard with a few classes. Training shuffles within windows of `WINDOW` shards
(`ShardImages.order`), so each process keeps a window's shards open and reads them through the page
cache; a set of at most one window is shuffled exactly as the in-memory arrays are.
"""
from __future__ import annotations

import concurrent.futures
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np

from vit.errors import DataError
from vit.logs import sha256_file

WINDOW = 16          # shards shuffled together, and kept open per process
SHARD_SIZE = 5000    # images per shard: ~0.5 GB of ImageNet JPEGs (webdataset suggests 0.1-1 GB)
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}


def shard_name(split: str, k: int) -> str:
    return f"{split}-{k:06d}.tar"


def store_order(n: int) -> np.ndarray:
    """The fixed order images are written in (independent of the run's seed)."""
    return np.random.default_rng([0, n]).permutation(n)


# ----------------------------------------------------------------------------- writing
def encoded(seq, i: int) -> tuple[bytes, str, int, str, tuple[int, int]]:
    """Image `i` of a source as (bytes, extension, label, name, (height, width)): a file's own bytes where the
    source reads files (torchvision's ImageFolder `samples`, vtab-1k's `items`), else PNG of its pixels."""
    from PIL import Image

    path, label = _file(seq, i)
    if path is not None:
        data = path.read_bytes()
        try:
            with Image.open(io.BytesIO(data)) as im:  # the header only: format and size, no decoding
                fmt, (w, h) = im.format, im.size
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read image ({e}); remove it from the tree or replace it") from None
        return data, FORMATS.get(fmt, fmt.lower()), label, path.name, (h, w)
    image, label = seq[i]
    image = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue(), "png", int(label), f"{i}.png", (image.size[1], image.size[0])


def _file(seq, i: int):
    if getattr(seq, "samples", None) is not None:
        path, label = seq.samples[i]
        return Path(path), int(label)
    if getattr(seq, "items", None) is not None and hasattr(seq, "root"):
        path, label = seq.items[i]
        return Path(seq.root) / path, int(label)
    return None, None


def write_shard(seq, rows: np.ndarray, first: int, path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The images `rows` of `seq` as one tar, keys first, first+1, ...: written to a temporary name and
    renamed, so a shard that exists is whole. Headers carry no time or owner: the same images give the
    same bytes (and checksum) on any machine. Returns what `read_back` would read from it."""
    tmp = path.with_name(path.name + ".tmp")
    labels, sides, names = [], [], []
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for j, row in enumerate(rows.tolist()):
            data, ext, label, name, hw = encoded(seq, row)
            labels.append(label), sides.append(hw), names.append(name)
            key = f"{first + j:09d}"
            for suffix, payload in ((ext, data), ("cls", str(label).encode()), ("txt", name.encode())):
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size, info.mode, info.mtime = len(payload), 0o444, 0
                tar.addfile(info, io.BytesIO(payload))
    tmp.replace(path)
    return np.array(labels, np.int64), np.array(sides, np.int32).reshape(-1, 2), names


def read_back(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Labels, (height, width) and names of a finished shard, from the shard itself (a resumed
    preparation does not decode the images again)."""
    from PIL import Image

    labels, sides, names = [], [], []
    for sample in _samples(path):
        labels.append(int(sample[".cls"].read()))
        names.append(sample[".txt"].read().decode())
        ext = next(k for k in sample if k not in (".cls", ".txt", "__key__"))
        with Image.open(sample[ext]) as im:
            sides.append((im.size[1], im.size[0]))
    return np.array(labels, np.int64), np.array(sides, np.int32).reshape(-1, 2), names


def _samples(path: Path):
    from wids.wids import IndexedTarSamples

    try:
        reader = IndexedTarSamples(path=str(path))
    except (OSError, ValueError, AssertionError) as e:
        raise DataError(f"{path}: not a readable shard ({e}); delete it and prepare the set again") from None
    try:
        for k in range(len(reader)):
            yield reader[k]
    finally:
        reader.close()


# ----------------------------------------------------------------------------- reading
class ShardSplit:
    """One prepared split's shards, read by store index through wids' indexed tar reader; each process
    keeps up to WINDOW shards open (a forked DataLoader worker opens its own)."""

    def __init__(self, data_dir: str | Path, split: str, manifest: dict):
        self.dir, self.split = Path(data_dir), split
        desc_path = self.dir / f"{split}.shards.json"
        from vit.logs import read_json, redo, WRITERS

        fix = redo(desc_path, WRITERS["data"], delete=data_dir)
        shards = read_json(desc_path, fix, kind=dict).get("shardlist")
        if not isinstance(shards, list) or not shards:
            raise DataError(f"{desc_path}: no 'shardlist'; {fix}")
        for s in shards:  # a shard replaced or cut since preparation: sizes are checked on every open
            path, want = self.dir / s["url"], manifest.get("sizes", {}).get(s["url"])
            if not path.exists() or (want is not None and path.stat().st_size != want):
                raise DataError(f"{path}: missing or not the size the manifest records ({want} bytes); {fix}")
        self.urls = [s["url"] for s in shards]
        self.ends = np.cumsum([s["nsamples"] for s in shards])
        self.sides = np.load(self.dir / f"{split}_sides.npy")
        self._open: dict = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self.ends[-1])

    def shard_of(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.ends, rows, side="right")

    def raw(self, row: int) -> tuple[bytes, str]:
        k = int(self.shard_of(row))
        reader = self._reader(k)
        sample = reader[row - (int(self.ends[k - 1]) if k else 0)]
        ext = next(e for e in sample if e not in (".cls", ".txt", "__key__"))
        return sample[ext].getvalue(), f"{self.urls[k]}:{sample['__key__']}{ext}"

    def _reader(self, k: int):
        from wids.wids import IndexedTarSamples

        if os.getpid() != self._pid:  # a forked worker: the parent's maps are not its own
            self._open, self._pid = {}, os.getpid()
        if k not in self._open:
            if len(self._open) >= WINDOW:
                self._open.pop(next(iter(self._open))).close()
            self._open[k] = IndexedTarSamples(path=str(self.dir / self.urls[k]))
        return self._open[k]


def decode(data: bytes, where: str):
    """Encoded bytes -> uint8 (3, H, W) RGB tensor."""
    import torch
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            array = np.array(im.convert("RGB"))  # a writable copy, which torch can own
    except (OSError, ValueError) as e:
        raise DataError(f"{where}: cannot decode image ({e}); prepare the set again") from None
    return torch.from_numpy(array).permute(2, 0, 1)


class ShardImages:
    """Rows of one or more prepared splits' shards ("train+val", "train[:99%]"), as the training loop sees
    images: `originals(rows)` for the training crops (vit.data.augment), and indexing for evaluation, which
    resizes each whole image to `size` px as the ViT and BiT codes evaluate (the same resize as the arrays'
    `to_tensor`). Decoding for evaluation runs in a thread pool (PIL releases the GIL)."""

    def __init__(self, parts: list[tuple[ShardSplit, np.ndarray]], size: int = 0):
        self.parts, self.size = parts, size
        self.part = np.concatenate([np.full(len(r), i) for i, (_, r) in enumerate(parts)])
        self.row = np.concatenate([r for _, r in parts])
        self.shape = (len(self.row), 3, size, size)
        self._order: tuple | None = None

    def __len__(self) -> int:
        return len(self.row)

    def at(self, size: int) -> "ShardImages":
        if size == self.size:
            return self
        out = ShardImages.__new__(ShardImages)
        out.__dict__.update(self.__dict__, size=size, shape=(len(self.row), 3, size, size))
        return out

    def sides(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(heights, widths) of `rows`, from the sides recorded at preparation (no image is opened)."""
        hw = np.empty((len(rows), 2), np.int64)
        part, row = self.part[rows], self.row[rows]
        for i, (split, _) in enumerate(self.parts):
            hw[part == i] = split.sides[row[part == i]]
        return hw[:, 0], hw[:, 1]

    def original(self, r: int):
        """Row `r`'s image as uint8 (3, H, W), at its own size."""
        return decode(*self.parts[self.part[r]][0].raw(int(self.row[r])))

    def originals(self, rows: np.ndarray) -> list:
        return [self.original(r) for r in rows.tolist()]

    def __getitem__(self, idx):
        import torch

        from vit.data.pixels import _resize

        rows = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx).reshape(-1)
        with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            images = list(pool.map(lambda r: _resize(self.original(r)[None], self.size)[0], rows.tolist()))
        return torch.stack(images) if images else torch.empty((0, 3, self.size, self.size), dtype=torch.uint8)

    def order(self, seed: int, epoch: int):
        """Epoch `epoch`'s order of the rows, a pure function of (seed, epoch): the shards in a random order,
        cut into windows of WINDOW shards, each window's images shuffled. With one window it is the arrays'
        order (torch.randperm with the same generator)."""
        import torch

        if self._order is not None and self._order[0] == (seed, epoch):
            return self._order[1]
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        shard = np.concatenate([s.shard_of(r) + 1_000_000 * i for i, (s, r) in enumerate(self.parts)])
        names, inv = np.unique(shard, return_inverse=True)
        if len(names) <= WINDOW:
            perm = torch.randperm(len(self), generator=gen)
        else:
            rank = np.empty(len(names), np.int64)
            rank[torch.randperm(len(names), generator=gen).numpy()] = np.arange(len(names))
            window = (rank // WINDOW)[inv]
            grouped = np.argsort(window, kind="stable")
            ends = np.cumsum(np.bincount(window))
            perm = torch.from_numpy(np.concatenate([
                grouped[lo:hi][torch.randperm(hi - lo, generator=gen).numpy()]
                for lo, hi in zip(np.r_[0, ends[:-1]], ends)]))
        self._order = ((seed, epoch), perm)
        return perm


def write_descriptor(stage: Path, split: str, name: str, counts: list[int]) -> Path:
    path = stage / f"{split}.shards.json"
    shards = [{"url": shard_name(split, k), "nsamples": int(c)} for k, c in enumerate(counts)]
    path.write_text(json.dumps({"wids_version": 1, "name": f"{name}/{split}", "shardlist": shards}, indent=1) + "\n")
    return path


def write_split(seq, stage: Path, split: str, name: str, shard_size: int, workers: int, signals=None) -> dict:
    """Write `seq` (a source's split) as shards in `stage` with its descriptor, labels and sides; returns
    {file: SHA-256} and {shard: bytes}. Shards already in `stage` (an interrupted attempt's; each is whole,
    vit.data.shards.write_shard) are kept and read back, so a preparation resumes shard by shard. A stop
    signal ends the split between two shards (vit.stops.Resumable)."""
    import multiprocessing

    from tqdm import tqdm

    from vit.data import pool as P
    from vit.stops import EXIT_RESUME, Resumable, Signals, for_workers

    n = len(seq)
    if n == 0:
        raise DataError(f"split {split}: the source has no images")
    count = -(-n // shard_size)
    _JOB.update(seq=seq, stage=stage, split=split, order=store_order(n), size=shard_size)
    done: dict = {}
    ctx = multiprocessing.get_context("fork")  # workers inherit the open source, nothing is pickled
    bar = tqdm(total=n, unit="img", desc=f"shards {split}", mininterval=2)
    try:
        with (ctx.Pool(workers, initializer=for_workers) if workers > 1 else P.Serial()) as pool:
            for k, meta in P.finished(pool.imap_unordered(_one_shard, range(count)), signals):
                done[k] = meta
                bar.update(len(meta[0]))
    finally:
        bar.close()
        _JOB.clear()
    if len(done) < count:
        raise Resumable(f"{stage}: {split} stopped by {Signals.name(signals.received)} with {count - len(done)} of "
                        f"{count} shards to write; the finished ones are kept and the next attempt resumes "
                        f"(exit status {EXIT_RESUME})")
    metas = [done[k] for k in range(count)]
    np.save(stage / f"{split}_labels.npy", np.concatenate([m[0] for m in metas]))
    np.save(stage / f"{split}_sides.npy", np.concatenate([m[1] for m in metas]))
    (stage / f"{split}_names.txt").write_text("".join(f"{x}\n" for m in metas for x in m[2]))
    write_descriptor(stage, split, name, [len(m[0]) for m in metas])
    files = {shard_name(split, k): m[3] for k, m in enumerate(metas)}
    for f in (f"{split}_labels.npy", f"{split}_sides.npy", f"{split}_names.txt", f"{split}.shards.json"):
        files[f] = sha256_file(stage / f)
    return files, {shard_name(split, k): m[4] for k, m in enumerate(metas)}


_JOB: dict = {}  # the split being written; set before the worker pool forks


def _one_shard(k: int):
    seq, stage, split, order, size = (_JOB[key] for key in ("seq", "stage", "split", "order", "size"))
    path = stage / shard_name(split, k)
    # an earlier attempt's shard (whole, as write_shard renames) is read back, not written again
    labels, sides, names = read_back(path) if path.exists() else \
        write_shard(seq, order[k * size:(k + 1) * size], k * size, path)
    return k, (labels, sides, names, sha256_file(path), path.stat().st_size)
