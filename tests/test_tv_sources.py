"""vit.data.tv_sources against tiny fixtures in torchvision's exact on-disk formats (no downloads)."""
from __future__ import annotations

import collections

import pytest
from PIL import Image

import tv_fixtures as F
from vit.data import tv_sources as tv

ALL_NAMES = ["cifar10", "cifar100", "oxford_iiit_pet", "oxford_flowers102", "svhn", "dtd", "eurosat",
             "caltech101", "sun397", "patch_camelyon", "fashion_mnist"]


@pytest.fixture(autouse=True)
def no_debian(monkeypatch, tmp_path):
    # never pick up a real /usr/share/datasets/fashion-mnist on the test machine
    monkeypatch.setattr(tv, "DEBIAN_FMNIST_DIR", str(tmp_path / "no-debian"))


def _check_items(seq, classes, expected, ordered=True):
    assert len(seq) == len(expected)
    got = []
    for i in range(len(seq)):
        img, label = seq[i]
        assert isinstance(img, Image.Image) and img.mode == "RGB"
        assert type(label) is int and 0 <= label < classes
        got.append(label)
    if ordered:
        assert got == expected
    else:  # SUN397's file order comes from Path.rglob
        assert collections.Counter(got) == collections.Counter(expected)


def test_table_matches_contract():
    assert sorted(tv.TV_DATASETS) == sorted(ALL_NAMES)
    for name, spec in tv.TV_DATASETS.items():
        assert set(spec) == {"classes", "splits", "native_size", "group", "dir"}, name
        assert spec["group"] in ("natural", "specialized")
        assert isinstance(spec["splits"], tuple) and spec["splits"]
    assert tv.TV_DATASETS["eurosat"]["splits"] == ("all",)
    assert tv.TV_DATASETS["oxford_iiit_pet"]["splits"] == ("trainval", "test")
    assert tv.TV_DATASETS["patch_camelyon"]["splits"] == ("train", "val", "test")


@pytest.mark.parametrize("name", sorted(F.WRITERS))
def test_fixture_loads_every_split(name, tmp_path, monkeypatch):
    if name in F.MD5_CHECKED:
        monkeypatch.setattr(tv, "VERIFY_MD5", False)
    expected = F.WRITERS[name](tmp_path)
    spec = tv.TV_DATASETS[name]
    assert set(expected) == set(spec["splits"])
    for split in spec["splits"]:
        seq, class_names = tv.open_split(name, split, str(tmp_path))
        _check_items(seq, spec["classes"], expected[split], ordered=name != "sun397")
        assert class_names and all(isinstance(c, str) for c in class_names)
        if spec["native_size"] in (28, 32):
            assert seq[0][0].size == (spec["native_size"],) * 2


def test_class_names_line_up_with_labels(tmp_path, monkeypatch):
    monkeypatch.setattr(tv, "VERIFY_MD5", False)
    F.write_cifar10(tmp_path)
    seq, names = tv.open_split("cifar10", "test", tmp_path)
    assert names == [f"c10_{i}" for i in range(10)] and names[seq[0][1]] == "c10_9"

    F.write_pets(tmp_path)
    seq, names = tv.open_split("oxford_iiit_pet", "trainval", tmp_path)
    assert [names[seq[i][1]] for i in range(3)] == ["Abyssinian", "American Bulldog", "Yorkshire Terrier"]

    F.write_dtd(tmp_path)
    seq, names = tv.open_split("dtd", "val", tmp_path)
    assert names == F.DTD_CLASSES and names[seq[0][1]] == "zigzagged"

    F.write_sun397(tmp_path)
    seq, names = tv.open_split("sun397", "all", tmp_path)
    assert names == F.SUN_CLASSES

    F.write_caltech101(tmp_path)
    seq, names = tv.open_split("caltech101", "all", tmp_path)
    assert names == F.CALTECH_CLASSES  # BACKGROUND_Google dropped

    F.write_svhn(tmp_path)
    seq, names = tv.open_split("svhn", "train", tmp_path)
    assert names[seq[0][1]] == "0"  # raw label 10 is digit 0


def test_grayscale_sources_come_out_rgb(tmp_path):
    F.write_caltech101(tmp_path)
    seq, _ = tv.open_split("caltech101", "all", tmp_path)
    assert seq.dataset[2][0].mode == "L"  # the fixture's grayscale JPEG, as torchvision returns it
    assert seq[2][0].mode == "RGB"
    F.write_fashion_mnist(F.fmnist_raw_dir(tmp_path))
    seq, _ = tv.open_split("fashion_mnist", "test", tmp_path)
    assert seq.dataset[0][0].mode == "L" and seq[0][0].mode == "RGB"


@pytest.mark.parametrize("name", sorted(F.MD5_CHECKED))
def test_md5_is_checked_by_default(name, tmp_path):
    # fixtures cannot match the real md5s: with the default switch they must be refused
    assert tv.VERIFY_MD5 is True
    F.WRITERS[name](tmp_path)
    with pytest.raises(FileNotFoundError, match="md5"):
        tv.open_split(name, tv.TV_DATASETS[name]["splits"][0], tmp_path)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_missing_data_names_path_and_fix(name, tmp_path):
    split = tv.TV_DATASETS[name]["splits"][-1]
    root = tmp_path / "empty"
    with pytest.raises(FileNotFoundError) as e:
        tv.open_split(name, split, str(root))
    msg = str(e.value)
    assert str(root / tv.TV_DATASETS[name]["dir"]) in msg
    assert name in msg and "download=True" in msg and "download: true" in msg
    assert isinstance(e.value.__cause__, RuntimeError)  # converted from torchvision's error
    assert not (root / "caltech101").exists()  # no stray folders created by a failed open


def test_missing_hints_for_manual_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        tv.open_split("fashion_mnist", "train", tmp_path)
    with pytest.raises(FileNotFoundError, match="h5py"):
        tv.open_split("patch_camelyon", "val", tmp_path)


def test_pcam_files_present_but_no_h5py(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)  # as on an install without h5py
    d = tmp_path / "pcam"
    d.mkdir()
    for kind in ("x", "y"):
        (d / f"camelyonpatch_level_2_split_valid_{kind}.h5").write_bytes(b"")
    with pytest.raises(ImportError, match="pip install h5py"):
        tv.open_split("patch_camelyon", "val", tmp_path)


@pytest.mark.parametrize("name,split,bad", [
    ("imagenet", "train", "imagenet"),
    ("cifar10", "val", "val"),
    ("oxford_iiit_pet", "train", "train"),  # torchvision calls it trainval
    ("eurosat", "train", "train"),
])
def test_unknown_name_or_split(name, split, bad, tmp_path):
    with pytest.raises(ValueError) as e:
        tv.open_split(name, split, tmp_path)
    msg = str(e.value)
    assert repr(bad) in msg
    valid = sorted(tv.TV_DATASETS) if name not in tv.TV_DATASETS else tv.TV_DATASETS[name]["splits"]
    assert all(v in msg for v in valid)


def test_fashion_mnist_from_debian_gz(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    expected = F.write_fashion_mnist(debian, gz=True)
    monkeypatch.setattr(tv, "DEBIAN_FMNIST_DIR", str(debian))
    root = tmp_path / "data"
    seq, names = tv.open_split("fashion_mnist", "train", str(root))
    _check_items(seq, 10, expected["train"])
    assert names[0] == "T-shirt/top"
    raw = F.fmnist_raw_dir(root)
    assert sorted(p.name for p in raw.iterdir()) == sorted(tv.FMNIST_FILES)  # no .part leftovers
    # decompressed once: the package may go away afterwards and both splits still load
    for p in debian.iterdir():
        p.unlink()
    seq, _ = tv.open_split("fashion_mnist", "test", str(root))
    _check_items(seq, 10, expected["test"])


def test_fashion_mnist_existing_raw_not_overwritten(tmp_path, monkeypatch):
    expected = F.write_fashion_mnist(F.fmnist_raw_dir(tmp_path))
    debian = tmp_path / "debian"
    F.write_fashion_mnist(debian, gz=True)  # different random pixels
    monkeypatch.setattr(tv, "DEBIAN_FMNIST_DIR", str(debian))
    before = (F.fmnist_raw_dir(tmp_path) / "train-images-idx3-ubyte").read_bytes()
    seq, _ = tv.open_split("fashion_mnist", "train", tmp_path)
    _check_items(seq, 10, expected["train"])
    assert (F.fmnist_raw_dir(tmp_path) / "train-images-idx3-ubyte").read_bytes() == before
