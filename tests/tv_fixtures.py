"""Tiny datasets written in the exact on-disk layouts torchvision 0.29 reads (offline tests).

Each `write_*(root)` builds the files under `root` (the `data_root` given to `open_split`) and
returns `{split: [expected int label, ...]}` in the order torchvision will yield them (except
SUN397, whose file order comes from `rglob`, so compare it as a multiset). Pixels are random.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

RNG = np.random.default_rng(0)


def _jpg(path: Path, size=(20, 16), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8), mode).save(path, "JPEG")


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_batch(labels, key):
    # rows are 1024 R + 1024 G + 1024 B values, each plane 32x32 row-major
    data = RNG.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    return {"data": data, key: list(labels), "batch_label": "fixture",
            "filenames": [f"img_{i}.png" for i in range(len(labels))]}


def write_cifar10(root) -> dict:
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True, exist_ok=True)
    train = []
    for b in range(1, 6):  # all six data files must exist for either split
        labels = [(2 * b + i) % 10 for i in range(2)]
        _pickle(d / f"data_batch_{b}", _cifar_batch(labels, "labels"))
        train += labels
    test = [9, 0, 3, 7]
    _pickle(d / "test_batch", _cifar_batch(test, "labels"))
    _pickle(d / "batches.meta", {"label_names": [f"c10_{i}" for i in range(10)], "num_cases_per_batch": 2})
    return {"train": train, "test": test}


def write_cifar100(root) -> dict:
    d = Path(root) / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    out = {"train": [0, 57, 99, 12, 34], "test": [98, 1, 50]}
    for split, labels in out.items():
        batch = _cifar_batch(labels, "fine_labels")
        batch["coarse_labels"] = [lab // 5 for lab in labels]
        _pickle(d / split, batch)
    _pickle(d / "meta", {"fine_label_names": [f"fine_{i}" for i in range(100)],
                         "coarse_label_names": [f"coarse_{i}" for i in range(20)]})
    return out


PET_BREEDS = {1: ("Abyssinian", 1), 2: ("american_bulldog", 2), 37: ("Yorkshire_terrier", 2)}


def write_pets(root) -> dict:
    base = Path(root) / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    out = {"trainval": [1, 2, 37, 1, 2], "test": [37, 2, 1, 1]}
    n = 0
    for split, class_ids in out.items():
        lines = []
        for cid in class_ids:
            n += 1
            breed, species = PET_BREEDS[cid]
            image_id = f"{breed}_{n}"  # class names are derived from this prefix
            _jpg(base / "images" / f"{image_id}.jpg")
            lines.append(f"{image_id} {cid} {species} {n}")
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return {s: [c - 1 for c in ids] for s, ids in out.items()}


def write_flowers102(root) -> dict:
    from scipy.io import savemat

    base = Path(root) / "flowers-102"
    labels = [1, 5, 102, 7, 7, 50, 3, 101]  # 1-based, image i+1 has labels[i]
    for i in range(len(labels)):
        _jpg(base / "jpg" / f"image_{i + 1:05d}.jpg")
    # every split needs >= 2 ids: with one, squeeze_me yields a scalar and torchvision's .tolist() breaks
    ids = {"trnid": [1, 4, 8], "valid": [2, 6], "tstid": [3, 5, 7]}
    savemat(base / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    savemat(base / "setid.mat", {k: np.array([v], dtype=np.uint16) for k, v in ids.items()})
    return {split: [labels[i - 1] - 1 for i in ids[key]]
            for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid"))}


def write_svhn(root) -> dict:
    from scipy.io import savemat

    d = Path(root) / "svhn"  # tv_sources hands torchvision data_root/svhn as its root
    d.mkdir(parents=True, exist_ok=True)
    raw = {"train": [10, 1, 2, 9, 5, 10], "test": [3, 10, 7, 4]}  # SVHN writes digit 0 as 10
    for split, y in raw.items():
        X = RNG.integers(0, 256, (32, 32, 3, len(y)), dtype=np.uint8)  # (H, W, C, N) like the real files
        savemat(d / f"{split}_32x32.mat", {"X": X, "y": np.array(y, dtype=np.uint8).reshape(-1, 1)})
    return {s: [v % 10 for v in y] for s, y in raw.items()}


DTD_CLASSES = ["banded", "cracked", "zigzagged"]  # sorted, as torchvision sorts them


def write_dtd(root) -> dict:
    data = Path(root) / "dtd" / "dtd"
    (data / "labels").mkdir(parents=True, exist_ok=True)
    out = {"train": [0, 1, 2, 2], "val": [2, 0, 1], "test": [1, 0, 2, 0]}  # every class in every split
    n = 0
    for split, labels in out.items():
        lines = []
        for lab in labels:
            n += 1
            cls = DTD_CLASSES[lab]
            _jpg(data / "images" / cls / f"{cls}_{n:04d}.jpg")
            lines.append(f"{cls}/{cls}_{n:04d}.jpg")
        (data / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
        # another partition with different content: proves partition 1 is the one read
        (data / "labels" / f"{split}2.txt").write_text(lines[0] + "\n")
    return out


EUROSAT_CLASSES = ["AnnualCrop", "Forest", "River"]


def write_eurosat(root) -> dict:
    data = Path(root) / "eurosat" / "2750"
    counts = [2, 3, 1]
    labels = []
    for lab, (cls, k) in enumerate(zip(EUROSAT_CLASSES, counts)):
        for i in range(k):
            _jpg(data / cls / f"{cls}_{i + 1}.jpg", size=(64, 64))
        labels += [lab] * k
    return {"all": labels}


CALTECH_CLASSES = ["Faces", "accordion", "airplanes"]  # sorted() order; BACKGROUND_Google is dropped


def write_caltech101(root) -> dict:
    cats = Path(root) / "caltech101" / "101_ObjectCategories"
    _jpg(cats / "BACKGROUND_Google" / "image_0001.jpg")
    labels = []
    for lab, (cls, k) in enumerate(zip(CALTECH_CLASSES, [2, 1, 3])):
        for i in range(k):
            # one grayscale JPEG, as in the real set, to prove the RGB conversion
            mode = "L" if (cls, i) == ("accordion", 0) else "RGB"
            _jpg(cats / cls / f"image_{i + 1:04d}.jpg", mode=mode)
        labels += [lab] * k
    return {"all": labels}


SUN_CLASSES = ["abbey", "apartment_building/outdoor", "bar"]


def write_sun397(root) -> dict:
    data = Path(root) / "SUN397"
    data.mkdir(parents=True, exist_ok=True)
    (data / "ClassName.txt").write_text("".join(f"/{c[0]}/{c}\n" for c in SUN_CLASSES))
    labels = []
    for lab, (cls, k) in enumerate(zip(SUN_CLASSES, [1, 2, 2])):
        for i in range(k):
            _jpg(data / cls[0] / cls / f"sun_{lab}{i}abc.jpg")
        labels += [lab] * k
    return {"all": labels}


FMNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _idx_bytes(arr: np.ndarray) -> bytes:
    # IDX: 2 zero bytes, type code 0x08 (uint8), number of dims, big-endian int32 dims, then data
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_fashion_mnist(raw_dir, gz: bool = False) -> dict:
    """IDX files in `raw_dir` (torchvision wants root/FashionMNIST/raw/, uncompressed); with `gz`
    the Debian package's layout instead: the same files gzipped, named *.gz."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    out = {"train": [0, 9, 3, 3, 7, 1], "test": [5, 2, 8, 0]}
    for split, labels in out.items():
        img_name, lab_name = FMNIST_FILES[split]
        images = RNG.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        for name, arr in ((img_name, images), (lab_name, np.array(labels, dtype=np.uint8))):
            if gz:
                with gzip.open(raw_dir / f"{name}.gz", "wb") as f:
                    f.write(_idx_bytes(arr))
            else:
                (raw_dir / name).write_bytes(_idx_bytes(arr))
    return out


def fmnist_raw_dir(root) -> Path:
    return Path(root) / "FashionMNIST" / "raw"


# name -> writer taking data_root (fashion_mnist via its torchvision raw folder)
def write_pcam(root) -> dict:
    """PatchCamelyon: pcam/camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5 with datasets
    "x" (N, 96, 96, 3) uint8 and "y" (N, 1, 1, 1), read by torchvision through h5py."""
    import h5py

    folder = Path(root) / "pcam"
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for split, tag, n in (("train", "train", 4), ("val", "valid", 3), ("test", "test", 2)):
        labels = [(i + len(split)) % 2 for i in range(n)]
        with h5py.File(folder / f"camelyonpatch_level_2_split_{tag}_x.h5", "w") as f:
            f["x"] = RNG.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
        with h5py.File(folder / f"camelyonpatch_level_2_split_{tag}_y.h5", "w") as f:
            f["y"] = np.array(labels, np.uint8).reshape(n, 1, 1, 1)
        expected[split] = labels
    return expected


WRITERS = {
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "oxford_iiit_pet": write_pets,
    "oxford_flowers102": write_flowers102,
    "svhn": write_svhn,
    "dtd": write_dtd,
    "eurosat": write_eurosat,
    "caltech101": write_caltech101,
    "sun397": write_sun397,
    "fashion_mnist": lambda root: write_fashion_mnist(fmnist_raw_dir(root)),
    "patch_camelyon": write_pcam,
}
# Fixtures whose md5 can never match torchvision's list (tests need VERIFY_MD5 = False for these).
MD5_CHECKED = {"cifar10", "cifar100", "svhn", "oxford_flowers102"}
