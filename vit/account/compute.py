"""Compute accounting: what every training run cost, measured, in one table (paper sec. 4.4, Table 6).

    python -m vit.account.compute --out=results/compute/compute.parquet --peak=results/compute/peak.json \
        results/pretrain/*/*/summary.json results/finetune/*/*/runs.json results/benchmarks/*/*.tsv

Per run (from the run's own summary): images seen, FLOPs per image counted by FlopCounterMode (forward,
and forward + backward) and, for ViTs, by the analytical formula beside it; total training FLOPs; wall
time of training steps only (evaluation and the first steps of a process excluded); throughput; peak
memory (process RSS, and GPU memory on CUDA); core-hours on CPU (timed seconds x threads) or GPU-hours
(timed seconds x processes, one GPU each); and MFU, the achieved FLOP/s over this machine's measured
matmul peak (vit.account.peak) for the run's threads or GPUs. Per Snakemake job (from its `benchmark:` file):
wall time, CPU time and peak memory, written next to it as jobs.parquet.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vit import cli
from vit.models import flops
from vit.logs import read_benchmark, read_json, redo, write_parquet
from vit.account.peak import run_peak_gflops
from vit.evaluate.collect import read_runs


@dataclass
class Config:
    out: str = ""                                # compute.parquet path; jobs.parquet is written beside it
    peak: str = ""                               # peak.json of vit.account.peak ("" = no MFU column values)
    inputs: list = field(default_factory=list)   # summary.json, runs.json and benchmark .tsv files


def run_row(s: dict, stage: str, peak: dict | None = None) -> dict:
    c = s["config"]
    threads = c.get("threads") or s["env"].get("torch_threads") or 1
    processes = s.get("processes", 1)
    gpu = s["env"]["device"] != "cpu"
    flops_total = s["train_flops_per_img"] * s["images_seen"]
    # achieved rate over the timed steps; timed_images excludes the untimed first steps
    achieved = s["train_flops_per_img"] * (s["img_per_s"] or 0) / 1e9
    precision = "bf16" if s.get("precision", "fp32").startswith("bf16") else "fp32"
    peak_gflops = run_peak_gflops(peak, s["env"], threads, processes, precision) if peak else None
    formula = flops.spec_forward_flops(c.get("model_args") or {}, c["img_size"], s["num_classes"])
    return {
        "stage": stage, "model": s["model"], "upstream": s["upstream"], "task": s.get("task", s["upstream"]),
        "resolution": c["img_size"], "seed": c["seed"], "params": s["params"], "steps": s["steps"],
        "batch_size": c["batch_size"], "images_seen": s["images_seen"],
        "fwd_flops_per_img": s["fwd_flops_per_img"], "fwd_flops_formula": formula,
        "train_flops_per_img": s["train_flops_per_img"],
        "train_flops": flops_total, "train_time_s": s["train_time_s"], "img_per_s": s["img_per_s"],
        "achieved_gflops": achieved, "peak_gflops": peak_gflops,
        "mfu": achieved / peak_gflops if peak_gflops else None,
        "threads": threads, "processes": processes, "precision": precision,
        "core_hours": 0.0 if gpu else s["train_time_s"] * threads / 3600,
        "gpu_hours": s["train_time_s"] * processes / 3600 if gpu else 0.0,
        "device": s["env"]["device"], "peak_rss_mb": s["peak_rss_mb"], "peak_gpu_mem_mb": s.get("peak_gpu_mem_mb"),
    }


def job_row(path: Path) -> dict:
    """One Snakemake benchmark record; the file name is <model>-<upstream>.tsv under <rule>/."""
    b = read_benchmark(path)
    model, _, upstream = path.stem.partition("-")
    num = lambda v: float(v) if str(v) not in ("NA", "nan", "-") else None  # noqa: E731
    return {"rule": path.parent.name, "model": model, "upstream": upstream, "wall_s": num(b["s"]),
            "cpu_s": num(b["cpu_time"]), "max_rss_mb": num(b["max_rss"]), "file": str(path)}


def account(cfg: Config) -> pd.DataFrame:
    if not cfg.out:
        raise cli.ConfigError("--out is required")
    peak = read_json(cfg.peak, redo(cfg.peak, "peak rule"), dict) if cfg.peak else None
    rows, jobs = [], []
    for name in cfg.inputs:
        path = Path(name)
        if path.suffix == ".tsv":
            jobs.append(job_row(path))
        elif path.name == "runs.json":
            rows += [run_row(s, "finetune", peak) for s in read_runs(path)]
        elif path.name == "summary.json":
            rows.append(run_row(read_json(path, redo(path), dict), "pretrain", peak))
        else:
            raise cli.ConfigError(f"{path}: expected summary.json, runs.json or a benchmark .tsv")
    table = pd.DataFrame(rows)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(out, table)
    write_parquet(out.with_name("jobs.parquet"), pd.DataFrame(jobs))
    by_stage = table.groupby("stage")[["train_flops", "train_time_s", "core_hours", "gpu_hours"]].sum()
    print(f"{len(table)} runs, {len(jobs)} jobs -> {out}\n{by_stage.to_string()}")
    return table


if __name__ == "__main__":
    cli.main_guard(account, Config)
