r"""Where a workflow run's wall time x cores went: timed training steps, what else the training jobs did,
the other jobs, and idle cores; with a Gantt chart of the jobs (`make run` writes it after Snakemake).

    python -m vit.report.timeline --results=results --out=reports/timeline.md --cores=2

Reads every Snakemake benchmark record under <results>/benchmarks/ (one per job: wall and CPU seconds;
the file is written as the job ends, so its modification time is the job's end) and every training run's
summary.json under <results>/ (timed steps, loop, evaluation and set-up seconds: vit.train.loop). A job
holds max(wall, CPU) core-seconds: a one-thread training job its wall time, a multi-threaded one its CPU
time. The span is the first job's start to the last job's end, so it describes the last run that
regenerated everything: jobs left from older runs would stretch it (the report says how many there are).
Writes the Markdown table to --out, the chart beside it (.png) and the numbers as JSON (.json).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from vit import cli  # noqa: E402
from vit.logs import atomic_write_bytes, read_benchmark, read_json, redo, write_json  # noqa: E402

TRAINING_RULES = ("pretrain", "finetune", "finetune_posemb", "finetune_hyperrule", "vtab_sweep", "vtab_final")


@dataclass
class Config:
    results: str = "results"
    out: str = ""        # Markdown; .png and .json are written beside it
    cores: int = 0       # the cores the run had (0 = this machine's)


def jobs(results: Path) -> pd.DataFrame:
    """One row per Snakemake benchmark record: rule, job, start, end, wall and CPU seconds."""
    rows = []
    for path in sorted((results / "benchmarks").rglob("*.tsv")):
        b = read_benchmark(path)
        wall = float(b["s"])
        cpu = pd.to_numeric(b.get("cpu_time"), errors="coerce")
        rule = path.parent.name
        rows.append({"rule": rule, "job": path.stem, "end": path.stat().st_mtime, "wall_s": wall,
                     "cpu_s": 0.0 if pd.isna(cpu) else float(cpu),
                     "training": rule.startswith(TRAINING_RULES)})
    if not rows:
        raise cli.ConfigError(f"{results}/benchmarks: no Snakemake benchmark records; run the workflow first")
    df = pd.DataFrame(rows)
    df["start"] = df.end - df.wall_s
    t0 = df.start.min()
    df["start"], df["end"] = df.start - t0, df.end - t0
    df["held_s"] = df[["wall_s", "cpu_s"]].max(axis=1)
    return df.sort_values("start", ignore_index=True)


def runs(results: Path) -> pd.DataFrame:
    """One row per training run (summary.json with timed steps): where its time went."""
    rows = []
    for path in results.rglob("summary.json"):
        s = read_json(path, redo(path), dict)
        if "train_time_s" not in s:  # imported weights, evaluation summaries
            continue
        rows.append({"run": str(path.parent), "steps_s": s["train_time_s"],
                     **{k: s.get(f"{k}_time_s") for k in ("loop", "eval", "setup", "final_eval")}})
    return pd.DataFrame(rows)


def breakdown(job_table: pd.DataFrame, run_table: pd.DataFrame, cores: int) -> dict:
    """Core-seconds by what they went to, as shares of span x cores."""
    span = float(job_table.end.max())
    available = span * cores
    training = job_table[job_table.training]
    parts = {"timed training steps": float(run_table.steps_s.sum())}
    recorded = run_table.dropna(subset=["loop"])  # runs made before these fields were recorded lack them
    if len(recorded):
        parts["evaluation (validation, final scores)"] = float((recorded["eval"] + recorded.final_eval).sum())
        parts["loop bookkeeping (logging, state saves)"] = float((recorded.loop - recorded.steps_s
                                                                  - recorded["eval"]).sum())
        parts["run set-up (data, model, FLOP count)"] = float(recorded.setup.sum())
    parts["rest of training jobs (start-up, imports, warm-up steps, writing)"] = (
        float(training.held_s.sum()) - sum(parts.values()))
    for rule, g in job_table[~job_table.training].groupby("rule"):
        parts[f"job: {rule}"] = float(g.held_s.sum())
    parts["idle cores"] = available - float(job_table.held_s.sum())
    return {"span_s": span, "cores": cores, "core_s": available, "jobs": len(job_table), "runs": len(run_table),
            "runs_with_breakdown": len(recorded),
            "parts": {k: {"core_s": v, "share": v / available} for k, v in parts.items()}}


def markdown(b: dict) -> str:
    lines = [f"# Where the run's time went\n\n{b['span_s'] / 60:.1f} min wall x {b['cores']} cores = "
             f"{b['core_s'] / 60:.0f} core-minutes over {b['jobs']} jobs and {b['runs']} training runs "
             f"({b['runs_with_breakdown']} with a loop breakdown). Measured by `python -m vit.report.timeline` "
             f"from Snakemake's benchmark records and the runs' summaries.\n",
             "| where | core-min | share |", "|---|---|---|"]
    big = sorted(b["parts"].items(), key=lambda kv: -kv[1]["core_s"])
    for name, p in big:
        lines.append(f"| {name} | {p['core_s'] / 60:.1f} | {100 * p['share']:.1f} % |")
    lines.append("\n![jobs over time](timeline.png)\n")
    return "\n".join(lines)


def gantt(job_table: pd.DataFrame, cores: int, path: Path) -> None:
    """Jobs as bars on the lane (core) each took first free, coloured by rule."""
    free = [0.0] * max(cores, 1)
    lanes = []
    for _, j in job_table.iterrows():
        lane = min(range(len(free)), key=lambda i: (free[i] > j.start + 1e-6, free[i]))
        free[lane] = max(free[lane], j.end)
        lanes.append(lane)
    rules = sorted(job_table.rule.unique())
    colours = dict(zip(rules, plt.get_cmap("tab20").colors))
    rows = -(-len(rules) // 6)  # legend rows below the plot
    fig, ax = plt.subplots(figsize=(11, 1.6 + 0.5 * len(free) + 0.25 * rows))
    for (_, j), lane in zip(job_table.iterrows(), lanes):
        ax.barh(lane, j.wall_s / 60, left=j.start / 60, color=colours[j.rule], edgecolor="white", linewidth=0.5)
    ax.set_yticks(range(len(free)), [f"lane {i + 1}" for i in range(len(free))])
    ax.set_xlabel("minutes since the first job started")
    ax.set_title("Jobs of the run (bars: wall time; a lane is a core a one-thread job held)")
    fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours[r]) for r in rules], labels=rules,
               ncol=min(6, len(rules)), fontsize=7, loc="lower center", frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.06 * rows, 1, 1))
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def timeline(cfg: Config) -> dict:
    if not cfg.out:
        raise cli.ConfigError("--out is required (e.g. reports/timeline.md)")
    results, out = Path(cfg.results), Path(cfg.out)
    job_table, run_table = jobs(results), runs(results)
    b = breakdown(job_table, run_table, cfg.cores or os.cpu_count() or 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), b)
    gantt(job_table, b["cores"], out.with_suffix(".png"))
    text = markdown(b)
    atomic_write_bytes(out, text.encode())
    print(text)
    return b


if __name__ == "__main__":
    cli.main_guard(timeline, Config)
