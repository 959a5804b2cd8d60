"""Verdicts against the paper's numbers: "reproduced", "inconclusive" or "not reproduced".

A preset that means to reproduce a paper table names it (`paper_table: table2 | table5`; VTAB-1k:
`vtab.paper_row` for Table 9). Each of its (model, pre-training set, task) cells with a paper number is
judged from our seeds' spread and the paper's reported std (Table 2: std over 3 fine-tuning runs;
Tables 5 and 9 print none):

    delta = mean(ours) - paper mean
    tol   = max(paper std, precision)     precision = half the paper's last printed digit
                                          (0.005 for Tables 2 and 5, 0.05 for Table 9)
    SE    = sqrt(sd_ours^2 / n_ours + paper_std^2 / paper_n), df by Welch-Satterthwaite
                                          (sd_ours over our seeds, ddof=1; one seed: the paper's term only)
    noise = t(0.95, df) * SE              (the one-sided 95 % bound of the shortfall)
    delta >= -tol                -> "reproduced"     (at least the paper's number, up to its own run-to-run
                                                      std; beating the paper counts too)
    delta + noise < -tol         -> "not reproduced" (short of it beyond noise: a one-sided 95 % test)
    otherwise                    -> "inconclusive"   (short of it, but not beyond noise: more seeds would
                                                      tell; it is not a pass, so noisier runs gain nothing)

VTAB-1k (vit.evaluate.vtab): each task against Table 9; the mean over all 19 tasks against Table 2's VTAB
column, which does print a std.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from vit.plan import Plan

REPRODUCED, INCONCLUSIVE, FAILED, NOT_RUN = "reproduced", "inconclusive", "not reproduced", "not run"
RULE = ("a paper number is reproduced when our mean over seeds is at least the paper's mean minus "
        "max(the paper's std, half its last printed digit) (the tolerance), not reproduced when it falls "
        "short of that beyond noise (a one-sided 95 % Welch t test: SE = sqrt(sd_ours²/n_ours + "
        "std_paper²/n_paper)), and inconclusive otherwise: short of it, but not beyond noise, which is "
        "not a pass")
ABBR = {"ImageNet-21k": "I21k", "JFT-300M": "JFT"}  # Table 2's row suffixes
TABLES = {"table2": "Table 2", "table5": "Table 5"}
TARGET_COLUMNS = ["model", "upstream", "task", "table", "paper_row", "paper_mean", "paper_std", "precision"]
VERDICT_COLUMNS = ["model", "pre-trained on", "task", "paper row", "ours", "paper", "Δ", "verdict"]
EPS = 1e-9  # the paper's numbers are decimals: 99.12 - 99.15 must equal -0.03, not -0.0300000000001


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def judge(values, paper_mean, paper_std=None, paper_n: int = 3, precision: float = 0.005) -> dict:
    """Our per-seed top-1 values (%) against one paper number, by the module's rule."""
    if _missing(paper_mean):
        raise ValueError("no paper number to judge against (null cell)")
    ours = np.asarray([v for v in values if not _missing(v)], dtype=float)
    if ours.size == 0:
        raise ValueError("no values of ours to judge")
    std = 0.0 if _missing(paper_std) else float(paper_std)
    delta = float(ours.mean() - paper_mean)
    tol = max(std, precision)
    parts, note = [], ""  # (variance of a mean, its df)
    if std > 0:
        parts.append((std ** 2 / paper_n, paper_n - 1))
    if ours.size > 1:
        parts.append((ours.std(ddof=1) ** 2 / ours.size, ours.size - 1))
    else:
        note = "one seed: our spread is unknown, the noise is the paper's term alone"
    var = sum(v for v, _ in parts)
    df = var ** 2 / sum(v ** 2 / d for v, d in parts if v > 0) if var > 0 else math.inf
    noise = float(sps.t.ppf(0.95, df)) * math.sqrt(var) if var > 0 else 0.0
    verdict = (REPRODUCED if delta >= -tol - EPS else FAILED if delta + noise < -tol - EPS else INCONCLUSIVE)
    return {"verdict": verdict, "delta": delta, "tol": tol, "noise": noise, "n": int(ours.size), "note": note}


def _paper_set(plan: Plan, model: str, upstream: str):
    """The paper's name of the set (model, upstream) was pre-trained on: a released entry's
    `pretrained_on`, else the dataset's `stands_for`."""
    spec = plan.released.get((model, upstream), {})
    return spec.get("pretrained_on") or plan.config["datasets"].get(upstream, {}).get("stands_for")


def _paper_cells(table: str, reference: dict, name: str, pretrained: str):
    """(row label, {task: (mean, std)}) of the paper's model `name` pre-trained on `pretrained` in
    `table`, or None where the table has no such row (e.g. BiT-M, which the paper does not report)."""
    if table == "table2":
        row = f"{name}_{ABBR.get(pretrained, pretrained)}"
        cells = reference["table2"]["models"].get(row)
        if cells is None:
            return None
        return row, {k: (v.get("mean"), v.get("std")) for k, v in cells.items() if isinstance(v, dict)}
    t5 = reference["table5_full"]  # rows: pre-training sets; columns: models; no std printed
    if name not in t5["columns"] or pretrained not in t5:
        return None
    col = t5["columns"].index(name)
    return f"{name}, {pretrained}", {k: (v[col], None) for k, v in t5[pretrained].items()}


def targets(plan: Plan, reference: dict) -> pd.DataFrame:
    """One row per (model, upstream, task) of this preset with a number in its `paper_table`; empty for
    stand-in presets (no `paper_table`). ImageNet runs also target the ReaL column (imagenet_real)."""
    table = plan.config.get("paper_table")
    rows = []
    for model, up in plan.checkpoints if table else []:
        name, pretrained = plan.config["models"].get(model, {}).get("name"), _paper_set(plan, model, up)
        if not name or not pretrained:
            continue  # only the paper's own models on the paper's own sets have a number to meet
        found = _paper_cells(table, reference, name, pretrained)
        if found is None:
            continue
        row, cells = found
        for task in plan.finetune_tasks:
            for key in [task] + (["imagenet_real"] if task == "imagenet" else []):
                mean, std = cells.get(key, (None, None))
                if not _missing(mean):
                    rows.append({"model": model, "upstream": up, "task": key, "table": TABLES[table],
                                 "paper_row": row, "paper_mean": float(mean),
                                 "paper_std": None if _missing(std) else float(std), "precision": 0.005})
    return pd.DataFrame(rows, columns=TARGET_COLUMNS)


def _fmt(mean: float, sd=None) -> str:
    return f"{mean:.2f}" if _missing(sd) else f"{mean:.2f} ± {sd:.2f}"


def verdict_table(summary: pd.DataFrame, plan: Plan, reference: dict) -> pd.DataFrame:
    """Our fine-tuned runs (one row each: model, upstream, task, resolution, seed, top1, real_top1)
    against each target, at the task's highest resolution (the paper's Tables 2 and 5 fine-tune at
    384-518 px, above any pre-training resolution)."""
    rows = []
    for t in targets(plan, reference).itertuples():
        task = "imagenet" if t.task == "imagenet_real" else t.task
        col = "real_top1" if t.task == "imagenet_real" else "top1"
        runs = summary[(summary.model == t.model) & (summary.upstream == t.upstream) & (summary.task == task)]
        runs = runs[runs.resolution == runs.resolution.max()]
        values = runs[col].dropna() if col in runs else pd.Series(dtype=float)
        up = plan.config["datasets"].get(t.upstream, {}).get("label") or \
            plan.released.get((t.model, t.upstream), {}).get("label", t.upstream)
        row = {"model": plan.model_label(t.model), "pre-trained on": up,
               "task": "ImageNet ReaL" if t.task == "imagenet_real" else plan.label(task),
               "paper row": f"{t.table}, {t.paper_row}", "ours": "–", "paper": _fmt(t.paper_mean, t.paper_std),
               "Δ": "–", "verdict": NOT_RUN if runs.empty else "not scored"}  # not scored: e.g. no ReaL labels
        if len(values):
            j = judge(values, t.paper_mean, t.paper_std, precision=t.precision)
            sd = values.std(ddof=1) if len(values) > 1 else None
            row["ours"] = f"{_fmt(values.mean(), sd)} ({len(values)} seed{'s' if len(values) > 1 else ''})"
            row["Δ"], row["verdict"] = f"{j['delta']:+.2f}", j["verdict"]
        rows.append(row)
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)
