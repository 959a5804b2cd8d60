"""Summarise a docs/pilots/ladder_probe.sh run: per pre-training set, upstream val top-1 (kept weights),
train and val loss, few-shot means over the three tasks, and the fine-tuned mean test top-1 +- sd over
seeds (per seed the mean over tasks, as the report computes it). Prints one JSON line per set.

    .venv/bin/python docs/pilots/ladder_summary.py /tmp/long
"""
import json
import statistics as st
import sys
from pathlib import Path

out = Path(sys.argv[1])
for n in ("1k", "16k"):
    s = json.loads((out / f"pre_{n}" / "summary.json").read_text())
    shots = json.loads((out / f"fs_{n}.json").read_text())
    row = {"set": n, "steps": s["steps"], "val_top1": s["eval"]["val"]["top1"], "kept": s["kept"],
           "train_loss": round(s["final_train_loss"], 3), "val_loss": round(s["eval"]["val"]["loss"], 3)}
    for k in (5, 25):
        per_task = {t: st.mean(r["top1"] for r in rows if r["shots"] == k) for t, rows in shots.items()}
        row[f"{k}shot"] = round(st.mean(per_task.values()), 1)
        row[f"{k}shot_tasks"] = {t: round(v, 1) for t, v in per_task.items()}
    runs = json.loads((out / f"ft_{n}" / "runs.json").read_text())
    by_seed = {}
    for r in runs:
        by_seed.setdefault(r["config"]["seed"], {})[r["task"]] = r["eval"]["test"]["top1"]
    means = [st.mean(v.values()) for v in by_seed.values()]
    row["transfer"] = round(st.mean(means), 1)
    row["transfer_sd"] = round(st.stdev(means), 1)
    row["transfer_tasks"] = {t: round(st.mean(v[t] for v in by_seed.values()), 1) for t in next(iter(by_seed.values()))}
    print(json.dumps(row))
