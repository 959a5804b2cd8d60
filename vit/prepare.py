"""Prepare a dataset once into the compact format of `vit.data` (uint8 .npy + manifest with SHA-256).

    python -m vit.prepare --name=digits --source=digits --out=results/data/digits

Sources (all offline):
  shapes                      the procedural upstream corpus (vit.synth), our stand-in for ImageNet /
                              ImageNet-21k / JFT-300M at three sizes of one generator (paper sec. 4.2)
  dsprites_location, dsprites_orientation, clevr_count, clevr_distance
                              VTAB Structured-group tasks rendered procedurally (vit.synth)
  digits                      scikit-learn's 1,797 real handwritten digits (8x8, shipped in the wheel)
  fashion_mnist               Fashion-MNIST IDX files from {data_root}/FashionMNIST/raw or Debian's
                              dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist)

Splits follow VTAB-1k: train (800) and val (200) for the sweep, test held out. A failed preparation
leaves an earlier complete one untouched: files are staged and the manifest is written last.
"""
from __future__ import annotations

import gzip
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vit import cli
from vit.data import MANIFEST, DataError, split_files
from vit.logs import sha256_file, write_json

SYNTH_SOURCES = ("shapes", "dsprites_location", "dsprites_orientation", "clevr_count", "clevr_distance")
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
    classes: int = 64       # number of classes (shapes only)
    seed: int = 0
    data_root: str = ""     # where external datasets live (fashion_mnist)


# ----------------------------------------------------------------------------- sources
def _synth(cfg: Config) -> tuple[dict, list[str], dict]:
    from vit import synth

    kw = {"n_classes": cfg.classes} if cfg.source == "shapes" else {}
    splits, names, info = {}, [], {}
    # Each split has its own seed: the train sets of the three upstream sizes are then prefixes of
    # one another (nested, like subsampled ImageNet-21k in the paper's Fig. 3), and val/test stay apart.
    for offset, (split, n) in enumerate((("train", cfg.train), ("val", cfg.val), ("test", cfg.test))):
        if n > 0:
            x, y, names, info = synth.make(cfg.source, n, size=cfg.size, seed=cfg.seed * 10 + offset, **kw)
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


def build(cfg: Config) -> tuple[dict, list[str], dict]:
    if cfg.source in SYNTH_SOURCES:
        return _synth(cfg)
    if cfg.source == "digits":
        return _digits(cfg)
    if cfg.source == "fashion_mnist":
        return _fashion_mnist(cfg)
    raise cli.ConfigError(f"--source={cfg.source!r}: unknown; valid sources: "
                          f"{', '.join(SYNTH_SOURCES + ('digits', 'fashion_mnist'))}")


# ----------------------------------------------------------------------------- writing
def prepare(cfg: Config) -> dict:
    if not cfg.out or not cfg.name:
        raise cli.ConfigError("--name and --out are required")
    t0 = time.time()
    splits, class_names, info = build(cfg)
    out = Path(cfg.out)
    stage = out.with_name(out.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    files, sizes = {}, {}
    for split, (x, y) in splits.items():
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or len(x) != len(y):
            raise DataError(f"{cfg.source}: split {split} has images {x.shape} {x.dtype}, labels {y.shape}; "
                            f"expected uint8 (N,H,W,3) and N labels")
        fx, fy = split_files(split)
        np.save(stage / fx, np.ascontiguousarray(x))
        np.save(stage / fy, np.asarray(y, dtype=np.int64))
        files[fx], files[fy] = sha256_file(stage / fx), sha256_file(stage / fy)
        sizes[split] = int(len(x))
    first = next(iter(splits.values()))[0]
    manifest = {
        "name": cfg.name, "source": cfg.source, "group": cfg.group, "seed": cfg.seed,
        "classes": list(class_names), "num_classes": len(class_names),
        "image_size": [int(first.shape[1]), int(first.shape[2])], "channels": 3,
        "splits": sizes, "files": files, "info": info,
        "seconds": round(time.time() - t0, 2),
    }
    # Move the finished files in, manifest last: a crash before this point leaves `out` as it was.
    out.mkdir(parents=True, exist_ok=True)
    for name in files:
        (stage / name).replace(out / name)
    write_json(out / MANIFEST, manifest)
    shutil.rmtree(stage, ignore_errors=True)
    print(f"prepared {cfg.name}: {sizes} at {manifest['image_size']} px, {len(class_names)} classes, "
          f"{manifest['seconds']} s -> {out}")
    return manifest


if __name__ == "__main__":
    cli.main_guard(prepare, Config)
