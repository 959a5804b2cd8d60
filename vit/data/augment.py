"""The training batches: which examples make step `step`'s batch, and their augmentation, as a pure
function of (seed, step). The images come from memory (a uint8 tensor), from a memory-mapped array
(`vit.data.Streamed`) or from the sharded store of original encoded images (`vit.data.shards.ShardImages`,
the paper presets'); the random draws are the same for all three, so the same images give the same
batch from either store."""
from __future__ import annotations

import numpy as np

from vit.data.pixels import normalize

AUGMENTS = ("none", "crop_flip", "randaugment", "inception_crop", "inception_crop+randaugment", "bit_crop")
ZOOMS = ("inception_crop", "inception_crop+randaugment", "bit_crop")  # read the stored image, whatever its side


def train_batch(x, y, step: int, batch_size: int, seed: int, augment: str, part: slice = slice(None),
                mixup: float = 0.0, num_classes: int = 0, size: int = 0, randaugment_skip: tuple = (),
                as_uint8: bool = False):
    """Batch number `step` of an epoch-wise shuffle, or the `part` of it that one process or one
    accumulation micro-step trains on. A pure function of (seed, step): a resumed run, or the same run
    split across processes and micro-steps, sees exactly the examples and augmentations of a single
    process taking the whole batch at once.

    `augment`: crop_flip reflect-pads by 1/8 of the side, crops back and flips; inception_crop takes an
    inception crop of the stored image (`inception_boxes`) resized to `size` (0 = the stored side), and
    flips, as the paper's code does in pre-training and fine-tuning; bit_crop is BiT's fine-tuning crop
    (`bit_crop`) + flip; +randaugment adds RandAugment (Noisy Student's input noise; "randaugment" alone is
    crop_flip+randaugment), without the ops named in `randaugment_skip` (those that would change what the
    label is about). Without inception_crop or bit_crop the images must already be at the training
    resolution; from the sharded store (whose originals differ in size) "none" resizes the whole image,
    as evaluation does, and crop_flip is refused.

    With `mixup` = alpha > 0 (BiT-HyperRule, Zhang et al. 2018), each image is blended with a partner
    from the same global batch, lam ~ Beta(alpha, alpha) once per step as in BiT's code, and the labels
    become the same blend of one-hot targets (num_classes wide), which F.cross_entropy takes as
    probabilities. `as_uint8` (without mixup): the images stay uint8, for the training process to
    normalise on its device (`normalize`), a quarter of the bytes between DataLoader workers and it."""
    import torch

    if augment not in AUGMENTS:
        raise ValueError(f"augment={augment!r}: expected one of {', '.join(AUGMENTS)}")
    sharded = hasattr(x, "originals")  # vit.data.shards.ShardImages: encoded originals, decoded per image
    n = len(x)
    per_epoch = max(1, n // batch_size)
    epoch, i = divmod(step, per_epoch)
    perm = x.order(seed, epoch) if sharded else \
        torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    idx = perm[i * batch_size:(i + 1) * batch_size]
    inception, zoom = augment.startswith("inception_crop"), augment in ZOOMS
    if sharded:
        h, w = x.sides(idx.numpy())
        size = size or x.shape[-1]
        if augment in ("crop_flip", "randaugment"):
            raise ValueError(f"augment={augment!r} pads and crops images stored at the training resolution; the "
                             f"sharded store keeps the originals: use inception_crop or bit_crop (or store: arrays)")
    else:
        h, w = x.shape[-2], x.shape[-1]
        size = size or h
        if size != h and not zoom:
            raise ValueError(f"augment={augment!r} trains at the stored side ({h} px), not at {size} px")
    if augment != "none":  # the whole batch's random crops and flips; each part keeps its own
        boxes, corners, (oy, ox, pad), flip = _draws(augment, len(idx), seed, step, h, w, size)

    def load(pos):
        """Images and labels at positions `pos` of the global batch, augmented."""
        rows = idx[pos]
        if sharded and zoom:
            xb = x.originals(rows.numpy())  # a list of uint8 (3, H, W), each at its own size
        else:
            xb = x.at(size)[rows.numpy()] if sharded else x[rows]
        if inception:
            xb = inception_crop(xb, boxes[pos.numpy()], flip[pos], size)
        elif zoom:
            xb = bit_crop(xb, corners[pos.numpy()], flip[pos], size)
        elif augment != "none":
            xb = _crop_flip(xb, oy[pos], ox[pos], flip[pos], pad)
        if augment.endswith("randaugment"):
            xb = _randaugment(xb, [seed * 1_000_003 + step * 65_537 + int(p) for p in pos], randaugment_skip)
        return xb if as_uint8 and mixup <= 0 else normalize(xb), y[rows]

    pos = torch.arange(len(idx))[part]
    xb, yb = load(pos)
    if mixup <= 0:
        return xb, yb
    if num_classes < 2:
        raise ValueError("mixup needs num_classes (the width of the blended one-hot targets)")
    rng = np.random.default_rng(seed * 7_000_003 + step)
    lam = float(rng.beta(mixup, mixup))
    partner = torch.from_numpy(rng.permutation(len(idx)))[pos]
    xp, yp = load(partner)
    def one_hot(t):  # soft targets (N, K) are distributions already
        return t.float() if t.ndim == 2 else torch.nn.functional.one_hot(t.long(), num_classes).float()
    return lam * xb + (1 - lam) * xp, lam * one_hot(yb) + (1 - lam) * one_hot(yp)


def _draws(augment: str, n: int, seed: int, step: int, h, w, size: int):
    """A global batch's augmentation draws, the same however the batch is split: inception boxes or BiT
    corners or crop_flip's offsets (whichever `augment` uses), and the flips."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    boxes = corners = None
    shifts = (None, None, 0)
    if augment.startswith("inception_crop"):
        boxes = inception_boxes(np.random.default_rng([seed, step]), n, h, w)
    elif augment in ZOOMS:
        corners = bit_offsets(np.random.default_rng([seed, step]), n, size)
    else:
        pad = max(1, h // 8)
        shifts = (*(torch.randint(0, 2 * pad + 1, (n,), generator=gen) for _ in range(2)), pad)
    return boxes, corners, shifts, torch.rand(n, generator=gen) < 0.5


INCEPTION_AREA = (0.05, 1.0)      # the paper's code: tf.image.sample_distorted_bounding_box's area_range,
INCEPTION_ASPECT = (3 / 4, 4 / 3)  # aspect_ratio_range (big_vision pp/ops_image.py inception_crop)


def inception_boxes(rng: np.random.Generator, n: int, h, w, attempts: int = 10) -> np.ndarray:
    """n random crop boxes (top, left, height, width), as torchvision's RandomResizedCrop draws them (its
    `make_params`), vectorised over the batch: area uniform in INCEPTION_AREA of the image, aspect
    log-uniform in INCEPTION_ASPECT, the first of `attempts` draws that fits; else the whole image cropped
    to the nearest allowed aspect, centred. `h`, `w`: the images' sides, one for all or one per image (the
    sharded store's originals differ); the random draws do not depend on them, so the same images give
    the same boxes from either store."""
    h, w = (np.broadcast_to(np.asarray(v, np.int64), (n,)) for v in (h, w))
    area = (h * w)[:, None] * rng.uniform(*INCEPTION_AREA, (n, attempts))
    aspect = np.exp(rng.uniform(np.log(INCEPTION_ASPECT[0]), np.log(INCEPTION_ASPECT[1]), (n, attempts)))
    cw, ch = np.round(np.sqrt(area * aspect)).astype(np.int64), np.round(np.sqrt(area / aspect)).astype(np.int64)
    fits = (cw > 0) & (cw <= w[:, None]) & (ch > 0) & (ch <= h[:, None])
    first = fits.argmax(1)
    cw, ch = cw[np.arange(n), first], ch[np.arange(n), first]
    ratio = w / h  # the fallback: torchvision's centre crop at the clamped aspect
    lo, hi = ratio < INCEPTION_ASPECT[0], ratio > INCEPTION_ASPECT[1]
    fw = np.where(hi, np.round(h * INCEPTION_ASPECT[1]), w).astype(np.int64)
    fh = np.where(lo, np.round(w / INCEPTION_ASPECT[0]), h).astype(np.int64)
    ok = fits.any(1)
    cw, ch = np.where(ok, cw, fw), np.where(ok, ch, fh)
    top = np.where(ok, (rng.random(n) * (h - ch + 1)).astype(np.int64), (h - fh) // 2)
    left = np.where(ok, (rng.random(n) * (w - cw + 1)).astype(np.int64), (w - fw) // 2)
    return np.stack([top, left, ch, cw], 1)


# BiT's fine-tuning crop (bit_pytorch/train.py, mk_transforms): the whole image resized to a square of
# `precrop` px, a random `crop` x `crop` window of it, and a flip; its evaluation resizes to `crop` px, as
# the ViT code does. The pairs are bit_hyperrule.py's (small images 160 -> 128, the default 512 -> 480)
# and the BiT paper's 448 -> 384; another crop keeps the 448/384 ratio.
BIT_PRECROP = {128: 160, 384: 448, 480: 512}


def bit_precrop(size: int) -> int:
    return BIT_PRECROP.get(size, round(size * 448 / 384))


def bit_offsets(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """n random (top, left) corners of a `size` window in the `bit_precrop(size)` square."""
    room = bit_precrop(size) - size + 1
    return (rng.random((n, 2)) * room).astype(np.int64)


def inception_crop(xb, boxes: np.ndarray, flip, size: int):
    """uint8 (B,C,H,W) or a list of (C,H,W) images -> uint8 (B,C,size,size): each image's box resized to
    size x size (bilinear with antialiasing), then flipped where `flip`. What torchvision's resized_crop
    computes, bit for bit (tests/test_data.py), without its wrappers' overhead: a third of the crop's time."""
    import torch.nn.functional as F

    def one(im, i):
        top, left, h, w = boxes[i].tolist()
        crop = im[:, top:top + h, left:left + w]
        if (h, w) == (size, size):
            return crop
        return F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return _each(xb, flip, size, one)


def bit_crop(xb, corners: np.ndarray, flip, size: int):
    """BiT's crop (BIT_PRECROP): each image resized to the precrop square, the window at `corners` kept."""
    from torchvision.transforms.v2 import functional as TF

    pre = bit_precrop(size)
    def one(im, i):
        top, left = corners[i].tolist()
        return TF.resize(im, [pre, pre], antialias=True)[:, top:top + size, left:left + size]
    return _each(xb, flip, size, one)


def _each(xb, flip, size: int, crop):
    import torch

    out = torch.empty((len(xb), 3, size, size), dtype=torch.uint8)
    for i in range(len(xb)):
        out[i] = crop(xb[i], i)
    out[flip] = out[flip].flip(-1)
    return out


RANDAUGMENT = {"num_ops": 2, "magnitude": 9}  # torchvision's defaults (Cubuk et al. 2020)


def randaugment_ops() -> tuple[str, ...]:
    """The ops torchvision's RandAugment draws from (Identity, ShearX, ..., Solarize, AutoContrast, Equalize)."""
    from torchvision.transforms import v2

    return tuple(v2.RandAugment._AUGMENTATION_SPACE)


def _randaugment(xb, seeds: list[int], skip: tuple = ()):
    """RandAugment, the input noise of Noisy Student students: each image its own two random ops,
    drawn from its own seed, so the result does not depend on how a batch is split; the ops in `skip`
    are left out of the draw (torchvision keeps its op table in a class attribute: an instance copy
    without them changes nothing else)."""
    import torch
    from torchvision.transforms import v2

    ra = v2.RandAugment(**RANDAUGMENT)
    if skip:
        unknown = sorted(set(skip) - set(ra._AUGMENTATION_SPACE))
        if unknown:
            raise ValueError(f"randaugment_skip names {unknown}: RandAugment's ops are {', '.join(randaugment_ops())}")
        ra._AUGMENTATION_SPACE = {k: v for k, v in ra._AUGMENTATION_SPACE.items() if k not in skip}
    out = torch.empty_like(xb)
    with torch.random.fork_rng(devices=[]):  # leave the training RNG (dropout, resume state) untouched
        for i, s in enumerate(seeds):
            torch.manual_seed(s)
            out[i] = ra(xb[i])
    return out


def _crop_flip(xb, oy, ox, flip, pad: int):
    """Random crop after reflect-padding by `pad` (1/8 of the side), and a horizontal flip."""
    import torch
    import torch.nn.functional as F

    b, c, h, w = xb.shape
    xp = F.pad(xb.float(), (pad, pad, pad, pad), mode="reflect")
    rows = (oy[:, None] + torch.arange(h)).view(b, 1, h, 1).expand(b, c, h, w + 2 * pad)
    cols = (ox[:, None] + torch.arange(w)).view(b, 1, 1, w).expand(b, c, h, w)
    out = xp.gather(2, rows).gather(3, cols)
    out[flip] = out[flip].flip(-1)
    return out.to(torch.uint8)
