"""Top-1 of a model on a split: `evaluate()` scores every run as the training loop finishes it (so weights
need not be stored for each of the grid's runs); run as a stage it scores one checkpoint.

    python -m vit.evaluate.classify --checkpoint=<run>/checkpoint.pt --data=results/data/digits --split=test
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vit import cli, data, models
from vit.data.sources import real_top1
from vit.logs import write_json


@dataclass
class Config:
    checkpoint: str = ""          # a checkpoint.pt written by vit.train
    data: str = ""                # prepared dataset directory
    split: str = "test"
    out: str = ""                 # optional: the result as JSON


@torch.no_grad()
def evaluate(model, x, y, batch_size: int = 500, device="cpu", real_names: list[str] | None = None) -> dict:
    """Top-1 accuracy (%) and mean cross-entropy over uint8 images `x` (N,C,H,W) and labels `y`.
    With `real_names` (ImageNet val file names) also ImageNet ReaL top-1 (Beyer et al. 2020)."""
    model.eval()
    correct, loss_sum, predictions = 0, 0.0, []
    for i in range(0, len(x), batch_size):
        xb, yb = data.normalize(x[i:i + batch_size]).to(device), y[i:i + batch_size].to(device)
        logits = model(xb).float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(-1) == yb).sum().item()
        predictions.append(logits.argmax(-1).cpu())
    result = {"top1": 100.0 * correct / len(x), "loss": loss_sum / len(x), "n": len(x)}
    if real_names is not None:
        result.update(real_top1(torch.cat(predictions), real_names))
    return result


def score_checkpoint(cfg: Config) -> dict:
    if not (cfg.checkpoint and cfg.data):
        raise cli.ConfigError("--checkpoint and --data are required")
    ckpt = models.load_checkpoint(cfg.checkpoint)
    model = models.create(ckpt["model_args"], ckpt["num_classes"], ckpt["img_size"])
    model.load_state_dict(ckpt["model"])
    xs, ys, _ = data.load_split(cfg.data, cfg.split)
    # a sharded store or a split larger than memory is decoded batch by batch (data.images)
    result = evaluate(model, data.images(xs, ckpt["img_size"], 8.0), torch.from_numpy(ys))
    print(result)
    if cfg.out:
        write_json(cfg.out, result)
    return result


if __name__ == "__main__":
    cli.main_guard(score_checkpoint, Config)
