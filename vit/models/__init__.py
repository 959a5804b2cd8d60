"""Model construction and surgery; timm does the work.

A model spec is a dict from config.yaml, e.g. {"arch": "vit", "patch_size": 8, "embed_dim": 128, ...}:
  vit           timm VisionTransformer: class token, learned 1D position embeddings, pre-norm blocks
                (paper sec. 3.1); any VisionTransformer keyword is accepted
  bit           timm ResNetV2 the BiT way (Kolesnikov et al. 2020): pre-activation bottlenecks,
                GroupNorm + weight-standardised convs, fixed 7x7/2 stem + max-pool ("stem": "cifar": a 3x3/1
                conv without pooling, for 32-64 px inputs, where the BiT stem would leave 8x8 maps)
  efficientnet  a timm EfficientNet family member by name ("variant": "tinynet_e", "efficientnet_b0", ...);
                "stem_stride": 1 keeps the first maps at the input's size, for 32-64 px inputs
  timm          any timm model by name ("name": "vit_base_patch16_224", ...), for the paper-scale presets
  paper         one of the paper's models by its name in the paper ("name": "ViT-L/16"; see vit.models.zoo)
Any spec may add "input_norm": [mean, std] for weights trained on other inputs than x/127.5 - 1.

`load_pretrained` implements the paper's transfer recipe (sec. 3.2): drop the pre-training head, add a
zero-initialised linear head, and when the resolution grows keep the patch size, let the sequence grow,
and resample the learned position embeddings in 2D with the class token kept apart. `checkpoint` is the
checkpoint.pt format; `load_checkpoint` reads one back, with a clear error for a damaged file.
"""
from __future__ import annotations

import functools

import timm
import torch
from timm.layers import GroupNormAct, StdConv2d, resample_abs_pos_embed
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import VisionTransformer

from vit.errors import DataError
from vit.logs import load_torch, redo
from vit.models import zoo
from vit.plan import POSEMB_INTERP  # the modes live in the torch-free plan, which the workflow reads


def create(spec: dict, num_classes: int, img_size: int) -> torch.nn.Module:
    spec = dict(spec)
    norm = spec.pop("input_norm", None)
    head = spec.pop("head", "linear")
    model = _create(spec, num_classes, img_size)
    if head == "tanh_mlp":  # paper sec. 3.1: pre-training head = MLP with one tanh hidden layer
        if not isinstance(getattr(model, "head", None), torch.nn.Linear):
            raise ValueError(f"head=tanh_mlp: {type(model).__name__} has no linear `head` to replace")
        d = model.num_features
        model.head = torch.nn.Sequential(torch.nn.Linear(d, d), torch.nn.Tanh(), torch.nn.Linear(d, num_classes))
    elif head != "linear":
        raise ValueError(f"head={head!r}: expected linear or tanh_mlp")
    if norm is not None:  # [mean, std]: weights trained on other inputs than our [-1, 1] (vit.models.weights)
        mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in norm)
        model.register_forward_pre_hook(functools.partial(_renormalize, mean=mean, std=std))
    return model


def _renormalize(module, args, mean, std):
    x = args[0]
    return ((x + 1) / 2 - mean.to(x.device, x.dtype)) / std.to(x.device, x.dtype), *args[1:]


def _create(spec: dict, num_classes: int, img_size: int) -> torch.nn.Module:
    arch = spec.pop("arch", None)
    if arch == "paper":
        return create({**zoo.resolve(spec.pop("name")), **spec}, num_classes, img_size)
    if arch == "vit":
        model = VisionTransformer(img_size=img_size, num_classes=num_classes, class_token=True,
                                  global_pool="token", **spec)
    elif arch == "bit":
        groups, stem, stride = spec.pop("groups", 32), spec.pop("stem", "bit"), spec.pop("stem_stride", 1)
        conv = functools.partial(StdConv2d, eps=1e-8)
        model = ResNetV2(num_classes=num_classes, stem_type="fixed", conv_layer=conv,
                         norm_layer=functools.partial(GroupNormAct, num_groups=groups), **spec)
        if stem == "cifar":  # 3x3, no max-pool: the stages see 32x32 (stride 1) or 16x16 maps at 32 px, not 8x8
            model.stem = torch.nn.Sequential(conv(3, model.stem.conv.out_channels, kernel_size=3, stride=stride))
        elif stem != "bit":
            raise ValueError(f"model spec stem={stem!r}: expected bit (7x7/2 + max-pool) or cifar (3x3/1)")
    elif arch == "efficientnet":
        stride = spec.pop("stem_stride", 2)
        model = timm.create_model(spec.pop("variant"), pretrained=False, num_classes=num_classes, **spec)
        if stride != 2:  # 1: for 32-64 px inputs, where the stride-2 stem leaves 2x2 maps before the head
            model.conv_stem.stride = (stride, stride)
    elif arch == "timm":
        name = spec.pop("name")
        if "vit" in name or "deit" in name:
            spec["img_size"] = img_size
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **spec)
    else:
        raise ValueError(f"model spec arch={arch!r}: expected one of vit, bit, efficientnet, timm, paper")
    return model


def to_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a model and pick layouts there: on CPU the plain matmul-softmax-matmul attention, which beat SDPA
    for these short sequences on the AMD VMs (docs/cpu_performance.md: 8-20 %), on CUDA the fused kernel;
    convnets run channels_last (+5-10 % on CPU, and the tensor-core layout on GPU). A training run then
    sets the attention form of its step form (vit.train.forms)."""
    model.to(device)
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = device.type == "cuda"
    if is_convnet(model):
        model.to(memory_format=torch.channels_last)
    return model


def is_convnet(model: torch.nn.Module) -> bool:
    return getattr(model, "pos_embed", None) is None


def head_parameter_names(model: torch.nn.Module) -> set[str]:
    head = {id(p) for p in model.get_classifier().parameters()}
    return {n for n, p in model.named_parameters() if id(p) in head}


def grid_size(model: torch.nn.Module) -> list[int] | None:
    """The patch grid of a ViT (None for convnets); a list, as it is stored in JSON and checkpoints."""
    pe = getattr(model, "patch_embed", None)
    return list(pe.grid_size) if pe is not None and getattr(model, "pos_embed", None) is not None else None


def resample_pos_embed(posemb: torch.Tensor, old_grid, new_grid, num_prefix_tokens: int,
                       interp: str) -> torch.Tensor:
    """2D resampling of (1, prefix + H*W, D) position embeddings; prefix (class) tokens are copied.

    bicubic: timm's default (bicubic with antialias).
    bilinear_corners: the original JAX code's scipy.ndimage.zoom(order=1), i.e. bilinear with the
    corner pixels aligned (the original ViT code's checkpoint loading; tested against scipy in
    tests/test_models.py).
    """
    if interp not in POSEMB_INTERP:
        raise ValueError(f"posemb_interp={interp!r}: expected one of {POSEMB_INTERP}")
    if tuple(old_grid) == tuple(new_grid):
        return posemb
    if interp == "bicubic":
        kw = dict(interpolation="bicubic", antialias=True)
    else:
        kw = dict(interpolation="bilinear", antialias=False, align_corners=True)
    return resample_abs_pos_embed(posemb, new_size=list(new_grid), old_size=list(old_grid),
                                  num_prefix_tokens=num_prefix_tokens, **kw)


DROPOUT_KEYS = ("drop_rate", "proj_drop_rate", "pos_drop_rate", "attn_drop_rate")


def transfer_spec(spec: dict) -> dict:
    """The spec of the model that fine-tunes a checkpoint: the same backbone with a linear head
    (paper sec. 3.2: the whole pre-training head is replaced by one zero-initialised layer) and no
    dropout (Table 3's dropout is a pre-training regulariser; the public fine-tuning code uses 0)."""
    return {k: v for k, v in spec.items() if k != "head" and k not in DROPOUT_KEYS}


def load_pretrained(model: torch.nn.Module, checkpoint: dict, interp: str = "bicubic") -> dict:
    """Copy every weight but the head from a pre-training checkpoint into `model` (built for the new
    task and resolution); the new head is zero-initialised. Returns what was done, for the records."""
    head = head_parameter_names(model)
    # drop the checkpoint's whole head, whatever its structure (a tanh MLP has head.0.*, head.2.*)
    prefix = next(n for n, m in model.named_modules() if m is model.get_classifier())
    state = {k: v for k, v in checkpoint["model"].items() if not k.startswith(prefix + ".")}
    info = {"posemb_resampled": False}
    new_grid = grid_size(model)
    if new_grid is not None and "pos_embed" in state:
        old_grid = tuple(checkpoint["grid_size"])
        prefix = getattr(model, "num_prefix_tokens", 1)
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], old_grid, new_grid, prefix, interp)
        info.update(posemb_resampled=old_grid != tuple(new_grid), grid_from=list(old_grid), grid_to=new_grid,
                    posemb_interp=interp)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) != head or unexpected:
        raise RuntimeError(f"checkpoint does not fit the model: missing {sorted(set(missing) - head)}, "
                           f"unexpected {sorted(unexpected)}")
    for p in model.get_classifier().parameters():  # paper sec. 3.2: zero-initialised D x K head
        torch.nn.init.zeros_(p)
    info["head_reset"] = sorted(head)
    return info


def checkpoint(model: torch.nn.Module, model_args: dict, num_classes: int, img_size: int, config: dict) -> dict:
    """The checkpoint.pt format that fine-tuning reads (`load_pretrained`): weights on CPU, the spec that
    rebuilds the model, its class count, resolution and patch grid, and how it was made."""
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "model_args": model_args,
            "num_classes": num_classes, "img_size": img_size, "grid_size": grid_size(model), "config": config}


CHECKPOINT_KEYS = ("model", "model_args", "num_classes", "img_size")  # what every reader of `checkpoint` needs


def load_checkpoint(path: str, **kw) -> dict:
    """A checkpoint.pt (`checkpoint`'s format) on the CPU; a damaged file, or another torch file in its
    place (a run's state-*.pt), is a DataError naming it and the rule that rewrites it. `kw` goes to
    torch.load (mmap=True: read only what is used)."""
    fix = redo(path)
    ckpt = load_torch(path, fix, **kw)
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise DataError(f"{path}: not a checkpoint of this project (no {', '.join(missing)}); {fix}")
    return ckpt


def num_params(model: torch.nn.Module, exclude_head: bool = False) -> int:
    skip = head_parameter_names(model) if exclude_head else set()
    return sum(p.numel() for n, p in model.named_parameters() if n not in skip)


def param_count(spec: dict, num_classes: int = 1000, img_size: int = 224, exclude_head: bool = False) -> int:
    """Parameters of a model spec, built on the meta device (no memory, no time)."""
    with torch.device("meta"):
        model = create(spec, num_classes, img_size)
    return num_params(model, exclude_head=exclude_head)
