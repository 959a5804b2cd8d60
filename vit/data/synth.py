"""Procedural image datasets, numpy only: the smoke preset's upstream corpus and VTAB stand-ins (the
default's upstream corpus is vit.data.contours).

- `shapes`: a small upstream classification corpus. A class is a shape x a fill pattern (16 x 4 = 64);
  pose, size, colours, background and distractor blobs vary per image. One generator at three sizes
  stands in for ImageNet / ImageNet-21k / JFT-300M (paper sec. 4.1-4.2).
- `dsprites`: dSprites' factor structure (3 shapes x 6 scales x 40 orientations x 32 x 32 positions,
  64 px, white on black; docs/datasets.md, dSprites) with VTAB's location and orientation labels.
- `clevr`: 2D CLEVR-like scenes (3-10 objects on a ground plane, size and height set by depth) with
  VTAB's count (n - 3) and closest-distance labels. Tests plumbing and label logic: not CLEVR itself.
- `landcover`: EuroSAT-like aerial tiles, 10 classes told apart by texture and layout; colours overlap
  (a per-image season, haze, gain), the texture scale varies and some tiles are mixed (docs/datasets.md).

Everything is deterministic in `seed`, and nested: image i depends only on (seed, i), so the first m
images of a larger set equal a set of size m. Shapes are rendered at 2x or 4x and box-filtered.
"""
from __future__ import annotations

import math

import numpy as np
from tqdm import tqdm

SHAPES = ("circle", "ellipse", "triangle", "square", "pentagon", "hexagon", "star4", "star5", "star6",
          "plus", "heart", "ring", "crescent", "diamond", "semicircle", "arrow")
PATTERNS = ("solid", "stripes", "checker", "outline")
DSPRITES_SHAPES = ("square", "ellipse", "heart")
DSPRITES_REACH = 0.30  # half-frame units: how far the sprite centres stay from the frame's edge (dsprites)
MIXED_SHARE = 0.4  # landcover: the share of tiles where a second class covers an edge or a corner
CLEVR_DIST_THRESHOLDS = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
CLEVR_COLOURS = np.array([[87, 87, 87], [173, 35, 35], [42, 75, 215], [29, 105, 20], [129, 74, 25],
                          [129, 38, 192], [41, 208, 208], [255, 238, 51]], np.float32) / 255


# ----------------------------------------------------------------------------- label functions (VTAB)
def dsprites_location_label(x_idx, classes: int = 16):
    """dSpr-Loc: 32 x positions into `classes` bins of the x range, floor(x * classes / 32); VTAB's 16 is
    x // 2 (task_adaptation dsprites.py). Fewer classes keep VTAB's geometry at low resolution, where 16
    bins would be a fraction of a patch wide (configs: `classes` on a dsprites_location dataset)."""
    out = np.asarray(x_idx, np.int64) * classes // 32
    return out if np.ndim(x_idx) else int(out)


def dsprites_orientation_label(o_idx):
    """dSpr-Ori: 40 orientations into 16 classes of sizes 3,2,3,2,... (floor(o / 2.5))."""
    out = np.floor(np.asarray(o_idx, np.float32) / np.float32(2.5)).astype(np.int64)
    return out if np.ndim(o_idx) else int(out)


def clevr_count_label(count):
    """Clevr-Count: number of objects - 3 (8 classes)."""
    return np.asarray(count, np.int64) - 3 if np.ndim(count) else int(count) - 3


def clevr_distance_label(depth):
    """Clevr-Dist: the largest i with thresholds[i] < depth of the closest object (6 classes)."""
    thr = np.asarray(CLEVR_DIST_THRESHOLDS[:-1])
    out = (np.asarray(depth, np.float64)[..., None] > thr).sum(-1).astype(np.int64) - 1
    return out if np.ndim(depth) else int(out)


# ----------------------------------------------------------------------------- shape masks
def _polygon(u, v, n):
    theta = np.arctan2(v, u)
    sector = 2 * np.pi / n
    r = np.cos(np.pi / n) / np.cos((theta % sector) - sector / 2)
    return np.hypot(u, v) <= r


def _star(u, v, k, inner=0.45):
    theta = np.arctan2(v, u)
    r = inner + (1 - inner) * (0.5 + 0.5 * np.cos(k * theta)) ** 2
    return np.hypot(u, v) <= r


def _heart(u, v):
    x, y = u * 1.15, -v * 1.15 + 0.15  # image rows grow downwards: flip so the point is at the bottom
    return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0


def shape_mask(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in the shape's own frame, where the shape fits the unit disc."""
    r2 = u * u + v * v
    if name == "circle":
        return r2 <= 1
    if name == "ellipse":
        return u * u + (v / 0.5) ** 2 <= 1
    if name in ("triangle", "square", "pentagon", "hexagon"):
        return _polygon(u, v, {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}[name])
    if name.startswith("star"):
        return _star(u, v, int(name[-1]))
    if name == "plus":
        return ((np.abs(u) < 0.3) & (np.abs(v) < 0.95)) | ((np.abs(u) < 0.95) & (np.abs(v) < 0.3))
    if name == "heart":
        return _heart(u, v)
    if name == "ring":
        return (r2 <= 1) & (r2 >= 0.36)
    if name == "crescent":
        return (r2 <= 1) & ((u - 0.45) ** 2 + v * v >= 0.64)
    if name == "diamond":
        return np.abs(u) / 0.6 + np.abs(v) <= 1
    if name == "semicircle":
        return (r2 <= 1) & (v <= 0.2)
    if name == "arrow":
        head = (u >= 0.1) & (np.abs(v) <= 0.75 * (1 - u) / 0.9) & (u <= 1)
        return head | ((u > -1) & (u < 0.15) & (np.abs(v) < 0.25))
    raise ValueError(f"unknown shape {name!r}")


def frame(n, grid, cx, cy, scale, angle):
    """Per-image object coordinates (n, grid, grid) for image coordinates in [-1, 1]."""
    t = (np.arange(grid, dtype=np.float32) + 0.5) / grid * 2 - 1
    y, x = t[None, :, None], t[None, None, :]
    dx, dy = x - cx[:, None, None], y - cy[:, None, None]
    c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    sc = scale[:, None, None]
    return (dx * c + dy * s) / sc, (-dx * s + dy * c) / sc


def _downsample(img: np.ndarray, k: int) -> np.ndarray:
    n, g = img.shape[:2]
    return img.reshape(n, g // k, k, g // k, k, *img.shape[3:]).mean(axis=(2, 4))


# ----------------------------------------------------------------------------- upstream corpus
def shapes(n: int, *, n_classes: int = 64, size: int = 32, seed: int = 0, chunk: int = 512):
    """The upstream corpus: images (n,size,size,3) uint8, labels (n,) int64, class names."""
    if not 2 <= n_classes <= len(SHAPES) * len(PATTERNS):
        raise ValueError(f"n_classes={n_classes}: must be between 2 and {len(SHAPES) * len(PATTERNS)}")
    names = [f"{SHAPES[c // len(PATTERNS)]}/{PATTERNS[c % len(PATTERNS)]}" for c in range(n_classes)]
    u = np.random.default_rng(seed).random((n, 32), dtype=np.float32)  # row i = image i's factors
    labels = np.minimum((u[:, 0] * n_classes).astype(np.int64), n_classes - 1)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in tqdm(range(0, n, chunk), desc="shapes", unit="chunk", disable=n < 4 * chunk, mininterval=2):
        out[i:i + chunk] = _render_shapes(u[i:i + chunk], labels[i:i + chunk], size)
    return out, labels, names


def _render_shapes(u: np.ndarray, labels: np.ndarray, size: int) -> np.ndarray:
    k = 2
    g, n = size * k, len(u)
    t = (np.arange(g, dtype=np.float32) + 0.5) / g * 2 - 1
    # background: a two-colour gradient along a random direction plus a low-frequency wave
    fg, bg, alt = u[:, 1:4], u[:, 4:7], u[:, 7:10]
    lum = lambda c: c @ np.array([0.3, 0.6, 0.1], np.float32)  # noqa: E731
    low = np.abs(lum(fg) - lum(bg)) < 0.3  # keep the object visible: push the background away
    bg[low] = np.clip(1 - fg[low] * 0.8, 0, 1)
    ang = u[:, 10] * 2 * np.pi
    ramp = np.cos(ang)[:, None, None] * t[None, None, :] + np.sin(ang)[:, None, None] * t[None, :, None]
    wave = np.sin(3 * u[:, 11, None, None] * t[None, None, :] * np.pi + 6 * u[:, 12, None, None]) * \
        np.sin(3 * u[:, 13, None, None] * t[None, :, None] * np.pi)
    shade = (0.25 * u[:, 14, None, None] * ramp + 0.08 * wave)[..., None]
    img = np.clip(bg[:, None, None, :] * (1 + shade), 0, 1) * np.ones((1, g, g, 3), np.float32)
    # 0-2 distractor blobs (small ellipses, never one of the class shapes)
    for d in range(2):
        on = u[:, 15] * 3 > d + 1
        du, dv = frame(n, g, u[:, 16 + 3 * d] * 1.6 - 0.8, u[:, 17 + 3 * d] * 1.6 - 0.8,
                        0.08 + 0.08 * u[:, 18 + 3 * d], u[:, 18 + 3 * d] * 6)
        blob = (du * du + (dv / 0.6) ** 2 <= 1) & on[:, None, None]
        img[blob] = (img[blob] * 0.5 + alt[np.nonzero(blob)[0]] * 0.5)
    # the object
    scale = 0.5 + 0.35 * u[:, 22]  # object radius 8-14 px at 32 px, so shapes stay distinguishable
    margin = 1 - scale * 0.9
    ou, ov = frame(n, g, (u[:, 23] * 2 - 1) * margin, (u[:, 24] * 2 - 1) * margin, scale, u[:, 25] * 2 * np.pi)
    shape_id, pattern_id = labels // len(PATTERNS), labels % len(PATTERNS)
    mask = np.zeros((n, g, g), bool)
    pattern = np.ones((n, g, g), bool)
    freq = 1.2 + 1.3 * u[:, 26, None, None]  # >= 3 px per stripe at 32 px: patterns stay resolvable
    sang = u[:, 27, None, None] * np.pi
    for s, name in enumerate(SHAPES):
        idx = np.nonzero(shape_id == s)[0]
        if len(idx):
            mask[idx] = shape_mask(name, ou[idx], ov[idx])
    for p, name in enumerate(PATTERNS):
        idx = np.nonzero(pattern_id == p)[0]
        if not len(idx):
            continue
        pu, pv = ou[idx], ov[idx]
        if name == "stripes":
            pattern[idx] = np.sin(freq[idx] * np.pi * (pu * np.cos(sang[idx]) + pv * np.sin(sang[idx]))) > 0
        elif name == "checker":
            pattern[idx] = np.sin(freq[idx] * np.pi * pu) * np.sin(freq[idx] * np.pi * pv) > 0
        elif name == "outline":  # keep a band inside the border: the shape minus a shrunk copy
            for s, sname in enumerate(SHAPES):
                sel = shape_id[idx] == s
                if sel.any():
                    mask[idx[sel]] &= ~shape_mask(sname, pu[sel] / 0.7, pv[sel] / 0.7)
    colour = np.where(pattern[..., None], fg[:, None, None, :], 0.5 * fg[:, None, None, :] + 0.5 * (1 - bg[:, None, None, :]))
    img = np.where(mask[..., None], colour, img)
    return (np.clip(_downsample(img, k), 0, 1) * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- dSprites
def dsprites(n: int, *, size: int = 64, seed: int = 0, chunk: int = 256):
    """dSprites-style images (white sprite on black, binary, 3 channels) and latent class indices."""
    u = np.random.default_rng(seed).random((n, 5))
    sizes = {"shape": 3, "scale": 6, "orientation": 40, "x": 32, "y": 32}
    lat = {k: np.minimum((u[:, j] * m).astype(np.int64), m - 1) for j, (k, m) in enumerate(sizes.items())}
    scale = np.linspace(0.5, 1.0, 6)[lat["scale"]]
    angle = np.linspace(0, 2 * np.pi, 40)[lat["orientation"]]
    # positions map linearly onto a centre range that spans the frame, as dSprites' do, while keeping every
    # sprite inside ("no pixel is ever out of bounds"): the largest sprite reaches 0.266 of the half-frame
    # from its centre (8.5 px at 64 px, over all shapes and orientations), and 0.30 leaves a pixel of border
    radius, margin = 0.24, DSPRITES_REACH
    px = (np.linspace(0, 1, 32)[lat["x"]] * 2 - 1) * (1 - margin)
    py = (np.linspace(0, 1, 32)[lat["y"]] * 2 - 1) * (1 - margin)
    out = np.empty((n, size, size, 3), np.uint8)
    k = 2
    for i in range(0, n, chunk):
        s = slice(i, i + chunk)
        du, dv = frame(len(px[s]), size * k, px[s], py[s], radius * scale[s], angle[s])
        mask = np.zeros(du.shape, np.float32)
        for j, name in enumerate(DSPRITES_SHAPES):
            sel = lat["shape"][s] == j
            if sel.any():
                mask[sel] = shape_mask(name, du[sel], dv[sel])
        binary = (_downsample(mask, k) >= 0.5).astype(np.uint8) * 255
        out[s] = binary[..., None]
    return out, lat


# ----------------------------------------------------------------------------- CLEVR-like scenes
def clevr(n: int, *, size: int = 64, seed: int = 0):
    """2D scenes of 3-10 objects; returns images and {"count", "min_depth"} per image."""
    out = np.empty((n, size, size, 3), np.uint8)
    count = np.empty(n, np.int64)
    min_depth = np.empty(n, np.float64)
    k = 4
    g = size * k
    t = (np.arange(g, dtype=np.float32) + 0.5) / g
    ground = (0.62 - 0.22 * t)[:, None, None] * np.ones((1, g, 3), np.float32)  # lighter far away
    horizon = int(0.22 * g)
    ground[:horizon] = np.array([0.78, 0.8, 0.84], np.float32)
    for i in tqdm(range(n), desc="clevr", unit="img", disable=n < 2000, mininterval=2):
        rng = np.random.default_rng([seed, i])  # per-image stream: nested and order-independent
        m = int(rng.integers(3, 11))
        # Pick the closest object's distance bin first so that the 6 Clevr-Dist classes are balanced.
        b = int(rng.integers(0, 6))
        lo, hi = [(7.0, 8.0), (8.0, 8.5), (8.5, 9.0), (9.0, 9.5), (9.5, 10.0), (10.0, 11.0)][b]
        dmin = rng.uniform(lo, hi)
        depths = np.concatenate([[dmin], rng.uniform(dmin, 12.5, m - 1)]) if m > 1 else np.array([dmin])
        depths = np.maximum(depths, dmin + 1e-3 * (np.arange(m) > 0))
        img = ground.copy()
        placed = []
        for z in sorted(depths, reverse=True):  # painter's order: far to near
            r = 0.085 * g * 7.0 / z
            cy = horizon + (g - horizon - r) * (12.5 - z) / 5.5 * 0.9 + r * 0.5
            for _ in range(30):  # reject positions that would hide another object
                cx = rng.uniform(r, g - r)
                if all(math.hypot(cx - px, cy - py) > 0.9 * (r + pr) for px, py, pr in placed):
                    break
            placed.append((cx, cy, r))
            _paint(img, cx, cy, r, int(rng.integers(0, 3)), CLEVR_COLOURS[rng.integers(0, 8)] * rng.uniform(0.8, 1.1))
        out[i] = (np.clip(_downsample(img[None], k)[0], 0, 1) * 255 + 0.5).astype(np.uint8)
        count[i], min_depth[i] = m, dmin
    return out, {"count": count, "min_depth": min_depth}


def _paint(img, cx, cy, r, kind, colour):
    g = img.shape[0]
    y0, y1 = max(0, int(cy - 1.3 * r)), min(g, int(cy + 1.3 * r) + 1)
    x0, x1 = max(0, int(cx - 1.3 * r)), min(g, int(cx + 1.3 * r) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = (xx - cx) / r, (yy - cy) / r
    shadow = (dx - 0.3) ** 2 + ((dy - 0.85) / 0.35) ** 2 <= 1
    img[y0:y1, x0:x1][shadow] *= 0.7
    if kind == 0:    # sphere: disc with a highlight
        body = dx * dx + dy * dy <= 1
        light = 1 + 0.35 * np.clip(1 - np.hypot(dx + 0.35, dy + 0.35) * 1.6, 0, 1)
    elif kind == 1:  # cube: square with a lighter top face
        body = (np.abs(dx) <= 0.85) & (np.abs(dy) <= 0.85)
        light = np.where(dy < -0.35, 1.25, 1.0)
    else:            # cylinder: rectangle with an elliptic top
        body = ((np.abs(dx) <= 0.8) & (np.abs(dy) <= 0.75)) | (dx * dx / 0.64 + (dy + 0.75) ** 2 / 0.09 <= 1)
        light = np.where(dx * dx / 0.64 + (dy + 0.75) ** 2 / 0.09 <= 1, 1.3, 1.0 - 0.2 * dx)
    img[y0:y1, x0:x1][body] = np.clip(colour[None] * light[body][:, None], 0, 1)


# ----------------------------------------------------------------------------- land cover (Specialized)
LANDCOVER = ("annual_crop", "forest", "herbaceous", "highway", "industrial", "pasture", "permanent_crop",
             "residential", "river", "sea_lake")  # EuroSAT's 10 classes, drawn procedurally


def _smooth_noise(rng, size: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled random grid: low-frequency texture in [0, 1]."""
    g = rng.random((cells + 1, cells + 1))
    t = np.linspace(0, cells, size, endpoint=False)
    i, f = t.astype(int), (t - t.astype(int))
    fy, fx = f[:, None], f[None, :]
    return (g[i][:, i] * (1 - fy) * (1 - fx) + g[i + 1][:, i] * fy * (1 - fx) + g[i][:, i + 1] * (1 - fy) * fx
            + g[i + 1][:, i + 1] * fy * fx)


def _landcover_texture(rng, name: str, size: int, veg: np.ndarray, soil: np.ndarray) -> np.ndarray:
    """One class's ground at a random orientation and ground sampling distance (`gsd`: texture scale). The
    vegetation and soil colours are the image's (a season, a region), shared by every class."""
    t = np.linspace(-1, 1, size)
    y, x = np.meshgrid(t, t, indexing="ij")
    a, gsd = rng.uniform(0, np.pi), rng.uniform(0.6, 1.7)
    u, v = x * np.cos(a) + y * np.sin(a), -x * np.sin(a) + y * np.cos(a)
    n1, n2 = _smooth_noise(rng, size, 3)[..., None], _smooth_noise(rng, size, max(4, round(14 / gsd)))[..., None]
    field = veg * (0.85 + 0.3 * n1) * (0.9 + 0.2 * n2)   # the fields most classes lie in
    water = np.array([0.1, 0.2, 0.35]) * rng.uniform(0.7, 1.3, 3) + 0.25 * rng.uniform() * veg
    grey = rng.uniform(0.4, 0.65) * rng.uniform(0.9, 1.1, 3)
    if name == "annual_crop":      # strips of two crops (or crop and bare soil), faint or sharp
        strip = (np.floor((u + 1) * rng.uniform(2.5, 6) / gsd) % 2)[..., None] * rng.uniform(0.3, 1)
        other = veg * rng.uniform(0.7, 1.3, 3) if rng.random() < 0.5 else soil
        return field * (1 - strip) + other * (0.9 + 0.2 * n2) * strip
    if name == "forest":           # dark, blotchy canopy
        return veg * rng.uniform(0.45, 0.8) * (0.55 + 0.9 * n2 * (0.7 + 0.6 * n1))
    if name == "herbaceous":       # vegetation and bare soil in patches, fine texture
        return field + (soil - field) * (0.6 * n1 * n2) + 0.08 * (n2 - 0.5)
    if name == "pasture":          # smooth and light
        return veg * rng.uniform(1.0, 1.3) * (0.92 + 0.16 * n1)
    if name == "permanent_crop":   # orchard: rows of tree dots
        k = rng.uniform(6, 11) / gsd
        dots = (np.sin(u * k * np.pi) > 0.4) & (np.sin(v * k * np.pi) > rng.uniform(-0.6, 0.5))
        return np.where(dots[..., None], veg * rng.uniform(0.45, 0.75), field * 0.5 + soil * 0.5)
    if name == "highway":          # a road (sometimes two) across fields
        road = np.abs(v - rng.uniform(-0.5, 0.5)) < rng.uniform(0.03, 0.09)
        road |= (rng.random() < 0.3) & (np.abs(u - rng.uniform(-0.5, 0.5)) < rng.uniform(0.02, 0.06))
        return np.where(road[..., None], grey, field)
    if name == "industrial":       # large roofs over concrete, some green
        img = grey + 0.1 * (n1 - 0.5) + (veg - grey) * (n1 > rng.uniform(0.6, 1.0))
        for _ in range(rng.integers(2, 6)):
            y0, x0 = rng.integers(0, size - 12, 2)
            h, w = (rng.integers(8, 22, 2) / gsd).astype(int) + 2
            img[y0:y0 + h, x0:x0 + w] = rng.uniform(0.35, 0.9) * rng.uniform(0.9, 1.1, 3)
        return img
    if name == "residential":      # small houses (red or grey roofs) along streets, gardens between
        k = rng.uniform(4, 8) / gsd
        house = (np.sin(u * k * np.pi) > 0.3) & (np.sin(v * k * np.pi + 3 * n1[..., 0]) > 0.2)
        roof = [0.65, 0.3, 0.25] if rng.random() < 0.6 else grey * 1.2
        return np.where(house[..., None], np.asarray(roof) * (0.8 + 0.4 * n2), field * 0.6 + grey * 0.4)
    if name == "river":            # a winding band of water through fields
        centre = rng.uniform(0.1, 0.4) * np.sin(u * rng.uniform(1.5, 4) + rng.uniform(0, 6))
        return np.where((np.abs(v - centre) < rng.uniform(0.05, 0.2))[..., None], water, field)
    img = water * (0.85 + 0.3 * n1)  # sea_lake: water, sometimes with a shore
    return np.where((u > rng.uniform(0.3, 1.5))[..., None], field, img)


def _landcover_tile(rng, c: int, size: int) -> np.ndarray:
    season = rng.uniform()         # lush green to dry: the vegetation colours of all classes overlap
    veg = np.array([0.22, 0.42, 0.16]) * (1 - season) + np.array([0.45, 0.42, 0.25]) * season
    veg = veg * rng.uniform(0.8, 1.2, 3)
    soil = np.array([0.5, 0.4, 0.3]) * rng.uniform(0.75, 1.25, 3)
    img = _landcover_texture(rng, LANDCOVER[c], size, veg, soil)
    if rng.random() < MIXED_SHARE:  # a mixed tile: another class covers an edge or a corner (at most 28 %)
        t = np.linspace(-1, 1, size)
        a = rng.uniform(0, 2 * np.pi)
        side = np.cos(a) * t[None, :] + np.sin(a) * t[:, None] > rng.uniform(0.45, 1.0)
        other = _landcover_texture(rng, LANDCOVER[(c + rng.integers(1, len(LANDCOVER))) % len(LANDCOVER)], size, veg, soil)
        img = np.where(side[..., None], other, img)
    haze = rng.uniform(0, 0.45) * _smooth_noise(rng, size, 2)[..., None]  # thin cloud and haze
    img = img + (rng.uniform(0.6, 0.9) - img) * haze
    if rng.random() < 0.5:         # a coarser sensor: blur
        img = (img + np.roll(img, 1, 0) + np.roll(img, 1, 1) + np.roll(img, (1, 1), (0, 1))) / 4
    img = img * rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, 3) + rng.normal(0, rng.uniform(0.02, 0.07), img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def landcover(n: int, *, size: int = 64, seed: int = 0):
    """EuroSAT-like aerial tiles (10 land-cover classes): images (n,size,size,3) uint8 and labels. The classes
    differ in texture and layout; their colours overlap (season, haze, gain), tiles can be mixed."""
    labels = np.empty(n, np.int64)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in tqdm(range(n), desc="landcover", unit="img", disable=n < 2000, mininterval=2):
        rng = np.random.default_rng([seed, i])  # per-image stream: nested and order-independent
        labels[i] = rng.integers(0, len(LANDCOVER))
        out[i] = _landcover_tile(rng, int(labels[i]), size)
    return out, labels


# ----------------------------------------------------------------------------- dispatch
def make(source: str, n: int, *, size: int, seed: int, classes: int = 16, **kw):
    """(images, labels, class names, info) for the prepare stage."""
    if source == "shapes":
        x, y, names = shapes(n, size=size, seed=seed, **kw)
        return x, y, names, {"generator": "vit.data.synth.shapes", "shapes": SHAPES, "patterns": PATTERNS}
    if source in ("dsprites_location", "dsprites_orientation"):
        x, lat = dsprites(n, size=size, seed=seed)
        if source == "dsprites_location":
            return x, dsprites_location_label(lat["x"], classes), [f"x_bin_{i:02d}" for i in range(classes)], {
                "generator": "vit.data.synth.dsprites", "label": f"x_position * {classes} // 32"}
        return x, dsprites_orientation_label(lat["orientation"]), [f"ori_bin_{i:02d}" for i in range(16)], {
            "generator": "vit.data.synth.dsprites", "label": "floor(orientation / 2.5)"}
    if source in ("clevr_count", "clevr_distance"):
        x, lat = clevr(n, size=size, seed=seed)
        if source == "clevr_count":
            return x, clevr_count_label(lat["count"]), [f"count_{i}" for i in range(3, 11)], {
                "generator": "vit.data.synth.clevr", "label": "count - 3"}
        return x, clevr_distance_label(lat["min_depth"]), [f"dist_bin_{i}" for i in range(6)], {
            "generator": "vit.data.synth.clevr", "label": "bin of closest depth", "thresholds": CLEVR_DIST_THRESHOLDS}
    if source == "landcover":
        x, y = landcover(n, size=size, seed=seed)
        return x, y, list(LANDCOVER), {"generator": "vit.data.synth.landcover", "classes": "EuroSAT's, procedural"}
    valid = "shapes, dsprites_location, dsprites_orientation, clevr_count, clevr_distance, landcover"
    raise ValueError(f"unknown synthetic source {source!r}; valid: {valid}")
