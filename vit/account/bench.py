"""Training throughput and FLOP utilisation of each model at its training shape (`make bench`).

    python -m vit.account.bench --out=results/bench/bench.json --threads=2 --img_size=32 --batch_size=128 \
        '--models={"vit": {"arch": "vit", ...}, ...}'

The denominator of MFU is this machine's fp32 matmul peak, measured in the same process (best of a
few large and ViT-shaped matmuls), so the ratio holds on any machine. Throughput is the median of
several timed forward + backward + AdamW steps after warm-up; FLOPs come from FlopCounterMode.
Writes bench.json and a Markdown table bench.md beside it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from vit import cli, models
from vit.models import flops
from vit.account.peak import matmul_peak, median_time
from vit.logs import atomic_write_bytes, environment, write_json


@dataclass
class Config:
    out: str = ""
    models: dict = field(default_factory=dict)  # name -> model spec (as in config.yaml)
    img_size: int = 32
    batch_size: int = 128
    num_classes: int = 64
    warmup: int = 3
    repeats: int = 10
    threads: int = 0


def bench_model(name: str, spec: dict, cfg: Config, device) -> dict:
    spec = {k: v for k, v in spec.items() if k not in ("label", "paper_row")}
    model = models.to_device(models.create(spec, cfg.num_classes, cfg.img_size), device)
    count = flops.count(model, cfg.img_size, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(cfg.batch_size, 3, cfg.img_size, cfg.img_size, device=device)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,), device=device)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = median_time(step, cfg.warmup, cfg.repeats)
    return {"model": name, "img_size": cfg.img_size, "batch_size": cfg.batch_size,
            "params": models.num_params(model), "train_flops_per_img": count["train_flops_per_img"],
            "step_s": t, "img_per_s": cfg.batch_size / t,
            "gflops_per_s": count["train_flops_per_img"] * cfg.batch_size / t / 1e9}


def bench(cfg: Config) -> dict:
    if not cfg.out or not cfg.models:
        raise cli.ConfigError("--out and --models are required")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak = matmul_peak(device)
    rows = [bench_model(name, spec, cfg, device) for name, spec in cfg.models.items()]
    for r in rows:
        r["mfu"] = r["gflops_per_s"] / peak["peak_gflops"]
    result = {"peak": peak, "models": rows, "env": environment()}
    write_json(cfg.out, result)
    lines = [f"fp32 matmul peak: {peak['peak_gflops']:.0f} GFLOP/s ({result['env']['device']}, "
             f"{torch.get_num_threads()} threads)", "",
             "| model | img | batch | params | train MFLOP/img | img/s | GFLOP/s | MFU |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['img_size']} | {r['batch_size']} | {r['params'] / 1e6:.2f}M | "
              f"{r['train_flops_per_img'] / 1e6:.0f} | {r['img_per_s']:.0f} | {r['gflops_per_s']:.0f} | "
              f"{100 * r['mfu']:.0f} % |" for r in rows]
    text = "\n".join(lines) + "\n"
    atomic_write_bytes(Path(cfg.out).with_suffix(".md"), text.encode())
    print(text)
    return result


if __name__ == "__main__":
    cli.main_guard(bench, Config)
