import colorsys

import numpy as np
import pytest

from vit.data import contours


def test_format_nesting_and_fixed_classes():
    x, y, names = contours.contours(300, n_classes=12, size=48, seed=3, shapes=0)
    assert x.shape == (300, 48, 48, 3) and x.dtype == np.uint8 and y.shape == (300,)
    assert len(names) == 12 and set(np.unique(y)) == set(range(12))
    xs, ys, _ = contours.contours(100, n_classes=12, size=48, seed=3, shapes=0)
    assert np.array_equal(xs, x[:100]) and np.array_equal(ys, y[:100])  # nested: a smaller set is a prefix
    # a class is the same contour whatever the set's seed or size: prototypes do not depend on either
    b1, a1, p1 = contours.prototypes(12)
    b2, a2, p2 = contours.prototypes(40)
    assert np.array_equal(a1, a2[:12]) and np.array_equal(p1, p2[:12]) and np.array_equal(b1, b2[:12])


def test_prototypes_fit_the_unit_disc_and_have_their_lobe_count():
    base, amp, phase = contours.prototypes(14)
    theta = np.linspace(0, 2 * np.pi, 2000, endpoint=False)[:, None]
    k = np.arange(1, contours.HARMONICS + 1)
    r = base[:, None] + (amp[:, None, :] * np.cos(k * theta[None] + phase[:, None, :])).sum(-1)
    assert np.allclose(r.max(1), 1, atol=1e-3)
    assert [int(np.argmax(a[1:])) + 2 for a in amp] == [2 + c % 7 for c in range(14)]


def test_objects_cover_the_whole_frame():
    """Instances are placed anywhere: the corners hold foreground as well as the centre (the old corpus
    kept objects near the centre, so position embeddings learnt centre-versus-ring)."""
    x, _, _ = contours.contours(600, size=32, seed=0, clutter=False)
    bg = x[:, :1, :1].astype(int)  # the top-left pixel: background in most images
    fg = (np.abs(x.astype(int) - bg).sum(-1) > 60).mean(0)
    centre, corner = fg[12:20, 12:20].mean(), np.mean([fg[:8, :8].mean(), fg[-8:, -8:].mean(), fg[:8, -8:].mean()])
    assert corner > 0.4 * centre


def test_the_default_class_is_hue_bin_and_fill():
    """The default corpus: 24 classes = 8 hue bins x 3 fills; the silhouette is nuisance."""
    x, y, names = contours.contours(400, size=32, seed=1)
    assert len(names) == 24 and names[0] == "hue0/solid" and names[23] == "hue7/outline"
    with pytest.raises(ValueError, match="palettes x fills"):
        contours.contours(10, n_classes=30, size=32)
    # an object's hue lies in its class's bin: within a quarter bin (1/32 of the circle) of the bin's centre
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 24, 500)
    rgb = contours.object_colours(labels, *rng.random((3, 500, 4)), contours.Look())
    hue = np.array([[colorsys.rgb_to_hsv(*c)[0] for c in row] for row in rgb])
    centre = ((labels % 24) // 3 / 8)[:, None]
    off = (hue - centre + 0.5) % 1 - 0.5
    assert np.abs(off).max() <= 1 / 32 + 1e-6 and np.abs(off).max() > 1 / 40
