"""Tables and figures of a run, beside the paper's numbers (which come from vit/reference.yaml,
a copy of the paper fact sheet; every paper number is labelled as the paper's).

    python -m vit.report.write --runs=results/eval/runs.parquet --vtab=results/eval/vtab.parquet \
        --compute=results/compute/compute.parquet --summary=results/summary.parquet --reports=reports \
        '--config={...}' results/pretrain/*/*/summary.json

Writes results/summary.parquet (one row per evaluated run, with its config and compute),
reports/table2.md (the paper's Table 2 mirrored), reports/report.md (the results section),
reports/tables.html (the tables for Snakemake's HTML report) and reports/figures/*.png.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vit import cli, plan
from vit.report import plots
from vit.report.departures import departures
from vit.logs import atomic_write_bytes, read_json, write_parquet
from vit.plan.recipes import load_reference

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
    jobs: str = ""          # Snakemake benchmark records (jobs.parquet of vit.account)
    peak: str = ""          # the machine's measured matmul peak (vit.account.peak)
    reference: str = ""     # default: the copy shipped in the vit package
    mfu: float = 0.4        # assumed utilisation for the paper-scale GPU-hour estimates
    config: dict = field(default_factory=dict)  # the workflow's config (labels, groups, paper rows)
    ablation: list = field(default_factory=list)  # runs.json of the resolution ablation (vit.train.finetune)
    hyperrule: list = field(default_factory=list)  # runs.json of the BiT-HyperRule fine-tunes (vit.train.finetune)
    ns_manifests: list = field(default_factory=list)  # manifests of the Noisy Student pseudo-labelled sets
    inspect: list = field(default_factory=list)   # inspect.npz of vit.evaluate.inspect (inspect.json beside each)
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
    s["dataset_version"] = s.task.map(lambda t: dataset_version(config["datasets"].get(t, {})))
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


def fmt(values: pd.Series) -> str:
    """mean ± sd (n) of a group's values."""
    if values.empty:
        return "–"
    sd = values.std(ddof=1) if len(values) > 1 else float("nan")
    return f"{values.mean():.1f} ± {sd:.1f}" if len(values) > 1 else f"{values.mean():.1f}"


# ----------------------------------------------------------------------------- markdown tables
def task_cells(g: pd.DataFrame, config: dict) -> dict:
    """One table row's cells for runs `g`: each task's top-1 (mean ± sd over seeds) and the VTAB-style
    mean over tasks (per seed, then mean ± sd over seeds)."""
    cells = {config["datasets"][t].get("label", t): fmt(g[g.task == t].top1) for t in config["finetune"]["tasks"]}
    cells["mean over tasks"] = fmt(g.groupby("seed").top1.mean())
    return cells


def task_table(summary: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Rows: model x upstream x resolution; columns: tasks and the VTAB-style mean (over tasks, per seed)."""
    keys = ["model_label", "upstream_label", "upstream_rank", "resolution"]
    rows = []
    for key, g in summary.groupby(keys):
        row = {"model": key[0], "pre-trained on": key[1], "res": key[3], "_rank": key[2]}
        row.update(task_cells(g, config))
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


def hyperrule_text(config: dict) -> str:
    """How the HyperRule fine-tunes of this config ran: the rule, and where a laptop preset departs from it."""
    from vit.plan import recipes

    hr = config["finetune"].get("hyperrule", {})
    variant = hr.get("variant", "code")
    small, big = (recipes.bit_hyperrule(n, (224, 224), variant) for n in (1_000, 20_000))
    over = ", ".join(f"{k} {v}" for k, v in hr.get("train", {}).items())
    return (f"BiT-HyperRule ({variant} variant, `vit.plan.recipes.bit_hyperrule`): SGD lr {small['lr']:g}, momentum "
            f"{small['momentum']:g}, batch {small['batch_size']}, steps by training-set size ({small['steps']} below "
            f"20k examples) with /10 decays at {', '.join(f'{d:.0%}' for d in small['decay_at'])}, MixUp "
            f"{big['mixup']:g} from 20k examples, no gradient clipping"
            + (f"; departures here: {over}" if over else "")
            + (f", at {', '.join(map(str, hr['resolutions']))} px instead of the rule's resolution"
               if hr.get("resolutions") else ""))


def hyperrule_table(summary: pd.DataFrame, hyperrule: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Each HyperRule checkpoint at the rule's resolution(s): the shared protocol's runs beside the
    HyperRule's, per task, and the difference of the means over tasks."""
    rows = []
    for (model, up), hr in hyperrule.groupby(["model", "upstream"], sort=False):
        for res in sorted(hr.resolution.unique()):
            main = summary[(summary.model == model) & (summary.upstream == up) & (summary.resolution == res)]
            base = {"model": config["models"][model]["label"], "pre-trained on": config["datasets"][up]["label"],
                    "res": res}
            for name, g in (("shared protocol", main), ("BiT-HyperRule", hr[hr.resolution == res])):
                rows.append({**base, "fine-tuning": name, **task_cells(g, config), "n seeds": g.seed.nunique()})
            if len(main):
                diff = (hr[hr.resolution == res].groupby("seed").top1.mean()
                        - main.groupby("seed").top1.mean()).dropna()
                rows[-1]["HyperRule minus shared (mean over tasks)"] = fmt(diff)
    return pd.DataFrame(rows).fillna("")


def table2(summary: pd.DataFrame, compute_pre: pd.DataFrame, reference: dict, config: dict,
           hyperrule: pd.DataFrame) -> str:
    """The paper's Table 2, mirrored: our models pre-trained on the largest upstream set and fine-tuned
    at the highest resolution, then the paper's rows for the models ours stand in for. A model
    fine-tuned with the BiT-HyperRule (finetune.hyperrule) gets a second row with those runs: the
    paper's BiT-L numbers come from BiT's own recipe."""
    largest = plan.upstreams(config)[-1]
    res = max(config["finetune"]["resolutions"])
    ours = summary[(summary.upstream == largest) & (summary.resolution == res)]
    def cost(pre: pd.DataFrame) -> dict:
        return {"pre-training core-hours": f"{pre.core_hours.sum():.3g}",
                "pre-training PFLOPs": f"{pre.train_flops.sum() / 1e15:.3g}"}

    rows = []
    for model, g in ours.groupby("model", sort=False):
        pre = compute_pre[(compute_pre.model == model) & (compute_pre.upstream == largest)]
        rows.append({"model (ours)": config["models"][model]["label"], **task_cells(g, config), **cost(pre)})
        hr = hyperrule[(hyperrule.model == model) & (hyperrule.upstream == largest)] if len(hyperrule) else hyperrule
        if len(hr):
            at = "" if set(hr.resolution) == {res} else f" at {', '.join(map(str, sorted(hr.resolution.unique())))} px"
            rows.append({"model (ours)": f"{config['models'][model]['label']}, BiT-HyperRule{at}",
                         **task_cells(hr, config), **cost(pre)})
    its = plan.noisy_student(config)
    if its:  # the baseline's row: the last student; its cost is the recipe's (first teacher + every student)
        last = its[-1]
        g = summary[(summary.model == last["student"]) & (summary.upstream == last["dataset"])
                    & (summary.resolution == res)]
        runs = {its[0]["teacher"]} | {(it["student"], it["dataset"]) for it in its}
        pre = compute_pre[[(m, u) in runs for m, u in zip(compute_pre.model, compute_pre.upstream)]]
        rows.append({"model (ours)": f"{config['models'][last['student']]['label']} (iteration {last['iteration']})",
                     **task_cells(g, config), **cost(pre)})
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
    ]
    if len(hyperrule):
        lines += [f"Rows marked BiT-HyperRule fine-tune the same checkpoint with BiT's own recipe instead of the "
                  f"shared protocol: {hyperrule_text(config)}.", ""]
    if plan.noisy_student(config):
        lines += ["The Noisy Student row is the last iteration's student, pre-trained on the labelled set plus "
                  "the pool images its teacher pseudo-labelled; its compute adds the first teacher's and every "
                  "student's pre-training (the recipe's cost).", ""]
    lines += [
        "**Paper** (Dosovitskiy et al. 2021, Table 2; numbers from `vit/reference.yaml`): top-1 in %, "
        "mean ± std over 3 fine-tuning runs; compute in TPUv3-core-days.",
        "",
    ]
    paper_rows = []
    t2 = reference["table2"]["models"]
    seen = set()
    for model, spec in config["models"].items():
        key = spec.get("paper_row")
        if key not in t2 or key in seen:
            continue
        seen.add(key)
        p = t2[key]
        row = {"model (paper)": key.split("_")[0] + ("" if key.startswith("ViT") else " " + key.split("_", 1)[1]),
               "pre-trained on (paper)": p["pretrain"], "stands in for ours": spec["label"]}
        for col, name in PAPER_COLUMNS.items():
            v = p.get(col)
            row[f"{name} (paper)"] = "–" if not v else (f"{v['mean']:.2f} ± {v['std']:.2f}" if v.get("std")
                                                         else f"{v['mean']:.2f}")
        row["TPUv3-core-days (paper)"] = p["tpuv3_core_days"]
        paper_rows.append(row)
    lines += [pd.DataFrame(paper_rows).to_markdown(index=False), ""]
    return "\n".join(lines + verdict_lines(summary, reference, config)) + "\n"


def verdict_lines(summary: pd.DataFrame, reference: dict, config: dict) -> list[str]:
    """Verdicts where the preset targets the paper's numbers (`paper_table`), else why there are none."""
    from vit.report import verdicts

    table = config.get("paper_table")
    if not table:
        return ["The two tables share a design, not datasets: our downstream tasks are laptop-scale stand-ins "
                "(see report.md), so compare the ordering of the models, not the numbers. No verdicts against "
                "the paper: this preset targets none of its numbers (the paper presets set `paper_table`)."]
    v = verdicts.verdict_table(summary, config, reference)
    counts = v.verdict.value_counts()
    return [f"## Verdicts against the paper's {verdicts.TABLES[table]}", "",
            f"Each of our runs that is the paper's own model on the paper's pre-training set and task, judged: "
            f"{verdicts.RULE}. Models that only stand in for a paper row (e.g. BiT-M for BiT-L) get no verdict.", "",
            v.to_markdown(index=False) if len(v) else "(no run of this preset matches a paper cell)", "",
            ", ".join(f"{n} {k}" for k, n in counts.items()) + "." if len(v) else ""]


def ablation_table(summary: pd.DataFrame, ablation: pd.DataFrame, config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The resolution ablation for each checkpoint in it: fine-tuned at the pre-training resolution
    (nothing to interpolate), above it with the main runs' interpolation, and with the other mode.
    Returns (tidy runs for the figure, Markdown-ready table)."""
    if ablation.empty:
        return pd.DataFrame(), pd.DataFrame()
    ablation = _label(ablation.copy(), config)
    main_mode = config["finetune"]["train"].get("posemb_interp", "bicubic")
    tidy, rows = [], []
    for (model, up), abl in ablation.groupby(["model", "upstream"]):
        lo = plan.pretrain_resolution(config, model, up)
        main = summary[(summary.model == model) & (summary.upstream == up)]
        parts = [(f"{lo} px (pre-training resolution, no interpolation)", main[main.resolution == lo])]
        for res in sorted(abl.resolution.unique()):
            parts.append((f"{res} px, {main_mode}", main[(main.resolution == res)]))
            for mode, g in abl[abl.resolution == res].groupby("posemb_interp"):
                parts.append((f"{res} px, {mode}", g))
        for setting, g in parts:
            tidy.append(g.assign(setting=setting))
            row = {"model": config["models"][model]["label"], "pre-trained on": config["datasets"][up]["label"],
                   "fine-tuned at": setting}
            row.update(task_cells(g, config))
            row["n seeds"] = g.seed.nunique()
            rows.append(row)
    return pd.concat(tidy, ignore_index=True), pd.DataFrame(rows)


def ssl_table(summary: pd.DataFrame, config: dict) -> tuple[pd.DataFrame, list[str]]:
    """Paper sec. 4.6: each self-supervised (masked patch prediction) checkpoint against the same
    architecture from scratch and pre-trained with labels on the same set. Returns the table and one
    sentence per resolution with the gaps, in points of mean top-1 over tasks."""
    rows, sentences = [], []
    for model, up in plan.pretrain_runs(config):
        if not plan.self_supervised(config, model):
            continue
        spec, label = plan.model_spec(config, model), config["datasets"][up]["label"]
        twin = next((m for m, u in plan.pretrain_runs(config) if u == up and m != model
                     and plan.model_spec(config, m) == spec and not plan.self_supervised(config, m)), None)
        scratch = next((m for m in (twin, model) if m in config["finetune"]["from_scratch"]), None)
        arms = ([("scratch", scratch, "scratch", "from scratch (no pre-training)")] if scratch else []) + [
            ("mpp", model, up, f"masked patch prediction on {label} (no labels)")] + (
            [("supervised", twin, up, f"supervised on {label}")] if twin else [])
        for res in sorted(summary.resolution.unique()):
            means = {}
            for key, m, u, text in arms:
                g = summary[(summary.model == m) & (summary.upstream == u) & (summary.resolution == res)]
                if g.empty:
                    continue
                means[key] = g.groupby("seed").top1.mean().mean()
                rows.append({"architecture": config["models"][m]["label"], "pre-training": text, "res": res,
                             **task_cells(g, config), "n seeds": g.seed.nunique()})
            if len(means) == 3:
                sentences.append(
                    f"At {res} px masked patch prediction is {means['mpp'] - means['scratch']:+.1f} points "
                    f"from training from scratch and {means['mpp'] - means['supervised']:+.1f} from "
                    f"supervised pre-training (mean top-1 over tasks).")
    return pd.DataFrame(rows), sentences


def ns_table(summary: pd.DataFrame, pretrain: pd.DataFrame, config: dict, manifests: list[str],
             resolution: int) -> pd.DataFrame:
    """Noisy Student, one row per iteration: who trained on what (pseudo-label counts from the
    pseudo-labelled sets' manifests), accuracy on the labelled set's val split, and mean transfer."""
    its = plan.noisy_student(config)
    if not its:
        return pd.DataFrame()
    info = {Path(m).parent.name: read_json(m)["info"] for m in manifests}
    ns = config["noisy_student"]
    steps = [(0, its[0]["teacher"], config["datasets"][its[0]["labelled"]]["label"] + " (labelled only)")]
    for it in its:
        c = info.get(it["dataset"], {}).get("counts", {})
        steps.append((it["iteration"], (it["student"], it["dataset"]),
                      f"{c.get('labelled_train', '?')} labelled + {c.get('selected', '?')} pseudo-labelled "
                      f"({c.get('kept', '?')} of {c.get('pool', '?')} pool images kept at confidence >= "
                      f"{ns.get('threshold', 0.3)}, {c.get('selected_unique', '?')} distinct after balancing)"))
    rows = []
    for i, (model, up), trained_on in steps:
        pre = pretrain[(pretrain.model == model) & (pretrain.upstream == up)]
        g = summary[(summary.model == model) & (summary.upstream == up) & (summary.resolution == resolution)]
        rows.append({"iteration": i, "role": "teacher" if i == 0 else "student", "model": config["models"][model]["label"],
                     "trained on": trained_on,
                     "labelled val top-1 (%)": f"{pre.upstream_val_top1.iloc[0]:.1f}" if len(pre) else "–",
                     f"mean transfer at {resolution} px": fmt(g.groupby("seed").top1.mean()),
                     "n seeds": g.seed.nunique()})
    return pd.DataFrame(rows)


def cost_table(compute: pd.DataFrame) -> pd.DataFrame:
    """Measured compute per stage and model: sums over runs, medians of the rates."""
    return compute.groupby(["stage", "model"]).agg(
        runs=("seed", "size"), images=("images_seen", "sum"), PFLOPs=("train_flops", lambda v: v.sum() / 1e15),
        train_s=("train_time_s", "sum"), core_hours=("core_hours", "sum"), gpu_hours=("gpu_hours", "sum"),
        GFLOP_per_s=("achieved_gflops", "median"), MFU_pct=("mfu", lambda v: 100 * v.median()),
        peak_rss_MB=("peak_rss_mb", "max")).reset_index()


def flop_check(compute: pd.DataFrame) -> str:
    """FlopCounterMode against the analytical ViT formula, over every ViT run of the results."""
    vit = compute.dropna(subset=["fwd_flops_formula"])
    if vit.empty:
        return ""
    ratio = vit.fwd_flops_per_img / vit.fwd_flops_formula
    return (f"FLOPs per image are counted by FlopCounterMode on each run's model; for the {len(vit)} ViT runs the "
            f"analytical formula (FACTS.md 2a, plus the head) gives the same forward FLOPs: counted / formula "
            f"= {ratio.min():.6f} to {ratio.max():.6f} (the test allows 1 %).")


def estimate_vs_measured(config: dict, compute: pd.DataFrame, peak: dict) -> list[str]:
    """What `python -m vit.account.cost` estimates for this config before launch, beside what the run measured:
    FLOPs per stage (the plan's images x FlopCounterMode's FLOPs per image) and device-hours (at the
    measured 1-core peak and vit.account.cost's assumed CPU utilisation, or a GPU's datasheet peak at 40 %)."""
    from vit.account import cost

    devices = set(compute.device)
    names = {name: k for name in devices for k in cost.PEAKS if k.upper() in name.upper()}
    if devices == {"cpu"} and peak.get("cpu_fp32_gflops"):
        device, unit = "cpu", "core"
    elif len(devices) == 1 and len(names) == 1:
        device = next(iter(names.values()))
        unit = device.upper()
    else:
        return ["(no estimate-versus-measured comparison: the runs' devices " + ", ".join(sorted(devices))
                + " have no peak that vit.account.cost knows)", ""]
    peak_flops, mfu, _ = cost.throughput(device, peak)
    table = cost.compare(cost.estimate(config, device, mfu, peak_flops), compute)
    table = table.rename(columns=lambda c: c.replace("device-hours", f"{unit}-hours"))
    return ["### Estimated before launch vs measured", "",
            f"`python -m vit.account.cost --configfile=<this config> --device={device}` plans the same runs before any "
            f"of them starts: images from the config, FLOPs per image from FlopCounterMode, hours at "
            f"{peak_flops / 1e9:,.0f} GFLOP/s per {unit.lower() if unit == 'core' else 'GPU'} and an assumed "
            f"{mfu:.0%} MFU. Beside it, this run's timed training steps:", "",
            table.to_markdown(index=False, floatfmt=".3g"), "",
            "A FLOPs ratio near 1 says the plan counts the work the runs did (a Noisy Student's set is counted "
            "with its whole pool, an upper bound); the hours ratio is the assumed utilisation against the "
            "achieved one.", ""]


def jobs_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Snakemake's `benchmark:` records per rule: the whole job, start-up and evaluation included."""
    if jobs.empty:
        return jobs
    return jobs.groupby("rule").agg(jobs=("file", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                                    max_rss_MB=("max_rss_mb", "max")).reset_index()


def peak_text(peak: dict) -> str:
    cpu = ", ".join(f"{v:.0f} GFLOP/s with {k} thread{'s' if k != '1' else ''}"
                    for k, v in peak.get("cpu_fp32_gflops", {}).items())
    gpus = "; ".join(f"{g['name']}: bf16 {g['bf16_gflops'] / 1e3:.0f} TFLOP/s" for g in peak.get("gpu", []))
    return (f"MFU is the achieved FLOP rate of the timed training steps over this machine's matmul peak, measured "
            f"by the `peak` rule (`results/compute/peak.json`, host `{peak.get('env', {}).get('host', '?')}`): "
            f"fp32 {cpu}" + (f"; {gpus}" if gpus else "") + ". A run is compared with the peak of its own "
            "thread count (or GPUs).")


def load_inspect(paths: list[str], config: dict) -> dict | None:
    """vit.evaluate.inspect's summary of the first inspected checkpoint, in the form vit.report.scorecard reads."""
    if not paths:
        return None
    path = Path(paths[0])
    s = read_json(path.with_name("inspect.json"))
    model, up = path.parent.parent.name, path.parent.name
    return {**s, "label": f"{config['models'][model]['label']} pre-trained on {config['datasets'][up]['label']}",
            "model": model, "upstream": up, "npz": str(path)}


PACKAGES = ["torch", "torchvision", "timm", "numpy", "pandas", "pyarrow", "matplotlib", "seaborn", "snakemake"]


# ----------------------------------------------------------------------------- the report
def _provenance(pretrain: pd.DataFrame, config: dict, peak: dict, here: dict) -> list[str]:
    """`here`: the report stage's environment (its git commit leaves out reports/, see vit.logs.git_commit)."""
    from importlib.metadata import PackageNotFoundError, version

    from vit.logs import config_hash

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    envs = [json.loads(e) for e in pretrain.env] or [here]
    commits = sorted({e.get("git_commit") for e in envs})
    env = dict(envs[0], host=envs[0].get("host") or peak.get("env", {}).get("host"))
    machine = ["platform", "processor", "cpu_count", "device", "host"]
    return ["## Provenance", "",
            f"- config: hash `{config_hash(config)}` (the workflow's whole config, as the report rule received it)",
            f"- code: this report by git `{here['git_commit']}`; the pre-training runs by "
            + ", ".join(f"`{c}`" for c in commits) + " (each run's own commit is in its summary.json)",
            f"- packages: python `{here['python']}`, " + ", ".join(f"{p} `{ver(p)}`" for p in PACKAGES),
            "- machine of the training runs: " + ", ".join(f"{k} `{env.get(k)}`" for k in machine)
            + (f"; measured matmul peak {max(peak['cpu_fp32_gflops'].values()):.0f} GFLOP/s fp32"
               if peak.get("cpu_fp32_gflops") else ""),
            "- every number above comes from `results/` of this run (`results/summary.parquet`, "
            "`results/compute/compute.parquet`, `results/compute/jobs.parquet`, `results/inspect/`); paper "
            "numbers come from `vit/reference.yaml` and are labelled as the paper's.", ""]


def write_report(cfg: Config, summary, vtab, compute, pretrain, curves, table2_md: str, reference: dict,
                 jobs: pd.DataFrame, peak: dict, ablation: pd.DataFrame, inspect: dict | None, here: dict,
                 hyperrule: pd.DataFrame) -> str:
    from vit.account import paper_compute
    from vit.report import scorecard

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
    sizes = summary[summary.upstream.isin(plan.upstreams(config) + ["scratch"])]  # not the pseudo-labelled sets
    scores = scores[scores.upstream.isin(plan.upstreams(config)) & (scores.resolution == hi)].assign(
        pretrain_pflops=lambda d: d.pretrain_flops / 1e15)
    plots.transfer(summary, largest, hi, figs / "transfer.png")
    plots.size_ladder(sizes, hi, figs / "size_ladder.png", reference.get("figure3_data"))
    plots.resolution(summary, largest, datasets[largest]["label"], figs / "resolution.png")
    plots.compute(scores, figs / "compute.png", paper_compute.figure5(reference))
    plots.pretrain_curves(curves, figs / "pretrain_curves.png")
    abl_tidy, abl_tab = ablation_table(summary, ablation, config)
    if len(abl_tidy):
        plots.resolution_ablation(abl_tidy, figs / "resolution_ablation.png")
    if inspect:
        for name in ("rollout", "embedding_filters", "posemb_similarity", "attention_distance"):
            getattr(plots, name)(inspect["npz"], figs / f"{'attention_rollout' if name == 'rollout' else name}.png")

    cards = scorecard.scorecard(summary, scores, config, hi, ablation, inspect)
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
    cost = cost_table(compute)
    job_tab = jobs_table(jobs)
    paper_scale = paper_compute.paper_compute(reference, cfg.mfu)
    n_seeds = summary.seed.nunique()
    n_scratch = int((summary.upstream == "scratch").sum())
    chance = summary.groupby("task").num_classes.first().map(lambda k: f"{100 / k:.1f} %")
    modes = sorted(m for m in summary.posemb_interp.unique() if m)
    interp = ", ".join(f"{m} ({POSEMB_INTERP_TEXT[m]})" for m in modes) or "none needed"
    released = [u for u in plan.upstreams(config) if datasets[u].get("source") == "released"]
    hours = (f"{compute.core_hours.sum():.3g} core-hours" if compute.gpu_hours.sum() == 0 else
             f"{compute.gpu_hours.sum():.3g} GPU-hours and {compute.core_hours.sum():.3g} CPU core-hours")
    fig = iter(range(1, 100))
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
        f"from scratch with the same budget" + (f", plus {len(ablation)} runs of the resolution ablation"
                                                 if len(ablation) else "")
        + (f", plus {len(hyperrule)} runs with the BiT-HyperRule" if len(hyperrule) else "")
        + (f"; the pre-training runs include {len(plan.noisy_student(config))} Noisy Student students"
           if plan.noisy_student(config) else "") + ". "
        f"Numbers are test top-1 in %, mean ± sd over seeds (n = {n_seeds} unless stated). Chance level: "
        + ", ".join(f"{datasets[t].get('label', t)} {c}" for t, c in chance.items()) + ".",
        "",
        f"**Total measured training compute: {compute.train_flops.sum() / 1e15:.3g} PFLOPs** in "
        f"{compute.train_time_s.sum() / 60:.1f} min of timed training steps over {len(compute)} runs ({hours}; "
        f"median MFU {100 * compute.mfu.median():.1f} % of the measured matmul peak). Jobs run side by side, "
        f"so the sum exceeds the wall time; Snakemake's records of the whole jobs are in "
        f"[Compute accounting](#compute-accounting-paper-sec-44-table-6).",
        "",
        "## Claims scorecard",
        "",
        "Each claim of the paper against this run's numbers. A difference counts only where it exceeds one "
        "sd of the difference over seeds (vit/report/scorecard.py states each rule). *At this scale* means 2k-20k "
        "procedural images instead of 1.3M-300M photographs: a claim that does not hold here is not refuted "
        "for the paper's scale, and one that holds is weak evidence.",
        "",
        cards.assign(claim=cards.key.map(lambda k: f"({k})") + " " + cards.claim).rename(columns={
            "paper": "paper's evidence", "evidence": "this run", "verdict": "verdict at this scale"})[
            ["claim", "paper's evidence", "this run", "verdict at this scale"]].to_markdown(index=False),
        "",
        table2_md.replace("# Table 2, mirrored", "## Table 2, mirrored"),
        "## Transfer, per task",
        "",
        "![transfer](figures/transfer.png)",
        "",
        f"*Figure {next(fig)}. Test top-1 per task after pre-training on {datasets[largest]['label']} and "
        f"fine-tuning at {hi} px, against the same architecture trained from scratch with the same fine-tuning "
        f"budget. Where the pre-trained bar stands above its scratch bar, pre-training helped (claim a).*",
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
        "## Pre-training set size (paper Figs. 3 and 4)",
        "",
        "![size ladder](figures/size_ladder.png)",
        "",
        f"*Figure {next(fig)}. Left, ours: mean transfer accuracy at {hi} px against the pre-training set; "
        "dashed lines are the from-scratch baselines. Right, the paper's Table 5 (the data of its Fig. 3): "
        "ViT ImageNet top-1 after pre-training on ImageNet, ImageNet-21k and JFT-300M. The paper finds the "
        "ResNets ahead on the smallest set and the ViT catching up or overtaking on the largest (claim b); "
        "look for the gap between our lines closing from left to right.* The paper's Fig. 4 (linear 5-shot "
        "accuracy on JFT subsets) prints no numbers (`figure4_data.values: null` in reference.yaml), so it is "
        "not drawn.",
        "",
        "## Fine-tuning resolution and position-embedding interpolation (paper sec. 3.2)",
        "",
        "![resolution](figures/resolution.png)",
        "",
        f"*Figure {next(fig)}. The same checkpoints fine-tuned at {lo} px and at {hi} px. At {hi} px the ViT "
        f"keeps its patch size, so its sequence grows and its position embeddings are resampled in 2D "
        f"({config['finetune']['train'].get('posemb_interp', 'bicubic')}); the convnets need no change. "
        "Where the darker bar stands higher, the higher resolution helped (claim c).*",
        "",
    ]
    if len(abl_tab):
        lines += [
            "![resolution ablation](figures/resolution_ablation.png)",
            "",
            f"*Figure {next(fig)}. The resolution ablation: the ViT fine-tuned at its pre-training resolution "
            f"and at {hi} px with each way of resampling its position embeddings: "
            + "; ".join(f"{m}: {POSEMB_INTERP_TEXT[m]}" for m in POSEMB_INTERP_TEXT) + ". Bars that differ "
            "by less than their error bars say the choice of interpolation does not matter here.*",
            "",
            abl_tab.to_markdown(index=False),
            "",
            f"Without interpolation there is no run to show: at {hi} px the ViT has more patches than learned "
            "position embeddings, so the pre-trained table cannot be added to the sequence (loading it raises a "
            "size mismatch); the only alternatives are resampling it, as above, or discarding it, which "
            "throws away pre-training. The paper resamples (sec. 3.2).",
            "",
        ]
    hr_tab = hyperrule_table(summary, hyperrule, config) if len(hyperrule) else pd.DataFrame()
    if len(hr_tab):
        ft_train = config["finetune"]["train"]
        lines += [
            "## BiT's own fine-tuning recipe (BiT-HyperRule)",
            "",
            f"The paper's BiT-L numbers come from BiT's recipe, and App. B.1.1 also runs ResNets with it. Here the "
            f"same checkpoint fine-tuned with the shared protocol of every model (SGD lr {ft_train.get('lr')}, "
            f"{ft_train.get('schedule')} decay, {ft_train.get('steps')} steps of batch {ft_train.get('batch_size')}) "
            f"and with the {hyperrule_text(config)}.",
            "",
            hr_tab.to_markdown(index=False),
            "",
        ]
    ns = ns_table(summary, pretrain, config, cfg.ns_manifests, hi)
    if len(ns):
        lines += [
            "## Noisy Student (the Table 2 baseline's recipe)",
            "",
            "Iteration 0 is the teacher, pre-trained on the labelled set. In each iteration the un-noised teacher "
            "pseudo-labels the unlabelled pool (its labels are never read), confident predictions are kept and "
            "class-balanced, and a noised student (RandAugment input noise, dropout and stochastic depth) trains "
            "on labelled + pseudo-labelled images, then teaches the next iteration (`vit/data/pseudo_label.py`). "
            "Val top-1 is on the labelled set's own val split.",
            "",
            ns.to_markdown(index=False),
            "",
        ]
    ssl, ssl_text = ssl_table(summary, config)
    if len(ssl):
        paper_mpp = reference.get("pretrain_hparams", {}).get("self_supervised_masked_patch", {})
        lines += [
            "## Self-supervised pre-training (paper sec. 4.6)",
            "",
            "The same ViT pre-trained on the same images without their labels, by masked patch prediction "
            "(half the patch embeddings corrupted: 80 % a learned mask token, 10 % another patch, 10 % unchanged; "
            "the model predicts each corrupted patch's 3-bit mean colour, 512 classes; `vit/models/mpp.py`), then "
            "fine-tuned exactly like the supervised checkpoints; beside it the same architecture from scratch and "
            "pre-trained with labels.",
            "",
            ssl.to_markdown(index=False),
            "",
            " ".join(ssl_text) + (
                f" The paper (sec. 4.6): ViT-B/16 pre-trained this way on JFT reaches "
                f"{paper_mpp.get('imagenet_top1_after_finetune', '?')} % ImageNet top-1 after fine-tuning, "
                f"{paper_mpp.get('vs_scratch', '?')} against training from scratch and {paper_mpp.get('vs_supervised', '?')} "
                "against supervised pre-training (paper's numbers)." if paper_mpp else ""),
            "",
        ]
    lines += [
        "## Compute (paper Fig. 5)",
        "",
        "![compute](figures/compute.png)",
        "",
        f"*Figure {next(fig)}. Left, ours: mean transfer accuracy against measured pre-training compute; one "
        "point per upstream set and model. Right, the paper's Table 6 (the data of its Fig. 5): Average-5 "
        "transfer against pre-training exaFLOPs on JFT-300M. Further left and higher is more "
        "compute-efficient (claim d).*",
        "",
        "![pre-training curves](figures/pretrain_curves.png)",
        "",
        f"*Figure {next(fig)}. Pre-training loss of every upstream run against images seen.*",
        "",
        pre_tab.to_markdown(index=False, floatfmt=".4g"),
        "",
    ]
    if inspect:
        p, dist = inspect["posemb"], inspect["distance"]
        lines += [
            "## What the ViT learned (paper Figs. 6 and 7)",
            "",
            f"From the checkpoint of {inspect['label']}, on {inspect['images']} images of its "
            f"`{inspect['split']}` split (`results/inspect/`).",
            "",
            "![attention rollout](figures/attention_rollout.png)",
            "",
            f"*Figure {next(fig)}. Attention rollout (Abnar & Zuidema 2020, as in the paper's Fig. 6): attention "
            "averaged over heads, the identity added for the residual path, multiplied through all layers; "
            "shown is how much the class token draws from each patch. Bright regions are what the "
            "classification reads.*",
            "",
            "![embedding filters](figures/embedding_filters.png)",
            "",
            f"*Figure {next(fig)}. Principal components of the patch-embedding filters (paper Fig. 7 left): "
            "the basis the first layer projects each patch onto. The paper's look like plausible low-frequency "
            "basis functions.*",
            "",
            "![position embedding similarity](figures/posemb_similarity.png)",
            "",
            f"*Figure {next(fig)}. Cosine similarity of each patch's position embedding (tile) with every other "
            "patch's (pixels of the tile), paper Fig. 7 centre. 2D structure shows as a bright spot at the "
            f"tile's own position with brighter row and column: here 4-neighbours {p['neighbour']:.2f} vs "
            f"others {p['other']:.2f}, same row or column {p['same_row_or_col']:.2f} vs neither "
            f"{p['neither']:.2f} (claim f).*",
            "",
            "![attention distance](figures/attention_distance.png)",
            "",
            f"*Figure {next(fig)}. Mean attention distance of every head against depth (paper Fig. 7 right): "
            "the attention-weighted pixel distance between a query patch and the patches it attends to, "
            f"averaged over images. The dashed line is uniform attention ({inspect['uniform_distance']:.1f} px); "
            "the paper finds distances spread in the lowest layers, some heads already global, and all heads "
            f"far in the deep layers (claim e). Per-layer means here: "
            + ", ".join(f"{sum(row) / len(row):.1f}" for row in dist) + " px.*",
            "",
        ]
    lines += [
        "## Compute accounting (paper sec. 4.4, Table 6)",
        "",
        "### Measured, per stage and model",
        "",
        cost.to_markdown(index=False, floatfmt=".4g"),
        "",
        f"Fine-tuning: {len(ft)} runs (the ablation included); pre-training: {len(pre)} runs. Times are of "
        "training steps only (evaluation and the first steps of each process excluded); `GFLOP_per_s` and "
        "`MFU_pct` are medians over runs; FLOPs per image are forward + backward. " + peak_text(peak),
        "",
        flop_check(compute),
        "",
    ] + estimate_vs_measured(config, compute, peak) + [
        "Whole jobs as Snakemake's `benchmark:` directive recorded them (wall time includes Python start-up, "
        "data loading and evaluation; several jobs shared the cores):",
        "",
        job_tab.to_markdown(index=False, floatfmt=".4g") if len(job_tab) else "(no benchmark records)",
        "",
        "### The paper's runs, at paper scale",
        "",
        paper_compute.markdown(paper_scale, cfg.mfu),
        "",
    ] + departures(config, reference) + [""] + _provenance(pretrain, config, peak, here)
    text = "\n".join(lines)
    atomic_write_bytes(reports / "report.md", text.encode())
    html = ["<html><body><h1>Tables</h1>",
            "<h2>Claims scorecard</h2>", cards.to_html(index=False),
            "<h2>Transfer per task</h2>", tasks.to_html(index=False),
            "<h2>VTAB-style aggregate</h2>", groups.to_html(index=False)]
    if len(abl_tab):
        html += ["<h2>Resolution ablation</h2>", abl_tab.to_html(index=False)]
    if len(ssl):
        html += ["<h2>Self-supervised pre-training (sec. 4.6)</h2>", ssl.to_html(index=False)]
    if len(ns):
        html += ["<h2>Noisy Student iterations</h2>", ns.to_html(index=False)]
    if len(hr_tab):
        html += ["<h2>BiT-HyperRule</h2>", hr_tab.to_html(index=False)]
    html += ["<h2>Pre-training runs</h2>", pre_tab.to_html(index=False),
             "<h2>Compute, measured</h2>", cost.to_html(index=False),
             "<h2>Snakemake job records</h2>", job_tab.to_html(index=False),
             "<h2>The paper's runs at paper scale</h2>", paper_scale.to_html(index=False), "</body></html>"]
    atomic_write_bytes(reports / "tables.html", "\n".join(html).encode())
    return text


def report(cfg: Config) -> None:
    from vit.evaluate.collect import run_rows
    from vit.logs import environment

    here = environment()
    if not (cfg.runs and cfg.vtab and cfg.compute and cfg.summary and cfg.config):
        raise cli.ConfigError("--runs, --vtab, --compute, --summary and --config are required")
    reference = load_reference(cfg.reference)
    runs, vtab = pd.read_parquet(cfg.runs), pd.read_parquet(cfg.vtab)
    compute = pd.read_parquet(cfg.compute)
    jobs = pd.read_parquet(cfg.jobs) if cfg.jobs else pd.DataFrame()
    peak = read_json(cfg.peak) if cfg.peak else {}
    ablation = run_rows(cfg.ablation) if cfg.ablation else pd.DataFrame()
    hyperrule = run_rows(cfg.hyperrule) if cfg.hyperrule else pd.DataFrame()
    pretrain, curves = pretrain_table(cfg.inputs, cfg.config)
    summary = summary_table(runs, pretrain, cfg.config)
    Path(cfg.summary).parent.mkdir(parents=True, exist_ok=True)
    write_parquet(cfg.summary, summary)
    t2 = table2(summary, compute[compute.stage == "pretrain"], reference, cfg.config, hyperrule)
    Path(cfg.reports).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(cfg.reports) / "table2.md", t2.encode())
    write_report(cfg, summary, vtab, compute, pretrain, curves, t2, reference, jobs, peak, ablation,
                 load_inspect(cfg.inspect, cfg.config), here, hyperrule)
    print(f"{len(summary)} rows -> {cfg.summary}; reports in {cfg.reports}/")


if __name__ == "__main__":
    cli.main_guard(report, Config)
