"""What a run scores: its validation and test splits, and 5-shot linear probes (paper sec. 4.1) on
other datasets, loaded once at the training resolution."""
from __future__ import annotations

from pathlib import Path

import torch

from vit import data
from vit.data import read_manifest
from vit.evaluate import fewshot
from vit.evaluate.classify import evaluate
from vit.train.config import Config


def fewshot_sets(cfg: Config) -> dict:
    """Few-shot datasets: shots from train(+val), a test subset of cfg.fewshot_test images."""
    sets = {}
    for path in cfg.fewshot:
        xs, ys, m = data.load_split(path, "+".join(s for s in ("train", "val") if s in read_manifest(path)["splits"]))
        xt, yt, _ = data.load_split(path, "test")
        xt, yt = xt[:cfg.fewshot_test], yt[:cfg.fewshot_test]
        sets[m["name"]] = (data.to_tensor(xs, cfg.img_size), torch.from_numpy(ys), data.to_tensor(xt, cfg.img_size),
                           torch.from_numpy(yt))
    return sets


def split(model: torch.nn.Module, cfg: Config, name: str, dev: torch.device) -> dict:
    """Top-1 and loss on split `name` of the training dataset; ImageNet's val also with ReaL labels."""
    xs, ys, manifest = data.load_split(cfg.data, name)
    names = None
    if manifest["source"] == "imagenet" and f"{name}_names.txt" in manifest["files"]:
        data.verify(cfg.data, [f"{name}_names.txt"], manifest)
        names = (Path(cfg.data) / f"{name}_names.txt").read_text().split()
    return evaluate(model, data.images(xs, cfg.img_size, cfg.memory_gb), torch.from_numpy(ys), cfg.eval_batch_size,
                    dev, real_names=names)


def probes(model: torch.nn.Module, sets: dict, cfg: Config, dev: torch.device) -> dict:
    return fewshot.fewshot_summary(model, sets, cfg.img_size, device=dev)
