"""The VTAB-1k protocol of the paper (App. B.1.1, following BiT): select, then report.

    python -m vit.evaluate.vtab --mode=select --out=results/vtab/<model>/selected.json \
        '--settings=[{"lr": 0.01, "steps": 2500}, ...]' results/vtab/<model>/sweep/s*/runs.json
    python -m vit.evaluate.vtab --mode=report --selected=results/vtab/<model>/selected.json \
        --out=reports/vtab.md --table=results/vtab/<model>/vtab.parquet results/vtab/<model>/final/runs.json

The rules around it: every task is fine-tuned on train800 and scored on val200 for each setting of a
small sweep (the paper: 2 learning rates x 2 schedules); `select` picks one setting for all tasks by
the mean val200 score; every task is then fine-tuned again on all 1000 examples (train800+val200)
and scored on test; `report` gives per-task and per-group (Natural 7, Specialized 4, Structured 8)
test top-1 beside the paper's Table 9. With `--paper_row` (config vtab.paper_row: the Table 9 row the
checkpoint is meant to reproduce) every task and the mean over tasks get a verdict (vit/report/verdicts.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vit import cli
from vit.report import verdicts
from vit.plan.tasks import VTAB_TASKS, vtab_task
from vit.evaluate.collect import run_rows
from vit.logs import atomic_write_bytes, read_json, write_json, write_parquet
from vit.plan.recipes import load_reference
from vit.report.write import fmt

PAPER_ROWS = ("ViT-H/14_JFT", "ViT-L/16_JFT", "ViT-L/16_I21k")


@dataclass
class Config:
    mode: str = ""                                # select | report
    out: str = ""
    settings: list = field(default_factory=list)  # select: the sweep's settings, in the order of the inputs
    selected: str = ""                            # report: the selection written by `select`
    table: str = ""                               # report: Parquet with one row per task
    model: str = ""                               # report: the model's name, for the title
    paper_row: str = ""                           # report: the Table 9 row to judge against ("" = no verdicts)
    inputs: list = field(default_factory=list)    # runs.json files


def task_folder(dataset: str) -> str:
    """Prepared VTAB datasets are named vtab_<folder>."""
    return vtab_task(dataset.removeprefix("vtab_")).folder


def select(cfg: Config) -> dict:
    if len(cfg.settings) != len(cfg.inputs):
        raise cli.ConfigError(f"{len(cfg.inputs)} sweep results for {len(cfg.settings)} settings")
    scores = []
    for setting, path in zip(cfg.settings, cfg.inputs):
        rows = run_rows([path])
        per_task = rows.groupby("task").top1.mean()
        scores.append({"setting": setting, "mean_val200": float(per_task.mean()), "n_tasks": len(per_task),
                       "per_task": {k: round(float(v), 2) for k, v in per_task.items()}, "file": path})
    best = max(range(len(scores)), key=lambda i: scores[i]["mean_val200"])  # ties: the first listed
    result = {"settings": cfg.settings[best], "index": best, "scores": scores}
    write_json(cfg.out, result)
    for i, s in enumerate(scores):
        print(f"{'*' if i == best else ' '} {s['setting']}: mean val200 top-1 {s['mean_val200']:.2f} "
              f"over {s['n_tasks']} tasks")
    return result


def report(cfg: Config) -> pd.DataFrame:
    if cfg.paper_row and cfg.paper_row not in PAPER_ROWS:
        raise cli.ConfigError(f"--paper_row={cfg.paper_row!r}: expected one of {', '.join(PAPER_ROWS)}")
    reference = load_reference()
    ref = reference["vtab_table9"]
    paper = {row: dict(zip(ref["task_order"], ref[row])) for row in PAPER_ROWS}
    runs = run_rows(cfg.inputs)
    runs["folder"] = runs.task.map(task_folder)
    order = [t for t in VTAB_TASKS if t.folder in set(runs.folder)]
    rows = []
    for t in order:
        r = runs[runs.folder == t.folder]
        rows.append({"task": t.paper, "group": t.group, "top1": r.top1.mean(), "sd": r.top1.std(ddof=1),
                     "n_seeds": r.seed.nunique(), "ours": fmt(r.top1),
                     **{f"{row} (paper)": paper[row][t.paper] for row in PAPER_ROWS}})
        if cfg.paper_row:  # Table 9 prints one decimal and no std
            rows[-1]["verdict"] = verdicts.judge(r.top1, paper[cfg.paper_row][t.paper], precision=0.05)["verdict"]
    table = pd.DataFrame(rows)
    Path(cfg.table).parent.mkdir(parents=True, exist_ok=True)
    write_parquet(cfg.table, table)

    # group means over the tasks that were run, for us and for the paper's rows alike
    per_seed = runs.assign(group=runs.folder.map(lambda f: vtab_task(f).group))
    groups = []
    for name, sel in [("Natural", "natural"), ("Specialized", "specialized"), ("Structured", "structured"),
                      ("All", None)]:
        g = per_seed if sel is None else per_seed[per_seed.group == sel]
        tasks = table if sel is None else table[table.group == sel]
        if g.empty:
            continue
        seed_means = g.groupby("seed").top1.mean()
        groups.append({"group": f"{name} ({len(tasks)} of {sum(1 for t in VTAB_TASKS if sel in (None, t.group))})",
                       "ours": fmt(seed_means),
                       **{f"{row} (paper)": round(tasks[f"{row} (paper)"].mean(), 1) for row in PAPER_ROWS}})
        if cfg.paper_row:
            groups[-1]["verdict"] = all_verdict(seed_means, tasks, cfg.paper_row, reference) if sel is None else ""
    chosen = read_json(cfg.selected) if cfg.selected else {}
    lines = [f"# VTAB-1k: {cfg.model or 'our model'} beside the paper's Table 9", "",
             f"Test top-1 (%) after fine-tuning on train800+val200 (1,000 examples in VTAB-1k), mean ± sd over "
             f"{runs.seed.nunique()} seed(s). Setting chosen for all tasks by mean val200 top-1: "
             f"`{chosen.get('settings')}`.", ""]
    if chosen:
        lines += ["| setting | mean val200 top-1 |", "|---|---|"] + [
            f"| `{s['setting']}`{' (chosen)' if i == chosen['index'] else ''} | {s['mean_val200']:.2f} |"
            for i, s in enumerate(chosen["scores"])] + [""]
    lines += [table.drop(columns=["top1", "sd"]).to_markdown(index=False), "",
              "Group means over the tasks run (for the paper's rows too, so the columns compare like with like):",
              "", pd.DataFrame(groups).to_markdown(index=False), "",
              (f"Verdicts against the paper's {cfg.paper_row} row: {verdicts.RULE}. Per task: Table 9 "
               f"(one decimal, no std: tolerance 0.05); the mean over all 19 tasks: Table 2's VTAB column "
               f"(mean ± std over 3 runs), over fewer tasks: Table 9's mean over the same tasks." if cfg.paper_row
               else "no verdicts: set vtab.paper_row to the Table 9 row this checkpoint reproduces"), "",
              "Paper numbers: Dosovitskiy et al. 2021, Table 9 (`vit/reference.yaml`)."]
    atomic_write_bytes(cfg.out, ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return table


def all_verdict(seed_means: pd.Series, tasks: pd.DataFrame, paper_row: str, reference: dict) -> str:
    """The mean over tasks (one value per seed) against the paper's: with all 19 tasks that is Table 2's
    VTAB column, which also prints the std over 3 fine-tuning runs; with fewer, Table 9's mean over the
    same tasks (no std; the mean of one-decimal numbers is good to 0.05)."""
    if len(tasks) == len(VTAB_TASKS):
        t2 = reference["table2"]["models"][paper_row]["vtab19"]
        return verdicts.judge(seed_means, t2["mean"], t2["std"])["verdict"]
    return verdicts.judge(seed_means, tasks[f"{paper_row} (paper)"].mean(), precision=0.05)["verdict"]


def main(cfg: Config):
    if cfg.mode == "select":
        return select(cfg)
    if cfg.mode == "report":
        return report(cfg)
    raise cli.ConfigError(f"--mode={cfg.mode!r}: expected select or report")


if __name__ == "__main__":
    cli.main_guard(main, Config)
