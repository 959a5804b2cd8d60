"""Pilot (issue 27), the tables of docs/forms.md: what the step form moves, beside a pre-training seed.

    .venv/bin/python docs/pilots/form_spread.py results runs/form-fp32 runs/form-bf16 runs/pretrain-seed1

Each argument is a results folder of docs/pilots/form_spread.sh's arms (rule, fp32, bf16, seed1). Per
(model, checkpoint): the upstream val top-1 of the checkpoint, and the mean transfer top-1 over the 3 tasks
at each resolution, mean over the 3 fine-tuning seeds +- its standard error over them; then the pairs that
differ in one factor only: the ViT's precision (rule vs fp32), the BiT's (rule vs bf16), the pre-training
seed (rule vs seed1), each difference with the standard error of a difference of two such means.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ARMS = ("rule", "fp32", "bf16", "seed1")


def rows(folder: Path, arm: str) -> list[dict]:
    out = []
    for runs in sorted(folder.glob("finetune/*/*/runs.json")):
        model, up = runs.parent.parent.name, runs.parent.name
        if model not in ("vit", "bit"):
            continue
        pre = folder / "pretrain" / model / up / "summary.json"
        val = json.loads(pre.read_text())["eval"]["val"]["top1"] if pre.exists() else np.nan
        for r in json.loads(runs.read_text()):
            out.append({"arm": arm, "model": model, "upstream": up, "task": r["task"], "res": r["config"]["img_size"],
                        "seed": r["config"]["seed"], "top1": r["eval"]["test"]["top1"], "form": r["form"],
                        "upstream_val": val})
    return out


def main(folders: list[str]) -> None:
    df = pd.DataFrame([r for f, arm in zip(folders, ARMS) for r in rows(Path(f), arm)])
    per_seed = df.groupby(["arm", "model", "upstream", "res", "seed"]).top1.mean().rename("mean_over_tasks").reset_index()
    cell = per_seed.groupby(["arm", "model", "upstream", "res"]).mean_over_tasks.agg(
        mean="mean", se=lambda v: v.std(ddof=1) / np.sqrt(len(v))).reset_index()
    forms = df.groupby(["arm", "model"]).form.agg(lambda v: "+".join(sorted(set(v)))).rename("form").reset_index()
    val = df.groupby(["arm", "model", "upstream"]).upstream_val.first().reset_index()
    wide = cell.pivot_table(index=["model", "upstream", "res"], columns="arm", values=["mean", "se"])
    print("forms:", forms.to_string(index=False), "", sep="\n")
    print("upstream val top-1 (%):", val.pivot_table(index=["model", "upstream"], columns="arm",
                                                      values="upstream_val").round(1).to_string(), "", sep="\n")
    table = pd.DataFrame({arm: [f"{m:.1f} ± {s:.1f}" for m, s in zip(wide["mean"][arm], wide["se"][arm])]
                          for arm in ARMS if arm in wide["mean"]}, index=wide.index)
    print("mean transfer top-1 over 3 tasks, mean ± SE over 3 fine-tuning seeds:", table.to_markdown(), "", sep="\n")
    pairs = {"ViT precision (bf16 - fp32)": ("vit", "rule", "fp32"), "BiT precision (bf16 - fp32)": ("bit", "bf16", "rule"),
             "ViT pre-training seed (1 - 0)": ("vit", "seed1", "rule"), "BiT pre-training seed (1 - 0)": ("bit", "seed1", "rule")}
    out = []
    for name, (model, a, b) in pairs.items():
        if a not in wide["mean"] or b not in wide["mean"]:
            continue
        sub = wide.loc[model]
        diff = sub["mean"][a] - sub["mean"][b]
        se = np.sqrt(sub["se"][a] ** 2 + sub["se"][b] ** 2)
        out += [{"factor": name, "checkpoint": f"{u} @ {r} px", "difference": d, "se": s, "|d|/se": abs(d) / s}
                for (u, r), d, s in zip(sub.index, diff, se) if np.isfinite(d)]
    res = pd.DataFrame(out)
    print("differences (points):", res.round(2).to_markdown(index=False), "", sep="\n")
    summary = res.assign(abs=res.difference.abs()).groupby("factor").agg(
        mean_abs=("abs", "mean"), max_abs=("abs", "max"), mean_se=("se", "mean"), n=("abs", "size"))
    print("per factor: mean and max |difference| over checkpoints x resolutions, mean SE of a difference:",
          summary.round(2).to_markdown(), sep="\n")


if __name__ == "__main__":
    main(sys.argv[1:])
