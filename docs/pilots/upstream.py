"""Pilots (issue 16): pre-train one model on one prepared upstream set with `vit.train`, exactly as the
workflow would, and print one JSON line: upstream val top-1 (final and best), train loss, loop seconds.
Run from the repository root on 1 thread; the data come from `python -m vit.data.prepare` or
docs/pilots/contours_set.py (the pilots' commands and results: docs/design.md). Example:

    .venv/bin/python docs/pilots/upstream.py --data=/tmp/pilot/data/c100_40k --model='{"arch": "vit",
        "patch_size": 4, "embed_dim": 96, "depth": 6, "num_heads": 3}' --images=60000 --lr=1e-3
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--model", required=True, help="model spec, JSON (vit.models.create)")
p.add_argument("--images", type=int, required=True, help="images seen: steps = images / batch")
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--wd", type=float, default=0.05)
p.add_argument("--batch", type=int, default=128)
p.add_argument("--augment", default="inception_crop")
p.add_argument("--img_size", type=int, default=32)
p.add_argument("--warmup", type=int, default=100)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--evals", type=int, default=4, help="val evaluations during the run")
p.add_argument("--tag", default="")
a = p.parse_args()
steps = a.images // a.batch
with tempfile.TemporaryDirectory() as out:
    cmd = [sys.executable, "-m", "vit.train", f"--data={a.data}", f"--out={out}", f"--model_args={a.model}",
           f"--img_size={a.img_size}", f"--steps={steps}", f"--batch_size={a.batch}", "--optimizer=adam", f"--lr={a.lr}",
           f"--weight_decay={a.wd}", f"--warmup_steps={a.warmup}", "--schedule=linear", "--grad_clip=1.0",
           f"--augment={a.augment}", "--val_split=val", f"--eval_every={max(1, steps // a.evals)}", "--threads=1",
           "--save_checkpoint=false", "--ckpt_every=0", f"--seed={a.seed}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s = json.loads((Path(out) / "summary.json").read_text())
vals = [h["top1"] for h in s["history"] if h.get("split") == "val"] + [s["eval"]["val"]["top1"]]
train = [h["loss"] for h in s["history"] if h.get("split") == "train"]
print(json.dumps({"tag": a.tag, "data": Path(a.data).name, "model": json.loads(a.model), "images": a.images, "lr": a.lr,
                  "wd": a.wd, "augment": a.augment, "val_top1": s["eval"]["val"]["top1"], "val_curve": vals,
                  "best_val_top1": max(vals), "val_loss": s["eval"]["val"]["loss"], "train_loss_end": train[-1],
                  "loop_s": round(s["loop_time_s"], 1), "img_per_s": round(s["img_per_s"]), "precision": s["precision"],
                  "train_mflop_per_img": round(s["train_flops_per_img"] / 1e6)}))
