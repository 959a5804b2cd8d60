"""Evaluation: top-1 of a model on a split, and the VTAB-style aggregate over fine-tuned runs.

    python -m vit.evaluate.collect --out=results/eval results/finetune/*/*/runs.json     # aggregate
    python -m vit.evaluate.collect --checkpoint=<run>/checkpoint.pt --data=results/data/digits --split=test

The fine-tuning loop scores every run on its test split with `evaluate()` as it finishes (so weights
need not be stored for each of the grid's runs); this stage gathers those scores into one row per run
and adds the VTAB-1k aggregate: the mean over tasks, and per group (Natural, Specialized, Structured).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from vit import cli
from vit.logs import write_parquet


@torch.no_grad()
def evaluate(model, x, y, batch_size: int = 500, device="cpu", real_names: list[str] | None = None) -> dict:
    """Top-1 accuracy (%) and mean cross-entropy over uint8 images `x` (N,C,H,W) and labels `y`.
    With `real_names` (ImageNet val file names) also ImageNet ReaL top-1 (Beyer et al. 2020)."""
    from vit.data import normalize

    model.eval()
    correct, loss_sum, predictions = 0, 0.0, []
    for i in range(0, len(x), batch_size):
        xb, yb = normalize(x[i:i + batch_size]).to(device), y[i:i + batch_size].to(device)
        logits = model(xb).float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
        correct += (logits.argmax(-1) == yb).sum().item()
        predictions.append(logits.argmax(-1).cpu())
    result = {"top1": 100.0 * correct / len(x), "loss": loss_sum / len(x), "n": len(x)}
    if real_names is not None:
        from vit.data.sources import real_top1

        result.update(real_top1(torch.cat(predictions), real_names))
    return result


@dataclass
class Config:
    out: str = ""                 # aggregate mode: output folder (runs.parquet, vtab.parquet)
    checkpoint: str = ""          # single mode: a checkpoint.pt written by vit.train
    data: str = ""                # single mode: prepared dataset directory
    split: str = "test"
    inputs: list = field(default_factory=list)  # aggregate mode: runs.json files (positional arguments)


def run_rows(runs_files: list[str]):
    """One row per fine-tuned run from the runs.json files that vit.train.finetune writes."""
    import pandas as pd

    from vit.logs import read_json

    rows = []
    for path in runs_files:
        for s in read_json(path):
            c = s["config"]
            score = s["eval"][c["test_split"]]  # the run's held-out split (test; val200 in a VTAB sweep)
            rows.append({
                "model": s["model"], "upstream": s["upstream"], "task": s["task"], "group": s["group"],
                "resolution": c["img_size"], "seed": c["seed"], "top1": score["top1"],
                "real_top1": score.get("real_top1", float("nan")),  # ImageNet val only (ReaL labels)
                "test_loss": score["loss"], "n_test": score["n"], "test_split": c["test_split"],
                "num_classes": s["num_classes"],
                "steps": s["steps"], "train_time_s": s["train_time_s"],
                "train_flops_per_img": s["train_flops_per_img"], "images_seen": s["images_seen"],
                "posemb_resampled": bool(s["init"].get("posemb_resampled", False)),
                "posemb_interp": s["init"].get("posemb_interp", ""), "config_hash": s["config_hash"],
                "run_dir": c["out"], **provenance(s),
            })
    return pd.DataFrame(rows)


PACKAGES = ("python", "torch", "torchvision", "timm", "numpy")


def provenance(s: dict) -> dict:
    """What produced a run's number, from its record (vit.train's summary): the prepared dataset's content
    hash (over its manifest's file hashes), the hash of the splits it trained and was scored on, the
    initial checkpoint's sha256, package versions, precision, preprocessing and the code's git commit."""
    import hashlib
    import json

    from vit.data import parse_part, split_files

    def digest(obj) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]

    c, files, env = s["config"], s["dataset_files"], s["env"]
    names = {parse_part(p)[0] for p in c["train_split"].split("+")} | {c["test_split"]}
    used = {f: files.get(f) for n in sorted(names) for f in split_files(n)}
    prep = f"augment {c['augment']}" + (f", MixUp {c['mixup']}" if c.get("mixup") else "")
    return {
        "dataset_hash": digest(files),
        # the split strings carry their slices (train[:98%]), the file hashes their content
        "split_hash": digest({"train": c["train_split"], "test": c["test_split"], "files": used}),
        "checkpoint_sha256": s["init"].get("init_sha256", "") if c.get("init") else "none (from scratch)",
        "packages": ", ".join(f"{k} {env[k]}" for k in PACKAGES if k in env),
        "precision": s.get("precision") or ("fp32" if env.get("device", "cpu") == "cpu" else "bf16 autocast"),
        "preprocessing": f"{prep}; resized to {c['img_size']} px (bilinear, antialiased); pixels in [-1, 1]",
        "git_commit": env.get("git_commit", "unknown"),
    }


def vtab_aggregate(runs):
    """Per (model, upstream, resolution, seed): mean top-1 over all tasks and within each group."""
    import pandas as pd

    keys = ["model", "upstream", "resolution", "seed"]
    overall = runs.groupby(keys)["top1"].agg(["mean", "size"]).reset_index()
    overall = overall.rename(columns={"mean": "top1", "size": "n_tasks"}).assign(group="all")
    groups = runs.groupby(keys + ["group"])["top1"].agg(["mean", "size"]).reset_index()
    groups = groups.rename(columns={"mean": "top1", "size": "n_tasks"})
    return pd.concat([overall, groups], ignore_index=True)


def aggregate(cfg: Config) -> None:
    if not cfg.inputs:
        raise cli.ConfigError("aggregate mode needs runs.json files as positional arguments")
    runs = run_rows(cfg.inputs)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "runs.parquet", runs)
    vtab = vtab_aggregate(runs)
    write_parquet(out / "vtab.parquet", vtab)
    print(f"{len(runs)} fine-tuned runs -> {out / 'runs.parquet'}; VTAB-style aggregate -> {out / 'vtab.parquet'}")
    print(vtab[vtab.group == "all"].groupby(["model", "upstream", "resolution"])["top1"].mean().round(2)
          .to_string())


def score_checkpoint(cfg: Config) -> dict:
    from vit import data, models
    from vit.logs import write_json

    ckpt = torch.load(cfg.checkpoint, map_location="cpu", weights_only=False)
    model = models.create(ckpt["model_args"], ckpt["num_classes"], ckpt["img_size"])
    model.load_state_dict(ckpt["model"])
    xs, ys, _ = data.load_split(cfg.data, cfg.split)
    result = evaluate(model, data.to_tensor(xs, ckpt["img_size"]), torch.from_numpy(ys))
    print(result)
    if cfg.out:
        write_json(cfg.out, result)
    return result


def main(cfg: Config):
    return score_checkpoint(cfg) if cfg.checkpoint else aggregate(cfg)


if __name__ == "__main__":
    cli.main_guard(main, Config)
