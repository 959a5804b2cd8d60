r"""The training loop's speed beside the loop a user would write (`make bench`).

    python -m vit.account.bench --out=results/bench/bench.json --threads=1 --repeats=3 \
        '--cases={"vit": {"data": "results/data/shapes_l", "settings": {...vit.train settings...}}, ...}'

For each case, a model at its pre-training shape with its run's settings, two loops train the same model
on the same images, with the same batch and threads, in one process, alternating and repeated:
  ours   vit.train as the workflow runs it (`vit.train.loop.train`): its data path and augmentation (the next
         batch prepared in a thread while a step trains), schedule, clipping, logging and step bookkeeping, in
         this machine's step form (vit.train.forms) and, with --forms, in others too; timed over the loop's
         wall time (loop_time_s: steps and what follows each), evaluation and checkpoints off;
  plain  ten lines a user would write: the model as timm builds it, `torch.optim.AdamW(model.parameters())`,
         one batch already in memory as a float tensor, no augmentation, clipping or schedule.
Both skip their first two steps (allocation, kernel selection). The denominator of MFU is this machine's
matmul peak in the step's precision at the same thread count, measured in the same run (vit.account.peak). Writes bench.json
and a Markdown table bench.md beside it.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from vit import cli, data, models
from vit.account.peak import matmul_peak
from vit.logs import atomic_write_bytes, environment, write_json
from vit.models import flops
from vit.train import forms, loop

WARMUP = 2  # steps both loops leave untimed, as vit.train's Progress does


@dataclass
class Config:
    out: str = ""
    cases: dict = field(default_factory=dict)  # name -> {"data": prepared dataset, "settings": vit.train settings}
    seconds: float = 3.0  # each measurement times about this long: a case's steps come from a first short
                          # plain measurement (at least 3, at most 100 steps, after WARMUP untimed ones)
    repeats: int = 3      # measurements per loop and case, alternating ours and plain
    threads: int = 1      # torch threads of both loops (the workflow's training jobs run with 1)
    forms: list = field(default_factory=list)  # vit.train also in these step forms (VIT_STEP_FORM values; e.g.
                          # fp32/explicit: what a CPU without bf16 units runs), where they differ from this machine's


def ours(case: dict, steps: int, threads: int, form: str = "") -> dict:
    """vit.train's loop on the case's data and settings for WARMUP + `steps` steps, in `form` (precision/attention;
    "" = the case's settings, else this machine's rule: vit.train.forms): its img/s and the form it ran in."""
    precision, _, attention = form.partition("/")
    precision = precision or case["settings"].get("precision", "")
    attention = attention or case["settings"].get("attention", "")
    with tempfile.TemporaryDirectory(prefix="bench-") as out:
        settings = {**case["settings"], "data": case["data"], "out": out, "steps": WARMUP + steps, "epochs": 0.0,
                    "val_split": "", "test_split": "", "fewshot": [], "eval_every": 0, "keep_best": False, "ckpt_every": 0,
                    "save_checkpoint": False, "threads": threads, "time_limit_s": 0.0,
                    "precision": precision or "auto", "attention": attention or "auto"}
        words = [f"--{k}={v if isinstance(v, str) else cli.literal(v)}" for k, v in settings.items()]
        summary = loop.train(cli.parse(loop.Config, words))
    return {"img_per_s": summary["timed_images"] / summary["loop_time_s"], "form": summary["form"]}


def variants(case: dict, num_classes: int, extra: list[str]) -> list[str]:
    """The forms vit.train is timed in for a case: "" (the rule), then each of `extra` that differs from it
    (attention models only: a convnet's form is its precision, which the rule fixes at fp32 on CPUs)."""
    model = models.create(case["settings"]["model_args"], num_classes, case["settings"].get("img_size", 32))
    if not forms.has_attention(model):
        return [""]
    rule = str(forms.choose(model, torch.device("cpu")))
    return [""] + [f for f in extra if f != rule]


def plain(case: dict, batch: tuple[torch.Tensor, torch.Tensor], num_classes: int, steps: int) -> dict:
    """The loop a user would write around the same timm model: its img/s."""
    s = case["settings"]
    model = models.create(s["model_args"], num_classes, s["img_size"])  # timm's constructor, timm's defaults
    opt = torch.optim.AdamW(model.parameters(), lr=s.get("lr", 1e-3))
    x, y = batch
    for i in range(WARMUP + steps):
        if i == WARMUP:
            t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"img_per_s": steps * len(x) / (time.perf_counter() - t0)}


def shape(case: dict, num_classes: int) -> dict:
    """The case's model: training FLOPs per image (FlopCounterMode, as vit.train counts them) and whether
    it is a convnet."""
    s = case["settings"]
    model = models.create(s["model_args"], num_classes, s["img_size"])
    return {"train_flops_per_img": flops.count(model, s["img_size"], torch.device("cpu"))["train_flops_per_img"],
            "convnet": models.is_convnet(model)}


def first_batch(case: dict) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
    """The plain loop's batch, the first `batch_size` training images at the case's resolution as floats
    in [-1, 1], and the dataset's class count."""
    s = case["settings"]
    xs, ys, manifest = data.load_split(case["data"], "train")
    n = s.get("batch_size", 128)
    x = data.normalize(data.to_tensor(xs[:n], s.get("img_size", 32)))
    return (x, torch.from_numpy(ys[:n])), manifest["num_classes"]


def bench(cfg: Config) -> dict:
    if not cfg.out or not cfg.cases:
        raise cli.ConfigError("--out and --cases are required")
    if torch.cuda.is_available():
        raise cli.ConfigError("vit.account.bench times the loops on the CPU, and vit.train would take the GPU: "
                              "hide it with CUDA_VISIBLE_DEVICES=")
    skipped = {n: c for n, c in cfg.cases.items() if c["settings"].get("objective", "classify") != "classify"}
    cases = {n: c for n, c in cfg.cases.items() if n not in skipped}
    torch.set_num_threads(cfg.threads)
    peak = matmul_peak("cpu")
    batches = {name: first_batch(case) for name, case in cases.items()}
    steps = {}
    for name, case in cases.items():  # how many steps take about cfg.seconds
        ips = plain(case, *batches[name], 3)["img_per_s"]
        steps[name] = min(100, max(3, round(cfg.seconds * ips / len(batches[name][0][0]))))
    info = {name: shape(case, batches[name][1]) for name, case in cases.items()}
    tried = {name: variants(case, batches[name][1], cfg.forms) for name, case in cases.items()}
    times = {(name, loop_name): [] for name in cases for loop_name in ["plain"] + tried[name]}
    ran = {}  # (case, variant) -> the form vit.train ran in
    with tqdm(total=cfg.repeats * sum(1 + len(v) for v in tried.values()), desc="bench", unit="loop") as bar:
        for r in range(cfg.repeats):
            for name, case in cases.items():
                # alternate which loop goes first, so that a drift in the machine's speed favours neither
                order = ["plain"] + tried[name] if r % 2 else tried[name] + ["plain"]
                for which in order:
                    if which == "plain":
                        res = plain(case, *batches[name], steps[name])
                    else:
                        res = ours(case, steps[name], cfg.threads, which)
                        ran[name, which] = res["form"]
                    times[name, which].append(res["img_per_s"])
                    bar.update()
    peak_end = matmul_peak("cpu")  # the machine may have slowed or sped up over the run: take the better
    peak_gflops = max(peak["peak_gflops"], peak_end["peak_gflops"])
    # bf16 steps are measured against the bf16 peak where the CPU has bf16 units (elsewhere a bf16 matmul is
    # emulated, hundreds of times slower: no peak to speak of)
    bf16_gflops = (matmul_peak("cpu", torch.bfloat16)["peak_gflops"]
                   if forms.bf16_units() and any(f.startswith("bf16") for f in ran.values()) else None)
    rows = []
    for name, case in cases.items():
        s = case["settings"]
        theirs = times[name, "plain"]
        for variant in tried[name]:
            mine = times[name, variant]
            ratios = [a / b for a, b in zip(mine, theirs)]
            row = {"case": name, "model": s.get("model", name), "model_args": s["model_args"],
                   "img_size": s.get("img_size", 32), "batch_size": s.get("batch_size", 128), "steps": steps[name],
                   "convnet": info[name]["convnet"], "form": ran[name, variant], "forced": bool(variant),
                   "train_flops_per_img": info[name]["train_flops_per_img"], "ours_img_per_s": statistics.median(mine),
                   "plain_img_per_s": statistics.median(theirs), "ours_runs": mine, "plain_runs": theirs,
                   "ratio": statistics.median(ratios), "ratio_runs": ratios}
            for which in ("ours", "plain"):
                row[f"{which}_gflops_per_s"] = row[f"{which}_img_per_s"] * row["train_flops_per_img"] / 1e9
                bf16 = which == "ours" and row["form"].startswith("bf16")
                denominator = bf16_gflops if bf16 else peak_gflops
                row[f"{which}_mfu"] = row[f"{which}_gflops_per_s"] / denominator if denominator else None
            rows.append(row)
    result = {"threads": cfg.threads, "seconds": cfg.seconds, "repeats": cfg.repeats, "forms": cfg.forms,
              "peak_gflops": peak_gflops,
              "bf16_peak_gflops": bf16_gflops, "peak": [peak, peak_end],
              "cases": rows, "not_compared": {n: f"objective={c['settings']['objective']}: a plain timm loop "
                                                 f"trains a classifier, not this" for n, c in skipped.items()},
              "env": environment()}
    write_json(cfg.out, result)
    text = markdown(result)
    atomic_write_bytes(Path(cfg.out).with_suffix(".md"), text.encode())
    print(text)
    return result


def markdown(result: dict) -> str:
    lines = [f"vit.train's loop against a plain timm loop, same model, batch and images, {result['threads']} thread(s); "
             f"median of {result['repeats']} alternating measurements of ~{result['seconds']:.0f} s each. fp32 matmul "
             f"peak measured in the same run: {result['peak_gflops']:.0f} GFLOP/s ({result['env']['device']}, "
             f"{result['env']['cpu_model']})" + (f"; bf16: {result['bf16_peak_gflops']:.0f} GFLOP/s, the denominator "
                                                  f"of the bf16 steps' MFU" if result['bf16_peak_gflops'] else "")
             + ". The plain loop runs in fp32 with timm's attention (SDPA).", "",
             "| case | img | batch | train MFLOP/img | vit.train form | vit.train img/s | plain img/s | vit.train / plain | "
             "vit.train MFU | plain MFU |", "|---|---|---|---|---|---|---|---|---|---|"]
    def pct(v):
        return f"{100 * v:.0f} %" if v is not None else "n/a"
    for r in result["cases"]:
        form = f"{r['form']} (forced)" if r.get("forced") else r["form"]
        lines.append(f"| {r['case']} | {r['img_size']} | {r['batch_size']} | {r['train_flops_per_img'] / 1e6:.0f} | "
                     f"{form} | {r['ours_img_per_s']:.0f} | {r['plain_img_per_s']:.0f} | **{r['ratio']:.2f}x** "
                     f"({min(r['ratio_runs']):.2f}-{max(r['ratio_runs']):.2f}) | {pct(r['ours_mfu'])} | "
                     f"{pct(r['plain_mfu'])} |")
    if any(r.get("forced") for r in result["cases"]):
        lines.append("\n(forced): vit.train in a form this machine's rule does not take (VIT_STEP_FORM; fp32/explicit is "
                     "what a CPU without bf16 units runs).")
    if result["not_compared"]:
        lines.append("\nNot compared: " + "; ".join(f"{n} ({why})" for n, why in result["not_compared"].items()) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    cli.main_guard(bench, Config)
