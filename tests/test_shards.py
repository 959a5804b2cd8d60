"""The sharded store of original images (vit.data.shards, `store: shards`): what prepare writes, resume,
the same batches as the in-memory arrays, the windowed shuffle, BiT's crop, and a JPEG tree through
prepare -> pre-train -> fine-tune -> evaluate, killed mid-epoch and resumed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FORM_ARGS
from vit import data
from vit.data import prepare, shards
from vit.errors import DataError
from vit.logs import sha256_file

TINY = '{"arch":"vit","depth":2,"embed_dim":32,"num_heads":2,"patch_size":4}'


def _tree(root: Path, n: dict, fmt: str = "jpg", side=None, seed: int = 0) -> Path:
    """<root>/tree/<split>/class<c>/<i>.<fmt>: 3 classes, random sides 30-69 px (or `side`)."""
    rng = np.random.default_rng(seed)
    for split, count in n.items():
        for i in range(count):
            c = i % 3
            folder = root / "tree" / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            h, w = (side, side) if side else rng.integers(30, 70, 2)
            pixels = (rng.random((h, w, 3)) * 60 + c * 80).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.{fmt}", **({"quality": 90} if fmt == "jpg" else {}))
    return root


def _prepare(root: Path, out: Path, **kw) -> dict:
    cfg = prepare.Config(name=out.name, source="imagefolder", data_root=str(root), task="tree", out=str(out),
                         group="upstream", **{"store": "shards", "shard_size": 16, "workers": 1, **kw})
    return prepare.prepare(cfg)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    root = _tree(tmp_path_factory.mktemp("jpegs"), {"train": 96, "val": 24})
    _prepare(root, root / "shards")
    return root


def test_prepare_writes_each_original_file_into_webdataset_shards(jpegs):
    """Every image's bytes in the shards equal its file's (read back with the standard library's tarfile),
    with its label and size; the manifest's checksums are the files'; wids' own dataset reads the split."""
    out = jpegs / "shards"
    m = data.read_manifest(out)
    assert m["store"] == "shards" and m["splits"] == {"train": 96, "val": 24}
    assert sorted(p.name for p in out.glob("train-*.tar")) == [shards.shard_name("train", k) for k in range(6)]
    labels, sides = np.load(out / "train_labels.npy"), np.load(out / "train_sides.npy")
    names = (out / "train_names.txt").read_text().split()
    row = 0
    for k in range(6):
        with tarfile.open(out / shards.shard_name("train", k)) as tar:
            members = tar.getmembers()
            for jpg, cls, txt in zip(members[::3], members[1::3], members[2::3]):
                assert jpg.name == f"{row:09d}.jpg" and txt.name == f"{row:09d}.txt"
                name = tar.extractfile(txt).read().decode()
                assert name == names[row]
                source = next((jpegs / "tree" / "train").glob(f"*/{name}"))
                assert tar.extractfile(jpg).read() == source.read_bytes()
                assert int(tar.extractfile(cls).read()) == labels[row] == int(source.parent.name[-1])
                assert tuple(sides[row]) == Image.open(source).size[::-1]
                row += 1
    assert row == 96
    assert all(sha256_file(out / f) == h for f, h in m["files"].items())
    from wids import ShardListDataset

    ds = ShardListDataset(json.loads((out / "train.shards.json").read_text())["shardlist"],
                          localname=lambda url: str(out / url), transformations=[])
    assert len(ds) == 96 and ds[17]["__key__"] == f"{17:09d}"
    from vit import cli

    with pytest.raises(cli.ConfigError, match="generated in memory"):  # refused before anything is built
        prepare.prepare(prepare.Config(name="d", source="digits", out=str(jpegs / "never"), store="shards"))
    assert not (jpegs / "never.partial").exists()


def test_a_vtab1k_task_goes_into_shards_as_its_files(tmp_path):
    """VTAB-1k's list-file format: each listed file's bytes and label, in the store's order."""
    from vtab_fixtures import make_vtab_tree
    from vit.plan.tasks import VTAB_TASKS

    task = VTAB_TASKS[0]
    make_vtab_tree(tmp_path, tasks=[task])
    m = prepare.prepare(prepare.Config(name="v", source="vtab1k", task=task.folder, data_root=str(tmp_path),
                                       out=str(tmp_path / "v"), group="natural", store="shards", workers=1))
    assert m["splits"] == {"train800": 6, "val200": 3, "test": 4}
    x, y, _ = data.load_split(tmp_path / "v", "test")
    listed = [line.split() for line in (tmp_path / "vtab-1k" / task.folder / "test.txt").read_text().splitlines()]
    order = shards.store_order(4)
    for row in range(4):
        raw, _ = x.parts[0][0].raw(row)
        path, label = listed[order[row]]
        assert raw == (tmp_path / "vtab-1k" / task.folder / path).read_bytes() and y[row] == int(label)


def test_a_torchvision_set_goes_into_shards_as_lossless_pngs(tmp_path, monkeypatch):
    """A torchvision set gives decoded images (CIFAR: arrays): stored as PNG, they decode to the very pixels
    the arrays store hold, in the store's order."""
    import tv_fixtures as F
    from vit.data import tv_sources

    monkeypatch.setattr(tv_sources, "VERIFY_MD5", False)  # the fixture's files cannot match torchvision's md5s
    F.write_cifar10(tmp_path)
    common = dict(source="torchvision", task="cifar10", data_root=str(tmp_path), group="natural", workers=1)
    prepare.prepare(prepare.Config(name="a", out=str(tmp_path / "a"), size=32, **common))
    prepare.prepare(prepare.Config(name="s", out=str(tmp_path / "s"), store="shards", **common))
    xa, ya, _ = data.load_split(tmp_path / "a", "train")
    xs, ys, m = data.load_split(tmp_path / "s", "train")
    order = shards.store_order(len(ya))
    assert m["image_size"] == [32, 32] and (ys == ya[order]).all()
    assert torch.equal(data.to_tensor(xs, 32), data.to_tensor(np.asarray(xa)[order], 32))


def test_a_stopped_shard_preparation_resumes_to_the_same_bytes(jpegs, tmp_path):
    """A stop signal after two shards: Resumable, the finished shards kept; the rerun writes the rest, and
    the set equals an unbroken preparation's file for file."""
    from vit.stops import Resumable

    class StopAfter:  # `received` turns to SIGTERM after a few checks, as a signal arriving mid-split
        def __init__(self, checks):
            self.left = checks

        @property
        def received(self):
            self.left -= 1
            return signal.SIGTERM if self.left < 0 else 0

    out = tmp_path / "stopped"
    cfg = prepare.Config(name="shards", source="imagefolder", data_root=str(jpegs), task="tree", out=str(out),
                         group="upstream", store="shards", shard_size=16, workers=1)
    with pytest.raises(Resumable, match="shards to write"):
        prepare.prepare(cfg, StopAfter(2))
    assert len(list(Path(str(out) + ".partial").glob("train-*.tar"))) == 2
    m = prepare.prepare(cfg)
    assert m["files"] == data.read_manifest(jpegs / "shards")["files"]


def test_the_same_images_give_the_same_batches_from_shards_and_from_arrays(tmp_path):
    """Lossless PNGs at one size, prepared as arrays and as shards: in the store's order, the inception
    crop, BiT's crop and evaluation's resize give identical tensors from both."""
    root = _tree(tmp_path, {"train": 40}, fmt="png", side=40)
    arrays = prepare.prepare(prepare.Config(name="a", source="imagefolder", data_root=str(root), task="tree",
                                            out=str(tmp_path / "a"), group="upstream", size=40, workers=1))
    _prepare(root, tmp_path / "s")
    xa, ya, _ = data.load_split(tmp_path / "a", "train")
    xs, ys, _ = data.load_split(tmp_path / "s", "train")
    order = shards.store_order(arrays["splits"]["train"])
    xa, ya = data.to_tensor(np.asarray(xa)[order], 40), torch.from_numpy(ya[order])
    assert torch.equal(torch.from_numpy(ys), ya)
    for augment, size in (("inception_crop", 24), ("bit_crop", 24), ("none", 40)):
        a = data.train_batch(xa, ya, 5, 8, 1, augment, size=size)
        b = data.train_batch(data.images(xs, size, 1.0), torch.from_numpy(ys), 5, 8, 1, augment, size=size)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), augment
    assert torch.equal(data.to_tensor(xs, 24)[7], data.to_tensor(np.asarray(xa.permute(0, 2, 3, 1)), 24)[7])
    with pytest.raises(ValueError, match="sharded store keeps the originals"):
        data.train_batch(xs, torch.from_numpy(ys), 0, 8, 0, "crop_flip", size=24)


def test_the_windowed_shuffle_is_a_pure_function_of_seed_and_epoch(tmp_path):
    """More shards than a window: each epoch's order is a permutation, the same for the same (seed, epoch),
    another for the next epoch, and every WINDOW shards' images come one window after another."""
    root = _tree(tmp_path, {"train": 120}, side=8)
    _prepare(root, tmp_path / "s", shard_size=3)
    x, _, _ = data.load_split(tmp_path / "s", "train")
    a, b, c = x.order(0, 0), data.load_split(tmp_path / "s", "train")[0].order(0, 0), x.order(0, 1)
    assert sorted(a.tolist()) == list(range(120)) and torch.equal(a, b) and not torch.equal(a, c)
    shard = x.parts[0][0].shard_of(x.row[a.numpy()])
    ends = np.cumsum([min(shards.WINDOW, 40 - w * shards.WINDOW) * 3 for w in range(-(-40 // shards.WINDOW))])
    windows = [set(shard[lo:hi]) for lo, hi in zip(np.r_[0, ends[:-1]], ends)]
    assert [len(w) for w in windows] == [16, 16, 8] and len(set().union(*windows)) == 40


def test_dataloader_workers_give_the_batches_of_the_training_process(jpegs, monkeypatch):
    """batches.Feed over a sharded store: 2 worker processes, started at a resumed step, give each step's
    micro-batches as uint8 that normalise to exactly what train_batch gives in the process itself; the
    default worker count shares the node's cores among its torchrun processes."""
    from vit.train import batches
    from vit.train.config import Config
    from vit.train.distributed import Dist

    x, y, _ = data.load_split(jpegs / "shards", "train")
    cfg = Config(batch_size=16, img_size=24, augment="inception_crop", seed=3)
    feed = batches.Feed(data.images(x, 24, 1.0), torch.from_numpy(y), cfg, 3,
                        batches.slices(8, 2, Dist()), total=9, workers=2)
    try:
        for step in (4, 5, 6, 7):  # 6 steps an epoch: across the epoch boundary
            got = feed.get(step)
            want = feed.read(step)
            assert [xb.dtype for xb, _ in got] == [torch.uint8] * 2
            assert all(torch.equal(data.normalize(g[0]), w[0]) and torch.equal(g[1], w[1]) for g, w in zip(got, want))
        with pytest.raises(RuntimeError, match="in order"):
            feed.get(9)
    finally:
        feed.close()
    # a torchrun rank reads its own slice of the same global batch (rank 1 of 2: the second 8 of 16)
    rank1 = batches.Feed(data.images(x, 24, 1.0), torch.from_numpy(y), cfg, 3, batches.slices(8, 1, Dist(rank=1, world=2)),
                         total=9, workers=1)
    try:
        (got,) = rank1.get(2)
        whole = data.train_batch(x.at(24), torch.from_numpy(y), 2, 16, 3, "inception_crop", size=24)
        assert torch.equal(data.normalize(got[0]), whole[0][8:]) and torch.equal(got[1], whole[1][8:])
    finally:
        rank1.close()
    monkeypatch.setattr(batches.os, "sched_getaffinity", lambda _: set(range(64)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert batches.default_workers() == 7


def test_bit_crop_matches_resize_then_crop_then_flip():
    """BiT's crop against its definition image by image (bit_pytorch: Resize((precrop, precrop)), RandomCrop,
    RandomHorizontalFlip): the precrop square, the window at the drawn corner, the drawn flip."""
    from torchvision.transforms.v2 import functional as TF

    x, y = torch.randint(0, 256, (32, 3, 40, 40), dtype=torch.uint8), torch.arange(32)
    xb, yb = data.train_batch(x, y, 2, 8, 0, "bit_crop", size=384 // 16)
    pre = data.augment.bit_precrop(24)
    assert data.augment.bit_precrop(384) == 448 and data.augment.bit_precrop(128) == 160 and pre == 28
    idx = torch.randperm(32, generator=torch.Generator().manual_seed(0))[16:24]
    corners = data.augment.bit_offsets(np.random.default_rng([0, 2]), 8, 24)
    flip = torch.rand(8, generator=torch.Generator().manual_seed(2)) < 0.5
    assert corners.min() >= 0 and corners.max() <= pre - 24
    for i in range(8):
        ref = TF.crop(TF.resize(x[idx[i]], [pre, pre], antialias=True), *corners[i].tolist(), 24, 24)
        assert torch.equal(data.normalize(TF.horizontal_flip(ref) if flip[i] else ref), xb[i])
    assert torch.equal(yb, y[idx])


def test_a_damaged_shard_is_named(jpegs, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(jpegs / "shards", out)
    with open(out / "train-000002.tar", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(DataError, match="train-000002.tar: missing or not the size"):
        data.load_split(out, "train")
    # an image damaged in place (the shard's size unchanged): named by shard and key when it is read
    shutil.copy(jpegs / "shards" / "train-000002.tar", out / "train-000002.tar")
    with tarfile.open(out / "train-000000.tar") as tar:
        first = tar.getmembers()[0]
    with open(out / "train-000000.tar", "r+b") as f:
        f.seek(first.offset_data)
        f.write(b"\0" * 16)
    x, _, _ = data.load_split(out, "train")
    with pytest.raises(DataError, match=r"train-000000.tar:000000000.jpg: cannot decode image"):
        x.originals(np.array([int(np.flatnonzero(x.row == 0)[0])]))


def _cli(*args, timeout=240):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout)


def _train(data_dir, out, *extra):
    return ["-m", "vit.train", f"--data={data_dir}", f"--out={out}", f"--model_args={TINY}", "--img_size=32",
            "--batch_size=16", "--augment=inception_crop", "--threads=1", "--loader_workers=2", "--seed=0",
            *FORM_ARGS, "--log_every=1", *extra]


@pytest.mark.slow
def test_a_jpeg_tree_goes_from_prepare_to_evaluation_and_a_killed_run_resumes_exactly(jpegs, tmp_path):
    """Pre-training from the shards (inception crop, 2 DataLoader workers), killed with SIGKILL mid-epoch
    (6 steps an epoch) after its first saved state, then rerun, and another stopped by SIGTERM to its process
    group (workers included) and rerun: the weights equal an unbroken run's. Then
    a fine-tune at 48 px from its checkpoint (position embeddings resampled) and an evaluation on val."""
    import time

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    args = ("--steps=16", "--lr=0.003", "--ckpt_every=4")
    assert _cli(*_train(jpegs / "shards", whole, *args)).returncode == 0
    proc = subprocess.Popen([sys.executable, *_train(jpegs / "shards", killed, *args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(killed.glob("state-*.pt")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (killed / "summary.json").exists()
    assert torch.load(next(killed.glob("state-*.pt")), weights_only=False)["step"] % 6  # mid-epoch
    assert _cli(*_train(jpegs / "shards", killed, *args)).returncode == 0
    # SIGTERM to the whole process group, as SLURM sends it: the workers ignore it, the run saves and exits 75
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, *_train(jpegs / "shards", stopped, *args)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while not list(stopped.glob("state-*.pt")) and proc.poll() is None and time.time() < deadline + 120:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(60) == 75, proc.stderr.read()[-2000:]
    assert _cli(*_train(jpegs / "shards", stopped, *args)).returncode == 0
    wa, wb, wc = (torch.load(d / "checkpoint.pt", weights_only=False)["model"] for d in (whole, killed, stopped))
    assert all(torch.equal(wa[k], wb[k]) and torch.equal(wa[k], wc[k]) for k in wa)

    # the fine-tuning stage (vit.train.finetune, as the workflow calls it) on the same tree at 48 px
    tuned = tmp_path / "tuned"
    ft = _cli("-m", "vit.train.finetune", "--model=vit", "--upstream=shards", f"--data_root={jpegs}", f"--out={tuned}",
              '--tasks=["shards"]', "--resolutions=[48]", "--seeds=[0]", f"--init={whole / 'checkpoint.pt'}",
              "--optimizer=sgd", "--lr=0.01", "--steps=6", "--batch_size=16", "--augment=inception_crop",
              "--train_split=train", "--test_split=val", "--threads=1", "--loader_workers=2", "--ckpt_every=0")
    assert ft.returncode == 0, ft.stderr[-2000:]
    (ckpt,) = tuned.rglob("checkpoint.pt")
    (summary,) = tuned.rglob("summary.json")
    assert json.loads(summary.read_text())["config"]["img_size"] == 48
    ev = _cli("-m", "vit.evaluate.classify", f"--checkpoint={ckpt}", f"--data={jpegs / 'shards'}",
              "--split=val", f"--out={tmp_path / 'eval.json'}")
    assert ev.returncode == 0, ev.stderr[-2000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["n"] == 24 and 0 <= result["top1"] <= 100
    assert result["top1"] == json.loads(summary.read_text())["eval"]["val"]["top1"]  # the stage's own score
