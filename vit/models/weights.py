"""Released pre-trained weights -> a checkpoint.pt that the fine-tuning stage reads like one of ours.

    python -m vit.models.weights --weights=vit_large_patch16_224.orig_in21k --out=results/released/vit_l16/in21k

`--weights` is a timm pretrained tag, `<architecture>.<tag>`; timm downloads it from the Hugging Face
hub. `--file` loads a local copy in the
hub's format instead (a safetensors / .pth state dict), or the original JAX release (.npz: the
paper's gs://vit_models/imagenet21k/ViT-L_16.npz, BiT's BiT-M-R152x4.npz), converted by timm; for
clusters whose compute nodes are offline, and for the tests. The paper's own checkpoints in timm:
  vit_{base,large}_patch{16,32}_224.orig_in21k, vit_huge_patch14_224.orig_in21k
      the ImageNet-21k ViTs released with the paper (pre-logits and head removed by timm)
  vit_base_r50_s16_224.orig_in21k   the R50+ViT-B/16 hybrid
  resnetv2_{50x1,50x3,101x1,101x3,152x2,152x4}_bit.goog_in21k
      BiT-M (ImageNet-21k): the public stand-in for BiT-L, whose JFT-300M weights were never released
  tf_efficientnet_l2.ns_jft_in1k(_475)
      Noisy Student's EfficientNet-L2, released only after its ImageNet fine-tuning
Writes `<out>/checkpoint.pt` ({model, model_args, num_classes, img_size, grid_size}) and
`<out>/summary.json` (the tag, its source, licence, parameter count, SHA-256 of the weights file).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from vit import cli, models
from vit.logs import environment, save_torch, sha256_file, write_json

IDENTITY_NORM = (0.5, 0.5, 0.5)  # our inputs are x / 127.5 - 1, i.e. mean 0.5, std 0.5 on [0, 1]


@dataclass
class Config:
    weights: str = ""   # timm pretrained tag, e.g. vit_base_patch16_224.orig_in21k
    file: str = ""      # a local copy of the weights in the hub's format ("" = download from the hub)
    out: str = ""       # results/released/<model>/<upstream>


def import_weights(cfg: Config) -> dict:
    import timm

    if not cfg.weights or not cfg.out:
        raise cli.ConfigError("--weights and --out are required")
    arch, _, tag = cfg.weights.partition(".")
    try:
        pretrained_cfg = timm.models.get_pretrained_cfg(cfg.weights)
    except RuntimeError:  # an architecture timm knows with a tag it does not
        pretrained_cfg = None
    if pretrained_cfg is None or not tag:
        known = timm.list_pretrained(f"{arch}*")
        raise cli.ConfigError(f"--weights={cfg.weights!r}: not a timm pretrained tag"
                              + (f"; tags of {arch}: {', '.join(known)}" if known else
                                 "; list them with timm.list_pretrained('vit_*')"))
    if cfg.file and not Path(cfg.file).is_file():
        raise cli.ConfigError(f"--file={cfg.file}: no such file")
    if cfg.file.endswith(".npz"):  # the original JAX releases (BiT-M-*.npz, ViT-*.npz): timm's converters
        model = timm.create_model(cfg.weights, pretrained=False)
        if not hasattr(model, "load_pretrained"):
            raise cli.ConfigError(f"--file={cfg.file}: timm has no .npz reader for {arch}; give its state dict")
        model.load_pretrained(cfg.file)
    else:
        overlay = {"file": str(cfg.file)} if cfg.file else None
        model = timm.create_model(cfg.weights, pretrained=True, pretrained_cfg_overlay=overlay)
    pc = model.pretrained_cfg
    img_size = int(pc["input_size"][-1])
    model_args = {"arch": "timm", "name": arch}
    if tuple(pc["mean"]) != IDENTITY_NORM or tuple(pc["std"]) != IDENTITY_NORM:
        # e.g. EfficientNet-L2 was trained on ImageNet mean/std inputs: keep feeding it what it expects
        model_args["input_norm"] = [list(pc["mean"]), list(pc["std"])]
    num_classes = model.num_classes
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_torch(out / "checkpoint.pt", models.checkpoint(model, model_args, num_classes, img_size,
                                                        {"weights": cfg.weights, "file": cfg.file}))
    summary = {"weights": cfg.weights, "architecture": arch, "tag": tag, "hf_hub_id": pc.get("hf_hub_id"),
               "file": cfg.file, "file_sha256": sha256_file(cfg.file) if cfg.file else None,
               "license": pc.get("license"), "img_size": img_size, "num_classes": num_classes,
               "grid_size": models.grid_size(model), "params": models.num_params(model),
               "model_args": model_args, "env": environment()}
    write_json(out / "summary.json", summary)
    print(f"{cfg.weights}: {summary['params'] / 1e6:.1f}M parameters at {img_size} px -> {out / 'checkpoint.pt'}")
    return summary


def vit_npz(model) -> dict:
    """A timm VisionTransformer's weights in the layout of the paper's released .npz files (vit_jax's
    `Transformer/encoderblock_<i>/...` names, kernels in JAX's order): the inverse of timm's reader
    (timm.models.vision_transformer._load_weights), so that the release's import path runs offline on
    weights of any value (tests, the GPU check)."""
    import numpy as np

    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    d, heads = model.embed_dim, model.blocks[0].attn.num_heads
    out = {"embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
           "embedding/bias": sd["patch_embed.proj.bias"], "cls": sd["cls_token"],
           "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
           "Transformer/encoder_norm/scale": sd["norm.weight"], "Transformer/encoder_norm/bias": sd["norm.bias"]}
    if "head.weight" in sd:
        out.update({"head/kernel": sd["head.weight"].T, "head/bias": sd["head.bias"]})
    for i in range(len(model.blocks)):
        b, p = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
        qkv_w, qkv_b = sd[b + "attn.qkv.weight"].reshape(3, d, d), sd[b + "attn.qkv.bias"].reshape(3, d)
        for j, name in enumerate(("query", "key", "value")):
            out[f"{p}MultiHeadDotProductAttention_1/{name}/kernel"] = qkv_w[j].T.reshape(d, heads, d // heads)
            out[f"{p}MultiHeadDotProductAttention_1/{name}/bias"] = qkv_b[j].reshape(heads, d // heads)
        out[f"{p}MultiHeadDotProductAttention_1/out/kernel"] = \
            sd[b + "attn.proj.weight"].reshape(d, heads, d // heads).transpose(1, 2, 0)
        out[f"{p}MultiHeadDotProductAttention_1/out/bias"] = sd[b + "attn.proj.bias"]
        for ln, norm in (("LayerNorm_0", "norm1"), ("LayerNorm_2", "norm2")):
            out[f"{p}{ln}/scale"], out[f"{p}{ln}/bias"] = sd[b + norm + ".weight"], sd[b + norm + ".bias"]
        for r in range(2):
            out[f"{p}MlpBlock_3/Dense_{r}/kernel"] = sd[b + f"mlp.fc{r + 1}.weight"].T
            out[f"{p}MlpBlock_3/Dense_{r}/bias"] = sd[b + f"mlp.fc{r + 1}.bias"]
    return out


def bit_npz(model) -> dict:
    """A timm ResNetV2 in the layout of BiT's released .npz files: the inverse of timm's reader
    (timm.models.resnetv2._load_weights), for the same offline uses as vit_npz."""
    def hwio(w):
        w = w.detach().numpy()
        return w.transpose(2, 3, 1, 0) if w.ndim == 4 else w

    p = "resnet/"
    out = {f"{p}root_block/standardized_conv2d/kernel": hwio(model.stem.conv.weight),
           f"{p}group_norm/gamma": hwio(model.norm.weight), f"{p}group_norm/beta": hwio(model.norm.bias),
           f"{p}head/conv2d/kernel": hwio(model.head.fc.weight), f"{p}head/conv2d/bias": hwio(model.head.fc.bias)}
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage.blocks):
            b = f"{p}block{i + 1}/unit{j + 1:02d}/"
            for k, (conv, norm) in zip("abc", ((block.conv1, block.norm1), (block.conv2, block.norm2),
                                              (block.conv3, block.norm3))):
                out[f"{b}{k}/standardized_conv2d/kernel"] = hwio(conv.weight)
                out[f"{b}{k}/group_norm/gamma"], out[f"{b}{k}/group_norm/beta"] = hwio(norm.weight), hwio(norm.bias)
            if block.downsample is not None:
                out[f"{b}a/proj/standardized_conv2d/kernel"] = hwio(block.downsample.conv.weight)
    return out


if __name__ == "__main__":
    cli.main_guard(import_weights, Config)
