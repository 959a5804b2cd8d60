"""Prepare a dataset once into the compact format of `vit.data` (uint8 .npy + manifest with SHA-256).

    python -m vit.data.prepare --name=digits --source=digits --out=results/data/digits

Sources (all offline):
  contours                    the procedural upstream corpus (vit.data.contours): classes are random
                              radial contours, 1-3 instances anywhere in the frame; our stand-in for ImageNet /
                              ImageNet-21k / JFT-300M at three sizes of one generator (paper sec. 4.2)
  shapes                      a smaller procedural corpus (vit.data.synth.shapes: 16 shapes x 4 fills, centred),
                              the smoke preset's upstream
  dsprites_location, dsprites_orientation, clevr_count, clevr_distance
                              VTAB Structured-group tasks rendered procedurally (vit.data.synth)
  landcover                   a Specialized-group stand-in: EuroSAT-like aerial tiles, 10 classes (vit.data.synth)
  flowers                     a Natural-group stand-in: procedural flowers, 16 species, fine-grained like
                              Flowers-102 (vit.data.flowers)
  digits                      scikit-learn's 1,797 real handwritten digits (8x8, shipped in the wheel)
  fashion_mnist               Fashion-MNIST IDX files from {data_root}/FashionMNIST/raw or Debian's
                              dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist)
  vtab1k                      a task of the vtab-1k/ archive under {data_root} (--task=<folder or alias>);
                              splits train800, val200, test
  imagenet                    {data_root}/imagenet/{train,val}/<wnid>/ in the canonical 1000-class order;
                              val file names are kept for ImageNet ReaL scoring
  imagefolder                 any {data_root}/<task>/<split>/<class>/<image> tree (ImageNet-21k, ...)
  torchvision                 --task=<name> from vit.data.tv_sources (CIFAR, Pets, Flowers, SVHN, DTD, ...)

Procedural sources follow VTAB-1k: train (800) and val (200) for the sweep, test held out. Image
sources are resized to --size x --size (the whole image, as VTAB does) and streamed: worker processes
decode chunks into a pre-allocated memory-mapped array, so memory stays bounded at any dataset size,
and a progress file lets an interrupted preparation resume. A failed preparation leaves an earlier
complete one untouched: files are staged in <out>.partial and the manifest is written last.
"""
from __future__ import annotations

import gzip
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vit import cli
from vit.data import MANIFEST, DataError, split_files, write_manifest
from vit.data import contours, flowers, shards, sources, synth
from vit.data import pool as pool_
from vit.logs import config_hash, reading, sha256_file
from vit.plan import IMAGE_SOURCES
from vit.stops import EXIT_RESUME, Resumable, Signals, for_workers

SYNTH_SOURCES = ("contours", "shapes", "dsprites_location", "dsprites_orientation", "clevr_count", "clevr_distance",
                 "landcover", "flowers")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                   "bag", "ankle boot"]


@dataclass
class Config:
    name: str = ""          # dataset name, recorded in the manifest
    source: str = ""        # one of the sources in the module docstring
    out: str = ""           # results/data/<name>
    group: str = ""         # VTAB group (natural | specialized | structured) or "upstream"
    train: int = 800        # examples per split (upstream: train is the pretraining set)
    val: int = 200
    test: int = 1000        # 0 = no test split (upstream sets)
    size: int = 64          # rendered side in pixels (procedural sources only)
    classes: int = 0        # number of classes (contours, shapes: 64; dsprites_location: VTAB's 16); 0 = the default
    seed: int = 0
    data_root: str = ""     # where external datasets live
    task: str = ""          # vtab1k / torchvision / imagefolder: which dataset under data_root
    splits: list = field(default_factory=list)  # image sources: splits to prepare ([] = all of the source's)
    download: bool = False  # torchvision: let torchvision download (needs internet)
    workers: int = 0        # decoding processes for image sources (0 = the job's threads, else all cores)
    chunk: int = 256        # images per work unit (and per resume step)
    store: str = "arrays"   # arrays: uint8 .npy at size x size (laptop sets); shards: the original encoded
                            # images in WebDataset tars (image sources at paper scale; vit.data.shards)
    shard_size: int = 5000  # store=shards: images per shard (and per resume step)


# ----------------------------------------------------------------------------- sources
def _synth(cfg: Config) -> tuple[dict, list[str], dict]:
    kw = ({"n_classes": cfg.classes or 64} if cfg.source in ("shapes", "contours") else
          {"classes": cfg.classes or 16} if cfg.source == "dsprites_location" else {})
    splits, names, info = {}, [], {}
    # Each split has its own seed: the train sets of the three upstream sizes are then prefixes of
    # one another (nested, like subsampled ImageNet-21k in the paper's Fig. 3), and val/test stay apart.
    for offset, (split, n) in enumerate((("train", cfg.train), ("val", cfg.val), ("test", cfg.test))):
        if n > 0:
            make = {"contours": contours.make, "flowers": flowers.make}.get(cfg.source, synth.make)
            x, y, names, info = make(cfg.source, n, size=cfg.size, seed=cfg.seed * 10 + offset, **kw)
            splits[split] = (x, y)
    return splits, names, info


def _digits(cfg: Config) -> tuple[dict, list[str], dict]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255 / 16)).astype(np.uint8)           # 0..16 grey levels -> 0..255
    x = np.repeat(x[..., None], 3, axis=-1)                         # 3 channels, as VTAB tiles grey
    order = np.random.default_rng(cfg.seed).permutation(len(x))
    return _take(x[order], d.target[order], cfg), [str(i) for i in range(10)], {"native_size": 8}


def _fashion_mnist(cfg: Config) -> tuple[dict, list[str], dict]:
    def read(stem: str) -> np.ndarray:
        candidates = [Path(cfg.data_root) / "FashionMNIST" / "raw" / stem] if cfg.data_root else []
        candidates += [DEBIAN_FASHION / f"{stem}.gz"]
        for path in candidates:
            if path.exists():
                raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
                ndim = raw[3]
                shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
                return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)
        raise DataError(f"Fashion-MNIST file {stem} not found; looked in {', '.join(map(str, candidates))}. "
                        f"Install Debian's package (`apt-get install dataset-fashion-mnist`) or put the "
                        f"uncompressed IDX files under <data_root>/FashionMNIST/raw/ "
                        f"(torchvision.datasets.FashionMNIST(data_root, download=True) does that).")

    xtr, ytr = read("train-images-idx3-ubyte"), read("train-labels-idx1-ubyte")
    xte, yte = read("t10k-images-idx3-ubyte"), read("t10k-labels-idx1-ubyte")
    order = np.random.default_rng(cfg.seed).permutation(len(xtr))
    tile = lambda a: np.repeat(a[..., None], 3, axis=-1)  # noqa: E731
    splits = _take(tile(xtr[order]), ytr[order], Config(**{**cfg.__dict__, "test": 0}))
    if cfg.test:
        splits["test"] = (tile(xte[: cfg.test]), yte[: cfg.test])
    return splits, FASHION_CLASSES, {"native_size": 28}


def _take(x: np.ndarray, y: np.ndarray, cfg: Config) -> dict:
    """Consecutive train / val / test slices of an already shuffled array (test = all that is left
    when cfg.test exceeds it)."""
    need = cfg.train + cfg.val
    if need > len(x):
        raise DataError(f"{cfg.source}: asked for train={cfg.train} + val={cfg.val} examples, "
                        f"but the source has only {len(x)}")
    splits = {"train": (x[:cfg.train], y[:cfg.train]), "val": (x[cfg.train:need], y[cfg.train:need])}
    if cfg.test:
        splits["test"] = (x[need:need + cfg.test], y[need:need + cfg.test])
    return {k: v for k, v in splits.items() if len(v[0])}


def _images(cfg: Config) -> tuple[dict, list[str], dict]:
    """Per split, a sequence of (PIL image or uint8 array, label) from an external dataset."""
    if not cfg.data_root:
        raise cli.ConfigError(f"--source={cfg.source} needs --data_root (config key data_root)")
    if cfg.source == "vtab1k":
        task = sources.vtab_task(cfg.task)
        splits = cfg.splits or ["train800", "val200", "test"]
        seqs = {s: sources.open_vtab(task.folder, s, cfg.data_root)[0] for s in splits}
        return seqs, [str(i) for i in range(task.classes)], {"vtab_task": task.folder, "paper": task.paper}
    if cfg.source == "imagenet":
        seqs = {s: sources.open_imagenet(s, cfg.data_root)[0] for s in (cfg.splits or ["train", "val"])}
        return seqs, sources.imagenet_wnids(), {"class_order": "timm imagenet_synsets.txt (sorted wnids)"}
    if cfg.source == "imagefolder":
        root = Path(cfg.data_root) / cfg.task
        splits = cfg.splits or (sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
        if not splits:
            raise DataError(f"{root}: expected <split>/<class>/<image> folders")
        classes = sorted({c.name for s in splits for c in (root / s).iterdir() if c.is_dir()})
        return {s: sources.open_imagefolder(root / s, classes)[0] for s in splits}, classes, {}
    if cfg.source == "torchvision":
        from vit.data import tv_sources  # here: it imports torchvision, seconds that other sources never need

        spec = tv_sources.TV_DATASETS.get(cfg.task)
        if spec is None:
            raise cli.ConfigError(f"--task={cfg.task!r}: not a torchvision dataset; valid: "
                                  f"{', '.join(tv_sources.TV_DATASETS)}")
        seqs, names = {}, []
        for s in cfg.splits or list(spec["splits"]):
            seqs[s], names = tv_sources.open_split(cfg.task, s, cfg.data_root, download=cfg.download)
        # native_size: the HyperRule chooses its fine-tuning resolution from it (vit.train.finetune.native_hw)
        return seqs, list(names), {"torchvision": cfg.task, **({"native_size": spec["native_size"]}
                                                              if spec["native_size"] else {})}
    raise AssertionError(cfg.source)


def build(cfg: Config) -> tuple[dict, list[str], dict]:
    if cfg.source in SYNTH_SOURCES:
        return _synth(cfg)
    if cfg.source == "digits":
        return _digits(cfg)
    if cfg.source == "fashion_mnist":
        return _fashion_mnist(cfg)
    if cfg.source in IMAGE_SOURCES:
        return _images(cfg)
    raise cli.ConfigError(f"--source={cfg.source!r}: unknown; valid sources: "
                          f"{', '.join(SYNTH_SOURCES + ('digits', 'fashion_mnist') + IMAGE_SOURCES)}")


# ----------------------------------------------------------------------------- streaming image sources
_WORK: dict = {}  # the sequence being decoded; set before the worker pool forks, read by the workers


def _square(image, size: int) -> np.ndarray:
    """The whole image resized to size x size (VTAB resizes without cropping); PIL's bicubic
    filter widens its support when shrinking, so downsampling is antialiased."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        if image.shape[:2] == (size, size):
            return image
        image = Image.fromarray(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.BICUBIC)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _decode_chunk(c: int):
    seq, size, chunk = _WORK["seq"], _WORK["size"], _WORK["chunk"]
    idx = range(c * chunk, min(len(seq), (c + 1) * chunk))
    xs, ys = np.empty((len(idx), size, size, 3), np.uint8), np.empty(len(idx), np.int64)
    for j, i in enumerate(idx):
        image, label = seq[i]
        xs[j], ys[j] = _square(image, size), label
    return c, xs, ys


def stream_split(seq, stage: Path, split: str, size: int, workers: int, chunk: int,
                 signals: Signals | None = None) -> None:
    """Decode `seq` into <split>_images.npy / <split>_labels.npy in `stage`, resuming from the chunks a
    previous attempt finished. <split>.done.npy holds one byte per chunk, set once the chunk's pixels
    are written, so recording progress costs the same at any dataset size. Chunks are written with
    positioned writes rather than through a memory map, so resident memory does not grow with the
    dataset. A stop signal (`signals`, vit.stops) ends the split between two chunks: every chunk marked
    done is whole, and the next attempt decodes the rest."""
    n = len(seq)
    if n == 0:
        raise DataError(f"split {split}: the source has no images")
    fx, fy = (stage / f for f in split_files(split))
    fdone = stage / f"{split}.done.npy"
    n_chunks = (n + chunk - 1) // chunk
    resume = fx.exists() and fy.exists() and fdone.exists()
    fix = f"delete {stage} to prepare this set from the start"  # a damaged staged file: the progress is lost
    images = _staged(fx, np.uint8, (n, size, size, 3), resume, fix)
    labels = _staged(fy, np.int64, (n,), resume, fix)
    offsets = {fx: images.offset, fy: labels.offset}  # header lengths: chunks are written past them
    del images, labels
    done = _staged(fdone, np.uint8, (n_chunks,), resume, fix)
    pending = [c for c in range(n_chunks) if not done[c]]
    _WORK.update(seq=seq, size=size, chunk=chunk)
    bar = tqdm(total=n, initial=n - sum(min(chunk, n - c * chunk) for c in pending), unit="img",
               desc=f"prepare {split}", mininterval=2)
    ctx = multiprocessing.get_context("fork")  # workers inherit the open dataset, nothing is pickled
    try:
        with open(fx, "r+b") as img_file, open(fy, "r+b") as label_file, \
                (ctx.Pool(workers, initializer=for_workers) if workers > 1 else pool_.Serial()) as pool:
            for c, xs, ys in pool_.finished(pool.imap_unordered(_decode_chunk, pending), signals):
                os.pwrite(img_file.fileno(), xs.tobytes(), offsets[fx] + c * chunk * xs[0].nbytes)
                os.pwrite(label_file.fileno(), ys.tobytes(), offsets[fy] + c * chunk * 8)
                done[c] = 1  # after the pixels reached the OS: a killed process loses nothing marked done
                done.flush()
                bar.update(len(xs))
    finally:
        bar.close()
        _WORK.clear()
    if not done.all():  # stopped by a signal
        left = int((done == 0).sum())
        del done
        raise Resumable(f"{stage}: {split} stopped by {Signals.name(signals.received)} with {left} of {n_chunks} "
                        f"chunks to decode; the finished ones are kept and the next attempt resumes "
                        f"(exit status {EXIT_RESUME})")
    del done  # <split>.done.npy stays, all ones, until the finished set leaves the stage: a restart skips the split


def _staged(path: Path, dtype, shape: tuple, resume: bool, fix: str):
    """A staged .npy as a memory map: a previous attempt's (resume), checked, or a new one."""
    from numpy.lib.format import open_memmap

    with reading(path, fix, (ValueError, OSError)):
        mm = open_memmap(path, mode="r+" if resume else "w+", dtype=dtype, shape=shape)
    if mm.shape != shape:
        raise DataError(f"{path}: holds {mm.shape}, this preparation needs {shape}; {fix}")
    return mm


# ----------------------------------------------------------------------------- writing
def prepare(cfg: Config, signals: Signals | None = None) -> dict:
    """Prepare the dataset of `cfg` (see the module doc); `signals`: the process's stop signals (vit.stops),
    checked between chunks and between splits."""
    if not cfg.out or not cfg.name:
        raise cli.ConfigError("--name and --out are required")
    if cfg.store not in ("arrays", "shards"):
        raise cli.ConfigError(f"--store={cfg.store!r}: expected arrays or shards")
    if cfg.store == "shards" and cfg.source not in IMAGE_SOURCES:  # before anything is built or staged
        raise cli.ConfigError(f"--store=shards: --source={cfg.source} is generated in memory; shards are for image "
                              f"sources ({', '.join(IMAGE_SOURCES)}): use store: arrays")
    t0 = time.time()
    splits, class_names, info = build(cfg)
    out = Path(cfg.out)
    stage = out.with_name(out.name + ".partial")
    chash = config_hash(asdict(cfg) | {"workers": 0})  # the worker count does not change the bytes
    marker = stage / "config_hash"
    # bytes: a damaged marker is just another attempt's, whose staged files cannot be trusted either
    if stage.exists() and (not marker.exists() or marker.read_bytes() != chash.encode()):
        shutil.rmtree(stage)  # an attempt with other settings: nothing of it can be reused
    stage.mkdir(parents=True, exist_ok=True)
    marker.write_text(chash)
    files, shard_bytes = {}, {}
    for split, source in splits.items():
        fx, fy = split_files(split)
        if isinstance(source, tuple):  # in-memory arrays (procedural sources, digits, Fashion-MNIST)
            x, y = source
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or len(x) != len(y):
                raise DataError(f"{cfg.source}: split {split} has images {x.shape} {x.dtype}, labels {y.shape}; "
                                f"expected uint8 (N,H,W,3) and N labels")
            np.save(stage / fx, np.ascontiguousarray(x))
            np.save(stage / fy, np.asarray(y, dtype=np.int64))
        elif cfg.store == "shards":  # the originals' bytes, resized at training time (vit.data.shards)
            got, sizes = shards.write_split(source, stage, split, cfg.name, cfg.shard_size, _workers(cfg), signals)
            files.update(got)
            shard_bytes.update(sizes)
            continue
        else:
            if cfg.size <= 0:
                raise cli.ConfigError(f"--size must be positive for --source={cfg.source}")
            stream_split(source, stage, split, cfg.size, _workers(cfg), cfg.chunk, signals)
            samples = getattr(source, "samples", None)
            if samples is not None:  # keep file names (ImageNet ReaL scores by file name)
                (stage / f"{split}_names.txt").write_text("".join(Path(p).name + "\n" for p, _ in samples))
                files[f"{split}_names.txt"] = sha256_file(stage / f"{split}_names.txt")
        files[fx], files[fy] = sha256_file(stage / fx), sha256_file(stage / fy)
        if signals is not None and signals.received and split != list(splits)[-1]:
            raise Resumable(f"{stage}: stopped by {Signals.name(signals.received)} after split {split}; finished "
                            f"streamed splits and chunks are kept for the next attempt (exit status {EXIT_RESUME})")
    manifest = write_manifest(stage, name=cfg.name, source=cfg.source, group=cfg.group, seed=cfg.seed, task=cfg.task,
                              classes=class_names, splits=list(splits), files=files, info=info, started=t0,
                              store={"store": "shards", "sizes": shard_bytes} if cfg.store == "shards" else None)
    # Move the finished files in, manifest last: a crash before this point leaves `out` as it was.
    out.mkdir(parents=True, exist_ok=True)
    for name in [*files, MANIFEST]:
        (stage / name).replace(out / name)
    shutil.rmtree(stage, ignore_errors=True)
    print(f"prepared {cfg.name}: {manifest['splits']} at {manifest['image_size']} px, {manifest['num_classes']} classes, "
          f"{manifest['seconds']} s -> {out}")
    return manifest


def _workers(cfg: Config) -> int:
    # Snakemake exports a job's thread budget as OMP_NUM_THREADS; outside Snakemake use every core
    return cfg.workers or int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)


def main() -> None:
    signals = Signals()
    signals.install()
    cli.main_guard(lambda cfg: prepare(cfg, signals), Config)


if __name__ == "__main__":
    main()
