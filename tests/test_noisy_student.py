import shutil
import sys

import numpy as np
import pytest
import torch

from conftest import TINY_VIT
from vit import cli, data, models
from vit.data import pseudo_label as ns
from vit.logs import save_torch, sha256_file
from vit.data.prepare import Config as PrepConfig, prepare

TEACHER_SIZE = 16


# ----------------------------------------------------------------------------- pure functions
def test_pseudo_labels_keep_only_confident_rows():
    probs = np.array([[0.2, 0.5, 0.3],
                      [0.3, 0.3, 0.4],
                      [0.34, 0.33, 0.33],
                      [0.25, 0.25, 0.5]])
    labels, conf, keep = ns.pseudo_labels(probs, 0.45)
    assert labels.tolist() == [1, 2, 0, 2] and labels.dtype == np.int64
    assert np.allclose(conf, [0.5, 0.4, 0.34, 0.5])
    assert keep.tolist() == [True, False, False, True]
    assert ns.pseudo_labels(probs, 0.5)[2].tolist() == [True, False, False, True]  # >= threshold
    assert ns.pseudo_labels(probs, 0.3)[2].all()


def test_balance_truncates_duplicates_and_leaves_empty_classes_empty():
    labels = np.array([0, 0, 0, 1, 2, 0, 1])
    conf = np.array([0.9, 0.5, 0.7, 0.8, 0.2, 0.95, 0.1])
    keep = conf >= 0.3  # index 4 (class 2) and 6 (class 1) dropped; class 3 never predicted
    idx = ns.balance(labels, conf, keep, num_classes=4, per_class=2, rng=np.random.default_rng(0))
    counts = np.bincount(labels[idx], minlength=4).tolist()
    assert counts == [2, 2, 0, 0]                       # exactly per_class, or empty
    assert sorted(idx[labels[idx] == 0].tolist()) == [0, 5]  # the two most confident of class 0
    assert idx[labels[idx] == 1].tolist() == [3, 3]     # the single kept image, duplicated
    assert np.all(np.diff(idx) >= 0)                    # sorted
    # a large per_class duplicates class 0's three images with replacement, each at least once
    big = ns.balance(labels, conf, keep, 4, 7, np.random.default_rng(0))
    assert np.bincount(labels[big], minlength=4).tolist() == [7, 7, 0, 0]
    assert set(big[labels[big] == 0].tolist()) == {0, 1, 2, 5}


def test_balance_per_class_zero_is_the_mean_kept_count_and_is_seeded():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 200)
    labels[labels == 4] = 0  # class 4 empty, class 0 over-full
    conf = rng.random(200)
    keep = conf >= 0.3
    target = round(keep.sum() / 4)  # the mean over the 4 classes that kept images; the empty one does not count
    assert ns.per_class_target(np.bincount(labels[keep], minlength=5)) == target
    assert ns.per_class_target(np.array([0, 3, 0, 0])) == 3 and ns.per_class_target(np.zeros(3, int)) == 0
    idx = ns.balance(labels, conf, keep, 5, 0, np.random.default_rng(0))
    assert np.bincount(labels[idx], minlength=5).tolist() == [target] * 4 + [0]
    same = ns.balance(labels, conf, keep, 5, 0, np.random.default_rng(0))
    assert np.array_equal(idx, same)
    others = [ns.balance(labels, conf, keep, 5, 0, np.random.default_rng(s)) for s in range(1, 4)]
    assert any(not np.array_equal(idx, o) for o in others)  # the seed draws the duplicated copies
    assert keep[idx].all()


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    """An unlabelled pool: shapes at 16 px (digits are 8 px, so the pool is resized on the way in)."""
    out = tmp_path_factory.mktemp("pool") / "pool"
    prepare(PrepConfig(name="pool", source="shapes", out=str(out), train=60, val=0, test=0, size=16, classes=8))
    return out


def _teacher(path, num_classes=10):
    """A random tiny ViT whose head is scaled up, so its predictions spread over confidences 0.2-0.9."""
    torch.manual_seed(0)
    model = models.create(TINY_VIT, num_classes, TEACHER_SIZE)
    with torch.no_grad():
        model.head.weight.mul_(30)
    save_torch(path, models.checkpoint(model, TINY_VIT, num_classes, TEACHER_SIZE, {}))
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return _teacher(tmp_path_factory.mktemp("teacher") / "checkpoint.pt")


def _run(teacher, labelled, pool, out, *extra):
    argv = [f"--teacher={teacher}", f"--labelled={labelled}", f"--unlabelled={pool}", f"--out={out}",
            "--threshold=0.3", "--threads=1", "--batch_size=16", *extra]
    return ns.noisy_student(cli.parse(ns.Config, argv))


def test_new_dataset_is_labelled_train_plus_selected_pool(digits_dir, pool_dir, teacher, tmp_path):
    m = _run(teacher, digits_dir, pool_dir, tmp_path / "ns", "--per_class=3")
    info, c = m["info"], m["info"]["counts"]
    # what the teacher predicts, recomputed here
    ckpt = torch.load(teacher, weights_only=False)
    model = models.create(ckpt["model_args"], 10, TEACHER_SIZE).eval()
    model.load_state_dict(ckpt["model"])
    pool_x = np.load(pool_dir / "train_images.npy")
    with torch.no_grad():
        probs = torch.softmax(model(data.normalize(data.to_tensor(pool_x, TEACHER_SIZE))), -1).numpy()
    labels, _, keep = ns.pseudo_labels(probs, 0.3)
    assert 0 < keep.sum() < len(keep) and c["kept"] == keep.sum() and c["pool"] == 60
    assert c["kept_per_class"] == np.bincount(labels[keep], minlength=10).tolist()
    assert c["empty_classes"] == [k for k in range(10) if c["kept_per_class"][k] == 0] != []
    assert c["selected_per_class"] == [0 if n == 0 else 3 for n in c["kept_per_class"]]
    assert c["selected"] == sum(c["selected_per_class"])

    x, y, manifest = data.load_split(tmp_path / "ns", "train")  # checksums verify
    x_lab, y_lab, lab = data.load_split(digits_dir, "train")
    assert manifest["source"] == "noisy_student" and manifest["num_classes"] == 10
    assert manifest["splits"] == {"train": 96 + c["selected"], "val": 32, "test": 64}
    assert np.array_equal(x[:96], x_lab) and np.array_equal(y[:96], y_lab)  # labelled part unchanged
    assert x.shape[1:] == (8, 8, 3) and info["pool_resized"] and info["pool_image_size"] == [16, 16]
    assert set(y[96:].tolist()) == {k for k in range(10) if c["kept_per_class"][k]}
    pool_small = data.to_tensor(pool_x, 8).permute(0, 2, 3, 1).numpy()
    for row, label in zip(x[96:], y[96:]):  # every pool row is a resized pool image with the teacher's label
        match = np.flatnonzero((pool_small == row).all(axis=(1, 2, 3)))
        assert len(match) and labels[match[0]] == label and keep[match[0]]
    for split in ("val", "test"):  # real-label splits are the labelled set's, byte for byte
        for f in data.split_files(split):
            assert manifest["files"][f] == lab["files"][f] == sha256_file(tmp_path / "ns" / f)
        xv, yv, _ = data.load_split(tmp_path / "ns", split)
        assert np.array_equal(yv, data.load_split(digits_dir, split)[1])
    assert info["teacher"] == str(teacher) and info["threshold"] == 0.3 and info["per_class"] == 3
    assert info["pool_labels_read"] is False and not (tmp_path / "ns.partial").exists()


def test_pool_labels_are_never_read(digits_dir, pool_dir, teacher, tmp_path):
    ref = _run(teacher, digits_dir, pool_dir, tmp_path / "a")
    shuffled = tmp_path / "pool"
    shutil.copytree(pool_dir, shuffled)
    y = np.load(shuffled / "train_labels.npy")
    np.save(shuffled / "train_labels.npy", np.random.default_rng(0).permutation(y)[::-1] + 1)  # no longer valid
    assert _run(teacher, digits_dir, shuffled, tmp_path / "b")["files"] == ref["files"]
    (shuffled / "train_labels.npy").unlink()  # not even opened
    assert _run(teacher, digits_dir, shuffled, tmp_path / "c")["files"] == ref["files"]


def test_soft_labels_are_probabilities_beside_the_hard_ones(digits_dir, pool_dir, teacher, tmp_path):
    hard = _run(teacher, digits_dir, pool_dir, tmp_path / "hard")
    soft = _run(teacher, digits_dir, pool_dir, tmp_path / "soft", "--labels=soft")
    assert "train_soft.npy" in soft["files"] and "train_soft.npy" not in hard["files"]
    assert {k: v for k, v in soft["files"].items() if k != "train_soft.npy"} == hard["files"]
    q = np.load(tmp_path / "soft" / "train_soft.npy")
    _, y, _ = data.load_split(tmp_path / "soft", "train")
    assert q.dtype == np.float16 and q.shape == (len(y), 10)
    assert np.allclose(q.astype(np.float32).sum(1), 1.0, atol=3e-3)
    assert np.array_equal(q.argmax(1), y)
    assert np.array_equal(q[:96], np.eye(10, dtype=np.float16)[y[:96]])  # labelled rows: one-hot real labels
    assert (q[96:].max(1) < 1).any()  # pool rows: the teacher's full distribution
    # a student trains on them: the batch targets are the stored distributions (MixUp blends them),
    # the loss is cross-entropy against them, and a set without soft labels is refused by name
    _, qs, _ = data.load_split(tmp_path / "soft", "train", soft=True)
    _, yb = data.train_batch(torch.zeros((len(qs), 3, 8, 8), dtype=torch.uint8), torch.from_numpy(qs), 0, 16, 0, "none")
    assert yb.shape == (16, 10) and torch.allclose(yb.sum(1), torch.ones(16), atol=3e-3)
    _, ym = data.train_batch(torch.zeros((len(qs), 3, 8, 8), dtype=torch.uint8), torch.from_numpy(qs), 0, 16, 0, "none",
                             mixup=0.5, num_classes=10)
    assert torch.allclose(ym.sum(1), torch.ones(16), atol=3e-3)
    from vit.train import loop as train

    tcfg = cli.parse(train.Config, [f"--data={tmp_path / 'soft'}", f"--out={tmp_path / 'student'}", "--model=vit",
                                    f"--model_args={TINY_VIT}", "--img_size=8", "--steps=2", "--batch_size=16",
                                    "--threads=1", "--soft_targets=true", "--ckpt_every=0", "--save_checkpoint=false"])
    summary = train.train(tcfg)
    assert summary["steps"] == 2 and np.isfinite(summary["final_train_loss"])
    with pytest.raises(data.DataError, match="train_soft.npy"):
        data.load_split(tmp_path / "hard", "train", soft=True)


def test_existing_output_kept_when_identical_refused_when_different(digits_dir, pool_dir, teacher, tmp_path):
    first = _run(teacher, digits_dir, pool_dir, tmp_path / "ns")
    assert _run(teacher, digits_dir, pool_dir, tmp_path / "ns", "--threads=2")["files"] == first["files"]
    with pytest.raises(cli.ConfigError, match="exists and differs"):
        _run(teacher, digits_dir, pool_dir, tmp_path / "ns", "--threshold=0.6")
    assert data.read_manifest(tmp_path / "ns")["files"] == first["files"]
    assert not (tmp_path / "ns.partial").exists()


def test_bad_inputs_name_the_file(digits_dir, pool_dir, teacher, tmp_path, monkeypatch, capsys):
    five = _teacher(tmp_path / "five.pt", num_classes=5)
    with pytest.raises(cli.ConfigError, match=r"predicts 5 classes.*has 10"):
        _run(five, digits_dir, pool_dir, tmp_path / "x")
    no_train = tmp_path / "no_train"
    prepare(PrepConfig(name="nt", source="shapes", out=str(no_train), train=0, val=4, test=0, size=8, classes=4))
    with pytest.raises(cli.ConfigError, match=r"no_train.*manifest.json has no 'train' split"):
        _run(teacher, digits_dir, no_train, tmp_path / "x")
    with pytest.raises(cli.ConfigError, match="no such checkpoint"):
        _run(tmp_path / "missing.pt", digits_dir, pool_dir, tmp_path / "x")
    with pytest.raises(cli.ConfigError, match="--labels='fuzzy'"):
        _run(teacher, digits_dir, pool_dir, tmp_path / "x", "--labels=fuzzy")
    # through the CLI: one clear line, exit status 2
    monkeypatch.setattr(sys, "argv", ["vit.data.pseudo_label", f"--teacher={five}", f"--labelled={digits_dir}",
                                      f"--unlabelled={pool_dir}", f"--out={tmp_path / 'x'}"])
    with pytest.raises(SystemExit) as e:
        cli.main_guard(ns.noisy_student, ns.Config)
    assert e.value.code == 2 and "five.pt predicts 5 classes" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
