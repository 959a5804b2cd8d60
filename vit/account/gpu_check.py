r"""The GPU check (`make gpu-check`): what this pipeline does on one GPU node, measured in one run of a few
minutes on an H100 or H200, written to docs/benchmarks/gpu.json.

    python -m vit.account.gpu_check --out=docs/benchmarks/gpu.json      # on a GPU node
    python -m vit.account.gpu_check --toy --out=/tmp/gpu.json           # every part at toy size, on CPU (tests)

  step      a bf16 training step of ViT-B/16 at 224 px: vit.train's loop against a plain timm loop (bf16
            autocast, torch.optim.AdamW, one batch on the device), same model and batch, alternating; MFU
            against the bf16 matmul peak measured in the same run, and against the datasheet's
  input     the sharded JPEG store (500 x 375 px originals) through the training loop's own DataLoader
            workers (inception crop to 224 px, uint8 to the device, normalised there): images/s against
            the step's, i.e. whether the node's cores keep the GPU fed
  finetune  the paper's transfer at 384 px: ViT-B/16 weights in the released .npz layout (random values;
            vit.models.weights.vit_npz) imported as the paper presets import them, then fine-tuned from the
            shards at 384 px, the position embeddings resampled in 2D (14x14 -> 24x24)
  torchrun  NCCL collectives of vit.train.distributed under torchrun (one process per GPU; a process group
            even for one), and vit.train itself under torchrun
  cifar     configs/paper-cifar.yaml's first steps: its fine-tuning job with its own settings (batch 512,
            accumulation from its memory budget), on CIFAR-10 in torchvision's layout (random pixels),
            cut to a few steps; its img/s gives the preset's projected hours on this GPU
Each part's result, or its error, is recorded; the exit status is 1 when a part failed. `--toy` shrinks
every size (a tiny ViT, 32-48 px, a few images) so that the same code runs on a CPU in the test suite.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from vit import cli, data, models
from vit.account import bench, gpu_data
from vit.account.cost import PEAKS
from vit.account.peak import GPU_SHAPES, matmul_peak
from vit.logs import environment, read_yaml, write_json
from vit.models import flops

ROOT = Path(__file__).resolve().parents[2]  # the repository (vit/account/gpu_check.py)


@dataclass(frozen=True)
class Size:
    model: str             # timm name of the ViT-B/16 (the toy: a ViT-Ti/16)
    tag: str               # its released ImageNet-21k weights' timm tag
    img: int               # the step's resolution
    ft_img: int            # the fine-tune's
    batch: int
    ft_batch: int
    steps: int             # timed steps per measurement
    repeats: int           # measurements per loop, alternating
    images: int            # JPEGs in the sharded store
    jpeg: tuple            # their width, height
    cifar_train: int       # CIFAR-10 training images (random pixels)
    cifar_steps: int


FULL = Size("vit_base_patch16_224", "vit_base_patch16_224.orig_in21k", 224, 384, 128, 64, 20, 3, 2048, (500, 375),
            10_000, 6)
TOY = Size("vit_tiny_patch16_224", "vit_tiny_patch16_224.augreg_in21k", 32, 48, 8, 8, 3, 1, 48, (64, 48), 100, 2)


@dataclass
class Config:
    out: str = "docs/benchmarks/gpu.json"
    work: str = ""          # scratch folder ("" = a temporary one, removed at the end)
    toy: bool = False       # every part at toy size, on whatever device there is (the test suite: CPU)
    parts: list = field(default_factory=list)  # the parts to run ([] = all, in order)
    workers: int = 0        # DataLoader workers of the input and fine-tune parts (0 = the node's cores - 1)
    collectives: str = ""   # internal: under torchrun, run the collectives and write them here


PARTS = ("step", "input", "finetune", "torchrun", "cifar")


def _device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- parts
def _ours(arrays: Path, size: Size, steps: int) -> dict:
    case = {"data": str(arrays), "settings": {
        "model": "vit_b16", "model_args": {"arch": "timm", "name": size.model}, "img_size": size.img,
        "batch_size": size.batch, "optimizer": "adam", "lr": 1e-3, "grad_clip": 1.0, "augment": "none"}}
    return bench.ours(case, steps, threads=0)


def plain(size: Size, dev: torch.device, steps: int) -> dict:
    """The loop a user would write on a GPU: the timm model as timm builds it, bf16 autocast,
    torch.optim.AdamW, one batch already on the device."""
    import timm

    model = timm.create_model(size.model, num_classes=10, img_size=size.img).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(size.batch, 3, size.img, size.img, device=dev)
    y = torch.randint(0, 10, (size.batch,), device=dev)
    for i in range(bench.WARMUP + steps):
        if i == bench.WARMUP:
            _sync(dev)
            t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(dev)
    return {"img_per_s": steps * size.batch / (time.perf_counter() - t0)}


def peaks(dev: torch.device) -> dict:
    """The bf16 matmul peak measured here (GPU: large shapes; CPU: vit.account.peak's), and the datasheet's."""
    if dev.type == "cuda":
        measured = matmul_peak(dev, torch.bfloat16, 3, GPU_SHAPES)["peak_gflops"] * 1e9
        name = torch.cuda.get_device_name(dev)
        sheet = PEAKS["h100"] if any(k in name for k in ("H100", "H200")) else None  # same dense bf16 rate
    else:
        measured, sheet = matmul_peak("cpu", torch.float32)["peak_gflops"] * 1e9, None
    return {"measured_flops": measured, "datasheet_flops": sheet}


def part_step(work: Path, size: Size, dev: torch.device, ctx: dict) -> dict:
    _, arrays = gpu_data.jpeg_store(work, size.images, size.jpeg, size.img)
    model = models.create({"arch": "timm", "name": size.model}, 10, size.img)
    per_img = flops.count(model, size.img, "cpu")["train_flops_per_img"]
    times = {"ours": [], "plain": []}
    form = ""
    for r in range(size.repeats):
        for which in (("ours", "plain") if r % 2 == 0 else ("plain", "ours")):
            if which == "ours":
                res = _ours(arrays, size, size.steps)
                form = res["form"]
            else:
                res = plain(size, dev, size.steps)
            times[which].append(res["img_per_s"])
    p = ctx.setdefault("peaks", peaks(dev))
    ours, theirs = statistics.median(times["ours"]), statistics.median(times["plain"])
    ctx["step_img_per_s"] = ours
    out = {"model": size.model, "img_size": size.img, "batch": size.batch, "form": form,
           "ours_img_per_s": ours, "plain_img_per_s": theirs, "ratio": ours / theirs,
           "ours_runs": times["ours"], "plain_runs": times["plain"], "train_flops_per_img": per_img,
           "ours_mfu_measured_peak": ours * per_img / p["measured_flops"],
           "plain_mfu_measured_peak": theirs * per_img / p["measured_flops"], **p}
    if p["datasheet_flops"]:
        out["ours_mfu_datasheet"] = ours * per_img / p["datasheet_flops"]
    return out


def part_input(work: Path, size: Size, dev: torch.device, ctx: dict, workers: int) -> dict:
    from vit.train import batches, loop

    shards, _ = gpu_data.jpeg_store(work, size.images, size.jpeg, size.img)
    x, y, manifest = data.load_split(shards, "train")
    cfg = loop.Config(batch_size=size.batch, img_size=size.img, augment="inception_crop", seed=0)
    steps = max(4, min(40, len(x) // size.batch - 1))
    feed = batches.Feed(x, torch.from_numpy(y), cfg, manifest["num_classes"], [slice(0, size.batch)], steps, workers)
    try:
        for step in range(steps):
            if step == 1:  # after the workers' start and first batches
                _sync(dev)
                t0 = time.perf_counter()
            xb, yb = feed.get(step)[0]
            xb = data.normalize(xb.to(dev, non_blocking=True))
        _sync(dev)
        rate = (steps - 1) * size.batch / (time.perf_counter() - t0)
    finally:
        feed.close()
    step_rate = ctx.get("step_img_per_s")
    return {"workers": workers or batches.default_workers(), "img_size": size.img, "jpeg_size": list(size.jpeg),
            "img_per_s": rate, "step_img_per_s": step_rate,
            "input_over_step": rate / step_rate if step_rate else None,
            "input_bound": (rate < step_rate) if step_rate else None}


def _train(settings: dict) -> dict:
    from vit.train import loop

    words = [f"--{k}={v if isinstance(v, str) else cli.literal(v)}" for k, v in settings.items()]
    return loop.train(cli.parse(loop.Config, words))


def part_finetune(work: Path, size: Size, dev: torch.device, ctx: dict, workers: int) -> dict:
    shards, _ = gpu_data.jpeg_store(work, size.images, size.jpeg, size.img)
    ckpt = gpu_data.import_released(work, size.model, size.tag)
    model_args = models.load_checkpoint(str(ckpt))["model_args"]  # as vit.train.finetune reads it
    s = _train({"data": str(shards), "out": str(work / "finetune"), "init": str(ckpt), "model": "vit_b16",
                "model_args": model_args,
                "img_size": size.ft_img, "steps": bench.WARMUP + size.steps, "batch_size": size.ft_batch,
                "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "grad_clip": 1.0, "augment": "inception_crop",
                "warmup_steps": 2, "schedule": "cosine", "ckpt_every": 0, "save_checkpoint": False,
                "loader_workers": workers})
    ips = s["timed_images"] / s["loop_time_s"]
    p = ctx.setdefault("peaks", peaks(dev))
    return {"img_size": size.ft_img, "batch": size.ft_batch, "form": s["form"], "img_per_s": ips,
            "grid_size": s["grid_size"], "posemb_resampled": s["init"]["posemb_resampled"],
            "head_reset": s["init"]["head_reset"], "final_train_loss": s["final_train_loss"],
            "mfu_measured_peak": ips * s["train_flops_per_img"] / p["measured_flops"],
            "peak_gpu_mem_mb": s["peak_gpu_mem_mb"]}


def collectives(out: str) -> None:
    """Under torchrun: a process group over NCCL (gloo without GPUs), also for one process, and the
    decisions vit.train broadcasts from rank 0 (vit.train.distributed), plus an all-reduce's bandwidth."""
    from vit.train import distributed

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    torch.distributed.init_process_group(backend)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    dist = distributed.Dist(rank=rank, world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    dev = distributed.device(dist)
    checks = {"rank0_int": distributed.rank0_int(dist, 7 if rank == 0 else -1) == 7,
              "any_rank": distributed.any_rank(dist, rank == world - 1) is True,
              "rank0_value": distributed.rank0_value(dist, {"form": "bf16/sdpa"} if rank == 0 else None)
              == {"form": "bf16/sdpa"}}
    n = (256 << 20) // 2 if dev.type == "cuda" else 1 << 16  # 256 MB of bf16 on GPUs
    t = torch.ones(n, dtype=torch.bfloat16, device=dev)
    torch.distributed.all_reduce(t)
    _sync(dev)
    t0 = time.perf_counter()
    for _ in range(5):
        torch.distributed.all_reduce(t)
    _sync(dev)
    seconds = (time.perf_counter() - t0) / 5
    checks["all_reduce_sum"] = float(t[0]) == float(world ** 6)
    if rank == 0:
        write_json(out, {"backend": torch.distributed.get_backend(), "world": world, "checks": checks,
                         "all_reduce_bytes": n * 2, "all_reduce_s": seconds,
                         "bus_gb_per_s": 2 * (world - 1) / world * n * 2 / seconds / 1e9 if world > 1 else None})
    torch.distributed.destroy_process_group()


def part_torchrun(work: Path, size: Size, dev: torch.device, ctx: dict) -> dict:
    _, arrays = gpu_data.jpeg_store(work, size.images, size.jpeg, size.img)
    procs = torch.cuda.device_count() if dev.type == "cuda" else 2
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    probe = work / "collectives.json"
    p = subprocess.run(run + ["-m", "vit.account.gpu_check", f"--collectives={probe}"], capture_output=True, text=True,
                       timeout=300)
    if p.returncode:
        raise RuntimeError(f"torchrun collectives failed (exit {p.returncode}): {p.stderr[-2000:]}")
    result = {"processes": procs, "collectives": json.loads(probe.read_text())}
    out = work / "torchrun"
    settings = {"data": str(arrays), "out": str(out), "model": "vit_b16", "model_args": {"arch": "timm", "name": size.model},
                "img_size": size.img, "batch_size": size.batch * procs, "steps": bench.WARMUP + size.steps,
                "optimizer": "adam", "lr": 1e-3, "grad_clip": 1.0, "augment": "none", "ckpt_every": 0,
                "save_checkpoint": False}
    words = [f"--{k}={v if isinstance(v, str) else cli.literal(v)}" for k, v in settings.items()]
    p = subprocess.run(run + ["-m", "vit.train", *words], capture_output=True, text=True, timeout=600)
    if p.returncode:
        raise RuntimeError(f"vit.train under torchrun failed (exit {p.returncode}): {p.stderr[-2000:]}")
    s = json.loads((out / "summary.json").read_text())
    return {**result, "train": {"processes": s["processes"], "form": s["form"], "global_batch": settings["batch_size"],
                                "img_per_s": s["timed_images"] / s["loop_time_s"], "env_device": s["env"]["device"]}}


def part_cifar(work: Path, size: Size, dev: torch.device, ctx: dict, workers: int) -> dict:
    """configs/paper-cifar.yaml's fine-tuning job, as the workflow plans it, for its first steps."""
    from vit import plan
    from vit.data import prepare, tv_sources
    from vit.train import finetune, loop

    preset = read_yaml(ROOT / "configs" / "paper-cifar.yaml")
    preset["data_root"] = str(work / "cifar_data")
    if size is TOY:  # the toy's ViT, resolution and batch; every other setting is the preset's
        preset["pretrain"]["released"]["vit_b16"]["in21k"]["weights"] = size.tag
        preset["finetune"]["resolutions"] = [size.ft_img]
        preset["finetune"]["train"].update(batch_size=size.ft_batch, device_memory_gb=0)
    p = plan.load(preset)
    gpu_data.write_cifar10(work / "cifar_data", size.cifar_train)
    task_dir = work / "cifar" / "cifar10"
    if not (task_dir / "manifest.json").exists():
        tv_sources.VERIFY_MD5 = False  # random pixels cannot match torchvision's md5s (a real preset run checks them)
        try:
            prepare.prepare(prepare.Config(name="cifar10", **p.prepare_settings("cifar10"), out=str(task_dir)))
        finally:
            tv_sources.VERIFY_MD5 = True
    ckpt = gpu_data.import_released(work, size.model, size.tag)
    job = p.finetune_job("vit_b16", "in21k", init=str(ckpt))
    full_steps = job["steps"]
    grid_keys = {f for f in finetune.Config.__dataclass_fields__}
    grid = {k: v for k, v in job.items() if k in grid_keys}
    grid.update(tasks=["cifar10"], seeds=[0], lr_grid=[], dev_fraction=0.0, data_root=str(work / "cifar"),
                out=str(work / "cifar_runs"), model="vit_b16", upstream="in21k")
    settings = {k: v for k, v in job.items() if k not in grid_keys}
    settings.update(steps=bench.WARMUP + size.cifar_steps, warmup_steps=1, lr=job["lr_grid"][0], ckpt_every=0,
                    loader_workers=workers)
    train_cfg = cli.parse(loop.Config, [f"--{k}={v if isinstance(v, str) else cli.literal(v)}" for k, v in settings.items()])
    [s] = finetune.finetune(finetune.Config(**grid), train_cfg)
    ips = s["timed_images"] / s["loop_time_s"]
    images = full_steps * settings["batch_size"]
    runs = len(p.finetune_tasks) * (len(job["lr_grid"]) + len(p.config["seeds"]))
    return {"preset": "configs/paper-cifar.yaml", "img_size": s["config"]["img_size"], "batch": settings["batch_size"],
            "accum_steps": s["accum_steps"], "micro_batch": s["micro_batch"], "form": s["form"], "img_per_s": ips,
            "steps_run": size.cifar_steps, "final_train_loss": s["final_train_loss"],
            "test_top1_after_these_steps": s["eval"]["test"]["top1"],
            "posemb_resampled": s["init"]["posemb_resampled"], "peak_gpu_mem_mb": s["peak_gpu_mem_mb"],
            "projected_hours_per_run": images / ips / 3600, "runs": runs,
            "projected_hours": runs * images / ips / 3600}


def check(cfg: Config) -> dict:
    size = TOY if cfg.toy else FULL
    dev = _device()
    if dev.type != "cuda" and not cfg.toy:
        raise cli.ConfigError("no GPU here: the check measures one (torch.cuda.is_available() is False); "
                              "--toy runs its code at toy size on the CPU")
    parts = cfg.parts or list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise cli.ConfigError(f"--parts names {unknown}: expected some of {', '.join(PARTS)}")
    workers = cfg.workers or (1 if cfg.toy else 0)
    result = {"toy": cfg.toy, "size": asdict(size), "device": torch.cuda.get_device_name(dev) if dev.type == "cuda"
              else "cpu", "gpus": torch.cuda.device_count(), "env": environment(), "parts": {}}
    ctx: dict = {}
    t_all = time.time()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(cfg.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for name in parts:
            t0 = time.time()
            print(f"gpu check: {name} ...", flush=True)
            try:
                fn = globals()[f"part_{name}"]
                args = (work, size, dev, ctx) + ((workers,) if name in ("input", "finetune", "cifar") else ())
                out = {"ok": True, **fn(*args)}
            except Exception as e:  # each part on its own: one failure must not hide the others' numbers
                out = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
            out["seconds"] = time.time() - t0
            result["parts"][name] = out
            print(f"gpu check: {name} {'ok' if out['ok'] else 'FAILED: ' + out['error']} ({out['seconds']:.0f} s)",
                  flush=True)
            write_json(cfg.out, {**result, "seconds": time.time() - t_all})  # what is measured so far survives a kill
    result["seconds"] = time.time() - t_all
    write_json(cfg.out, result)
    print(summary(result))
    return result


LINES = {  # each part's line in the printed summary
    "step": lambda s: (f"step: vit.train {s['ours_img_per_s']:.0f} img/s vs plain timm {s['plain_img_per_s']:.0f} "
                       f"({s['ratio']:.2f}x), MFU {100 * s['ours_mfu_measured_peak']:.0f} % of the measured peak"),
    "input": lambda s: (f"input: {s['img_per_s']:.0f} img/s from {s['workers']} workers"
                        + (f" = {s['input_over_step']:.2f}x the step's rate" if s["input_over_step"] else "")),
    "finetune": lambda s: (f"finetune at {s['img_size']} px: {s['img_per_s']:.0f} img/s, grid {s['grid_size']}, "
                           f"position embeddings resampled: {s['posemb_resampled']}"),
    "torchrun": lambda s: (f"torchrun: {s['processes']} process(es) over {s['collectives']['backend']}, checks "
                           f"{'passed' if all(s['collectives']['checks'].values()) else 'FAILED'}"),
    "cifar": lambda s: (f"paper-cifar: {s['img_per_s']:.0f} img/s at {s['img_size']} px (micro-batch {s['micro_batch']} "
                        f"x {s['accum_steps']}), projected {s['projected_hours']:.1f} h for its {s['runs']} runs"),
}


def summary(result: dict) -> str:
    """A line per part, which a reader looks at first."""
    lines = [f"gpu check on {result['device']} ({'toy size' if result['toy'] else 'full size'}), "
             f"{result['seconds']:.0f} s:"]
    for name in (n for n in PARTS if n in result["parts"]):
        s = result["parts"][name]
        lines.append("  " + (LINES[name](s) if s["ok"] else f"{name}: FAILED: {s['error']}"))
    return "\n".join(lines)


def main(cfg: Config) -> dict:
    if cfg.collectives:  # one of torchrun's processes (part_torchrun)
        collectives(cfg.collectives)
        return {}
    result = check(cfg)
    if not all(v["ok"] for v in result["parts"].values()):
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    cli.main_guard(main, Config)
