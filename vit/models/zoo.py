"""The paper's models (Table 1, Tables 5-6, Table 2 baselines) as specs for `vit.models.create`.

A config names one with `{"arch": "paper", "name": "ViT-L/16"}`; `vit.models.param_count` counts one on
PyTorch's meta device (no memory, no time), which the tests compare with the paper's Table 1.
"""
from __future__ import annotations

# BiT ResNetV2 block counts per stage [BiT; BT bit_pytorch/models.py]
_BIT_LAYERS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3], 200: [3, 24, 36, 3]}


def _bit(depth: int, width: int) -> dict:
    # GroupNorm with 32 groups and weight-standardised convs, as in BiT's code
    return {"arch": "bit", "layers": _BIT_LAYERS[depth], "width_factor": width, "groups": 32}


PAPER_MODELS: dict[str, dict] = {
    # ViT (Table 1): patch size after the slash
    "ViT-B/32": {"arch": "timm", "name": "vit_base_patch32_224"},
    "ViT-B/16": {"arch": "timm", "name": "vit_base_patch16_224"},
    "ViT-L/32": {"arch": "timm", "name": "vit_large_patch32_224"},
    "ViT-L/16": {"arch": "timm", "name": "vit_large_patch16_224"},
    "ViT-H/14": {"arch": "timm", "name": "vit_huge_patch14_224"},
    # Hybrids (sec. 4.1): the number is the ResNet's total stride. /16 removes stage 4 and moves its
    # blocks into stage 3 (3, 4, 9); /32 takes the stage-4 output of a regular R50 (3, 4, 6, 3).
    "R50x1+ViT-B/16": {"arch": "timm", "name": "vit_base_r50_s16_224"},
    "R50x1+ViT-B/32": {"arch": "timm", "name": "vit_large_r50_s32_224", "embed_dim": 768, "depth": 12,
                       "num_heads": 12},
    "R50x1+ViT-L/32": {"arch": "timm", "name": "vit_large_r50_s32_224"},
    # BiT ResNets (Table 6 and the BiT-L baseline of Table 2)
    "BiT-R50x1": _bit(50, 1), "BiT-R50x2": _bit(50, 2), "BiT-R101x1": _bit(101, 1),
    "BiT-R152x1": _bit(152, 1), "BiT-R152x2": _bit(152, 2), "BiT-R152x4": _bit(152, 4),
    "BiT-R200x3": _bit(200, 3),
    # Noisy Student's EfficientNet-L2 (Table 2 baseline)
    "EfficientNet-L2": {"arch": "efficientnet", "variant": "tf_efficientnet_l2"},
}


def resolve(name: str) -> dict:
    if name not in PAPER_MODELS:
        raise ValueError(f"paper model {name!r}: expected one of {', '.join(PAPER_MODELS)}")
    return dict(PAPER_MODELS[name])
