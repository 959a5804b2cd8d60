import json

import numpy as np
import pytest
from PIL import Image

from vit import data
from vit.errors import ConfigError
from vit.data import prepare, sources as datasets
from vtab_fixtures import SIZES, make_vtab_tree


def test_vtab_table_matches_the_paper_table9_order():
    import yaml
    from importlib import resources

    ref = yaml.safe_load(resources.files("vit").joinpath("reference.yaml").read_text())
    assert [t.paper for t in datasets.VTAB_TASKS] == ref["vtab_table9"]["task_order"]
    groups = [t.group for t in datasets.VTAB_TASKS]
    assert groups.count("natural") == 7 and groups.count("specialized") == 4 and groups.count("structured") == 8


@pytest.mark.parametrize("alias,folder", [("cifar100", "cifar"), ("oxford_pet", "oxford_iiit_pet"),
                                          ("dSpr-Ori", "dsprites_ori"), ("smallnorb_azimuth", "smallnorb_azi"),
                                          ("pcam", "patch_camelyon"), ("Clevr-Dist", "clevr_dist")])
def test_task_aliases(alias, folder):
    assert datasets.vtab_task(alias).folder == folder


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ConfigError, match="caltech101"):  # a task name comes from the config
        datasets.vtab_task("imagenet-a")


def test_every_vtab_task_opens(tmp_path):
    make_vtab_tree(tmp_path)
    for task in datasets.VTAB_TASKS:
        for split, n in dict(SIZES, train800val200=9).items():
            seq, names = datasets.open_vtab(task.folder, split, str(tmp_path))
            assert len(seq) == n and len(names) == task.classes
            image, label = seq[n - 1]
            assert image.mode == "RGB" and 0 <= label < task.classes


def test_vtab_errors_name_the_place(tmp_path):
    with pytest.raises(data.DataError, match="vtab-1k/dtd"):
        datasets.open_vtab("dtd", "test", str(tmp_path))
    make_vtab_tree(tmp_path, tasks=[datasets.vtab_task("dtd")])
    (tmp_path / "vtab-1k" / "dtd" / "test.txt").write_text("images/test/000000.jpg 99\n")
    with pytest.raises(data.DataError, match=r"test.txt:1: expected"):
        datasets.open_vtab("dtd", "test", str(tmp_path))


def test_prepare_vtab_task_streams_and_resizes(tmp_path):
    make_vtab_tree(tmp_path, tasks=[datasets.vtab_task("eurosat")])
    out = tmp_path / "prepared" / "eurosat"
    m = prepare.prepare(prepare.Config(name="eurosat", source="vtab1k", task="eurosat", group="specialized",
                                       data_root=str(tmp_path), out=str(out), size=16, workers=2, chunk=2))
    assert m["splits"] == {"train800": 6, "val200": 3, "test": 4} and m["image_size"] == [16, 16]
    x, y, _ = data.load_split(out, "train800+val200")
    assert x.shape == (9, 16, 16, 3) and x.std() > 10
    listed = [int(ln.split()[1]) for ln in (tmp_path / "vtab-1k/eurosat/train800val200.txt").read_text().split("\n") if ln]
    assert y.tolist() == listed
    assert not (tmp_path / "prepared" / "eurosat.partial").exists()


def test_interrupted_preparation_resumes(tmp_path, monkeypatch):
    make_vtab_tree(tmp_path, tasks=[datasets.vtab_task("dtd")], sizes={"train800": 10, "val200": 2, "test": 2})
    cfg = prepare.Config(name="dtd", source="vtab1k", task="dtd", group="natural", data_root=str(tmp_path),
                         out=str(tmp_path / "dtd"), size=8, workers=1, chunk=2, splits=["train800"])
    calls, killed = [], []
    real_getitem = datasets.ListedImages.__getitem__

    def flaky(self, i):
        calls.append(i)
        if i == 7 and not killed:
            killed.append(i)
            raise RuntimeError("killed")
        return real_getitem(self, i)

    monkeypatch.setattr(datasets.ListedImages, "__getitem__", flaky)
    with pytest.raises(RuntimeError, match="killed"):
        prepare.prepare(cfg)
    assert not (tmp_path / "dtd" / "manifest.json").exists()
    # chunks of images 0-5 were flushed before the kill; the rerun decodes only the rest
    first = set(calls)
    calls.clear()
    prepare.prepare(cfg)
    assert set(calls) == {6, 7, 8, 9} and first >= {0, 1, 2, 3, 4, 5}
    x, y, _ = data.load_split(tmp_path / "dtd", "train800")
    expected = prepare._square(Image.open(tmp_path / "vtab-1k/dtd/images/train800/000003.jpg"), 8)
    assert np.array_equal(x[3], expected)


def test_imagenet_keeps_the_canonical_class_indices_and_file_names(tmp_path):
    wnids = datasets.imagenet_wnids()
    rng = np.random.default_rng(0)
    for wnid, k in [(wnids[0], 1), (wnids[1], 2), (wnids[999], 3)]:
        folder = tmp_path / "imagenet" / "val" / wnid
        folder.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
            folder / f"ILSVRC2012_val_{k:08d}.JPEG", format="JPEG")
    out = tmp_path / "in1k"
    m = prepare.prepare(prepare.Config(name="imagenet", source="imagenet", group="natural", data_root=str(tmp_path),
                                       out=str(out), size=8, splits=["val"], workers=1))
    assert m["num_classes"] == 1000
    x, y, _ = data.load_split(out, "val")
    names = (out / "val_names.txt").read_text().split()
    assert sorted(zip(names, y.tolist())) == [("ILSVRC2012_val_00000001.JPEG", 0), ("ILSVRC2012_val_00000002.JPEG", 1),
                                              ("ILSVRC2012_val_00000003.JPEG", 999)]
    # evaluating the ImageNet val split also scores ReaL (val image 1 has an empty label set: excluded)
    from conftest import TINY_VIT
    from vit.train import loop as train

    s = train.train(train.Config(data=str(out), out=str(tmp_path / "run"), model_args=TINY_VIT, img_size=8,
                                 train_split="val", val_split="val", steps=1, batch_size=3, threads=1))
    assert s["eval"]["val"]["n_scored"] == 2 and s["eval"]["val"]["n_excluded"] == 1
    assert 0 <= s["eval"]["val"]["real_top1"] <= 100


def test_real_top1_on_a_hand_made_label_file(tmp_path):
    labels = [[], [3, 4], [7], [1]]  # image 1 has no label set: excluded
    path = tmp_path / "real.json"
    path.write_text(json.dumps(labels))
    names = [f"x/ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3, 4)]
    r = datasets.real_top1([0, 4, 2, 1], names, datasets.real_labels(str(path)))
    assert r == {"real_top1": pytest.approx(200 / 3), "n_scored": 3, "n_excluded": 1}
    with pytest.raises(data.DataError, match="ILSVRC2012_val"):
        datasets.real_top1([0], ["cat.jpg"], labels)


def test_packaged_real_labels():
    labels = datasets.real_labels()
    assert len(labels) == 50000 and labels[1] == [970, 795] and sum(not s for s in labels) == 3163


def test_kitti_distance_bins_at_their_edges():
    lab = datasets.kitti_distance_label
    car, pedestrian, truck = 0, 3, 2
    assert lab([car], [8.0]) == 0 and lab([car], [8.01]) == 1 and lab([car], [20.0]) == 1
    assert lab([car], [25.0]) == 2 and lab([truck], [999.0]) == 2
    assert lab([], []) == 3 and lab([pedestrian], [5.0]) == 3  # only Car, Van, Truck count
    assert lab([pedestrian, truck, car], [2.0, 30.0, 15.0]) == 1  # the closest vehicle decides


def test_smallnorb_labels():
    assert [datasets.smallnorb_azimuth_label(a) for a in (0, 2, 34)] == [0, 1, 17]
    assert [datasets.smallnorb_elevation_label(e) for e in (0, 8)] == [0, 8]
    with pytest.raises(ValueError, match="azimuth"):
        datasets.smallnorb_azimuth_label(3)
    with pytest.raises(ValueError, match="elevation"):
        datasets.smallnorb_elevation_label(9)
