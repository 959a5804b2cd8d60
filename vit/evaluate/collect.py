"""The aggregate stage: one row per fine-tuned run, and the VTAB-style aggregate over them.

    python -m vit.evaluate.collect --out=results/eval results/finetune/*/*/runs.json

The fine-tuning loop scores every run on its test split as it finishes (vit.evaluate.classify); this
stage gathers those scores into one row per run (runs.parquet) and adds the VTAB-1k aggregate
(vtab.parquet): the mean over tasks, and per group (Natural, Specialized, Structured).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vit import cli
from vit.data import parse_part, split_files
from vit.errors import DataError
from vit.logs import read_json, redo, write_parquet

PACKAGES = ("python", "torch", "torchvision", "timm", "numpy")


@dataclass
class Config:
    out: str = ""                 # output folder (runs.parquet, vtab.parquet)
    inputs: list = field(default_factory=list)  # runs.json files (positional arguments)


def read_runs(path: str | Path) -> list[dict]:
    """A runs.json: vit.train.finetune's list of run summaries. A damaged one is a DataError that names it
    (rewriting it is cheap: the fine-tuning job skips the runs that finished)."""
    fix = redo(path)
    runs = read_json(path, fix, list)
    if not all(isinstance(s, dict) and "config" in s for s in runs):
        raise DataError(f"{path}: damaged or not the file expected (not a list of run summaries); {fix}")
    return runs


def run_rows(runs_files: list[str]) -> pd.DataFrame:
    """One row per fine-tuned run from the runs.json files that vit.train.finetune writes."""
    rows = []
    for path in runs_files:
        for s in read_runs(path):
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


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def provenance(s: dict) -> dict:
    """What produced a run's number, from its record (vit.train's summary): the prepared dataset's content
    hash (over its manifest's file hashes), the hash of the splits it trained and was scored on, the
    initial checkpoint's sha256, package versions, the step's form and the machine's kind, preprocessing and
    the code's git commit."""
    c, files, env = s["config"], s["dataset_files"], s["env"]
    names = {parse_part(p)[0] for p in c["train_split"].split("+")} | {c["test_split"]}
    used = {f: files.get(f) for n in sorted(names) for f in split_files(n)}
    prep = f"augment {c['augment']}" + (f", MixUp {c['mixup']}" if c.get("mixup") else "")
    return {
        "dataset_hash": _digest(files),
        # the split strings carry their slices (train[:98%]), the file hashes their content
        "split_hash": _digest({"train": c["train_split"], "test": c["test_split"], "files": used}),
        "checkpoint_sha256": s["init"].get("init_sha256", "") if c.get("init") else "none (from scratch)",
        "packages": ", ".join(f"{k} {env[k]}" for k in PACKAGES if k in env),
        "precision": s.get("precision") or ("fp32" if env.get("device", "cpu") == "cpu" else "bf16 autocast"),
        "form": form_of(s), "machine": machine_of(env),
        "preprocessing": f"{prep}; resized to {c['img_size']} px (bilinear, antialiased); pixels in [-1, 1]",
        "git_commit": env.get("git_commit", "unknown"),
    }


def form_of(s: dict) -> str:
    """A run's step form, precision/attention (vit.train.forms), from its summary (released weights: none)."""
    if s.get("form"):
        return s["form"]
    if "precision" not in s:
        return "not trained here"
    precision = "bf16" if str(s.get("precision", "fp32")).startswith("bf16") else "fp32"
    return f"{precision}/{s.get('attention') or 'conv'}"


def machine_of(env: dict) -> str:
    """The kind of machine a run trained on: its GPU, or its CPU model and vector units. Numbers from
    machines of different kinds differ by more than rounding once training amplifies it (docs/forms.md)."""
    device = env.get("device", "cpu")
    return device if device != "cpu" else env.get("cpu_model") or env.get("processor") or "unknown CPU"


def vtab_aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (model, upstream, resolution, seed): mean top-1 over all tasks and within each group."""
    keys = ["model", "upstream", "resolution", "seed"]
    overall = runs.groupby(keys)["top1"].agg(["mean", "size"]).reset_index()
    overall = overall.rename(columns={"mean": "top1", "size": "n_tasks"}).assign(group="all")
    groups = runs.groupby(keys + ["group"])["top1"].agg(["mean", "size"]).reset_index()
    groups = groups.rename(columns={"mean": "top1", "size": "n_tasks"})
    return pd.concat([overall, groups], ignore_index=True)


def aggregate(cfg: Config) -> None:
    if not cfg.inputs:
        raise cli.ConfigError("needs runs.json files as positional arguments")
    runs = run_rows(cfg.inputs)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "runs.parquet", runs)
    vtab = vtab_aggregate(runs)
    write_parquet(out / "vtab.parquet", vtab)
    print(f"{len(runs)} fine-tuned runs -> {out / 'runs.parquet'}; VTAB-style aggregate -> {out / 'vtab.parquet'}")
    print(vtab[vtab.group == "all"].groupby(["model", "upstream", "resolution"])["top1"].mean().round(2)
          .to_string())


if __name__ == "__main__":
    cli.main_guard(aggregate, Config)
