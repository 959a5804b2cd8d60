"""Tables and figures of a run, beside the paper's numbers (which come from vit/reference.yaml,
a copy of the paper fact sheet; every paper number is labelled as the paper's).

    python -m vit.report --runs=results/eval/runs.parquet --vtab=results/eval/vtab.parquet \
        --compute=results/compute/compute.parquet --summary=results/summary.parquet --reports=reports \
        '--config={...}' results/pretrain/*/*/summary.json

Writes results/summary.parquet (one row per evaluated run, with its config and compute),
reports/table2.md (the paper's Table 2 mirrored), reports/report.md (the results section),
reports/tables.html (the tables for Snakemake's HTML report) and reports/figures/*.png.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd
import yaml

from vit import cli, plan, plots
from vit.logs import atomic_write_bytes, read_json

PAPER_COLUMNS = {"imagenet": "ImageNet", "imagenet_real": "ImageNet ReaL", "cifar10": "CIFAR-10",
                 "cifar100": "CIFAR-100", "pets": "Oxford-IIIT Pets", "flowers102": "Oxford Flowers-102",
                 "vtab19": "VTAB (19 tasks)"}


@dataclass
class Config:
    runs: str = ""
    vtab: str = ""
    compute: str = ""
    summary: str = ""
    reports: str = "reports"
    reference: str = ""     # default: the copy shipped in the vit package
    config: dict = field(default_factory=dict)  # the workflow's config (labels, groups, paper rows)
    inputs: list = field(default_factory=list)   # pre-training summary.json files


# ----------------------------------------------------------------------------- tidy tables
PRETRAIN_COLUMNS = ["model", "upstream", "pretrain_images_seen", "pretrain_steps", "pretrain_flops", "pretrain_time_s",
                    "pretrain_threads", "upstream_val_top1", "params_backbone", "fwd_flops_per_img", "env"]


def pretrain_table(paths: list[str], config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, curves = [], []
    for path in paths:
        s = read_json(path)
        base = {"model": s["model"], "upstream": s["upstream"]}
        rows.append({**base, "pretrain_images_seen": s["images_seen"], "pretrain_steps": s["steps"],
                     "pretrain_flops": s["train_flops_per_img"] * s["images_seen"],
                     "pretrain_time_s": s["train_time_s"], "pretrain_threads": s["config"]["threads"],
                     "upstream_val_top1": s["eval"].get("val", {}).get("top1"),
                     "params_backbone": s["params_backbone"], "fwd_flops_per_img": s["fwd_flops_per_img"],
                     "env": json.dumps(s["env"], sort_keys=True)})
        curves += [{**base, "images_seen": h["step"] * s["config"]["batch_size"], "loss": h["loss"]}
                   for h in s["history"] if h["split"] == "train"]
    # a preset that only fine-tunes released weights has no pre-training runs: empty tables, same columns
    return (_label(pd.DataFrame(rows, columns=PRETRAIN_COLUMNS), config),
            _label(pd.DataFrame(curves, columns=["model", "upstream", "images_seen", "loss"]), config))


POSEMB_INTERP_TEXT = {"bicubic": "timm's bicubic with antialias",
                      "bilinear_corners": "the original code's corner-aligned linear zoom, scipy zoom(order=1)"}


def _label(df: pd.DataFrame, config: dict) -> pd.DataFrame:
    datasets, models = config["datasets"], config["models"]
    df["model_label"] = df.model.map(lambda m: models[m]["label"])
    df["upstream_label"] = df.upstream.map(lambda u: datasets[u]["label"] if u in datasets else "from scratch")
    df["upstream_rank"] = df.upstream.map(lambda u: datasets[u]["train"] if u in datasets else 0)
    if "task" in df:
        df["task_label"] = df.task.map(lambda t: datasets[t].get("label", t))
    return df


def summary_table(runs: pd.DataFrame, pretrain: pd.DataFrame, config: dict) -> pd.DataFrame:
    s = _label(runs.copy(), config)
    keep = ["model", "upstream", "pretrain_images_seen", "pretrain_flops", "pretrain_time_s",
            "pretrain_threads", "upstream_val_top1", "params_backbone"]
    s = s.merge(pretrain[keep], on=["model", "upstream"], how="left")
    s[["pretrain_images_seen", "pretrain_flops", "pretrain_time_s"]] = s[
        ["pretrain_images_seen", "pretrain_flops", "pretrain_time_s"]].fillna(0)
    s["pretrain_core_hours"] = s.pretrain_time_s * s.pretrain_threads.fillna(1) / 3600
    s["finetune_flops"] = s.train_flops_per_img * s.images_seen
    s["finetune_config"] = json.dumps(config["finetune"]["train"], sort_keys=True)
    return s


def fmt(values: pd.Series) -> str:
    """mean ± sd (n) of a group's values."""
    if values.empty:
        return "–"
    sd = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.1f} ± {sd:.1f}" if len(values) > 1 else f"{values.mean():.1f}"


# ----------------------------------------------------------------------------- markdown tables
def task_table(summary: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Rows: model x upstream x resolution; columns: tasks and the VTAB-style mean (over tasks, per seed)."""
    tasks = config["finetune"]["tasks"]
    keys = ["model_label", "upstream_label", "upstream_rank", "resolution"]
    rows = []
    for key, g in summary.groupby(keys):
        row = {"model": key[0], "pre-trained on": key[1], "res": key[3], "_rank": key[2]}
        for t in tasks:
            row[config["datasets"][t].get("label", t)] = fmt(g[g.task == t].top1)
        row["mean over tasks"] = fmt(g.groupby("seed").top1.mean())
        row["n seeds"] = g.seed.nunique()
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["model", "_rank", "res"]).drop(columns="_rank")


def group_table(vtab: pd.DataFrame, config: dict) -> pd.DataFrame:
    d = _label(vtab.copy(), config)
    rows = []
    for key, g in d.groupby(["model_label", "upstream_label", "upstream_rank", "resolution"]):
        row = {"model": key[0], "pre-trained on": key[1], "res": key[3], "_rank": key[2]}
        for grp in ["all", "natural", "specialized", "structured"]:
            sel = g[g.group == grp]
            if len(sel):
                row[f"{grp} ({int(sel.n_tasks.iloc[0])} tasks)"] = fmt(sel.top1)
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["model", "_rank", "res"]).drop(columns="_rank")


def paper_groups(reference: dict) -> pd.DataFrame:
    """The paper's VTAB-1k group means (Table 9 averaged within groups; derived in reference.yaml)."""
    rows = []
    for model, g in reference["vtab_groups"].items():
        if isinstance(g, dict) and "mean19" in g:  # the rows with numbers (others are notes or bar-chart-only)
            rows.append({"model (paper)": model.replace("_", " pre-trained on "), "natural (7 tasks)": g["natural"],
                         "specialized (4 tasks)": g["specialized"], "structured (8 tasks)": g["structured"],
                         "all (19 tasks)": g["mean19"]})
    return pd.DataFrame(rows)


def table2(summary: pd.DataFrame, compute_pre: pd.DataFrame, reference: dict, config: dict) -> str:
    """The paper's Table 2, mirrored: our models pre-trained on the largest upstream set and fine-tuned
    at the highest resolution, then the paper's rows for the models ours stand in for."""
    largest = plan.upstreams(config)[-1]
    res = max(config["finetune"]["resolutions"])
    ours = summary[(summary.upstream == largest) & (summary.resolution == res)]
    tasks = config["finetune"]["tasks"]
    rows = []
    for model, g in ours.groupby("model", sort=False):
        pre = compute_pre[(compute_pre.model == model) & (compute_pre.upstream == largest)]
        row = {"model (ours)": config["models"][model]["label"]}
        for t in tasks:
            row[config["datasets"][t].get("label", t)] = fmt(g[g.task == t].top1)
        row["mean over tasks"] = fmt(g.groupby("seed").top1.mean())
        row["pre-training core-hours"] = f"{pre.core_hours.sum():.3g}"
        row["pre-training PFLOPs"] = f"{pre.train_flops.sum() / 1e15:.3g}"
        rows.append(row)
    up = config["datasets"][largest]
    lines = [
        "# Table 2, mirrored",
        "",
        (f"**Ours** (this run): fine-tuned from released weights pre-trained on {up['label']} (not by this run), "
         if up.get("source") == "released" else
         f"**Ours** (this run): pre-trained on {up['label']} (our stand-in for {up.get('stands_for', '?')}), ")
        + f"fine-tuned at {res} px; test top-1 in %, mean ± sd over {ours.seed.nunique()} fine-tuning seeds. "
        "Compute is measured on this machine (training steps only).",
        "",
        pd.DataFrame(rows).to_markdown(index=False),
        "",
        "**Paper** (Dosovitskiy et al. 2021, Table 2; numbers from `vit/reference.yaml`): top-1 in %, "
        "mean ± std over 3 fine-tuning runs; compute in TPUv3-core-days.",
        "",
    ]
    paper_rows = []
    t2 = reference["table2"]["models"]
    for model, spec in config["models"].items():
        key = spec.get("paper_row")
        if key not in t2:
            continue
        p = t2[key]
        row = {"model (paper)": key.split("_")[0] + ("" if key.startswith("ViT") else " " + key.split("_", 1)[1]),
               "pre-trained on (paper)": p["pretrain"], "stands in for ours": spec["label"]}
        for col, name in PAPER_COLUMNS.items():
            v = p.get(col)
            row[f"{name} (paper)"] = "–" if not v else (f"{v['mean']:.2f} ± {v['std']:.2f}" if v.get("std")
                                                         else f"{v['mean']:.2f}")
        row["TPUv3-core-days (paper)"] = p["tpuv3_core_days"]
        paper_rows.append(row)
    lines += [pd.DataFrame(paper_rows).to_markdown(index=False), "",
              "The two tables share a design, not datasets: our downstream tasks are laptop-scale "
              "stand-ins (see report.md), so compare the ordering of the models, not the numbers."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the report
def _provenance(pretrain: pd.DataFrame, config: dict) -> list[str]:
    from vit.logs import config_hash

    env = json.loads(pretrain.env.iloc[0]) if len(pretrain) else {}
    keys = ["git_commit", "python", "torch", "timm", "platform", "processor", "cpu_count", "device"]
    return ["## Provenance", "", f"- config hash: `{config_hash(config)}`"] + [
        f"- {k}: `{env.get(k)}`" for k in keys] + [
        "- every number above comes from `results/` of this run (`results/summary.parquet`, "
        "`results/compute/compute.parquet`); paper numbers come from `vit/reference.yaml`.", ""]


def write_report(cfg: Config, summary, vtab, compute, pretrain, curves, table2_md: str, reference: dict) -> str:
    config = cfg.config
    datasets = config["datasets"]
    reports = Path(cfg.reports)
    figs = reports / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    largest = plan.upstreams(config)[-1]
    hi, lo = max(config["finetune"]["resolutions"]), min(config["finetune"]["resolutions"])
    pre_res = config["pretrain"]["train"].get("img_size", 32)

    scores = plots.per_seed_mean(summary).merge(
        summary[["model", "upstream", "pretrain_flops"]].drop_duplicates(), on=["model", "upstream"])
    scores = scores[(scores.upstream != "scratch") & (scores.resolution == hi)].assign(
        pretrain_pflops=lambda d: d.pretrain_flops / 1e15)
    plots.transfer(summary, largest, hi, figs / "transfer.png")
    plots.size_ladder(summary, hi, figs / "size_ladder.png")
    plots.resolution(summary, largest, datasets[largest]["label"], figs / "resolution.png")
    plots.compute(scores, figs / "compute.png")
    plots.pretrain_curves(curves, figs / "pretrain_curves.png")

    tasks = task_table(summary, config)
    groups = group_table(vtab, config)
    pre = compute[compute.stage == "pretrain"]
    ft = compute[compute.stage == "finetune"]
    pre_tab = pretrain.sort_values(["model", "upstream_rank"])[
        ["model_label", "upstream_label", "pretrain_images_seen", "pretrain_steps", "upstream_val_top1",
         "params_backbone", "fwd_flops_per_img", "pretrain_time_s"]].rename(columns={
            "model_label": "model", "upstream_label": "upstream", "pretrain_images_seen": "images seen",
            "pretrain_steps": "steps", "upstream_val_top1": "upstream val top-1 (%)",
            "params_backbone": "params (no head)", "fwd_flops_per_img": f"fwd FLOPs/img @{pre_res}px",
            "pretrain_time_s": "train time (s)"})
    cost = compute.groupby(["stage", "model"]).agg(
        runs=("seed", "size"), images=("images_seen", "sum"), pflops=("train_flops", lambda v: v.sum() / 1e15),
        train_s=("train_time_s", "sum"), core_hours=("core_hours", "sum"),
        gflops_per_s=("achieved_gflops", "median")).reset_index()
    n_seeds = summary.seed.nunique()
    n_scratch = int((summary.upstream == "scratch").sum())
    chance = summary.groupby("task").num_classes.first().map(lambda k: f"{100 / k:.1f} %")
    modes = sorted(m for m in summary.posemb_interp.unique() if m)
    interp = ", ".join(f"{m} ({POSEMB_INTERP_TEXT[m]})" for m in modes) or "none needed"
    released = [u for u in plan.upstreams(config) if datasets[u].get("source") == "released"]
    lines = [
        "# Results: ViT vs BiT vs EfficientNet at laptop scale",
        "",
        f"Reproduces the design of Dosovitskiy et al. (2021): {len(pretrain)} pre-training runs"
        + (f" and released weights ({', '.join(datasets[u]['label'] for u in released)}, not trained here)"
           if released else "") + " on upstream sets "
        f"of growing size ({', '.join(datasets[u]['label'] + ' ~ ' + datasets[u].get('stands_for', '?') for u in plan.upstreams(config))}), "
        f"each fine-tuned on {len(config['finetune']['tasks'])} downstream tasks at {lo} px (the pre-training "
        f"resolution) and {hi} px (position embeddings resampled in 2D: {interp}), {n_seeds} seeds each: "
        f"{len(summary) - n_scratch} fine-tuned runs, plus {n_scratch} runs of the same architectures trained "
        f"from scratch with the same budget. Numbers are test top-1 in %, mean ± sd over seeds "
        f"(n = {n_seeds} unless stated). Chance level: "
        + ", ".join(f"{datasets[t].get('label', t)} {c}" for t, c in chance.items()) + ".",
        "",
        f"Total measured training compute: {compute.train_flops.sum() / 1e15:.3g} PFLOPs in "
        f"{compute.train_time_s.sum() / 60:.1f} min of timed training steps, summed over runs "
        f"({compute.core_hours.sum():.3g} core-hours; jobs run side by side, so this exceeds the wall time).",
        "",
        table2_md.replace("# Table 2, mirrored", "## Table 2, mirrored"),
        "## Transfer, per task",
        "",
        "![transfer](figures/transfer.png)",
        "",
        f"*Figure 1. Test top-1 per task after pre-training on {datasets[largest]['label']} and fine-tuning at "
        f"{hi} px, against the same architecture trained from scratch with the same fine-tuning budget. "
        f"Where the pre-trained bar stands above its scratch bar, pre-training helped.*",
        "",
        tasks.to_markdown(index=False),
        "",
        "## VTAB-style aggregate",
        "",
        "Mean over tasks, overall and per VTAB group (computed per seed, then mean ± sd over seeds).",
        "",
        groups.to_markdown(index=False),
        "",
        "The paper's group means on the real VTAB-1k (Table 9 averaged within each group, labelled as the "
        "paper's); our groups hold laptop-scale stand-ins, so compare the pattern across groups, not levels:",
        "",
        paper_groups(reference).to_markdown(index=False, floatfmt=".1f"),
        "",
        "## Pre-training set size (paper Fig. 3)",
        "",
        "![size ladder](figures/size_ladder.png)",
        "",
        f"*Figure 2. Mean transfer accuracy at {hi} px against the pre-training set. The paper finds ResNets "
        "ahead on the smallest set and ViT catching up or overtaking on the largest; dashed lines are the "
        "from-scratch baselines.*",
        "",
        "## Fine-tuning resolution (paper sec. 3.2)",
        "",
        "![resolution](figures/resolution.png)",
        "",
        f"*Figure 3. The same checkpoints fine-tuned at {lo} px and at {hi} px. At {hi} px the ViT keeps its "
        f"patch size, so its sequence grows and its position embeddings are resampled in 2D "
        f"({config['finetune']['train'].get('posemb_interp', 'bicubic')}); the convnets need no change.*",
        "",
        "## Compute (paper Fig. 5)",
        "",
        "![compute](figures/compute.png)",
        "",
        "*Figure 4. Mean transfer accuracy against measured pre-training compute; one point per upstream "
        "set and model. Further left and higher is more compute-efficient.*",
        "",
        "![pre-training curves](figures/pretrain_curves.png)",
        "",
        "*Figure 5. Pre-training loss of every upstream run against images seen.*",
        "",
        pre_tab.to_markdown(index=False, floatfmt=".4g"),
        "",
        "### Compute per stage and model (measured)",
        "",
        cost.to_markdown(index=False, floatfmt=".4g"),
        "",
        f"Fine-tuning: {len(ft)} runs; pre-training: {len(pre)} runs. `gflops_per_s` is the median achieved "
        "rate of the training steps (FLOPs counted by FlopCounterMode, forward + backward).",
        "",
    ] + _provenance(pretrain, config)
    text = "\n".join(lines)
    atomic_write_bytes(reports / "report.md", text.encode())
    html = ["<html><body><h1>Tables</h1>", "<h2>Transfer per task</h2>", tasks.to_html(index=False),
            "<h2>VTAB-style aggregate</h2>", groups.to_html(index=False),
            "<h2>Pre-training runs</h2>", pre_tab.to_html(index=False),
            "<h2>Compute</h2>", cost.to_html(index=False), "</body></html>"]
    atomic_write_bytes(reports / "tables.html", "\n".join(html).encode())
    return text


def report(cfg: Config) -> None:
    if not (cfg.runs and cfg.vtab and cfg.compute and cfg.summary and cfg.config):
        raise cli.ConfigError("--runs, --vtab, --compute, --summary and --config are required")
    ref_path = cfg.reference or resources.files("vit") / "reference.yaml"
    reference = yaml.safe_load(Path(ref_path).read_text())
    runs, vtab = pd.read_parquet(cfg.runs), pd.read_parquet(cfg.vtab)
    compute = pd.read_parquet(cfg.compute)
    pretrain, curves = pretrain_table(cfg.inputs, cfg.config)
    summary = summary_table(runs, pretrain, cfg.config)
    Path(cfg.summary).parent.mkdir(parents=True, exist_ok=True)
    summary.to_parquet(cfg.summary, index=False)
    t2 = table2(summary, compute[compute.stage == "pretrain"], reference, cfg.config)
    Path(cfg.reports).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(cfg.reports) / "table2.md", t2.encode())
    write_report(cfg, summary, vtab, compute, pretrain, curves, t2, reference)
    print(f"{len(summary)} rows -> {cfg.summary}; reports in {cfg.reports}/")


if __name__ == "__main__":
    cli.main_guard(report, Config)
