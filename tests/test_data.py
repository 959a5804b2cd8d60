
import numpy as np
import pytest
import torch

from vit import data


def test_prepared_format_and_manifest(digits_dir):
    m = data.read_manifest(digits_dir)
    assert m["splits"] == {"train": 96, "val": 32, "test": 64} and m["num_classes"] == 10
    x, y, _ = data.load_split(digits_dir, "train+val")
    assert x.dtype == np.uint8 and x.shape == (128, 8, 8, 3) and y.dtype == np.int64
    assert set(np.unique(y)) <= set(range(10))


def test_checksum_mismatch_is_refused_with_the_file_named(digits_dir, tmp_path):
    import shutil

    bad = tmp_path / "digits"
    shutil.copytree(digits_dir, bad)
    arr = np.load(bad / "train_images.npy")
    arr[0, 0, 0, 0] ^= 1  # one bit
    np.save(bad / "train_images.npy", arr)
    with pytest.raises(data.DataError, match="train_images.npy.*SHA-256"):
        data.load_split(bad, "train")
    data.load_split(bad, "test")  # untouched splits still load


def test_missing_manifest_and_split_are_explained(digits_dir, tmp_path):
    with pytest.raises(data.DataError, match="no prepared dataset"):
        data.read_manifest(tmp_path)
    with pytest.raises(data.DataError, match="no split 'holdout'"):
        data.load_split(digits_dir, "holdout")


def test_failed_prepare_keeps_the_earlier_data(digits_dir, tmp_path):
    import shutil

    from vit.data import prepare

    out = tmp_path / "digits"
    shutil.copytree(digits_dir, out)
    before = (out / "manifest.json").read_text()
    with pytest.raises(data.DataError, match="only 1797"):
        prepare.prepare(prepare.Config(name="digits", source="digits", group="natural", out=str(out), train=5000))
    assert (out / "manifest.json").read_text() == before
    data.load_split(out, "train")


def test_batches_are_a_function_of_seed_and_step():
    x = torch.randint(0, 255, (50, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(50)
    a = data.train_batch(x, y, 7, 16, seed=3, augment="crop_flip")
    b = data.train_batch(x, y, 7, 16, seed=3, augment="crop_flip")
    c = data.train_batch(x, y, 8, 16, seed=3, augment="crop_flip")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
    assert a[0].shape == (16, 3, 8, 8) and a[0].min() >= -1 and a[0].max() <= 1
    # one epoch (3 batches of 16 from 50) visits distinct examples
    seen = torch.cat([data.train_batch(x, y, s, 16, seed=3, augment="none")[1] for s in range(3)])
    assert len(set(seen.tolist())) == 48


def test_to_tensor_resizes_once_with_antialias():
    img = np.zeros((2, 8, 8, 3), np.uint8)
    img[:, :, 4:] = 255
    t = data.to_tensor(img, 32)
    assert t.shape == (2, 3, 32, 32) and t.dtype == torch.uint8
    assert t[0, 0, 0, 0] == 0 and t[0, 0, 0, -1] == 255


def _write_idx(path, arr):
    """IDX format: magic (0, 0, dtype 0x08 = uint8, ndim), big-endian dims, raw bytes."""
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_from_idx_files(tmp_path):
    from vit.data import prepare

    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_x, test_x = rng.integers(0, 256, (40, 28, 28)), rng.integers(0, 256, (12, 28, 28))
    _write_idx(raw / "train-images-idx3-ubyte", train_x)
    _write_idx(raw / "train-labels-idx1-ubyte", np.arange(40) % 10)
    _write_idx(raw / "t10k-images-idx3-ubyte", test_x)
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.arange(12) % 10)
    out = tmp_path / "fmnist"
    m = prepare.prepare(prepare.Config(name="fashion_mnist", source="fashion_mnist", group="natural", out=str(out),
                                       train=20, val=10, test=12, data_root=str(tmp_path)))
    assert m["splits"] == {"train": 20, "val": 10, "test": 12} and m["classes"][9] == "ankle boot"
    x, y, _ = data.load_split(out, "test")
    assert np.array_equal(x[..., 0], test_x) and np.array_equal(y, np.arange(12) % 10)


def test_fashion_mnist_missing_says_where_it_looked(tmp_path, monkeypatch):
    from vit.data import prepare

    monkeypatch.setattr(prepare, "DEBIAN_FASHION", tmp_path / "nowhere")
    with pytest.raises(data.DataError, match="apt-get install dataset-fashion-mnist"):
        prepare.prepare(prepare.Config(name="f", source="fashion_mnist", group="natural", out=str(tmp_path / "o"),
                                       data_root=str(tmp_path)))


DEBIAN = "/usr/share/datasets/fashion-mnist"


@pytest.mark.slow
@pytest.mark.skipif(not __import__("os").path.isdir(DEBIAN), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_debian(tmp_path):
    """The real files, through both adapters: vit.data.prepare's IDX reader and torchvision's loader."""
    import hashlib
    import gzip

    from vit.data import prepare, tv_sources

    raw = gzip.open(f"{DEBIAN}/t10k-labels-idx1-ubyte.gz").read()
    assert hashlib.md5(raw).hexdigest() == "15d484375f8d13e6eb1aabb0c3f46965"  # docs/datasets.md, torchvision sets offline
    m = prepare.prepare(prepare.Config(name="fashion_mnist", source="fashion_mnist", group="natural",
                                       out=str(tmp_path / "fm"), train=800, val=200, test=1000))
    x, y, _ = data.load_split(tmp_path / "fm", "test")
    assert x.shape == (1000, 28, 28, 3) and m["classes"][0] == "t-shirt/top"
    assert np.bincount(y, minlength=10).min() > 50  # the real test set is class-balanced
    seq, names = tv_sources.open_split("fashion_mnist", "test", str(tmp_path / "tv"))
    image, label = seq[0]
    assert len(seq) == 10000 and image.size == (28, 28) and label == int(y[0])
    assert np.array_equal(np.asarray(image)[..., 0], x[0, ..., 0])


def test_mixup_batches_blend_partners_and_split_like_the_whole_batch():
    import torch

    from vit import data

    x = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(64) % 10
    xb, tb = data.train_batch(x, y, 3, 16, 0, "crop_flip", mixup=0.2, num_classes=10)
    assert tb.shape == (16, 10) and torch.allclose(tb.sum(1), torch.ones(16))
    assert ((tb > 0).sum(1) <= 2).all()  # a blend of two labels
    plain, labels = data.train_batch(x, y, 3, 16, 0, "crop_flip")
    lam = tb[torch.arange(16), labels].max().item()  # weight of each image's own label (its partner may share it)
    assert not torch.allclose(xb, plain) and 0 < lam <= 1
    halves = [data.train_batch(x, y, 3, 16, 0, "crop_flip", part=p, mixup=0.2, num_classes=10)
              for p in (slice(0, 8), slice(8, 16))]
    assert torch.equal(torch.cat([h[0] for h in halves]), xb) and torch.equal(torch.cat([h[1] for h in halves]), tb)
    again = data.train_batch(x, y, 3, 16, 0, "crop_flip", mixup=0.2, num_classes=10)
    assert torch.equal(again[0], xb)  # a pure function of (seed, step): resumes see the same blend
    assert torch.equal(data.train_batch(x, y, 3, 16, 0, "none", mixup=0.0)[0], data.train_batch(x, y, 3, 16, 0, "none")[0])


def test_randaugment_skip_leaves_ops_out_and_names_unknown_ones():
    """randaugment_skip: the skipped ops are never drawn (here all but Identity: the images come back as
    they went in); the schema lists exactly torchvision's ops; an unknown op is named."""
    from vit.plan import checks

    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=g), torch.zeros(16, dtype=torch.long)
    ops = data.randaugment_ops()
    assert "Solarize" in ops and len(ops) == 14
    schema_ops = checks.schema()["$defs"]["train"]["properties"]["randaugment_skip"]["items"]["enum"]
    assert tuple(schema_ops) == ops
    plain = data.train_batch(x, y, 3, 16, 0, "none")[0]
    only_identity = data.train_batch(x, y, 3, 16, 0, "randaugment", randaugment_skip=tuple(o for o in ops if o != "Identity"))[0]
    crop_flip = data.train_batch(x, y, 3, 16, 0, "crop_flip")[0]
    assert torch.equal(only_identity, crop_flip) and not torch.equal(only_identity, plain)
    assert not torch.equal(data.train_batch(x, y, 3, 16, 0, "randaugment")[0], crop_flip)
    with pytest.raises(ValueError, match="randaugment_skip names \\['Solarise'\\]"):
        data.train_batch(x, y, 3, 16, 0, "randaugment", randaugment_skip=("Solarise",))


def test_randaugment_is_per_image_deterministic_and_split_invariant():
    import torch

    from vit import data

    x = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8)
    y = torch.arange(64) % 10
    xb, _ = data.train_batch(x, y, 5, 16, 0, "randaugment")
    flip_only, _ = data.train_batch(x, y, 5, 16, 0, "crop_flip")
    assert not torch.equal(xb, flip_only) and xb.shape == flip_only.shape
    halves = torch.cat([data.train_batch(x, y, 5, 16, 0, "randaugment", part=p)[0] for p in (slice(0, 8), slice(8, 16))])
    assert torch.equal(halves, xb)
    state = torch.get_rng_state()
    assert torch.equal(data.train_batch(x, y, 5, 16, 0, "randaugment")[0], xb)
    assert torch.equal(torch.get_rng_state(), state)  # the training RNG is not consumed


def test_inception_boxes_follow_torchvision_random_resized_crop():
    """Our vectorised crop boxes against torchvision's RandomResizedCrop (the reference): every box lies
    in the image with area and aspect in range, and the distributions of area, aspect and position
    match the reference's draws (two-sample Kolmogorov-Smirnov, 4,000 boxes each)."""
    from scipy.stats import ks_2samp
    from torchvision.transforms import v2

    h = w = 64
    ours = data.inception_boxes(np.random.default_rng(0), 4000, h, w)
    top, left, ch, cw = ours.T
    assert (top >= 0).all() and (left >= 0).all() and (top + ch <= h).all() and (left + cw <= w).all()
    area, aspect = ch * cw / (h * w), cw / ch
    assert 0.04 <= area.min() and area.max() <= 1 and 0.7 < aspect.min() and aspect.max() < 1.43
    rrc = v2.RandomResizedCrop(32, scale=data.INCEPTION_AREA, ratio=data.INCEPTION_ASPECT)
    torch.manual_seed(0)
    ref = np.array([[p["top"], p["left"], p["height"], p["width"]] for p in
                    (rrc.make_params([torch.zeros(3, h, w)]) for _ in range(4000))])
    for mine, theirs in ((area, ref[:, 2] * ref[:, 3] / (h * w)), (aspect, ref[:, 3] / ref[:, 2]),
                         (top + ch / 2, ref[:, 0] + ref[:, 2] / 2), (left + cw / 2, ref[:, 1] + ref[:, 3] / 2)):
        assert ks_2samp(mine, theirs).pvalue > 1e-3
    # a box the reference would reject (a 1 x 40 image admits no 3/4-4/3 crop of 5 % area): its centred fallback
    box = data.inception_boxes(np.random.default_rng(0), 1, 1, 40)[0]
    assert box.tolist() == [0, (40 - 1) // 2, 1, 1]


def test_inception_crop_matches_torchvision_and_splits_like_the_whole_batch():
    from torchvision.transforms.v2 import functional as TF

    x = torch.randint(0, 256, (64, 3, 48, 48), dtype=torch.uint8)
    y = torch.arange(64) % 10
    xb, yb = data.train_batch(x, y, 3, 16, 0, "inception_crop", size=24)
    assert xb.shape == (16, 3, 24, 24)
    # the reference: the same boxes and flips through torchvision's resized_crop and hflip, image by image
    idx = torch.randperm(64, generator=torch.Generator().manual_seed(0 * 100_003 + 0))[48:64]
    boxes = data.inception_boxes(np.random.default_rng([0, 3]), 16, 48, 48)
    flip = torch.rand(16, generator=torch.Generator().manual_seed(3)) < 0.5
    for i in range(16):
        ref = TF.resized_crop(x[idx[i]], *boxes[i].tolist(), [24, 24], antialias=True)
        ref = TF.horizontal_flip(ref) if flip[i] else ref
        assert torch.equal(data.normalize(ref), xb[i])
    assert torch.equal(yb, y[idx])
    halves = torch.cat([data.train_batch(x, y, 3, 16, 0, "inception_crop", part=p, size=24)[0]
                        for p in (slice(0, 8), slice(8, 16))])
    assert torch.equal(halves, xb)
    with pytest.raises(ValueError, match="stored side"):
        data.train_batch(x, y, 3, 16, 0, "crop_flip", size=24)
