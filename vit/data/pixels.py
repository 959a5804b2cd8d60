"""Pixel conventions shared by every store: the resize of whole images and the [-1, 1] input range (a leaf
module: vit.data, its augmentation and the sharded store all use it)."""
from __future__ import annotations


def _resize(x, size: int):
    """uint8 (B,C,H,W) -> uint8 (B,C,size,size): bilinear with antialias, per image."""
    import torch.nn.functional as F

    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(x.dtype)


def normalize(x):
    """uint8 -> float in [-1, 1], the ViT/BiT input convention."""
    return x.float().div_(127.5).sub_(1.0)
