"""The VTAB-1k protocol of the paper (App. B.1.1, following BiT): select the sweep's setting.

    python -m vit.evaluate.vtab --out=results/vtab/<model>/selected.json \
        '--settings=[{"lr": 0.01, "steps": 2500}, ...]' results/vtab/<model>/sweep/s*/runs.json

The rules around it: every task is fine-tuned on train800 and scored on val200 for each setting of a
small sweep (the paper: 2 learning rates x 2 schedules); this stage picks one setting for all tasks by
the mean val200 score; every task is then fine-tuned again on all 1000 examples (train800+val200),
scored on test and reported beside the paper's Table 9 by vit.report.vtab.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vit import cli
from vit.evaluate.collect import run_rows
from vit.logs import write_json
from vit.plan.tasks import vtab_task


@dataclass
class Config:
    out: str = ""                                 # the selection (JSON)
    settings: list = field(default_factory=list)  # the sweep's settings, in the order of the inputs
    inputs: list = field(default_factory=list)    # runs.json files of the sweep, one per setting


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


if __name__ == "__main__":
    cli.main_guard(select, Config)
