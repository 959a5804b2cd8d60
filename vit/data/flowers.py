"""A Natural-group stand-in (numpy only): procedural flowers, fine-grained like Oxford Flowers-102.

A class is a species: petal count, petal shape (round, pointed, notched, thin ray), one or two whorls,
a petal palette (base to tip colour, midrib veins or spots) and a centre (colour, size, seed texture).
Every factor is shared by several species, so no single cue names the class: four species have five
petals, three are white, three yellow, and many have a yellow centre. Pose (rotation, tilt, position,
scale), per-petal length, 0-1 extra bloom of the same species, the background (foliage, sky or soil
with leaves and out-of-focus blobs), the lighting (gain, white balance, a shading direction) and
sensor noise vary per image.

How it relates to the upstream corpus (vit.data.contours): the upstream classes are silhouettes whose
colour is nuisance; here the outline is a k-lobed radial shape too (transferable), but colour, centre
and petal detail are part of the label, and several species share an outline.

Deterministic and nested like vit.data.synth: image i depends only on (seed, i). Rendered at one
sample per pixel at 64 px (above every fine-tuning resolution; each use downsamples with antialiasing).
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from vit.data.synth import frame

SHAPES = ("round", "pointed", "notched", "thin")
# name: (petals min, max), shape, whorls, petal base RGB, petal tip RGB, marks (0 none, 1 veins, 2 spots),
#       centre RGB, centre radius (fraction of the flower's), petal width (fraction of its length)
SPECIES = {
    "buttercup":      ((5, 5), "round", 1, (0.95, 0.78, 0.08), (0.98, 0.85, 0.15), 0, (0.75, 0.65, 0.1), 0.2, 0.42),
    "primrose":       ((5, 5), "notched", 1, (0.95, 0.75, 0.2), (0.97, 0.92, 0.55), 0, (0.9, 0.55, 0.1), 0.16, 0.45),
    "periwinkle":     ((5, 5), "round", 1, (0.35, 0.35, 0.75), (0.5, 0.5, 0.9), 0, (0.92, 0.92, 0.9), 0.14, 0.4),
    "phlox":          ((5, 5), "notched", 1, (0.65, 0.12, 0.4), (0.95, 0.5, 0.72), 1, (0.45, 0.1, 0.3), 0.1, 0.45),
    "tiger_lily":     ((6, 6), "pointed", 1, (0.95, 0.45, 0.08), (0.98, 0.55, 0.12), 2, (0.4, 0.55, 0.15), 0.1, 0.3),
    "white_lily":     ((6, 6), "pointed", 1, (0.88, 0.92, 0.78), (0.97, 0.96, 0.95), 1, (0.7, 0.75, 0.2), 0.1, 0.3),
    "squill":         ((6, 6), "round", 1, (0.3, 0.3, 0.8), (0.42, 0.4, 0.9), 1, (0.95, 0.85, 0.3), 0.12, 0.38),
    "cosmos":         ((8, 8), "notched", 1, (0.75, 0.2, 0.5), (0.92, 0.45, 0.68), 0, (0.95, 0.75, 0.15), 0.2, 0.4),
    "anemone":        ((6, 8), "round", 1, (0.97, 0.96, 0.95), (0.95, 0.95, 0.97), 0, (0.12, 0.1, 0.12), 0.26, 0.5),
    "clematis":       ((8, 8), "pointed", 1, (0.5, 0.28, 0.7), (0.62, 0.4, 0.8), 1, (0.95, 0.92, 0.75), 0.14, 0.28),
    "daisy":          ((16, 22), "thin", 1, (0.96, 0.96, 0.94), (0.98, 0.97, 0.97), 0, (0.95, 0.8, 0.12), 0.28, 0.1),
    "black_eyed":     ((12, 16), "pointed", 1, (0.95, 0.55, 0.05), (0.97, 0.82, 0.15), 0, (0.25, 0.15, 0.05), 0.3, 0.2),
    "sunflower":      ((18, 24), "pointed", 2, (0.95, 0.72, 0.05), (0.98, 0.82, 0.12), 0, (0.35, 0.22, 0.08), 0.45, 0.2),
    "aster":          ((16, 22), "thin", 1, (0.55, 0.42, 0.8), (0.72, 0.62, 0.9), 0, (0.95, 0.78, 0.15), 0.24, 0.1),
    "gerbera":        ((14, 18), "round", 2, (0.85, 0.1, 0.1), (0.95, 0.25, 0.18), 0, (0.2, 0.2, 0.08), 0.22, 0.22),
    "camellia":       ((8, 10), "round", 2, (0.9, 0.4, 0.5), (0.97, 0.65, 0.7), 0, (0.95, 0.85, 0.25), 0.12, 0.5),
}
NAMES = tuple(SPECIES)
BACKGROUNDS = np.array([[0.2, 0.38, 0.14], [0.1, 0.17, 0.08], [0.42, 0.32, 0.2], [0.55, 0.68, 0.85],
                        [0.35, 0.42, 0.25]], np.float32)  # foliage, shade, soil, sky, dry grass
GRID = 6          # background noise: a GRID x GRID grid per image, bilinearly upsampled
N_FACTORS = 52    # uniform factors per image (row i of one stream: nested)
HUE_JITTER = 0.45  # radians either way: a species' colours turn about the grey axis per image ...
SAT_JITTER = (0.6, 1.3)  # ... and their saturation scales by this much


def _table():
    """The species' factors as arrays over classes."""
    t = list(zip(*SPECIES.values()))
    f = [np.array(col) if j in (1, 5) else np.array(col, np.float32) for j, col in enumerate(t)]
    return {"kmin": f[0][:, 0], "kmax": f[0][:, 1], "shape": np.array([SHAPES.index(s) for s in t[1]]), "whorls": f[2],
            "base": f[3], "tip": f[4], "marks": np.array(t[5]), "centre": f[6], "rc": f[7], "width": f[8]}


def flowers(n: int, *, size: int = 64, seed: int = 0, chunk: int = 32):
    """Images (n,size,size,3) uint8, labels (n,) int64 and the species names."""
    u = np.random.default_rng(seed).random((n, N_FACTORS), dtype=np.float32)
    grid = np.random.default_rng([seed, 1]).random((n, 2, GRID, GRID), dtype=np.float32)
    labels = np.minimum((u[:, 0] * len(NAMES)).astype(np.int64), len(NAMES) - 1)
    out = np.empty((n, size, size, 3), np.uint8)
    tab = _table()
    for i in tqdm(range(0, n, chunk), desc="flowers", unit="chunk", disable=n < 4 * chunk, mininterval=2):
        s = slice(i, i + chunk)
        noise = np.stack([np.random.default_rng([seed, 2, j]).standard_normal((size, size, 3), np.float32)
                          for j in range(i, min(n, i + chunk))])  # per image: nested
        sp = _jitter({k: v[labels[s]] for k, v in tab.items()}, u[s])
        out[s] = _render(u[s], grid[s], sp, size, noise)
    return out, labels, list(NAMES)


def _jitter(sp: dict, u: np.ndarray) -> dict:
    """Per image: turn the petal and centre colours about the grey axis (a hue shift) and scale their saturation."""
    a = (u[:, 48] * 2 - 1) * HUE_JITTER
    sat = SAT_JITTER[0] + (SAT_JITTER[1] - SAT_JITTER[0]) * u[:, 49]
    k = np.full(3, 1 / np.sqrt(3), np.float32)
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]], np.float32)
    rot = np.eye(3, dtype=np.float32) + np.sin(a)[:, None, None] * kx + (1 - np.cos(a))[:, None, None] * (kx @ kx)
    out = dict(sp)
    for key in ("base", "tip", "centre"):
        c = sp[key]
        grey = c.mean(-1, keepdims=True)
        out[key] = np.clip(grey + sat[:, None] * np.einsum("nij,nj->ni", rot, c - grey), 0, 1).astype(np.float32)
    return out


def _upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """(n, G, G) -> (n, size, size), bilinear."""
    t = np.linspace(0, grid.shape[-1] - 1, size, dtype=np.float32)
    i = np.minimum(t.astype(int), grid.shape[-1] - 2)
    f = t - i
    rows = grid[:, i] * (1 - f)[None, :, None] + grid[:, i + 1] * f[None, :, None]
    return rows[:, :, i] * (1 - f) + rows[:, :, i + 1] * f


def _background(u, grid, size):
    """Foliage, shade, soil or sky with two leaves and two out-of-focus blobs, rendered at half the size (it
    is out of focus) and upsampled."""
    n, h = len(u), (size + 1) // 2
    c1, c2 = BACKGROUNDS[np.minimum((u[:, 1:3] * len(BACKGROUNDS)).astype(int), len(BACKGROUNDS) - 1)].transpose(1, 0, 2)
    mix = _upsample(grid[:, 0], h)[..., None]
    lum = 0.75 + 0.5 * _upsample(grid[:, 1], h)[..., None]
    img = (c1[:, None, None] * (1 - mix) + c2[:, None, None] * mix) * lum
    for d in range(4):
        b = 3 + 4 * d
        du, dv = frame(n, h, u[:, b] * 2.4 - 1.2, u[:, b + 1] * 2.4 - 1.2, 0.15 + 0.3 * u[:, b + 2], u[:, b + 3] * 7)
        if d < 2:  # a leaf: dark or light green
            m = 0.9 * np.clip((1 - du * du - (dv / 0.35) ** 2) * 4, 0, 1)
            colour = np.stack([0.1 + 0.2 * u[:, b + 2], 0.25 + 0.3 * u[:, b + 3], 0.08 + 0.1 * u[:, b]], -1)
        else:      # a blurred blob of any colour
            m = 0.35 * np.clip((1 - du * du - dv * dv) * 2, 0, 1)
            colour = np.stack([u[:, b + 3], u[:, b + 2], u[:, b]], -1) * 0.8 + 0.2
        img += m[..., None] * (colour[:, None, None] - img)
    img = img.repeat(2, 1).repeat(2, 2)[:, :size, :size]
    img[:, 1:] = 0.5 * (img[:, 1:] + img[:, :-1])          # smooth the 2 x 2 blocks
    img[:, :, 1:] = 0.5 * (img[:, :, 1:] + img[:, :, :-1])
    return img


def _petals(x, b, shape, width):
    """Inside test and relative distance from the midrib of one petal in its frame: x along it (0 base, 1 tip),
    b across, in units of its length."""
    w = width[:, None, None]
    is_ = [(shape == j)[:, None, None] for j in range(len(SHAPES))]
    ell = np.sqrt(np.clip(1 - ((x - 0.55) / 0.45) ** 2, 0, 1))
    prof = np.where(is_[0] | is_[2], ell, 0)
    prof = np.where(is_[1], np.minimum(x / 0.35, (1 - x) / 0.65), prof)                  # pointed
    prof = np.where(is_[3], np.sqrt(np.clip(1 - x ** 6, 0, 1)), prof) * w                # thin ray
    prof = np.where(is_[2] & (np.abs(b) < w * (x - 0.75).clip(0) * 1.6), 0.1 * prof, prof)  # notched tip
    edge = np.abs(b) / np.maximum(prof, 1e-3)
    return (x >= 0) & (x <= 1) & (edge <= 1), edge


def _flower(img, u, sp, size, b, scale, cx, cy):
    """Paint one bloom of each image's species; u[:, b:b+10] are its pose factors."""
    n = len(u)
    k = np.round(sp["kmin"] + (sp["kmax"] - sp["kmin"] + 1) * u[:, b] - 0.5)
    tilt = 0.6 + 0.4 * u[:, b + 1]                       # foreshortening: a bloom seen from the side
    ou, ov = frame(n, size, cx, cy, scale, u[:, b + 2] * 2 * np.pi)
    ov = ov / tilt[:, None, None]
    r = np.hypot(ou, ov) + np.float32(1e-6)
    theta = np.arctan2(ov, ou)
    light = 1 + 0.25 * np.cos(theta - u[:, b + 3, None, None] * 2 * np.pi) * np.minimum(r, 1)
    petal = np.zeros(ou.shape, bool)
    wb, wt = np.zeros(ou.shape, np.float32), np.zeros(ou.shape, np.float32)  # weights of the base and tip colours
    for whorl in (0, 1):
        kk = k[:, None, None]
        s = theta * (kk / np.float32(2 * np.pi)) + np.float32(0.5 * whorl)
        j = np.round(s)
        dphi = (s - j) * (np.float32(2 * np.pi) / kk)
        jitter = np.sin(np.mod(j, kk) * 2.7 + u[:, b + 4, None, None] * 9)  # per petal (j mod k: one petal at +-pi)
        length = (1 - 0.35 * whorl) * (0.88 + 0.12 * jitter)
        x, across = r * np.cos(dphi) / length, r * np.sin(dphi) / length
        inside, edge = _petals(x, across, sp["shape"], sp["width"])
        if whorl:
            inside &= (sp["whorls"] > 1)[:, None, None]
        marks = ((sp["marks"] == 1)[:, None, None] & (edge < 0.12) & (x < 0.8)) | \
            ((sp["marks"] == 2)[:, None, None] & (np.sin(ou * 11) * np.sin(ov * 11) > 0.75) & (x < 0.7))
        shade = (1 - 0.3 * edge * edge - 0.45 * marks - 0.12 * whorl) * light
        t = np.clip(x, 0, 1)
        petal |= inside
        wb, wt = np.where(inside, shade * (1 - t), wb), np.where(inside, shade * t, wt)
    colour = sp["base"][:, None, None] * wb[..., None] + sp["tip"][:, None, None] * wt[..., None]
    img = np.where(petal[..., None], colour, img)
    rc = sp["rc"][:, None, None] * (0.85 + 0.3 * u[:, b + 5, None, None])
    seeds = (1 - 0.35 * (np.sin(ou * 40) * np.sin(ov * 40) > 0.3) - 0.3 * (r > rc * 0.8)) * light
    return np.where((r <= rc)[..., None], sp["centre"][:, None, None] * seeds[..., None], img)


def _render(u, grid, sp, size, noise):
    img = _background(u, grid, size)
    extra = np.nonzero(u[:, 19] < 0.35)[0]               # a second, smaller bloom, behind and often cut off
    ex, ey = np.where(u[:, 20] < 0.5, -1, 1) * (0.6 + 0.4 * u[:, 21]), u[:, 22] * 2 - 1
    img[extra] = _flower(img[extra], u[extra], {k: v[extra] for k, v in sp.items()}, size, 23,
                         0.3 + 0.15 * u[extra, 29], ex[extra], ey[extra])
    scale = 0.35 + 0.55 * u[:, 30]                       # the main bloom's radius, in half-frames
    cx, cy = (u[:, 31] * 2 - 1) * (1 - scale) * 0.9, (u[:, 32] * 2 - 1) * (1 - scale) * 0.9
    img = _flower(img, u, sp, size, 33, scale, cx, cy)
    gain = 0.65 + 0.55 * u[:, 43]                        # exposure and white balance
    tint = 1 + 0.3 * (u[:, 44:47] - 0.5)
    img = img * (gain[:, None] * tint)[:, None, None, :] + (0.01 + 0.04 * u[:, 47, None, None, None]) * noise
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def make(source: str, n: int, *, size: int, seed: int, **kw):
    """(images, labels, class names, info) for the prepare stage, as vit.data.synth.make gives them."""
    x, y, names = flowers(n, size=size, seed=seed, **kw)
    return x, y, names, {"generator": "vit.data.flowers", "species": {k: list(v[:3]) for k, v in SPECIES.items()}}
