"""The summarize stage: one row per evaluated run, with its labels, its checkpoint's pre-training and
its compute, in results/summary.parquet, the table every section of the report reads.

    python -m vit.report.summary --runs=results/eval/runs.parquet --out=results/summary.parquet \
        '--config={...}' results/pretrain/*/*/summary.json

Also the tidy table of the pre-training runs (one row each, and their loss curves), which the report
builds from the same summary.json files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vit import cli, plan
from vit.evaluate.collect import form_of, machine_of
from vit.logs import read_json, read_parquet, redo, write_parquet
from vit.plan import Plan

PRETRAIN_COLUMNS = ("model", "upstream", "pretrain_images_seen", "pretrain_steps", "pretrain_flops", "pretrain_time_s",
                    "pretrain_threads", "upstream_val_top1", "upstream_val_loss", "pretrain_train_loss", "kept",
                    "params_backbone", "fwd_flops_per_img", "pretrain_form", "pretrain_machine", "env")
CURVE_COLUMNS = ("model", "upstream", "split", "images_seen", "loss")


@dataclass
class Config:
    runs: str = ""          # runs.parquet of vit.evaluate.collect
    out: str = ""           # results/summary.parquet
    config: dict = field(default_factory=dict)  # the workflow's config (labels, datasets, fine-tuning settings)
    inputs: list = field(default_factory=list)  # pre-training summary.json files


def label(df: pd.DataFrame, p: Plan) -> pd.DataFrame:
    """Adds the names tables print, and the upstream's size as a sort key (from scratch first)."""
    datasets = p.config["datasets"]
    df["model_label"] = df.model.map(p.model_label)
    df["upstream_label"] = df.upstream.map(lambda u: p.label(u) if u in datasets else "from scratch")
    df["upstream_rank"] = df.upstream.map(lambda u: datasets[u]["train"] if u in datasets else 0)
    if "task" in df:
        df["task_label"] = df.task.map(p.label)
    return df


def pretrain_table(paths: list[str], p: Plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per pre-training run, its train and val loss against images seen) from vit.train's
    summary.json. The row's val top-1 and loss are those of the kept weights (`kept`: the last step's, or
    the best validation's with keep_best), its train loss the last logged one."""
    rows, curves = [], []
    for path in paths:
        s = read_json(path, redo(path), dict)  # pretrain's or import_weights' summary.json
        base = {"model": s["model"], "upstream": s["upstream"]}
        val = s["eval"].get("val", {})
        rows.append({**base, "pretrain_images_seen": s["images_seen"], "pretrain_steps": s["steps"],
                     "pretrain_flops": s["train_flops_per_img"] * s["images_seen"],
                     "pretrain_time_s": s["train_time_s"], "pretrain_threads": s["config"]["threads"],
                     "upstream_val_top1": val.get("top1"), "upstream_val_loss": val.get("loss"),
                     "pretrain_train_loss": s.get("final_train_loss"), "kept": s.get("kept", "last"),
                     "params_backbone": s["params_backbone"], "fwd_flops_per_img": s["fwd_flops_per_img"],
                     "pretrain_form": form_of(s), "pretrain_machine": machine_of(s["env"]),
                     "env": json.dumps(s["env"], sort_keys=True)})
        # the history holds the train loss (EMA) every log step and the val split's result every evaluation
        curves += [{**base, "split": "train" if h["split"] == "train" else "val",
                    "images_seen": h["step"] * s["config"]["batch_size"], "loss": h["loss"]} for h in s["history"]]
    # a preset that only fine-tunes released weights has no pre-training runs: empty tables, same columns
    return (label(pd.DataFrame(rows, columns=list(PRETRAIN_COLUMNS)), p),
            label(pd.DataFrame(curves, columns=list(CURVE_COLUMNS)), p))


def summary_table(runs: pd.DataFrame, pretrain: pd.DataFrame, p: Plan) -> pd.DataFrame:
    s = label(runs.copy(), p)
    keep = ["model", "upstream", "pretrain_images_seen", "pretrain_flops", "pretrain_time_s",
            "pretrain_threads", "upstream_val_top1", "params_backbone", "pretrain_form", "pretrain_machine"]
    s = s.merge(pretrain[keep], on=["model", "upstream"], how="left")
    s[["pretrain_images_seen", "pretrain_flops", "pretrain_time_s"]] = s[
        ["pretrain_images_seen", "pretrain_flops", "pretrain_time_s"]].fillna(0)
    s["pretrain_core_hours"] = s.pretrain_time_s * s.pretrain_threads.fillna(1) / 3600
    s["finetune_flops"] = s.train_flops_per_img * s.images_seen
    s["finetune_config"] = json.dumps(p.config["finetune"]["train"], sort_keys=True)
    s["dataset_version"] = s.task.map(lambda t: dataset_version(p.config["datasets"].get(t, {})))
    return s


def dataset_version(d: dict) -> str:
    """Which version of a dataset a row used, as the config names it: the source (and its task folder),
    the release where there are several (ImageNet-21k), the generator seed of procedural sets, and the
    stored image size; the run's dataset_hash pins the bytes."""
    parts = [d.get("source", "?") + (f"/{d['task']}" if d.get("task") else "")]
    parts += [f"release {d['release']}"] if d.get("release") else []
    parts += [f"seed {d['seed']}"] if "seed" in d else []
    parts += [f"stored at {d['size']} px"] if d.get("size") else []
    return ", ".join(parts)


def summarize(cfg: Config) -> pd.DataFrame:
    if not (cfg.runs and cfg.out and cfg.config):
        raise cli.ConfigError("--runs, --out and --config are required")
    p = plan.load(cfg.config)
    pretrain, _ = pretrain_table(cfg.inputs, p)
    summary = summary_table(read_parquet(cfg.runs, redo(cfg.runs, "evaluate rule")), pretrain, p)
    Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
    write_parquet(cfg.out, summary)
    print(f"{len(summary)} rows -> {cfg.out}")
    return summary


if __name__ == "__main__":
    cli.main_guard(summarize, Config)
