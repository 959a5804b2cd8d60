"""FLOPs per image, counted by torch.utils.flop_counter.FlopCounterMode on a real forward + backward.

torch's formula for `convolution_backward` ignores `groups` in the weight-gradient term and so
overcounts depthwise convolutions by the channel count (EfficientNet came out at 27-38x its forward
FLOPs instead of ~3x, docs/cpu_performance.md). We register a corrected formula: both gradients of a convolution
cost what its forward does.
"""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

aten = torch.ops.aten


def _conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    # w_shape already holds in_channels / groups, so the forward count is right for grouped convs;
    # grad_input is a (transposed) conv of the same size and grad_weight a conv of the same size.
    fwd = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count(model: torch.nn.Module, img_size: int, device: str | torch.device = "cpu",
          batch: int = 2, in_chans: int = 3, backward: bool = True) -> dict:
    """Forward and training (forward + backward) FLOPs per image at `img_size` (1 multiply-add = 2 FLOPs).
    backward=False counts the forward alone (no graph is kept; train_flops_per_img is then absent)."""
    was_training = model.training
    model.train()
    # FlopCounterMode has no formula for the CPU flash-attention kernel: count the plain
    # matmul-softmax-matmul path, which does the same arithmetic, then restore the model's choice.
    fused = {m: m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")}
    for m in fused:
        m.fused_attn = False
    x = torch.randn(batch, in_chans, img_size, img_size, device=device)
    mapping = {aten.convolution_backward: _conv_backward_flop}
    try:
        with torch.set_grad_enabled(backward), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            out = model(x)
        result = {"fwd_flops_per_img": counter.get_total_flops() / batch}
        if backward:
            with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
                out.float().sum().backward()
            result["train_flops_per_img"] = result["fwd_flops_per_img"] + counter.get_total_flops() / batch
            model.zero_grad(set_to_none=True)
        return result
    finally:
        model.train(was_training)
        for m, value in fused.items():
            m.fused_attn = value


def vit_forward_flops(img_size: int, patch: int, dim: int, depth: int, mlp_dim: int, num_classes: int,
                      tokens_extra: int = 1) -> float:
    """Analytical ViT forward FLOPs per image (vit/reference.yaml: model_flops, plus the head):
    2 x [L (4 T D^2 + 2 T^2 D + 2 T D D_mlp) + N P^2 3 D + D K], T = N + 1."""
    n = (img_size // patch) ** 2
    t = n + tokens_extra
    macs = depth * (4 * t * dim * dim + 2 * t * t * dim + 2 * t * dim * mlp_dim) + n * patch * patch * 3 * dim
    return 2.0 * (macs + dim * num_classes)


def spec_forward_flops(spec: dict, img_size: int, num_classes: int) -> float | None:
    """`vit_forward_flops` for an `arch: vit` model spec (timm defaults: mlp_ratio 4, linear head;
    the paper's tanh head adds one D x D layer); None for other architectures."""
    if spec.get("arch") != "vit":
        return None
    dim = spec.get("embed_dim", 768)
    head_extra = 2.0 * dim * dim if spec.get("head") == "tanh_mlp" else 0.0
    return head_extra + vit_forward_flops(img_size, spec.get("patch_size", 16), dim, spec.get("depth", 12),
                                          int(dim * spec.get("mlp_ratio", 4.0)), num_classes)
