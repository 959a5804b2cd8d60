"""Where datasets come from: the VTAB-1k task table, the `vtab-1k/` folder format, ImageNet as an
ImageFolder in the canonical 1000-wnid order, and ImageNet ReaL scoring.

Every adapter returns, per split, a sequence of (image, label) with `len()` and indexing, where an
image is a PIL image or an (H, W, 3) uint8 array; `vit.data.prepare` streams such sequences into the
prepared format. torchvision's datasets (CIFAR, Pets, Flowers, ...) live in `vit.data.tv_sources`.
External data sits under one root (config key `data_root`), each dataset in its native layout.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from vit.errors import DataError
from vit.logs import read_json, reading
from vit.plan.tasks import VTAB_SPLITS, VTAB_TASKS, VtabTask, vtab_task  # noqa: F401 (the tasks this module opens)


# ----------------------------------------------------------------------------- structured-task labels
# (task_adaptation's preprocessing, docs/datasets.md, VTAB-1k; the procedural tasks' labels are in vit.data.synth)
KITTI_VEHICLES = (0, 1, 2)                 # Car, Van, Truck in TFDS kitti's object-type order
KITTI_DIST_THRESHOLDS = (-100.0, 8.0, 20.0, 999.0)


def kitti_distance_label(object_types, z_locations) -> int:
    """KITTI-Dist: distance of the closest vehicle (camera-frame z, metres), with 1000 when there is
    none, binned by the largest i with thresholds[i] < d: d <= 8 -> 0, (8, 20] -> 1, (20, 999] -> 2,
    no vehicle -> 3."""
    zs = [float(z) for t, z in zip(object_types, z_locations) if int(t) in KITTI_VEHICLES]
    d = min(zs + [1000.0])
    return sum(1 for thr in KITTI_DIST_THRESHOLDS if thr < d) - 1


def smallnorb_azimuth_label(raw_azimuth) -> int:
    """sNORB-Azim: NORB stores azimuths 0, 2, ..., 34 (x 10 degrees); TFDS divides by 2 -> 18 classes."""
    if int(raw_azimuth) % 2 or not 0 <= int(raw_azimuth) <= 34:
        raise ValueError(f"NORB azimuth {raw_azimuth!r}: expected an even value in 0..34")
    return int(raw_azimuth) // 2


def smallnorb_elevation_label(raw_elevation) -> int:
    """sNORB-Elev: NORB elevation index 0..8 (30 to 70 degrees in steps of 5) is the label."""
    if not 0 <= int(raw_elevation) <= 8:
        raise ValueError(f"NORB elevation {raw_elevation!r}: expected 0..8")
    return int(raw_elevation)


class ListedImages:
    """Images listed in a text file, one `relative/path label` per line (the vtab-1k format)."""

    def __init__(self, root: Path, list_file: Path, num_classes: int):
        if not list_file.exists():
            raise DataError(f"{list_file}: missing. A vtab-1k task folder holds "
                            f"{', '.join(s + '.txt' for s in VTAB_SPLITS)} and images/; see README, 'Datasets'.")
        self.root = root
        self.items = []
        with reading(list_file, "copy the task folder from the VTAB-1k download again; see README, 'Datasets'",
                     (ValueError,)):  # binary damage: UnicodeDecodeError
            text = list_file.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            path, _, label = line.strip().rpartition(" ")
            if not path or not label.lstrip("-").isdigit() or not 0 <= int(label) < num_classes:
                raise DataError(f"{list_file}:{n}: expected '<image path> <label in 0..{num_classes - 1}>', "
                                f"got {line!r}")
            self.items.append((path, int(label)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.items[i]
        try:
            with Image.open(self.root / path) as im:
                return im.convert("RGB"), label
        except (OSError, ValueError) as e:
            raise DataError(f"{self.root / path}: cannot read image ({e})") from None


def open_vtab(task: str, split: str, data_root: str) -> tuple[ListedImages, list[str]]:
    t = vtab_task(task)
    if split not in VTAB_SPLITS:
        raise DataError(f"VTAB-1k split {split!r}: expected one of {', '.join(VTAB_SPLITS)}")
    root = Path(data_root) / "vtab-1k" / t.folder
    if not root.is_dir():
        raise DataError(f"{root}: no VTAB-1k task folder. Put the vtab-1k archive (one folder per task, "
                        f"e.g. as made by NOAH's get_vtab1k.py) under {Path(data_root) / 'vtab-1k'}.")
    return ListedImages(root, root / f"{split}.txt", t.classes), [str(i) for i in range(t.classes)]


# ----------------------------------------------------------------------------- ImageNet
def imagenet_wnids() -> list[str]:
    """The canonical 1000-class order (sorted wnids), shipped in the timm wheel; ReaL labels and
    torchvision's ImageNet use the same indices."""
    text = resources.files("timm").joinpath("data/_info/imagenet_synsets.txt").read_text()
    return text.split()


def open_imagefolder(root: Path, classes: list[str] | None = None):
    """A `<root>/<class>/<image>` tree. With `classes`, labels follow that list (so a subset of the
    ImageNet folders keeps the 1000-way indices); without, the sorted folder names."""
    from torchvision.datasets import ImageFolder

    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected <class>/<image> sub-folders)")
    present = sorted(p.name for p in root.iterdir() if p.is_dir())
    order = classes if classes is not None else present
    unknown = sorted(set(present) - set(order))
    if unknown:
        raise DataError(f"{root}: class folders not in the class list: {', '.join(unknown[:5])}")

    class Folder(ImageFolder):
        def find_classes(self, directory):
            index = {c: i for i, c in enumerate(order)}
            return present, {c: index[c] for c in present}

    return Folder(str(root), loader=lambda p: _rgb(p)), order


def _rgb(path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def open_imagenet(split: str, data_root: str):
    """ImageNet-1k in torchvision's layout: {data_root}/imagenet/{train,val}/<wnid>/*.JPEG."""
    if split not in ("train", "val"):
        raise DataError(f"ImageNet split {split!r}: expected train or val")
    return open_imagefolder(Path(data_root) / "imagenet" / split, imagenet_wnids())


# ----------------------------------------------------------------------------- ImageNet ReaL
def real_labels(path: str | None = None) -> list[list[int]]:
    """ReaL label sets (Beyer et al. 2020), one list per val image in filename order; the copy
    shipped in the timm wheel is byte-identical to real.json."""
    if path:
        return read_json(path, "download real.json again (github.com/google-research/reassessed-imagenet)", list)
    return read_json(resources.files("timm").joinpath("data/_info/imagenet_real_labels.json"),
                     "reinstall timm (`pip install --force-reinstall timm`)", list)


def real_top1(predictions, filenames: list[str], labels: list[list[int]] | None = None) -> dict:
    """ReaL top-1: a prediction is correct if it is in the image's label set; images with an empty
    set are left out of numerator and denominator. Files are matched by their basename
    ILSVRC2012_val_<8-digit image number>.JPEG, e.g. ILSVRC2012_val_00000001.JPEG
    (entry i of the label file is image i + 1)."""
    labels = real_labels() if labels is None else labels
    correct = scored = 0
    for pred, name in zip(np.asarray(predictions).tolist(), filenames):
        stem = Path(name).name
        if not stem.startswith("ILSVRC2012_val_"):
            raise DataError(f"{name}: not an ImageNet validation file name (expected ILSVRC2012_val_<8 digits>.JPEG)")
        real = labels[int(stem[15:23]) - 1]
        if real:
            scored += 1
            correct += int(pred in real)
    return {"real_top1": 100.0 * correct / scored if scored else float("nan"), "n_scored": scored,
            "n_excluded": len(filenames) - scored}
