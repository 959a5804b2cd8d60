"""Few-shot linear evaluation of frozen pre-trained features (paper sec. 4.1; big_vision's fewshot_lsr).

    python -m vit.evaluate.fewshot --checkpoint=results/pretrain/vit/shapes_l/checkpoint.pt \
        --data=results/data/digits,results/data/cifar10 --out=results/fewshot/vit/shapes_l.json

For each dataset: the pre-logits representation of every train and test image is computed once with the
frozen model; then, for every (shots, seed), `shots` training images per class are drawn, a regularised
least-squares classifier onto {-1, +1} one-vs-rest targets is solved in closed form, and its top-1
accuracy on the whole test split is recorded. Writes {dataset: [{"shots", "seed", "top1", "n_test",
"n_train"}, ...]} as JSON and prints the mean +- std over seeds.

Choices (vit/reference.yaml: fewshot):
  - shots (1, 5, 10, 25) and 3 seeds are big_vision's defaults; the paper reports 5-shot.
  - Regulariser: one fixed L2 strength, `l2_reg` = 2**10, big_vision's default. Not a grid searched on a
    held-out part of the shots: at 1 shot per class there is nothing to hold out, at 5 shots a held-out
    fold of 1 image per class makes the choice noisy, and a fixed value keeps the numbers comparable
    with big_vision's (the 2020 paper does not state its value).
  - Features are standardised with the mean/std of the chosen shots and the bias is left unregularised,
    as big_vision does (it appends a constant-100 column, i.e. a bias regularised 1e4 times less; here it
    is exactly unregularised, which is the same as centring the features and targets).

`fewshot_summary` is the cheap variant for use during pre-training: it computes features only for the
sampled shots and the test images, and returns {"<dataset>/<k>shot": mean top-1 over seeds}.
"""
from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vit import cli
from vit import data, models
from vit.data import normalize, to_tensor
from vit.logs import write_json
from vit.models import is_convnet

L2_REG = 2.0 ** 10  # big_vision get_fewshot_lsr default (vit/reference.yaml: fewshot)
STD_EPS = 1e-5      # big_vision adds this to the per-dimension std, so constant features do not blow up


# ----------------------------------------------------------------------------- features
@torch.no_grad()
def features(model, images_uint8_nchw, batch_size: int = 500, device="cpu") -> torch.Tensor:
    """(N, D) float32 pre-logits representation of uint8 (N, C, H, W) images; the model is expected on
    `device` already. Runs in eval mode and restores the previous mode, so it is safe mid-training."""
    was_training = model.training
    model.eval()
    channels_last = is_convnet(model)
    out = []
    try:
        for i in range(0, len(images_uint8_nchw), batch_size):
            xb = normalize(images_uint8_nchw[i:i + batch_size]).to(device)
            if channels_last:  # vit.models.to_device puts convnets in channels_last
                xb = xb.contiguous(memory_format=torch.channels_last)
            # timm's pre-logits: the pooled (class-token / global-average) representation after the final
            # norm, i.e. exactly what the classification head sees
            feats = model.forward_head(model.forward_features(xb), pre_logits=True)
            out.append(feats.float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


# ----------------------------------------------------------------------------- closed-form classifier
def ridge_fit(train_x, train_y, num_classes: int, l2_reg: float) -> dict:
    """Least squares onto {-1, +1}^K targets with an L2 penalty on the weights (not the bias), in float64.

    Features are standardised with the training mean/std (big_vision); with an unregularised bias the
    solution is the ridge solution on centred features and centred targets, b = mean(T). The normal
    equations are solved in the smaller of the two spaces: (X^T X + l2 I) W = X^T T when N >= D,
    W = X^T (X X^T + l2 I)^-1 T when D > N (few shots of wide features), which are the same W.
    """
    x = torch.as_tensor(train_x).double()
    y = torch.as_tensor(train_y).long()
    mean = x.mean(0, keepdim=True)
    std = x.std(0, unbiased=False, keepdim=True) + STD_EPS
    xs = (x - mean) / std
    t = 2.0 * torch.nn.functional.one_hot(y, num_classes).double() - 1.0
    bias = t.mean(0)
    tc = t - bias
    n, d = xs.shape
    if n >= d:
        w = torch.linalg.solve(xs.T @ xs + l2_reg * torch.eye(d, dtype=xs.dtype), xs.T @ tc)
    else:
        w = xs.T @ torch.linalg.solve(xs @ xs.T + l2_reg * torch.eye(n, dtype=xs.dtype), tc)
    return {"mean": mean, "std": std, "weight": w, "bias": bias}


def ridge_scores(fit: dict, test_x) -> torch.Tensor:
    """(M, K) float64 one-vs-rest scores of the fitted classifier."""
    x = (torch.as_tensor(test_x).double() - fit["mean"]) / fit["std"]
    return x @ fit["weight"] + fit["bias"]


def fit_predict(train_x, train_y, test_x, num_classes: int, l2_reg: float = L2_REG) -> torch.Tensor:
    """Predicted class indices (M,) for `test_x` from the closed-form classifier fitted on the shots."""
    return ridge_scores(ridge_fit(train_x, train_y, num_classes, l2_reg), test_x).argmax(-1)


# ----------------------------------------------------------------------------- sampling and evaluation
def sample_shots(labels, shots: int, seed: int) -> torch.Tensor:
    """Indices of `shots` examples per class (all of them where a class has fewer), sorted.

    One generator per seed, one permutation per class in class order, first `shots` taken: the draw
    does not depend on `shots`, so for a given seed the 1-shot set is inside the 5-shot set and so on,
    and the curve over shots is not confounded by a different draw at each point.
    """
    labels = torch.as_tensor(labels).long()
    gen = torch.Generator().manual_seed(int(seed))
    chosen = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        chosen.append(idx[torch.randperm(len(idx), generator=gen)[:shots]])
    return torch.sort(torch.cat(chosen)).values if chosen else torch.empty(0, dtype=torch.long)


def _rows(train_labels, train_feats_at, test_feats, test_labels, shots, seeds, l2_reg, num_classes) -> list[dict]:
    """Shared by fewshot_eval (all train features at hand) and fewshot_summary (only the sampled ones)."""
    test_labels = torch.as_tensor(test_labels).long()
    rows = []
    for k in shots:
        for seed in seeds:
            idx = sample_shots(train_labels, k, seed)
            pred = fit_predict(train_feats_at(idx), torch.as_tensor(train_labels).long()[idx], test_feats,
                               num_classes, l2_reg)
            top1 = 100.0 * int((pred == test_labels).sum()) / len(test_labels) if len(test_labels) else math.nan
            rows.append({"shots": int(k), "seed": int(seed), "top1": top1, "n_test": len(test_labels),
                         "n_train": len(idx)})
    return rows


def _num_classes(*label_sets) -> int:
    return int(max(int(torch.as_tensor(y).max()) for y in label_sets if len(y))) + 1


def fewshot_eval(train_feats, train_labels, test_feats, test_labels, shots=(1, 5, 10, 25), seeds=(0, 1, 2),
                 l2_reg: float = L2_REG, num_classes: int | None = None) -> list[dict]:
    """One row per (shots, seed): {"shots", "seed", "top1" (%), "n_test", "n_train" (shots actually used)}."""
    num_classes = num_classes or _num_classes(train_labels, test_labels)
    train_feats = torch.as_tensor(train_feats)
    return _rows(train_labels, lambda idx: train_feats[idx], torch.as_tensor(test_feats), test_labels, shots,
                 seeds, l2_reg, num_classes)


def _as_nchw(images, img_size: int) -> torch.Tensor:
    """uint8 (N,H,W,3) numpy (prepared-data layout) or (N,C,H,W) tensor -> uint8 (N,C,img_size,img_size)."""
    if isinstance(images, torch.Tensor):
        if images.shape[-1] == img_size and images.shape[-2] == img_size:
            return images
        return to_tensor(images.permute(0, 2, 3, 1).numpy(), img_size)
    return to_tensor(np.asarray(images), img_size)


def fewshot_summary(model, datasets: dict, img_size: int, shots=(5,), seeds=(0,), l2_reg: float = L2_REG,
                    batch_size: int = 500, device="cpu", num_classes: dict | None = None) -> dict[str, float]:
    """Cheap on-the-fly few-shot evaluation, e.g. every N pre-training steps.

    datasets: {name: (train_x, train_y, test_x, test_y)}, images uint8 as (N,H,W,3) numpy or (N,C,H,W)
    tensors. Pass tensors already at `img_size` (and a test subset, if the test split is large): then
    nothing is resized per call. Only the sampled shots' features are computed, not the whole train set.
    Returns {"<name>/<k>shot": mean top-1 (%) over seeds}; the model's train/eval mode is preserved.
    """
    out = {}
    for name, (train_x, train_y, test_x, test_y) in datasets.items():
        train_y, test_y = torch.as_tensor(train_y).long(), torch.as_tensor(test_y).long()
        union = torch.unique(torch.cat([sample_shots(train_y, k, s) for k in shots for s in seeds]))
        pos = torch.full((len(train_y),), -1, dtype=torch.long)
        pos[union] = torch.arange(len(union))
        train_f = features(model, _as_nchw(train_x[union.numpy()] if isinstance(train_x, np.ndarray)
                                           else train_x[union], img_size), batch_size, device)
        test_f = features(model, _as_nchw(test_x, img_size), batch_size, device)
        k_classes = (num_classes or {}).get(name) or _num_classes(train_y, test_y)
        rows = _rows(train_y, lambda idx: train_f[pos[idx]], test_f, test_y, shots, seeds, l2_reg, k_classes)
        for k in shots:
            out[f"{name}/{k}shot"] = float(np.mean([r["top1"] for r in rows if r["shots"] == k]))
    return out


# ----------------------------------------------------------------------------- stage
@dataclass
class Config:
    checkpoint: str = ""            # checkpoint.pt written by vit.train (pre-training)
    data: str = ""                  # prepared dataset dir(s): one, comma-separated, or a list literal
    train_split: str = "train"      # where the shots are drawn from
    test_split: str = "test"        # scored in full
    shots: list = field(default_factory=lambda: [1, 5, 10, 25])  # big_vision defaults; paper reports 5
    seeds: list = field(default_factory=lambda: [0, 1, 2])       # which examples are the shots
    img_size: int = 0               # evaluation resolution (0 = the checkpoint's)
    l2_reg: float = L2_REG          # ridge strength on standardised features (big_vision: 2**10)
    posemb_interp: str = "bicubic"  # position-embedding resampling when img_size differs from training
    batch_size: int = 500
    threads: int = 0                # torch CPU threads (0 = torch's default)
    out: str = ""                   # JSON path


def data_dirs(data) -> list[str]:
    """`--data` as a list: accepts a list, a list literal ("[...]" as cli.render writes it), or a
    comma-separated string (the typed CLI cannot parse a bare path as a list literal)."""
    if isinstance(data, (list, tuple)):
        return [str(d) for d in data]
    text = str(data).strip()
    if text.startswith("["):
        return [str(d) for d in ast.literal_eval(text)]
    return [d.strip() for d in text.split(",") if d.strip()]


def load_model(checkpoint: str, img_size: int = 0, interp: str = "bicubic"):
    """The checkpoint's model (its own head kept: pre-logits do not depend on it) at `img_size`, with
    the ViT position embeddings resampled in 2D when the grid changes (paper sec. 3.2)."""
    ckpt = models.load_checkpoint(checkpoint)
    img_size = img_size or ckpt["img_size"]
    model = models.create(ckpt["model_args"], ckpt["num_classes"], img_size)
    state = dict(ckpt["model"])
    new_grid = models.grid_size(model)
    if new_grid is not None and "pos_embed" in state and ckpt.get("grid_size") is not None:
        state["pos_embed"] = models.resample_pos_embed(state["pos_embed"], ckpt["grid_size"], new_grid,
                                                       getattr(model, "num_prefix_tokens", 1), interp)
    model.load_state_dict(state)
    return model, img_size


def run(cfg: Config) -> dict:
    dirs = data_dirs(cfg.data)
    if not cfg.checkpoint or not dirs or not cfg.out:
        raise cli.ConfigError("--checkpoint, --data and --out are required")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, img_size = load_model(cfg.checkpoint, cfg.img_size, cfg.posemb_interp)
    model = models.to_device(model, device)

    results = {}
    for d in dirs:
        xs, ys, manifest = data.load_split(d, cfg.train_split)
        xt, yt, _ = data.load_split(d, cfg.test_split)
        # every (shots, seed) reuses the same features: the expensive part is done once per split
        train_f = features(model, data.to_tensor(xs, img_size), cfg.batch_size, device)
        test_f = features(model, data.to_tensor(xt, img_size), cfg.batch_size, device)
        name = manifest.get("name") or Path(d).name
        results[name] = fewshot_eval(train_f, ys, test_f, yt, cfg.shots, cfg.seeds, cfg.l2_reg,
                                     num_classes=manifest.get("num_classes"))
    write_json(cfg.out, results)
    _print_table(results)
    return results


def _print_table(results: dict) -> None:
    print(f"{'dataset':<20} {'shots':>5} {'top1 mean':>10} {'std':>6} {'seeds':>5}")
    for name, rows in results.items():
        for k in dict.fromkeys(r["shots"] for r in rows):
            acc = [r["top1"] for r in rows if r["shots"] == k]
            print(f"{name:<20} {k:>5} {np.mean(acc):>10.2f} {np.std(acc):>6.2f} {len(acc):>5}")


if __name__ == "__main__":
    cli.main_guard(run, Config)
