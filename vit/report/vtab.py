"""The VTAB-1k report (paper App. B.1.1, following BiT): per-task and per-group (Natural 7, Specialized 4,
Structured 8) test top-1 of the final runs beside the paper's Table 9.

    python -m vit.report.vtab --selected=results/vtab/<model>/selected.json --out=reports/vtab.md \
        --table=results/vtab/<model>/vtab.parquet results/vtab/<model>/final/runs.json

The setting was chosen by vit.evaluate.vtab (select). With `--paper_row` (config vtab.paper_row: the
Table 9 row the checkpoint is meant to reproduce) every task and the mean over tasks get a verdict
(vit/report/verdicts.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vit import cli
from vit.evaluate.collect import run_rows
from vit.evaluate.vtab import task_folder
from vit.logs import atomic_write_bytes, read_json, redo, write_parquet
from vit.plan.recipes import load_reference
from vit.plan.tasks import VTAB_TASKS, vtab_task
from vit.report import verdicts
from vit.report.tables import fmt

PAPER_ROWS = ("ViT-H/14_JFT", "ViT-L/16_JFT", "ViT-L/16_I21k")
GROUPS = (("Natural", "natural"), ("Specialized", "specialized"), ("Structured", "structured"), ("All", None))


@dataclass
class Config:
    out: str = ""                                 # the Markdown report
    selected: str = ""                            # the selection written by vit.evaluate.vtab
    table: str = ""                               # Parquet with one row per task
    model: str = ""                               # the model's name, for the title
    paper_row: str = ""                           # the Table 9 row to judge against ("" = no verdicts)
    inputs: list = field(default_factory=list)    # runs.json files of the final runs


def task_table(runs: pd.DataFrame, paper: dict, paper_row: str) -> pd.DataFrame:
    """One row per task run, in Table 9's order: ours and the paper's rows (and a verdict)."""
    order = [t for t in VTAB_TASKS if t.folder in set(runs.folder)]
    rows = []
    for t in order:
        r = runs[runs.folder == t.folder]
        rows.append({"task": t.paper, "group": t.group, "top1": r.top1.mean(), "sd": r.top1.std(ddof=1),
                     "n_seeds": r.seed.nunique(), "ours": fmt(r.top1),
                     **{f"{row} (paper)": paper[row][t.paper] for row in PAPER_ROWS}})
        if paper_row:  # Table 9 prints one decimal and no std
            rows[-1]["verdict"] = verdicts.judge(r.top1, paper[paper_row][t.paper], precision=0.05)["verdict"]
    return pd.DataFrame(rows)


def group_table(runs: pd.DataFrame, table: pd.DataFrame, paper_row: str, reference: dict) -> pd.DataFrame:
    """Group means over the tasks that were run, for us and for the paper's rows alike."""
    per_seed = runs.assign(group=runs.folder.map(lambda f: vtab_task(f).group))
    groups = []
    for name, sel in GROUPS:
        g = per_seed if sel is None else per_seed[per_seed.group == sel]
        tasks = table if sel is None else table[table.group == sel]
        if g.empty:
            continue
        seed_means = g.groupby("seed").top1.mean()
        groups.append({"group": f"{name} ({len(tasks)} of {sum(1 for t in VTAB_TASKS if sel in (None, t.group))})",
                       "ours": fmt(seed_means),
                       **{f"{row} (paper)": round(tasks[f"{row} (paper)"].mean(), 1) for row in PAPER_ROWS}})
        if paper_row:
            groups[-1]["verdict"] = all_verdict(seed_means, tasks, paper_row, reference) if sel is None else ""
    return pd.DataFrame(groups)


def all_verdict(seed_means: pd.Series, tasks: pd.DataFrame, paper_row: str, reference: dict) -> str:
    """The mean over tasks (one value per seed) against the paper's: with all 19 tasks that is Table 2's
    VTAB column, which also prints the std over 3 fine-tuning runs; with fewer, Table 9's mean over the
    same tasks (no std; the mean of one-decimal numbers is good to 0.05)."""
    if len(tasks) == len(VTAB_TASKS):
        t2 = reference["table2"]["models"][paper_row]["vtab19"]
        return verdicts.judge(seed_means, t2["mean"], t2["std"])["verdict"]
    return verdicts.judge(seed_means, tasks[f"{paper_row} (paper)"].mean(), precision=0.05)["verdict"]


def markdown(cfg: Config, n_seeds: int, table: pd.DataFrame, groups: pd.DataFrame) -> list[str]:
    chosen = read_json(cfg.selected, redo(cfg.selected, "vtab_select rule"), dict) if cfg.selected else {}
    lines = [f"# VTAB-1k: {cfg.model or 'our model'} beside the paper's Table 9", "",
             f"Test top-1 (%) after fine-tuning on train800+val200 (1,000 examples in VTAB-1k), mean ± sd over "
             f"{n_seeds} seed(s). Setting chosen for all tasks by mean val200 top-1: "
             f"`{chosen.get('settings')}`.", ""]
    if chosen:
        lines += ["| setting | mean val200 top-1 |", "|---|---|"] + [
            f"| `{s['setting']}`{' (chosen)' if i == chosen['index'] else ''} | {s['mean_val200']:.2f} |"
            for i, s in enumerate(chosen["scores"])] + [""]
    return lines + [
        table.drop(columns=["top1", "sd"]).to_markdown(index=False), "",
        "Group means over the tasks run (for the paper's rows too, so the columns compare like with like):",
        "", groups.to_markdown(index=False), "",
        (f"Verdicts against the paper's {cfg.paper_row} row: {verdicts.RULE}. Per task: Table 9 "
         f"(one decimal, no std: tolerance 0.05); the mean over all 19 tasks: Table 2's VTAB column "
         f"(mean ± std over 3 runs), over fewer tasks: Table 9's mean over the same tasks." if cfg.paper_row
         else "no verdicts: set vtab.paper_row to the Table 9 row this checkpoint reproduces"), "",
        "Paper numbers: Dosovitskiy et al. 2021, Table 9 (`vit/reference.yaml`)."]


def report(cfg: Config) -> pd.DataFrame:
    if cfg.paper_row and cfg.paper_row not in PAPER_ROWS:
        raise cli.ConfigError(f"--paper_row={cfg.paper_row!r}: expected one of {', '.join(PAPER_ROWS)}")
    reference = load_reference()
    ref = reference["vtab_table9"]
    paper = {row: dict(zip(ref["task_order"], ref[row])) for row in PAPER_ROWS}
    runs = run_rows(cfg.inputs)
    runs["folder"] = runs.task.map(task_folder)
    table = task_table(runs, paper, cfg.paper_row)
    Path(cfg.table).parent.mkdir(parents=True, exist_ok=True)
    write_parquet(cfg.table, table)
    lines = markdown(cfg, runs.seed.nunique(), table, group_table(runs, table, cfg.paper_row, reference))
    atomic_write_bytes(cfg.out, ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    return table


if __name__ == "__main__":
    cli.main_guard(report, Config)
