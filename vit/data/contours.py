"""The default's upstream corpus (numpy only): classes are radial contours, drawn 1-3 times anywhere in
the frame over a cluttered background; pose, size, colour and clutter vary per image. One generator at
nested sizes stands in for ImageNet / ImageNet-21k / JFT-300M (paper sec. 4.2); image i depends only on
(seed, i), so the first m images of a larger set equal a set of size m. Design and pilots: docs/design.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from vit.data.synth import frame
HARMONICS = 8        # harmonics of a class's radial contour r(theta) = 1 + sum_k a_k cos(k theta + phi_k)
MAX_INSTANCES = 4            # factors are drawn for this many instances whatever `instances` is: sets stay nested
PROTOTYPE_SEED = 20_210  # class prototypes are fixed across datasets: the pool and the labelled
                                 # sets of every size and seed share one label set


def prototypes(n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each class's radial contour r(theta) = base + sum_k a_k cos(k theta + phi_k): base (n_classes,),
    amplitudes and phases (n_classes, K). The class *is* its contour, scaled so its largest radius is 1.
    A class has a dominant harmonic, its lobe count (2-8, cycling with c), which sets a silhouette that
    survives a 32 px crop, plus weaker random harmonics that tell classes with the same lobe count apart
    (radial contours as in Kataoka et al. 2022's RCDB): coarse shape is learnt first, the fine
    distinctions need data."""
    k = np.arange(1, HARMONICS + 1, dtype=np.float32)
    base = np.empty(n_classes, np.float32)
    amp, phase = np.empty((n_classes, len(k)), np.float32), np.empty((n_classes, len(k)), np.float32)
    for c in range(n_classes):
        rng = np.random.default_rng([PROTOTYPE_SEED, c])
        amp[c] = rng.uniform(0.0, 0.25, len(k)) / np.sqrt(k)
        amp[c, 0] *= 0.3  # the first harmonic only shifts the shape off its centre
        amp[c, 1 + c % 7] = 0.45  # the lobe count: 2, 3, ..., 8
        phase[c] = rng.uniform(0, 2 * np.pi, len(k))
        theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)[:, None]
        peak = 1 + (amp[c] * np.cos(k * theta + phase[c])).sum(-1).max()
        base[c], amp[c] = 1 / peak, amp[c] / peak  # the largest radius is 1: an instance's `scale` is its size
    return base, amp, phase


@dataclass(frozen=True)
class Look:
    """How instances are drawn (the pilots of docs/design.md vary these)."""
    instances: int = 3            # 1 to this many instances of the class per image
    clutter: bool = True          # background waves and 0-3 distractor ellipses
    styles: int = 3               # fills drawn from: solid, striped, outline
    fills: int = 1                # > 1: the fill is part of the class (class = prototype x fill)
    palettes: int = 1             # > 1: the hue is part of the class too (class = prototype x palette x fill)
    shapes: int = 0               # > 0: the contour is nuisance, each instance's drawn from this many prototypes,
                                  # and the class is palette x fill alone
    scale: tuple = (0.4, 0.8)     # an instance's largest radius, in half-frames
    rotation: float = 0.5         # an instance turns by up to this fraction of a full turn either way (0.5: any angle)


def contours(n: int, *, n_classes: int = 100, size: int = 64, seed: int = 0, chunk: int = 256, jitter: float = 0.04,
             **look):
    """The upstream corpus: 1-3 instances of one class's contour anywhere in the frame (partly outside it
    too), each with its own pose, scale, aspect, fill and colour, over a textured background with
    distractor blobs. The label is the contour; everything else is nuisance. Rendered at `size` (above the
    pre-training resolution, so that an inception crop has detail to zoom into), 2x supersampled."""
    look = Look(**look)
    fills, cues = look.fills, look.fills * look.palettes
    if look.shapes and n_classes != cues:
        raise ValueError(f"n_classes={n_classes}: with the contour as nuisance the classes are palettes x fills = {cues}")
    base, amp, phase = prototypes(look.shapes or -(-n_classes // cues))
    names = [f"contour_{c:03d}" for c in range(n_classes)]
    u = np.random.default_rng(seed).random((n, 24 + 12 * MAX_INSTANCES), dtype=np.float32)  # row i = image i's factors
    labels = np.minimum((u[:, 0] * n_classes).astype(np.int64), n_classes - 1)
    noise = np.random.default_rng([seed, 1]).standard_normal((n, MAX_INSTANCES, HARMONICS)).astype(np.float32)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in tqdm(range(0, n, chunk), desc="contours", unit="chunk", disable=n < 4 * chunk, mininterval=2):
        s = slice(i, i + chunk)
        if look.shapes:  # each instance its own contour (factor 11 of its 12)
            proto = np.minimum((u[s, 24 + 11::12] * look.shapes).astype(np.int64), look.shapes - 1)
        else:
            proto = np.repeat((labels[s] // cues)[:, None], MAX_INSTANCES, 1)
        if fills > 1:  # the fill is part of the class: solid, striped, outline
            u[s, 24 + 8::12] = ((labels[s] % fills)[:, None] + 0.5) / look.styles
        if look.palettes > 1:  # the hue is part of the class: each instance's hue within +-1/4 of a bin of it
            hue = ((labels[s] % cues) // fills)[:, None] / look.palettes + (u[s, 24 + 5::12] - 0.5) / (2 * look.palettes)
            rgb = _hsv(hue % 1, 0.5 + 0.5 * u[s, 24 + 6::12], 0.45 + 0.55 * u[s, 24 + 7::12])
            for j in range(MAX_INSTANCES):
                u[s, 24 + 12 * j + 5:24 + 12 * j + 8] = rgb[:, j]
        a = amp[proto] + jitter * noise[s]   # per-instance shape jitter (intra-class variation)
        out[s] = _render_contours(u[s], base[proto], a, phase[proto], size, look)
    return out, labels, names


def _contour_inside(ou, ov, base, amp, phase):
    """Inside test for r <= r(theta), r(theta) = 1 + sum_k a_k cos(k theta + phi_k), scaled so that the
    prototype's largest radius is 1. cos and sin of k theta come from the angle-addition recurrence on the
    unit direction: no trigonometry per pixel and harmonic."""
    r = np.hypot(ou, ov) + np.float32(1e-6)
    c1, s1 = ou / r, ov / r
    ck, sk = c1, s1
    rad = np.broadcast_to(base[:, None, None], ou.shape).astype(np.float32)
    for k in range(amp.shape[-1]):
        if k:
            ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
        rad += amp[:, k, None, None] * (ck * np.cos(phase[:, k, None, None]) - sk * np.sin(phase[:, k, None, None]))
    return r <= np.maximum(rad, 0.2)


def _hsv(h, s, v):
    """HSV -> RGB, elementwise: (..., 3) float32."""
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return np.take_along_axis(table, i[None, ..., None], 0)[0].astype(np.float32)


def _render_contours(u: np.ndarray, base: np.ndarray, amp: np.ndarray, phase: np.ndarray, size: int, look: Look) -> np.ndarray:
    # one sample per pixel: images are stored above every training resolution, so each use downsamples
    # them with antialiasing anyway
    g, n = size, len(u)
    t = (np.arange(g, dtype=np.float32) + 0.5) / g * 2 - 1
    bg, alt = u[:, 1:4], u[:, 4:7]
    # background: a gradient in a random direction, low-frequency waves, 0-3 distractor ellipses
    ang = u[:, 7] * 2 * np.pi
    ramp = np.cos(ang)[:, None, None] * t[None, None, :] + np.sin(ang)[:, None, None] * t[None, :, None]
    wave = np.sin((1 + 4 * u[:, 8, None, None]) * np.pi * t[None, None, :] + 6 * u[:, 9, None, None]) * \
        np.sin((1 + 4 * u[:, 10, None, None]) * np.pi * t[None, :, None] + 6 * u[:, 11, None, None])
    shade = (0.3 * u[:, 12, None, None] * ramp + 0.12 * look.clutter * wave)[..., None]
    img = np.clip(bg[:, None, None, :] * (1 + shade), 0, 1) * np.ones((1, g, g, 3), np.float32)
    for d in range(3):
        on = (u[:, 13] * 4 > d + 1) & look.clutter
        du, dv = frame(n, g, u[:, 14 + 3 * d] * 2 - 1, u[:, 15 + 3 * d] * 2 - 1, 0.08 + 0.15 * u[:, 16 + 3 * d],
                        u[:, 16 + 3 * d] * 6)
        blob = (du * du + (dv / 0.5) ** 2 <= 1) & on[:, None, None]
        img[blob] = img[blob] * 0.4 + alt[np.nonzero(blob)[0]] * 0.6
    lum = np.array([0.3, 0.6, 0.1], np.float32)
    count = 1 + (u[:, 23] * look.instances).astype(int)  # 1 to `instances` instances of the class
    for j in range(look.instances):
        b = 24 + 12 * j                              # this instance's 12 factors
        on = count > j
        size_j = look.scale[0] + (look.scale[1] - look.scale[0]) * u[:, b]  # largest radius, in half-frames
        cx, cy = u[:, b + 1] * 1.6 - 0.8, u[:, b + 2] * 1.6 - 0.8   # the centre anywhere but the outer rim
        aspect = 0.8 + 0.4 * u[:, b + 3]
        ou, ov = frame(n, g, cx, cy, size_j, (u[:, b + 4] * 2 - 1) * look.rotation * 2 * np.pi)
        inside = _contour_inside(ou * aspect[:, None, None], ov / aspect[:, None, None], base[:, j], amp[:, j], phase[:, j]) & on[:, None, None]
        fg = u[:, b + 5:b + 8]
        low = np.abs(fg @ lum - bg @ lum) < 0.25     # keep the instance visible: darken or lighten it (same hue)
        dark = (bg @ lum > 0.5)[:, None]
        fg[low] = np.where(dark[low], fg[low] * 0.45, fg[low] + (1 - fg[low]) * 0.6)
        style = (u[:, b + 8] * look.styles).astype(int)   # solid, striped, or outline: nuisance, not class
        stripes = np.sin((2 + 3 * u[:, b + 9, None, None]) * np.pi * (ou * np.cos(u[:, b + 10, None, None] * np.pi)
                                                                      + ov * np.sin(u[:, b + 10, None, None] * np.pi))) > 0
        core = _contour_inside(ou * aspect[:, None, None] / 0.7, ov / aspect[:, None, None] / 0.7, base[:, j], amp[:, j], phase[:, j])
        paint = np.where((style == 1)[:, None, None], stripes, True) & ~((style == 2)[:, None, None] & core)
        colour = np.where(paint[..., None], fg[:, None, None, :], 0.6 * fg[:, None, None, :] + 0.4 * (1 - fg[:, None, None, :]))
        img = np.where(inside[..., None], colour, img)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)



def make(source: str, n: int, *, size: int, seed: int, **kw):
    """(images, labels, class names, info) for the prepare stage, as vit.data.synth.make gives them."""
    x, y, names = contours(n, size=size, seed=seed, **kw)
    return x, y, names, {"generator": "vit.data.contours", "harmonics": HARMONICS, "prototype_seed": PROTOTYPE_SEED}
