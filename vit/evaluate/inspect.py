"""What the ViT learned (paper sec. 4.5, Fig. 6 and 7), computed from a trained checkpoint.

    python -m vit.evaluate.inspect --checkpoint=results/pretrain/vit/shapes_l/checkpoint.pt --data=results/data/shapes_l \
        --split=val --out=results/inspect/vit/shapes_l --images=128 --samples=8 --threads=1

Writes `inspect.npz` (arrays for the figures in vit.report.plots) and `inspect.json` (summary numbers):
  attention rollout  Fig. 6 / App. D.8: class-token attention to the patches, through all layers
  filters            Fig. 7 left: principal components of the patch-embedding filters
  posemb similarity  Fig. 7 centre: cosine similarity between position embeddings, plus statistics
                     for the claim that they learn the 2D grid
  attention distance Fig. 7 right: attention-weighted pixel distance per layer and head (App. D.7)
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vit import cli
from vit import data, models
from vit.logs import atomic_write_bytes, environment, write_json


# ----------------------------------------------------------------------------- attention probabilities
def attention_probs(attn: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention (B, heads, N, N) of a timm `Attention` on its input x (B, N, D), re-done from
    its own qkv, q_norm, k_norm and scale: the fused (SDPA) path never materialises it.
    tests/test_inspect.py checks that probs @ v reproduces the module's output."""
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


@torch.no_grad()
def layer_attentions(model, x: torch.Tensor, reduce=None) -> list[torch.Tensor]:
    """`reduce(probs)` of every block's attention for one forward pass of normalised images x.
    Each layer is reduced as it is computed, so a deep model never holds all layers' maps at once."""
    out = []

    def hook(module, args, kwargs, output):
        if kwargs.get("attn_mask") is not None or kwargs.get("is_causal"):
            raise RuntimeError("inspection expects unmasked self-attention")
        probs = attention_probs(module, args[0])
        out.append(reduce(probs) if reduce is not None else probs)

    handles = [blk.attn.register_forward_hook(hook, with_kwargs=True) for blk in model.blocks]
    try:
        model(x)  # the whole forward, so an input_norm pre-hook (vit.models.create) applies
    finally:
        for h in handles:
            h.remove()
    return out


# ----------------------------------------------------------------------------- Fig. 6: rollout
def rollout(head_means: list[torch.Tensor], residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): the product over layers of (B, N, N) head-averaged
    attention. With `residual` the identity is added for the skip connection and rows renormalised,
    (A + I) / 2, as Abnar & Zuidema do; whether the paper did so is uncertain (reference.yaml marks
    attention_rollout.residual_identity_added uncertain), hence the switch. Rows sum to 1."""
    joint = None
    for a in head_means:
        if residual:
            a = a + torch.eye(a.shape[-1], dtype=a.dtype)
            a = a / a.sum(-1, keepdim=True)
        joint = a if joint is None else a @ joint  # later layers act on what earlier ones mixed
    return joint


def rollout_maps(joint: torch.Tensor, grid, img_size: int, prefix: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """The class-token row over the patches: (B, gh, gw) on the patch grid and (B, H, W) upsampled."""
    maps = joint[:, 0, prefix:].reshape(-1, *grid)
    up = F.interpolate(maps[:, None], size=(img_size, img_size), mode="bilinear", align_corners=False)[:, 0]
    return maps, up


# ----------------------------------------------------------------------------- Fig. 7 right: distance
def patch_distances(grid, patch) -> torch.Tensor:
    """(P, P) Euclidean distance in pixels between patch centres, at the model's input resolution."""
    gh, gw = grid
    ph, pw = patch
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    centres = torch.stack([(rows.flatten() + 0.5) * ph, (cols.flatten() + 0.5) * pw], -1).double()
    return torch.cdist(centres, centres)


def uniform_distance(dist: torch.Tensor) -> float:
    """The distance a head would get by attending uniformly to every patch: the reference for "global"."""
    return dist.mean().item()


def attention_distance(probs: torch.Tensor, dist: torch.Tensor, prefix: int = 1) -> torch.Tensor:
    """Mean attention distance (B, heads) in pixels: for each patch query, sum_k attn[q,k] * dist(q,k)
    over patch keys, averaged over the patch queries. The class token has no position, so its share is
    dropped and the weights renormalised over the patches; the query itself counts at distance 0 (it
    is part of the attended area, and uniform attention then gives `uniform_distance`)."""
    a = probs[..., prefix:, prefix:].double()
    a = a / a.sum(-1, keepdim=True)
    return (a * dist).sum(-1).mean(-1)


# ----------------------------------------------------------------------------- Fig. 7 left / centre
def embedding_filters(weight: torch.Tensor, k: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """The first k principal components of the (D, C, P, P) patch-embedding filters, seen as D vectors
    of length C*P*P: components (k, C, P, P) and the fraction of variance each explains."""
    w = weight.detach().double().flatten(1)
    w = w - w.mean(0, keepdim=True)
    _, s, vt = torch.linalg.svd(w, full_matrices=False)
    k = min(k, vt.shape[0])
    var = s**2 / (s**2).sum()
    return vt[:k].reshape(k, *weight.shape[1:]).float(), var[:k].float()


def posemb_similarity(posemb: torch.Tensor, grid) -> torch.Tensor:
    """(gh, gw, gh, gw) cosine similarity between the position embeddings (P, D) of the patches."""
    e = F.normalize(posemb.detach().double(), dim=-1)
    return (e @ e.T).reshape(*grid, *grid)


PERMUTATIONS = 500  # Mantel test: the statistics' spread when the patches' grid positions are shuffled


def _grid_contrasts(s: np.ndarray, neighbour: np.ndarray, line: np.ndarray, pair: np.ndarray) -> tuple[float, float]:
    """Mean similarity of 4-neighbours minus the other pairs', and of same-row-or-column pairs minus the rest."""
    return (float(s[neighbour].mean() - s[pair & ~neighbour].mean()), float(s[line].mean() - s[pair & ~line].mean()))


def posemb_stats(sim: torch.Tensor) -> dict:
    """Is the 2D grid in the embeddings? Mean similarity of 4-neighbours vs the other pairs, of pairs in
    the same row or column vs pairs sharing neither, and the rank (Spearman; also Pearson) correlation
    of similarity with grid distance over all unordered pairs (negative when near patches look alike).
    The pairs are not independent (each patch is in P - 1 of them), so each statistic is tested as a Mantel
    test does: against its values when the patches are reassigned to grid positions at random
    (PERMUTATIONS, fixed seed). `p` holds each one-sided p-value in the claimed direction (neighbours and
    lines more similar, the correlation negative), `p_against` the opposite's."""
    from scipy.stats import pearsonr, rankdata, spearmanr

    from vit.evaluate.nulls import permutation_p

    gh, gw = sim.shape[:2]
    s = sim.reshape(gh * gw, gh * gw).numpy()
    r, c = np.divmod(np.arange(gh * gw), gw)
    dr, dc = np.abs(r[:, None] - r[None]), np.abs(c[:, None] - c[None])
    pair = ~np.eye(gh * gw, dtype=bool)
    neighbour = (dr + dc) == 1
    line = ((dr == 0) | (dc == 0)) & pair
    upper = np.triu(pair)  # each unordered pair once
    dist = np.hypot(dr, dc)[upper]
    rng, dist_rank = np.random.default_rng(0), rankdata(dist)
    null = []
    for _ in range(PERMUTATIONS):  # Spearman = Pearson of ranks: the similarities move with the patches
        perm = rng.permutation(gh * gw)
        sp = s[np.ix_(perm, perm)]
        null.append((*_grid_contrasts(sp, neighbour, line, pair), np.corrcoef(rankdata(sp[upper]), dist_rank)[0, 1]))
    null = np.nan_to_num(np.array(null))
    near, lines = _grid_contrasts(s, neighbour, line, pair)
    corr = float(spearmanr(s[upper], dist).statistic)
    observed = {"neighbour": near, "line": lines, "distance": -corr}  # each larger in the claimed direction
    nulls = {"neighbour": null[:, 0], "line": null[:, 1], "distance": -null[:, 2]}
    return {"neighbour": float(s[neighbour].mean()), "other": float(s[pair & ~neighbour].mean()),
            "same_row_or_col": float(s[line].mean()), "neither": float(s[pair & ~line].mean()),
            "distance_corr": corr, "distance_corr_null_sd": float(np.std(null[:, 2])),
            "distance_corr_pearson": float(pearsonr(s[upper], dist).statistic), "pairs": int(upper.sum()),
            "permutations": PERMUTATIONS,
            "p": {k: permutation_p(observed[k], nulls[k]) for k in observed},
            "p_against": {k: permutation_p(-observed[k], -nulls[k]) for k in observed}}


UNTRAINED = 40  # random initialisations behind the untrained-network null of the attention distances


def mean_distances(model, xs: np.ndarray, img_size: int, dist: torch.Tensor, prefix: int, batch_size: int) -> torch.Tensor:
    """(layers, heads) mean attention distance of `model` over the images xs."""
    total = None
    for i in range(0, len(xs), batch_size):
        xb = data.normalize(data.to_tensor(xs[i:i + batch_size], img_size))
        per_layer = torch.stack(layer_attentions(model, xb, reduce=lambda a: attention_distance(a, dist, prefix).sum(0)))
        total = per_layer if total is None else total + per_layer
    return (total / len(xs)).float()


def untrained_distances(ckpt: dict, xs: np.ndarray, dist: torch.Tensor, prefix: int, batch_size: int,
                        n: int = UNTRAINED) -> np.ndarray:
    """(n, 1, heads): the first layer's mean attention distances of the same architecture at n random
    initialisations (seeds 0..n-1), on the same images: the null for claim (e), what a network that learned
    nothing attends to in its lowest layer. Only the first block runs (the claim's null reads layer 1)."""
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        model = models.create(ckpt["model_args"], ckpt["num_classes"], ckpt["img_size"]).eval()
        model.blocks = model.blocks[:1]
        out.append(mean_distances(model, xs, ckpt["img_size"], dist, prefix, batch_size).numpy())
    return np.stack(out)


# ----------------------------------------------------------------------------- the stage
@dataclass
class Config:
    checkpoint: str = ""          # a ViT checkpoint.pt written by vit.train (or vit.models.weights)
    data: str = ""                # prepared dataset directory
    split: str = "val"
    out: str = ""                 # folder for inspect.npz and inspect.json
    images: int = 128             # images for the attention distance (paper App. D.7: 128)
    samples: int = 8              # images shown with their rollout maps (Fig. 6)
    components: int = 28          # principal components of the patch-embedding filters (Fig. 7 left: 28)
    batch_size: int = 64          # bounds the memory of the attention maps
    untrained_images: int = 16    # images for the untrained networks' distances (claim e's null; fewer
                                  # images widen the null: conservative, and 4x cheaper than 64 at 224 px)
    threads: int = 0              # torch CPU threads (0 = leave torch's default)


def load_vit(path: str):
    """The checkpoint's model in eval mode on CPU; a clear error for a convnet checkpoint."""
    ckpt = models.load_checkpoint(path)
    model = models.create(ckpt["model_args"], ckpt["num_classes"], ckpt["img_size"])
    if models.is_convnet(model) or not hasattr(model, "blocks"):
        raise cli.ConfigError(f"{path}: holds a {type(model).__name__} without position embeddings; "
                              f"inspection (attention, position embeddings) needs a ViT checkpoint")
    if not all(hasattr(blk.attn, "qkv") for blk in model.blocks):
        raise cli.ConfigError(f"{path}: blocks without a timm Attention (qkv) module; cannot read attention")
    model.load_state_dict(ckpt["model"])
    return models.to_device(model, torch.device("cpu")).eval(), ckpt


def pick(n_total: int, n: int) -> np.ndarray:
    """n rows spread evenly over the split: prepared splits may be stored in class order."""
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(int))


def inspect(cfg: Config) -> dict:
    from tqdm import tqdm

    if not (cfg.checkpoint and cfg.data and cfg.out):
        raise cli.ConfigError("--checkpoint, --data and --out are required")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model, ckpt = load_vit(cfg.checkpoint)
    img_size, grid = ckpt["img_size"], tuple(model.patch_embed.grid_size)
    patch, prefix = tuple(model.patch_embed.patch_size), model.num_prefix_tokens
    xs, ys, _ = data.load_split(cfg.data, cfg.split)

    # ---------------------------------------------------------------- Fig. 6: rollout on a few images
    rows = pick(len(xs), cfg.samples)
    shown = data.to_tensor(xs[rows], img_size)
    head_means = layer_attentions(model, data.normalize(shown.clone()), reduce=lambda a: a.mean(1))
    grid_maps, maps = rollout_maps(rollout(head_means), grid, img_size, prefix)

    # ---------------------------------------------------------------- Fig. 7 right: attention distance
    dist = patch_distances(grid, patch)
    used = pick(len(xs), cfg.images)
    with tqdm(total=1 + UNTRAINED, desc="attention distance (trained, then untrained)", unit="net", mininterval=2) as bar:
        mean_dist = mean_distances(model, xs[used], img_size, dist, prefix, cfg.batch_size)  # (layers, heads)
        bar.update()
        untrained = untrained_distances(ckpt, xs[pick(len(xs), cfg.untrained_images)], dist, prefix, cfg.batch_size)
        bar.update(UNTRAINED)

    # ---------------------------------------------------------------- Fig. 7 left / centre: weights
    filters, variance = embedding_filters(model.patch_embed.proj.weight, cfg.components)
    pe = model.pos_embed[0]
    sim = posemb_similarity(pe[pe.shape[0] - grid[0] * grid[1]:], grid)  # prefix rows (class token) dropped
    stats = posemb_stats(sim)

    # ---------------------------------------------------------------- files
    arrays = {"images": shown.permute(0, 2, 3, 1).numpy(), "labels": ys[rows], "sample_index": rows,
              "rollout": maps.float().numpy(), "rollout_grid": grid_maps.float().numpy(),
              "filters": filters.numpy(), "filter_variance": variance.numpy(),
              "posemb_similarity": sim.float().numpy(), "attention_distance": mean_dist.numpy(),
              "uniform_distance": np.float32(uniform_distance(dist)), "grid_size": np.array(grid),
              "patch_size": np.array(patch), "img_size": np.int64(img_size)}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    out = Path(cfg.out)
    atomic_write_bytes(out / "inspect.npz", buf.getvalue())
    summary = {
        "checkpoint": cfg.checkpoint, "data": cfg.data, "split": cfg.split, "images": len(used),
        "samples": len(rows), "model_args": ckpt["model_args"], "img_size": img_size, "grid_size": list(grid),
        "patch_size": list(patch), "layers": mean_dist.shape[0], "heads": mean_dist.shape[1],
        "posemb": stats,  # mean cosine similarities and correlations, `posemb_stats`
        "distance": mean_dist.tolist(),  # (layers, heads) mean attention distance, pixels
        "uniform_distance": float(arrays["uniform_distance"]),
        # (inits, 1, heads): layer 1 of the architecture at UNTRAINED random initialisations, claim (e)'s null
        "untrained_distance": untrained.tolist(), "untrained_images": len(pick(len(xs), cfg.untrained_images)),
        "distance_per_layer": [{"layer": i, "mean": float(d.mean()), "min": float(d.min()), "max": float(d.max())}
                               for i, d in enumerate(mean_dist)],
        "filters": {"components": len(variance), "variance_fraction": [round(float(v), 6) for v in variance]},
        "environment": environment(),
    }
    write_json(out / "inspect.json", summary)
    print(f"{len(used)} images, {summary['layers']} layers x {summary['heads']} heads -> {out}; "
          f"posemb neighbour {stats['neighbour']:.3f} vs other {stats['other']:.3f}, "
          f"spearman(sim, distance) {stats['distance_corr']:.3f}")
    return summary


def main(cfg: Config):
    return inspect(cfg)


if __name__ == "__main__":
    cli.main_guard(main, Config)
