"""This machine's measured matmul peak: the denominator of model FLOPs utilisation (MFU).

    python -m vit.account.peak --out=results/compute/peak.json --threads=2

Vendors' peaks are not what a machine delivers (turbo, memory, thermal limits), so MFU is taken against
the best rate measured here, in the precision the training runs use: fp32 on CPU, and bf16 where the CPU
has bf16 units (vit.train.forms trains ViTs in bf16 there), at every thread count from 1 to --threads,
because a job's MFU must be taken against the peak of the threads it had; bf16 (autocast's matmul
precision in vit.train) and fp32 on each visible GPU. The workflow runs this once per results folder, alone (it asks for all cores).
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

import torch

from vit import cli
from vit.logs import environment, write_json
from vit.train import forms

# a square matmul and two ViT-shaped ones (tokens*batch x D x 4D); the best of them is the peak
SHAPES = [(2048, 2048, 2048), (8320, 128, 512), (8320, 512, 128)]
GPU_SHAPES = [(8192, 8192, 8192), (16384, 1024, 4096)]


@dataclass
class Config:
    out: str = ""
    threads: int = 0    # CPU: measure 1..threads threads (0 = all cores)
    repeats: int = 10


def median_time(fn, warmup: int, repeats: int) -> float:
    """Median seconds of `fn` after warm-up (CUDA synchronised, so kernels are timed, not launches)."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(device, dtype=torch.float32, repeats: int = 10, shapes=SHAPES) -> dict:
    """Best matmul rate (GFLOP/s, 1 multiply-add = 2 FLOPs) over `shapes`."""
    best = {}
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        t = median_time(lambda: a @ b, 3, repeats)
        best[f"{m}x{k}x{n}"] = 2 * m * k * n / t / 1e9
    return {"peak_gflops": max(best.values()), "shapes_gflops": best}


def measure(cfg: Config) -> dict:
    if not cfg.out:
        raise cli.ConfigError("--out is required (e.g. results/compute/peak.json)")
    threads = cfg.threads or os.cpu_count() or 1
    result = {"cpu_fp32_gflops": {}, "gpu": [], "env": environment()}
    # bf16 too where the CPU has bf16 units: vit.train then trains ViTs in bf16 autocast (vit.train.forms)
    fast_bf16 = forms.bf16_units()
    if fast_bf16:
        result["cpu_bf16_gflops"] = {}
    for t in range(1, threads + 1):
        torch.set_num_threads(t)
        result["cpu_fp32_gflops"][str(t)] = matmul_peak("cpu", torch.float32, cfg.repeats)["peak_gflops"]
        print(f"cpu fp32, {t} thread(s): {result['cpu_fp32_gflops'][str(t)]:.0f} GFLOP/s", flush=True)
        if fast_bf16:
            result["cpu_bf16_gflops"][str(t)] = matmul_peak("cpu", torch.bfloat16, cfg.repeats)["peak_gflops"]
            print(f"cpu bf16, {t} thread(s): {result['cpu_bf16_gflops'][str(t)]:.0f} GFLOP/s", flush=True)
    for i in range(torch.cuda.device_count()):
        # tf32 off: the fp32 number is true fp32; bf16 is what vit.train's autocast multiplies in
        torch.backends.cuda.matmul.allow_tf32 = False
        dev = torch.device("cuda", i)
        gpu = {"index": i, "name": torch.cuda.get_device_name(i),
               "bf16_gflops": matmul_peak(dev, torch.bfloat16, cfg.repeats, GPU_SHAPES)["peak_gflops"],
               "fp32_gflops": matmul_peak(dev, torch.float32, cfg.repeats, GPU_SHAPES)["peak_gflops"]}
        result["gpu"].append(gpu)
        print(f"{gpu['name']}: bf16 {gpu['bf16_gflops'] / 1e3:.0f} TFLOP/s, fp32 {gpu['fp32_gflops'] / 1e3:.0f} TFLOP/s")
    write_json(cfg.out, result)
    return result


def run_peak_gflops(peak: dict, env: dict, threads: int, processes: int = 1, precision: str = "fp32") -> float | None:
    """The measured peak a run had, from its summary's `env`: bf16 x processes on GPUs of the same name;
    on CPU the run's precision at its thread count, if it ran on the machine the peak was measured on.
    None when the peak was measured on other hardware: then there is no honest MFU for the run."""
    if env.get("device", "cpu") != "cpu":
        gpus = [g for g in peak.get("gpu", []) if g["name"] == env["device"]]
        return gpus[0]["bf16_gflops"] * processes if gpus else None
    here, there = peak.get("env", {}), env
    if (here.get("host"), here.get("cpu_count")) != (there.get("host", here.get("host")), there.get("cpu_count")):
        return None
    return peak.get(f"cpu_{precision}_gflops", {}).get(str(threads))

if __name__ == "__main__":
    cli.main_guard(measure, Config)
