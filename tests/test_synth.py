import numpy as np
import pytest

from vit.data import synth


@pytest.mark.slow
def test_shapes_format_classes_and_nesting():
    x, y, names = synth.shapes(600, n_classes=16, size=32, seed=5)
    assert x.shape == (600, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
    assert len(names) == 16 and set(np.unique(y)) == set(range(16)) and names[1] == "circle/stripes"
    x2, y2, _ = synth.shapes(200, n_classes=16, size=32, seed=5)
    assert np.array_equal(x[:200], x2) and np.array_equal(y[:200], y2)  # nested prefixes
    x3, _, _ = synth.shapes(200, n_classes=16, size=32, seed=6)
    assert not np.array_equal(x2, x3)
    assert x.std() > 30  # not blank


def test_shapes_rejects_too_many_classes():
    with pytest.raises(ValueError, match="n_classes=65"):
        synth.shapes(10, n_classes=65)


def test_every_shape_and_pattern_draws_pixels():
    t = np.linspace(-1, 1, 64, dtype=np.float32)
    u, v = np.meshgrid(t, t)
    for name in synth.SHAPES:
        area = synth.shape_mask(name, u, v).mean()
        assert 0.05 < area < 0.8, name


@pytest.mark.slow
def test_dsprites_latents_and_border():
    x, lat = synth.dsprites(400, seed=1)
    assert x.shape == (400, 64, 64, 3) and set(np.unique(x)) <= {0, 255}
    for key, m in {"shape": 3, "scale": 6, "orientation": 40, "x": 32, "y": 32}.items():
        assert lat[key].min() >= 0 and lat[key].max() < m
    x2, lat2 = synth.dsprites(100, seed=1)
    assert np.array_equal(x[:100], x2) and np.array_equal(lat["x"][:100], lat2["x"])
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
    assert border.max() == 0 and (x.reshape(400, -1).max(1) == 255).all()  # inside, and never empty
    left = x[lat["x"] == 0].mean(0)[..., 0].sum(0)
    assert left[:32].sum() > left[32:].sum()  # x index 0 is the left of the image
    # the centres span the frame, as dSprites' do: the extreme positions reach within a few pixels of the edge
    cols = np.nonzero(x[..., 0].max(1))  # (image, column) of every lit column
    first = np.array([cols[1][cols[0] == i].min() for i in range(400)])
    last = np.array([cols[1][cols[0] == i].max() for i in range(400)])
    assert first[lat["x"] == 0].min() <= 4 and last[lat["x"] == 31].max() >= 59


def test_dsprites_label_functions_at_bin_edges():
    loc = synth.dsprites_location_label
    assert [loc(i) for i in (0, 1, 2, 31)] == [0, 0, 1, 15]
    # fewer bins of the same x range (the default's 6: about one patch wide at 32 px, as VTAB's 16 at 384 px)
    assert np.bincount(loc(np.arange(32), 6)).tolist() == [6, 5, 5, 6, 5, 5] and loc(31, 6) == 5
    ori = synth.dsprites_orientation_label
    assert [ori(i) for i in (0, 2, 3, 4, 5, 39)] == [0, 0, 1, 1, 2, 15]
    assert np.bincount(ori(np.arange(40))).tolist() == [3, 2] * 8


@pytest.mark.slow
def test_clevr_labels_and_balance():
    assert synth.clevr_count_label(3) == 0 and synth.clevr_count_label(10) == 7
    d = synth.clevr_distance_label
    assert [d(8.0), d(8.01), d(8.5), d(9.0), d(10.0), d(10.5)] == [0, 1, 1, 2, 4, 5]
    x, lat = synth.clevr(600, seed=2)
    assert lat["count"].min() >= 3 and lat["count"].max() <= 10
    share = np.bincount(d(lat["min_depth"]), minlength=6) / 600
    assert share.min() > 0.05
    x2, _ = synth.clevr(50, seed=2)
    assert np.array_equal(x[:50], x2)


def test_make_dispatch():
    for source, classes in [("shapes", 64), ("dsprites_location", 16), ("dsprites_orientation", 16),
                            ("clevr_count", 8), ("clevr_distance", 6)]:
        x, y, names, info = synth.make(source, 20, size=32 if source == "shapes" else 64, seed=0)
        assert len(x) == len(y) == 20 and len(names) == classes and y.max() < classes and info["generator"]
    with pytest.raises(ValueError, match="valid"):
        synth.make("cifar", 5, size=32, seed=0)


def test_landcover_tiles():
    x, y = synth.landcover(300, size=64, seed=4)
    assert x.shape == (300, 64, 64, 3) and x.dtype == np.uint8 and set(np.unique(y)) == set(range(10))
    x2, y2 = synth.landcover(50, size=64, seed=4)
    assert np.array_equal(x[:50], x2) and np.array_equal(y[:50], y2)
    assert not np.array_equal(x2, synth.landcover(50, size=64, seed=5)[0])
    water = x[y == synth.LANDCOVER.index("sea_lake")].mean(axis=(0, 1, 2))
    forest = x[y == synth.LANDCOVER.index("forest")].mean(axis=(0, 1, 2))
    assert water[2] > water[1] and forest[1] > forest[2] and forest.mean() < water.mean() + 40
    _, labels, names, _ = synth.make("landcover", 20, size=32, seed=0)
    assert names[0] == "annual_crop" and len(names) == 10 and labels.max() < 10


def test_landcover_classes_overlap_in_colour():
    """The classes differ in texture and layout, not in colour: a nearest-class-mean classifier on a tile's mean
    colour scores about a third (the first generator's class colours gave it two thirds, and a small CNN 100 %
    from 1,000 examples), while every class keeps about a tenth of the tiles."""
    x, y = synth.landcover(1000, size=32, seed=4)
    share = np.bincount(y, minlength=10) / len(y)
    assert share.min() > 0.07 and share.max() < 0.13
    m = x.reshape(len(x), -1, 3).mean(1)
    centres = np.stack([m[:500][y[:500] == c].mean(0) for c in range(10)])
    top1 = (np.argmin(((m[500:, None] - centres[None]) ** 2).sum(-1), 1) == y[500:]).mean()
    assert 0.12 < top1 < 0.45
