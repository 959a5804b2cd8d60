import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, TINY_VIT

from vit import cli, data, models, plan
from vit.data import pseudo_label as ns
from vit.data.prepare import Config as PrepConfig
from vit.data.prepare import prepare
from vit.logs import save_torch, sha256_file, write_json
from vit.report.tables import ns_table

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
        _, yv, _ = data.load_split(tmp_path / "ns", split)
        assert np.array_equal(yv, data.load_split(digits_dir, split)[1])
    assert info["teacher"] == str(teacher) and info["threshold"] == 0.3 and info["per_class"] == 3
    assert info["pool_labels_used"] is False and not (tmp_path / "ns.partial").exists()
    # the shapes pool's 8 classes are not the digits' 10: its labels cannot score digit pseudo labels
    assert info["audit"]["labels_read"] is False and info["audit"]["kept_precision"] is None
    assert "classes are not the labelled set's" in info["audit"]["note"]


def _relabel(pool, labels):
    """Replace a pool's labels, keeping its manifest's checksum in step (so the audit reads them)."""
    np.save(pool / "train_labels.npy", labels)
    manifest = data.read_manifest(pool)
    manifest["files"]["train_labels.npy"] = sha256_file(pool / "train_labels.npy")
    write_json(pool / data.MANIFEST, manifest)


def _bytes(out):
    return {f.name: f.read_bytes() for f in sorted(out.iterdir()) if f.name != data.MANIFEST}


def test_pool_labels_never_change_the_written_dataset(digits_dir, teacher, tmp_path, monkeypatch):
    """The same files, bit for bit, whatever the pool's labels are and whether the audit runs at all:
    labels the audit reads (true and permuted), a label file that fails its checksum, none, and no audit."""
    pool = tmp_path / "pool"  # the digits' own train split as the pool: same classes, so the audit reads labels
    shutil.copytree(digits_dir, pool)
    ref = _run(teacher, digits_dir, pool, tmp_path / "a")
    a = ref["info"]["audit"]
    assert a["labels_read"] is True and 0 <= a["pool_top1"] <= 1 and a["pool_correct"] is not None

    y = np.load(pool / "train_labels.npy")
    _relabel(pool, (y + 1) % 10)  # every label changed, still valid: the audit reads them and scores differently
    permuted = _run(teacher, digits_dir, pool, tmp_path / "b")
    assert permuted["files"] == ref["files"] and _bytes(tmp_path / "b") == _bytes(tmp_path / "a")
    assert permuted["info"]["audit"]["labels_read"] and permuted["info"]["audit"]["pool_correct"] != a["pool_correct"]

    np.save(pool / "train_labels.npy", y[::-1] + 100)  # out of range and not the manifest's checksum
    bad = _run(teacher, digits_dir, pool, tmp_path / "c")
    assert bad["files"] == ref["files"] and bad["info"]["audit"]["labels_read"] is False
    assert "does not match its manifest's checksum" in bad["info"]["audit"]["note"]

    (pool / "train_labels.npy").unlink()  # a pool without labels: nothing to audit, the same dataset
    none = _run(teacher, digits_dir, pool, tmp_path / "d")
    assert none["files"] == ref["files"] and _bytes(tmp_path / "d") == _bytes(tmp_path / "a")
    assert none["info"]["audit"] == {"labels_read": False, "pool_top1": None, "kept_precision": None,
                                     "selected_precision": None, "selected_unique_precision": None,
                                     "pool_correct": None, "kept_correct": None, "selected_correct": None,
                                     "note": "no labels to audit: the pool has no train_labels.npy"}
    manifest = data.read_manifest(pool)  # nor listed in its manifest
    del manifest["files"]["train_labels.npy"]
    write_json(pool / data.MANIFEST, manifest)
    assert _run(teacher, digits_dir, pool, tmp_path / "e")["info"]["audit"]["note"].startswith("no labels to audit")

    shutil.copyfile(digits_dir / "train_labels.npy", pool / "train_labels.npy")  # labels back, audit switched off
    monkeypatch.setattr(ns, "audit_pseudo_labels", lambda *args: None)
    off = _run(teacher, digits_dir, pool, tmp_path / "f")
    assert off["files"] == ref["files"] and _bytes(tmp_path / "f") == _bytes(tmp_path / "a")
    assert off["info"]["audit"] is None


def test_audit_precision_matches_a_hand_count(digits_dir, teacher, tmp_path, monkeypatch):
    """A pool of 8 whose teacher predictions are fixed by hand; threshold 0.5, 2 per class."""
    truth = [0, 0, 1, 1, 2, 2, 3, 3]
    guess = [(0, .9), (0, .8), (0, .7), (1, .6), (2, .2), (1, .2), (3, .95), (2, .55)]
    #         right    right    wrong    right    right,   wrong,   right     wrong
    #         kept     kept     kept     kept     dropped  dropped  kept      kept
    pool = tmp_path / "pool"
    pool.mkdir()
    np.save(pool / "train_images.npy", np.random.default_rng(0).integers(0, 256, (8, 8, 8, 3), dtype=np.uint8))
    np.save(pool / "train_labels.npy", np.array(truth, np.int64))
    data.write_manifest(pool, name="pool", source="hand", group="", seed=0, task="",
                        classes=data.read_manifest(digits_dir)["classes"], splits=["train"],
                        files={f: sha256_file(pool / f) for f in data.split_files("train")}, info={}, started=0)
    probs = np.zeros((8, 10), np.float32)
    for row, (c, q) in enumerate(guess):
        probs[row] = (1 - q) / 9
        probs[row, c] = q
    monkeypatch.setattr(ns, "predict", lambda *args: probs)
    m = _run(teacher, digits_dir, pool, tmp_path / "ns", "--threshold=0.5", "--per_class=2")
    a, c = m["info"]["audit"], m["info"]["counts"]
    # kept: rows 0 1 2 3 6 7, right: 0 1 3 6
    assert c["kept"] == 6 and (a["kept_correct"], a["kept_precision"]) == (4, 4 / 6)
    # selected, 2 per class: class 0 its two most confident (0, 1), classes 1, 2, 3 their one kept row twice
    # (3 3, 7 7, 6 6): 8 rows, 6 right; 5 distinct rows, 4 right
    assert c["selected"] == 8 and c["selected_per_class"][:4] == [2, 2, 2, 2]
    assert (a["selected_correct"], a["selected_precision"], a["selected_unique_precision"]) == (6, 0.75, 0.8)
    # the teacher's argmax over the whole pool: rows 0 1 3 4 6 right
    assert (a["pool_correct"], a["pool_top1"]) == (5, 5 / 8) and a["labels_read"] is True
    _, y, _ = data.load_split(tmp_path / "ns", "train")
    assert y[96:].tolist() == [0, 0, 1, 1, 3, 3, 2, 2]  # the teacher's labels, wrong ones included (rows 6 6 7 7)


def test_report_table_shows_each_iterations_audit():
    p = plan.load(yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text()))
    its = p.noisy_student
    audit = {"labels_read": True, "kept_precision": 4 / 6, "selected_precision": 0.75, "pool_top1": 5 / 8}
    ns_info = {its[0]["dataset"]: {"counts": {"selected": 8}, "audit": audit},
               its[1]["dataset"]: {"counts": {"selected": 8}, "audit": {"labels_read": False, "kept_precision": None}}}
    empty = pd.DataFrame(columns=["model", "upstream", "resolution", "seed", "top1", "upstream_val_top1"])
    t = ns_table(empty, empty, p, ns_info, 48)
    col, top1 = "pseudo-label precision (kept / selected, %)", "its teacher's top-1 on the pool (%)"
    assert t[col].tolist() == ["–", "66.7 / 75.0", "no labels to audit"]
    assert t[top1].tolist() == ["–", "62.5", "no labels to audit"]
    assert ns_table(empty, empty, p, {}, 48)[col].tolist() == ["–"] * 3  # manifests from before the audit


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
