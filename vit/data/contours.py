"""The default's upstream corpus (numpy only): 1-2 objects anywhere in the frame, over a cluttered
background, rendered at 64 px. An object is a radial contour (a random silhouette) filled in one of three
styles (solid, striped, outline) in a colour. By default (`Look`) the class is the objects' hue bin x
fill style (8 x 3 = 24 classes) and the silhouette is nuisance, drawn per object from 16 contours; pose,
size, colour jitter, lighting and clutter vary per image. One generator at nested sizes stands in for
ImageNet / ImageNet-21k / JFT-300M (paper sec. 4.2): image i depends only on (seed, i), so the first m
images of a larger set equal a set of size m.

Why not silhouettes as classes: in pilots a class defined by its contour alone stayed at chance for the
2-core budget's 500-1,500 steps, for ViT and BiT alike, while local cues (hue, fill texture) start
learning at once (docs/design.md). `Look(shapes=0)` gives those contour classes back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from vit.data.synth import frame

HARMONICS = 8          # of a radial contour r(theta) = base + sum_k a_k cos(k theta + phi_k)
MAX_INSTANCES = 4      # factors are drawn for this many objects whatever Look.instances is: sets stay nested
PROTOTYPE_SEED = 20_210  # contours are fixed across datasets: the pool and the labelled sets share them


def prototypes(n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each class's radial contour r(theta) = base + sum_k a_k cos(k theta + phi_k): base (n_classes,),
    amplitudes and phases (n_classes, K), scaled so that the largest radius is 1. A contour has a dominant
    harmonic, its lobe count (2-8, cycling with c), which sets a silhouette that
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
    """How objects are drawn and what the class is. The defaults are the default corpus; the pilots of
    docs/design.md vary them."""
    instances: int = 2            # 1 to this many objects per image, all of the image's class
    clutter: bool = True          # background waves and 0-3 distractor ellipses
    styles: int = 3               # fills drawn from: solid, striped, outline
    fills: int = 3                # > 1: the fill is part of the class (class = [contour x] palette x fill)
    palettes: int = 8             # > 1: the hue bin is part of the class
    shapes: int = 16              # > 0: the contour is nuisance, each object's drawn from this many, and the class
                                  # is palette x fill alone; 0: the contour is part of the class too
    scale: tuple = (0.5, 0.9)     # an object's largest radius, in half-frames
    rotation: float = 0.04        # an object turns by up to this fraction of a full turn either way (0.5: any
                                  # angle); near-upright, as objects in photographs are


def contours(n: int, *, n_classes: int = 24, size: int = 64, seed: int = 0, chunk: int = 256, jitter: float = 0.04,
             **look):
    """Images (n, size, size, 3) uint8, labels (n,), class names. Objects lie anywhere in the frame (partly
    outside it too), each with its own pose, scale, aspect, colour and contour jitter. Rendered at `size`,
    above the pre-training resolution, so that an inception crop has detail to zoom into."""
    look = Look(**look)
    fills, cues = look.fills, look.fills * look.palettes
    if look.shapes and n_classes != cues:
        raise ValueError(f"n_classes={n_classes}: with the contour as nuisance the classes are palettes x fills = {cues}")
    base, amp, phase = prototypes(look.shapes or -(-n_classes // cues))
    names = [_name(c, look) for c in range(n_classes)]
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
        if look.palettes > 1:  # the hue is part of the class
            rgb = object_colours(labels[s], u[s, 24 + 5::12], u[s, 24 + 6::12], u[s, 24 + 7::12], look)
            for j in range(MAX_INSTANCES):
                u[s, 24 + 12 * j + 5:24 + 12 * j + 8] = rgb[:, j]
        a = amp[proto] + jitter * noise[s]   # per-instance shape jitter (intra-class variation)
        out[s] = _render_contours(u[s], base[proto], a, phase[proto], size, look)
    return out, labels, names


FILLS = ("solid", "striped", "outline")


def object_colours(labels, uh, us, uv, look: Look) -> np.ndarray:
    """Each object's RGB (n, objects, 3) from its class's hue bin: a hue within a quarter of a bin's width
    either side of the bin's centre (hue bins never overlap), saturation 0.5-1, value 0.45-1."""
    hue = ((labels % (look.fills * look.palettes)) // look.fills)[:, None] / look.palettes
    return _hsv((hue + (uh - 0.5) / (2 * look.palettes)) % 1, 0.5 + 0.5 * us, 0.45 + 0.55 * uv)


def _name(c: int, look: Look) -> str:
    """Class c's name: [contour_<k>/]hue<h>/<fill>, the parts the class is made of."""
    cues = look.fills * look.palettes
    parts = [] if look.shapes else [f"contour_{c // cues:02d}"]
    parts += [f"hue{(c % cues) // look.fills}"] if look.palettes > 1 else []
    parts += [FILLS[c % look.fills]] if look.fills > 1 else []
    return "/".join(parts) or f"class_{c}"


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
