"""torchvision-backed sources for the ViT transfer datasets: one table, one `open_split`.

`open_split(name, split, data_root)` returns `(seq, class_names)` where `seq[i]` is
`(RGB PIL image, int label)`. Our split vocabulary is torchvision's own (train/val/test/trainval);
datasets that torchvision ships as a single pool expose the one split "all".

Offline behaviour: with `download=False` and no files, a `FileNotFoundError` names the folder looked
in, the dataset and how to get it (torchvision's bare "Dataset not found or corrupted" says neither).
"""
from __future__ import annotations

import gzip
import os
import shutil

# `dir` is the folder under `data_root` where the files live. For SVHN torchvision keeps the .mat
# files directly in its root, so we hand it `data_root/svhn` to keep data_root tidy.
TV_DATASETS: dict[str, dict] = {
    "cifar10": {"classes": 10, "splits": ("train", "test"), "native_size": 32, "group": "natural",
                "dir": "cifar-10-batches-py"},
    "cifar100": {"classes": 100, "splits": ("train", "test"), "native_size": 32, "group": "natural",
                 "dir": "cifar-100-python"},
    "oxford_iiit_pet": {"classes": 37, "splits": ("trainval", "test"), "native_size": None,
                        "group": "natural", "dir": "oxford-iiit-pet"},
    "oxford_flowers102": {"classes": 102, "splits": ("train", "val", "test"), "native_size": None,
                          "group": "natural", "dir": "flowers-102"},
    "svhn": {"classes": 10, "splits": ("train", "test"), "native_size": 32, "group": "natural",
             "dir": "svhn"},
    "dtd": {"classes": 47, "splits": ("train", "val", "test"), "native_size": None, "group": "natural",
            "dir": "dtd/dtd"},
    "eurosat": {"classes": 10, "splits": ("all",), "native_size": 64, "group": "specialized",
                "dir": "eurosat/2750"},
    # torchvision drops BACKGROUND_Google, so 101 classes (VTAB's TFDS version has 102).
    "caltech101": {"classes": 101, "splits": ("all",), "native_size": None, "group": "natural",
                   "dir": "caltech101/101_ObjectCategories"},
    "sun397": {"classes": 397, "splits": ("all",), "native_size": None, "group": "natural", "dir": "SUN397"},
    "patch_camelyon": {"classes": 2, "splits": ("train", "val", "test"), "native_size": 96,
                       "group": "specialized", "dir": "pcam"},
    # Not a VTAB task; grouped with the natural-image sets for lack of a better bucket.
    "fashion_mnist": {"classes": 10, "splits": ("train", "test"), "native_size": 28, "group": "natural",
                      "dir": "FashionMNIST/raw"},
}

# Real users keep torchvision's md5 checks. Tests set this to False so that tiny fixtures (whose md5
# can never match) load through subclasses that only test file existence (docs/datasets.md, torchvision sets offline).
VERIFY_MD5 = True

# Debian's `dataset-fashion-mnist` package; its .gz md5s differ from torchvision's list, so we
# decompress them ourselves (docs/datasets.md, torchvision sets offline). A module constant so tests can redirect it.
DEBIAN_FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# Extra advice for the FileNotFoundError, where `download=True` alone is not the whole story.
_HINTS = {
    "patch_camelyon": "torchvision downloads it from Google Drive, which needs the `gdown` and `h5py` "
                      "packages; or place the camelyonpatch_level_2_split_*_{x,y}.h5 files there by hand.",
    "fashion_mnist": "offline, `apt-get install dataset-fashion-mnist` provides the files in "
                     f"{DEBIAN_FMNIST_DIR}, which this module decompresses automatically.",
    "sun397": "the archive is ~37 GB.",
}


class _RGB:
    """Sequence view that forces RGB images and plain int labels (MNIST yields 'L', Caltech101 has
    some grayscale JPEGs; the rest already return RGB, so the convert is a no-op there)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        img, label = self.dataset[i]
        return (img if img.mode == "RGB" else img.convert("RGB")), int(label)


def _no_md5(cls):
    """Subclass of a torchvision dataset class with every md5 set to None (existence check only)."""
    from torchvision import datasets as D

    attrs = {}
    if issubclass(cls, D.CIFAR10):
        attrs = {"train_list": [[f, None] for f, _ in cls.train_list],
                 "test_list": [[f, None] for f, _ in cls.test_list],
                 "meta": {**cls.meta, "md5": None}}
    elif cls is D.SVHN:
        attrs = {"split_list": {k: [url, f, None] for k, (url, f, _) in cls.split_list.items()}}
    elif cls is D.Flowers102:
        attrs = {"_file_dict": {k: (f, None) for k, (f, _) in cls._file_dict.items()}}
    return type(cls.__name__, (cls,), attrs)  # same __name__: some classes derive folders from it


def _md5_checked(cls):
    return cls if VERIFY_MD5 else _no_md5(cls)


def _fmnist_from_debian(data_root: str) -> None:
    """Decompress Debian's Fashion-MNIST .gz files into data_root/FashionMNIST/raw once."""
    raw = os.path.join(data_root, "FashionMNIST", "raw")
    if all(os.path.isfile(os.path.join(raw, f)) for f in FMNIST_FILES):
        return
    srcs = [os.path.join(DEBIAN_FMNIST_DIR, f + ".gz") for f in FMNIST_FILES]
    if not all(os.path.isfile(s) for s in srcs):
        return
    os.makedirs(raw, exist_ok=True)
    for f, src in zip(FMNIST_FILES, srcs):
        dst = os.path.join(raw, f)
        with gzip.open(src, "rb") as fin, open(dst + ".part", "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(dst + ".part", dst)  # never leave a half-written file that passes the existence check


def _pcam(root, split, download):
    import importlib.util

    from torchvision.datasets import PCAM
    if importlib.util.find_spec("h5py") is None:
        # torchvision's own message here says "not found" whether or not the data exist; say which.
        files = [os.path.join(root, "pcam", PCAM._FILES[split][k][0]) for k in ("images", "targets")]
        if all(os.path.isfile(f) for f in files):
            raise ImportError("patch_camelyon: the .h5 files are present but reading them needs h5py "
                              "(pip install h5py).")
        raise RuntimeError("Dataset not found.")
    return PCAM(root, split=split, download=download)


def _build(name: str, split: str, root: str, download: bool):
    """Construct the torchvision dataset; returns (dataset, class_names)."""
    from torchvision import datasets as D

    if name in ("cifar10", "cifar100"):
        ds = _md5_checked(D.CIFAR10 if name == "cifar10" else D.CIFAR100)(
            root, train=split == "train", download=download)
        return ds, list(ds.classes)
    if name == "oxford_iiit_pet":
        # torchvision's `classes` lists only the breeds present, in label order but not indexed by
        # label, so it misaligns if a split lacks a breed. Rebuild it indexed by label from the ids.
        ds = D.OxfordIIITPet(root, split=split, download=download)
        names = [f"class_{i}" for i in range(37)]
        for path, label in zip(ds._images, ds._labels):
            names[label] = " ".join(p.title() for p in path.stem.rsplit("_", 1)[0].split("_"))
        return ds, names
    if name == "oxford_flowers102":
        ds = _md5_checked(D.Flowers102)(root, split=split, download=download)
        return ds, list(ds.classes)
    if name == "svhn":
        # torchvision already maps label 10 to digit 0.
        ds = _md5_checked(D.SVHN)(os.path.join(root, "svhn"), split=split, download=download)
        return ds, [str(d) for d in range(10)]
    if name == "dtd":
        ds = D.DTD(root, split=split, partition=1, download=download)  # VTAB uses fold 1
        return ds, list(ds.classes)
    if name == "eurosat":
        ds = D.EuroSAT(root, download=download)
        return ds, list(ds.classes)
    if name == "caltech101":
        if not download and not os.path.isdir(os.path.join(root, "caltech101", "101_ObjectCategories")):
            # torchvision would first create root/caltech101 as a side effect; fail before that.
            raise RuntimeError("Dataset not found or corrupted.")
        ds = D.Caltech101(root, download=download)
        return ds, list(ds.categories)
    if name == "sun397":
        ds = D.SUN397(root, download=download)
        return ds, list(ds.classes)
    if name == "patch_camelyon":
        return _pcam(root, split, download), ["normal", "metastatic"]
    if name == "fashion_mnist":
        _fmnist_from_debian(root)
        ds = D.FashionMNIST(root, train=split == "train", download=download)
        return ds, list(ds.classes)
    raise AssertionError(f"no builder for {name}")  # TV_DATASETS and _build out of sync


def open_split(name: str, split: str, data_root: str, download: bool = False):
    """Return (seq, class_names); seq[i] -> (PIL.Image in RGB, int label)."""
    if name not in TV_DATASETS:
        raise ValueError(f"unknown torchvision dataset {name!r}; valid names: {sorted(TV_DATASETS)}")
    spec = TV_DATASETS[name]
    if split not in spec["splits"]:
        raise ValueError(f"unknown split {split!r} for {name}; valid splits: {list(spec['splits'])}")
    root = os.path.abspath(os.path.expanduser(str(data_root)))
    try:
        ds, class_names = _build(name, split, root, download)
    except RuntimeError as e:
        # torchvision's messages: "Dataset not found[ or corrupted]...", "Dataset metadata file not
        # found or corrupted...". Anything else (e.g. a real network error) passes through.
        if "not found" not in str(e):
            raise
        where = os.path.join(root, spec["dir"])
        md5 = " (or a file failed torchvision's md5 check)" if name in (
            "cifar10", "cifar100", "svhn", "oxford_flowers102") and VERIFY_MD5 else ""
        how = ("open it with download=True (config key `download: true`) to let torchvision fetch it "
               f"into {root}")
        hint = f"; {_HINTS[name]}" if name in _HINTS else ""
        raise FileNotFoundError(f"{name} ({split}): dataset files not found in {where}{md5}. "
                                f"To get it, {how}{hint}") from e
    return _RGB(ds), class_names
