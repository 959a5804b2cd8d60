"""Masked patch prediction (MPP), the paper's self-supervised pre-training (sec. 4.6, App. B.1.2).

BERT-style: corrupt 50 % of the patch embeddings (of those, 80 % become a learned [mask] embedding,
10 % another random patch's embedding, 10 % stay as they are), run the ViT, and predict from each
corrupted patch's output token its 3-bit mean colour (8 levels per channel, 512 classes). The paper
tried two other targets and a 15 % rate; this is the variant it reports (vit/reference.yaml: pretrain_hparams.self_supervised_masked_patch).

`MaskedPatchPrediction` wraps any timm VisionTransformer: `loss(x)` is the MPP objective, `forward(x)`
stays the wrapped classifier's, and `backbone_state_dict` gives the weights that fine-tuning loads
(`vit.models.load_pretrained`) like those of a supervised checkpoint.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models._manipulate import checkpoint_seq

LEVELS = 8                    # 3 bits per channel
NUM_CLASSES = LEVELS ** 3     # 512 colour classes: r * 64 + g * 8 + b


def colour_targets(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, 3, H, W) images in [-1, 1] -> (B, N) long class of each patch's mean colour, patches in
    row-major order (timm's patch token order: the conv output's (h, w) grid flattened).

    Level = floor(mean_0_255 / 32). The patch sum is rounded to an integer before the division, so
    images that came from uint8 (all of ours, `vit.data.normalize`) land in exactly the right bin
    despite the float error of x / 127.5 - 1 (a patch of 32s comes back as 31.999998: level 0, not 1).
    """
    b, c, h, w = x.shape
    if c != 3 or h % patch or w % patch:
        raise ValueError(f"colour_targets: need (B, 3, H, W) with H, W multiples of {patch}, got {tuple(x.shape)}")
    v = (x.detach().double() + 1.0) * 127.5  # float64: the rounding below stays exact for big patches
    sums = v.reshape(b, c, h // patch, patch, w // patch, patch).sum((3, 5)).round().long()
    level = (sums // (32 * patch * patch)).clamp(0, LEVELS - 1)  # (B, 3, h, w)
    cls = level[:, 0] * LEVELS ** 2 + level[:, 1] * LEVELS + level[:, 2]
    return cls.flatten(1)


def _rand(gen: torch.Generator | None, device: torch.device):
    """Draw on the generator's device (CPU generators stay usable for CUDA tokens), then move."""
    return {"generator": gen, "device": gen.device if gen is not None else device}


def corrupt(tokens: torch.Tensor, mask_token: torch.Tensor, rate: float = 0.5, p_mask: float = 0.8,
            p_random: float = 0.1, generator: torch.Generator | None = None):
    """BERT-style corruption of (B, N, D) patch embeddings. Returns (tokens_out, corrupted (B, N) bool).

    Counts are exact per image, rounded half up: k = round(rate * N) corrupted, of which
    round(p_mask * k) get `mask_token`, round(p_random * k) another patch's embedding and the rest are
    unchanged (still predicted). N = 64, k = 32: 26 / 3 / 3. Positions are a uniform random subset
    and the three kinds a uniform random split of it.

    "Another random patch" is drawn uniformly from all B * N input embeddings of the batch (any image,
    any position) except the token itself: the paper does not say which, and the batch is the only
    pool of real patch embeddings at hand, like BERT's vocabulary. It is the embedding before any
    corruption, and gradients flow into it as they would through BERT's embedding table.
    """
    b, n, d = tokens.shape
    k = int(rate * n + 0.5)
    n_mask = min(int(p_mask * k + 0.5), k)
    n_rand = min(int(p_random * k + 0.5), k - n_mask)
    kw = _rand(generator, tokens.device)
    # rank of each position in a random permutation of its image's patches: the k lowest are corrupted
    order = torch.rand(b, n, **kw).argsort(dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=order.device).expand(b, n))
    rank = rank.to(tokens.device)
    corrupted, masked = rank < k, rank < n_mask
    randomised = (rank >= n_mask) & (rank < n_mask + n_rand)
    # another token of the batch: draw from B*N - 1 indices and skip over the token's own index
    src = torch.randint(0, max(b * n - 1, 1), (b, n), **kw).to(tokens.device)
    own = torch.arange(b * n, device=tokens.device).view(b, n)
    src = src + (src >= own).long()
    src = src.clamp(max=b * n - 1)  # only the degenerate B*N == 1 case: no other token exists
    out = torch.where(masked[..., None], mask_token.to(tokens.dtype), tokens)
    out = torch.where(randomised[..., None], tokens.reshape(b * n, d)[src], out)
    return out, corrupted


class MaskedPatchPrediction(torch.nn.Module):
    """A timm VisionTransformer (`self.vit`) plus what MPP pre-training adds to it: a learned [mask]
    embedding and a linear 512-way colour head on the output patch tokens."""

    def __init__(self, vit: torch.nn.Module, rate: float = 0.5, p_mask: float = 0.8, p_random: float = 0.1):
        super().__init__()
        if not hasattr(vit, "_pos_embed") or not hasattr(vit, "num_prefix_tokens"):
            raise TypeError(f"MPP needs a timm VisionTransformer, got {type(vit).__name__}")
        if not isinstance(vit.patch_drop, torch.nn.Identity):  # dropped tokens would lose their targets
            raise ValueError("MPP: patch_drop_rate must be 0 (patch dropout reorders and drops patch tokens)")
        ph, pw = vit.patch_embed.patch_size
        if ph != pw:
            raise ValueError(f"MPP: square patches only, got {ph}x{pw}")
        self.vit, self.patch = vit, ph
        self.rate, self.p_mask, self.p_random = rate, p_mask, p_random
        d = vit.embed_dim
        self.mask_token = torch.nn.Parameter(torch.empty(d))
        torch.nn.init.normal_(self.mask_token, std=1e-6)  # as timm initialises the class token
        self.mpp_head = torch.nn.Linear(d, NUM_CLASSES)
        torch.nn.init.trunc_normal_(self.mpp_head.weight, std=0.02)  # timm's ViT Linear init: loss ~ ln 512
        torch.nn.init.zeros_(self.mpp_head.bias)

    # classification, unchanged: evaluation and few-shot probes see the wrapped ViT
    def forward(self, x: torch.Tensor, mpp: bool = False, generator: torch.Generator | None = None):
        """Classification logits; with mpp=True the MPP (loss, stats), so that DistributedDataParallel,
        which only synchronises gradients of work done inside forward, can train the MPP objective."""
        return self.loss(x, generator) if mpp else self.vit(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.vit.forward_head(x, pre_logits=pre_logits)

    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """timm's forward_features with the patch embeddings corrupted between patch_embed and
        _pos_embed (so the [mask] token still gets its position). Returns the output tokens
        (B, prefix + N, D) and the corrupted mask (B, N)."""
        vit = self.vit
        for hook in vit._forward_pre_hooks.values():  # e.g. the input_norm hook of vit.models.create
            res = hook(vit, (x,))
            x = res[0] if res is not None else x
        t = vit.patch_embed(x)
        shape = t.shape  # (B, N, D), or (B, h, w, D) for dynamic_img_size models
        t, corrupted = corrupt(t.reshape(shape[0], -1, shape[-1]), self.mask_token, self.rate, self.p_mask,
                               self.p_random, generator)
        t = vit.norm_pre(vit.patch_drop(vit._pos_embed(t.reshape(shape))))
        if vit.grad_checkpointing and not torch.jit.is_scripting():
            t = checkpoint_seq(vit.blocks, t)
        else:
            t = vit.blocks(t)
        return vit.norm(t), corrupted

    def loss(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """Cross-entropy of the 512-way colour class, on the corrupted patches only (as BERT scores
        only its corrupted tokens). Returns (loss, {"mpp_acc", "corrupted"}) with floats in the dict."""
        targets = colour_targets(x, self.patch)  # from the [-1, 1] input, before any input_norm
        out, corrupted = self.encode(x, generator)
        logits = self.mpp_head(out[:, self.vit.num_prefix_tokens:][corrupted])  # (M, 512)
        y = targets[corrupted]
        loss = F.cross_entropy(logits.float(), y)
        acc, frac = torch.stack([(logits.argmax(-1) == y).float().mean(), corrupted.float().mean()]).tolist()
        return loss, {"mpp_acc": acc, "corrupted": frac}


def backbone_state_dict(module: torch.nn.Module) -> dict:
    """The wrapped ViT's weights without mask_token, mpp_head and the ViT's own classification head:
    what `vit.models.load_pretrained` copies (it tolerates the absent head keys and zero-initialises
    the new head). Accepts the MPP wrapper or a plain ViT."""
    vit = module.vit if isinstance(module, MaskedPatchPrediction) else module
    head = next(n for n, m in vit.named_modules() if m is vit.get_classifier())
    return {k: v for k, v in vit.state_dict().items() if not k.startswith(head + ".")}
