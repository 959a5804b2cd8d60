"""The measured compute of a run as tables and sentences: per stage and model, per Snakemake job, the
machine's matmul peak, the FLOP counter against the ViT formula, and the plan's estimate beside it."""
from __future__ import annotations

import pandas as pd

from vit.account import cost
from vit.plan import Plan


def _pflops(v: pd.Series) -> float:
    return v.sum() / 1e15


def _pct_median(v: pd.Series) -> float:
    return 100 * v.median()


def cost_table(compute: pd.DataFrame) -> pd.DataFrame:
    """Measured compute per stage and model: sums over runs, medians of the rates."""
    return compute.groupby(["stage", "model"]).agg(
        runs=("seed", "size"), images=("images_seen", "sum"), PFLOPs=("train_flops", _pflops),
        train_s=("train_time_s", "sum"), core_hours=("core_hours", "sum"), gpu_hours=("gpu_hours", "sum"),
        GFLOP_per_s=("achieved_gflops", "median"), MFU_pct=("mfu", _pct_median),
        peak_rss_MB=("peak_rss_mb", "max")).reset_index()


def jobs_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Snakemake's `benchmark:` records per rule: the whole job, start-up and evaluation included."""
    if jobs.empty:
        return jobs
    return jobs.groupby("rule").agg(jobs=("file", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
                                    max_rss_MB=("max_rss_mb", "max")).reset_index()


def flop_check(compute: pd.DataFrame) -> str:
    """FlopCounterMode against the analytical ViT formula, over every ViT run of the results."""
    vit = compute.dropna(subset=["fwd_flops_formula"])
    if vit.empty:
        return ""
    ratio = vit.fwd_flops_per_img / vit.fwd_flops_formula
    return (f"FLOPs per image are counted by FlopCounterMode on each run's model; for the {len(vit)} ViT runs the "
            f"analytical formula (`vit.models.flops.vit_forward_flops`, plus the head) gives the same forward FLOPs: counted / formula "
            f"= {ratio.min():.6f} to {ratio.max():.6f} (the test allows 1 %).")


def peak_text(peak: dict) -> str:
    cpu = "; ".join(f"{precision} " + ", ".join(f"{v:.0f} GFLOP/s with {k} thread{'s' if k != '1' else ''}"
                                                for k, v in peak.get(f"cpu_{precision}_gflops", {}).items())
                    for precision in ("fp32", "bf16") if peak.get(f"cpu_{precision}_gflops"))
    gpus = "; ".join(f"{g['name']}: bf16 {g['bf16_gflops'] / 1e3:.0f} TFLOP/s" for g in peak.get("gpu", []))
    return (f"MFU is the achieved FLOP rate of the timed training steps over this machine's matmul peak, measured "
            f"by the `peak` rule (`results/compute/peak.json`, host `{peak.get('env', {}).get('host', '?')}`): "
            f"{cpu}" + (f"; {gpus}" if gpus else "") + ". A run is compared with the peak of its own "
            "precision and thread count (or GPUs).")


def _device(compute: pd.DataFrame, peak: dict) -> tuple[str, str] | None:
    """(device for vit.account.cost, unit of its hours) of the runs, or None where cost knows no peak."""
    devices = set(compute.device)
    names = {name: k for name in devices for k in cost.PEAKS if k.upper() in name.upper()}
    if devices == {"cpu"} and peak.get("cpu_fp32_gflops"):
        return "cpu", "core"
    if len(devices) == 1 and len(names) == 1:
        device = next(iter(names.values()))
        return device, device.upper()
    return None


def estimate_vs_measured(p: Plan, compute: pd.DataFrame, peak: dict) -> list[str]:
    """What `python -m vit.account.cost` estimates for this config before launch, beside what the run measured:
    FLOPs per stage (the plan's images x FlopCounterMode's FLOPs per image) and device-hours (at the
    measured 1-core peak and vit.account.cost's assumed CPU utilisation, or a GPU's datasheet peak at 40 %)."""
    found = _device(compute, peak)
    if found is None:
        return ["(no estimate-versus-measured comparison: the runs' devices " + ", ".join(sorted(set(compute.device)))
                + " have no peak that vit.account.cost knows)", ""]
    device, unit = found
    peak_flops, mfu, _ = cost.throughput(device, peak)
    table = cost.compare(cost.estimate(p, device, mfu, peak_flops), compute)
    table = table.rename(columns=lambda c: c.replace("device-hours", f"{unit}-hours"))
    return ["### Estimated before launch vs measured", "",
            f"`python -m vit.account.cost --configfile=<this config> --device={device}` plans the same runs before any "
            f"of them starts: images from the config, FLOPs per image from FlopCounterMode, hours at "
            f"{peak_flops / 1e9:,.0f} GFLOP/s per {unit.lower() if unit == 'core' else 'GPU'} and an assumed "
            f"{mfu:.0%} MFU. Beside it, this run's timed training steps:", "",
            table.to_markdown(index=False, floatfmt=".3g"), "",
            "A FLOPs ratio near 1 says the plan counts the work the runs did (a Noisy Student's set is counted "
            "with its whole pool, an upper bound); the hours ratio is the assumed utilisation against the "
            "achieved one.", ""]
