"""The one training loop, for pre-training and fine-tuning alike (paper sec. 3.2, Tables 3-4).

    python -m vit.train.loop --data=results/data/shapes_l --model=vit \
        '--model_args={"arch": "vit", "patch_size": 8, "embed_dim": 128, "depth": 6, "num_heads": 4}' \
        --img_size=32 --epochs=4 --optimizer=adam --lr=1e-3 --out=results/pretrain/vit/shapes_l

Fine-tuning is the same call with `--init=<pre-training checkpoint.pt>`: the head is replaced by a
zero-initialised linear layer and, at a new resolution, the position embeddings are resampled in 2D.

A run writes into `--out`: checkpoint.pt (final weights + what is needed to load them), summary.json
(results, measured cost, provenance), metrics.jsonl (one JSON line per logged step / evaluation).
It resumes by itself from `state-<config hash>.pt`, which is saved every `ckpt_every` steps, lives
outside Snakemake's declared outputs (so a failed job's cleanup cannot delete it) and is removed once
the run has finished.
"""
from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import os
import re
import resource
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from tqdm import tqdm

from vit import cli, data, models
from vit.evaluate import fewshot
from vit.models import flops
from vit.train import optim
from vit.data import read_manifest
from vit.evaluate.collect import evaluate
from vit.logs import MetricWriter, config_hash, environment, save_torch, sha256_file, write_json


@dataclass
class Config:
    data: str = ""                  # prepared dataset directory (results/data/<name>)
    train_split: str = "train"      # "train+val" = VTAB-1k's final 1000-example training set
    val_split: str = ""             # evaluated every eval_every steps and at the end ("" = never)
    test_split: str = ""            # evaluated once, at the end ("" = never)
    out: str = ""                   # run directory
    model: str = "vit"              # short name, for the records
    model_args: dict = field(default_factory=dict)  # spec for vit.models.create
    init: str = ""                  # pre-training checkpoint to fine-tune from ("" = from scratch)
    posemb_interp: str = "bicubic"  # bicubic (timm) | bilinear_corners (original JAX code)
    img_size: int = 32
    epochs: float = 0.0             # duration: epochs, or steps if > 0
    steps: int = 0
    batch_size: int = 128           # the global batch: split over processes (torchrun) and accumulation steps
    accum_steps: int = 1            # gradient accumulation: micro-batches per optimiser step
    device_memory_gb: float = 0.0   # per-device budget: accum_steps becomes the fewest whose micro-batch fits
                                    # (vit.train.memory; 0 = accum_steps as given); batch, lr and steps do not change
    optimizer: str = "adam"         # adam (pre-training, Table 3) | sgd (fine-tuning, Table 4)
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 0
    schedule: str = "cosine"        # cosine | linear | constant | step, after linear warm-up
    decay_at: list = field(default_factory=list)  # schedule=step: fractions of the steps where lr /= 10
    mixup: float = 0.0              # MixUp alpha (BiT-HyperRule: 0.1 from 20k training examples)
    soft_targets: bool = False      # train on <train_split>_soft.npy, target distributions (Noisy Student's
                                    # soft pseudo-labels), instead of the hard labels; cross-entropy takes both
    objective: str = "classify"     # classify | mpp: masked patch prediction, self-supervised (paper sec. 4.6)
    grad_clip: float = 1.0          # global norm (0 = off)
    polyak: float = 0.0             # Polyak averaging of the weights (0.9999 for Table 2's ImageNet fine-tunes);
                                    # evaluation, few-shot probes and the checkpoint use the average
    label_smoothing: float = 0.0
    time_limit_s: float = 0.0       # the process's wall-clock budget (0 = the SLURM job's time limit, if any): the
                                    # run saves its state and exits with EXIT_RESUME before the budget runs out
    time_margin_s: float = 300.0    # ... this long before it (plus twice the slowest step): room for the state save
    augment: str = "none"           # none | crop_flip | randaugment (crop_flip + RandAugment: Noisy Student)
    seed: int = 0
    eval_every: int = 0
    log_every: int = 25
    ckpt_every: int = 200           # resumable state every N steps (0 = never)
    save_checkpoint: bool = True    # write the final weights (pre-training: yes; grid fine-tunes: optional)
    eval_batch_size: int = 500
    threads: int = 0                # torch CPU threads (0 = leave torch's default); Snakemake passes {threads}
    memory_gb: float = 8.0          # a split larger than this (resized, uint8) is streamed from disk per batch
    fewshot: list = field(default_factory=list)  # prepared datasets for a 5-shot linear probe at each eval (sec. 4.1)
    fewshot_test: int = 500         # test images per few-shot dataset (a subset keeps the probe cheap)
    tags: dict = field(default_factory=dict)  # copied into summary.json (upstream, task, ...)


# Settings that change how a run executes, not what it computes: kept out of the run's identity, so a
# resumed or re-launched run with other threads or logging still finds its state and finished results.
# accum_steps too: accumulation gives the full batch's update (tests/test_distributed.py), so a run resumed
# on other hardware with another split is the same run.
RUNTIME_KEYS = ("threads", "log_every", "eval_batch_size", "ckpt_every", "memory_gb", "time_limit_s", "time_margin_s",
                "accum_steps", "device_memory_gb")
# A run stopped for its wall-clock budget exits with this status (EX_TEMPFAIL) after saving its state:
# Snakemake counts the job as failed and, with `retries`, starts it again; the next attempt resumes.
EXIT_RESUME = 75
_STARTED = time.monotonic()  # about when the process started: the time limit counts from the job's start


def parse_slurm_time(text: str) -> float | None:
    """Seconds of a SLURM duration ("2-03:04:05", "03:04:05", "04:05", "05"); None if unlimited or unset."""
    text = text.strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        return None
    days, *rest = m.groups()
    parts = [int(x) for x in rest if x is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        parts += [0] * (3 - len(parts))
    else:  # S, M:S, H:M:S
        parts = [0] * (3 - len(parts)) + parts
    h, mi, sec = parts
    return ((int(days or 0) * 24 + h) * 60 + mi) * 60 + sec


def slurm_time_left() -> float | None:
    """Seconds left in this process's SLURM job (`squeue -o %L`), None outside SLURM, when unlimited or
    when squeue cannot answer: the SLURM time limit that a training job stops ahead of."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_slurm_time(out.stdout) if out.returncode == 0 else None


def _deadline(cfg: Config) -> float | None:
    """time.monotonic() by which the process must be done: --time_limit_s from the process's start, else
    the SLURM job's end (asked once per process), else None."""
    global _SLURM_DEADLINE
    if cfg.time_limit_s:
        return _STARTED + cfg.time_limit_s
    if _SLURM_DEADLINE is None:
        left = slurm_time_left()
        _SLURM_DEADLINE = time.monotonic() + left if left else float("inf")
    return None if _SLURM_DEADLINE == float("inf") else _SLURM_DEADLINE


_SLURM_DEADLINE: float | None = None


class TimeLimit(SystemExit):
    """The run saved its state and stopped before its wall-clock budget ran out."""

    def __init__(self, message: str):
        super().__init__(EXIT_RESUME)
        self.message = message

    def __str__(self) -> str:
        return self.message


def run_hash(cfg: Config) -> str:
    return config_hash({k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUNTIME_KEYS})


@dataclass
class Dist:
    """The processes a run spans: one, unless started by torchrun (which sets WORLD_SIZE, RANK, ...)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:  # rank 0 alone logs, evaluates and writes files
        return self.rank == 0


def _dist_init() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not torch.distributed.is_initialized():  # once per process: vit.train.finetune trains many runs in one
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(torch.distributed.destroy_process_group)
    return Dist(rank=torch.distributed.get_rank(), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def _device(dist: Dist) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(dist.local_rank)
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def _autocast(device: torch.device):
    # bf16 on CUDA only: this CPU has no bf16 units (CPU_PERF.md: 0.3 GFLOP/s)
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)


@functools.lru_cache(maxsize=8)
def _hash_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def _file_hash(path: str) -> str:
    """sha256 of a checkpoint, once per process and file version (a fine-tuning grid loads it per run)."""
    st = os.stat(path)
    return _hash_cached(os.path.realpath(path), st.st_size, st.st_mtime_ns)


def _build(cfg: Config, manifest: dict, device: torch.device):
    spec = models.transfer_spec(cfg.model_args) if cfg.init else cfg.model_args
    model = models.create(spec, manifest["num_classes"], cfg.img_size)
    init_info = {}
    if cfg.init:
        ckpt = torch.load(cfg.init, map_location="cpu", weights_only=False)
        init_info = models.load_pretrained(model, ckpt, cfg.posemb_interp)
        init_info["init"] = cfg.init
        init_info["init_sha256"] = _file_hash(cfg.init)  # provenance: which weights, not only which path
    return models.to_device(model, device), init_info


def _objective(cfg: Config, model, device):
    """The module the optimiser trains for `cfg.objective`."""
    if cfg.objective == "classify":
        return model
    if cfg.objective != "mpp":
        raise cli.ConfigError(f"--objective={cfg.objective!r}: expected classify or mpp")
    if models.grid_size(model) is None:
        raise cli.ConfigError("--objective=mpp needs a ViT (patch tokens); the model spec builds a convnet")
    if cfg.val_split or cfg.test_split or cfg.mixup:
        raise cli.ConfigError("--objective=mpp trains no classifier, so there is nothing to score on val_split / "
                              "test_split (set them to \"\"; use `fewshot` probes) and no labels to mix (mixup=0)")
    from vit.models import mpp

    for p in model.get_classifier().parameters():  # unused by MPP: frozen, so DDP and the optimiser skip it
        p.requires_grad_(False)
    return mpp.MaskedPatchPrediction(model).to(device)


def _accum_for_budget(cfg: Config, trained, device: torch.device, dist: Dist) -> int:
    """The fewest accumulation steps whose micro-batch fits cfg.device_memory_gb (vit.train.memory), measured
    on a copy of the model under the run's autocast, with the RNG state restored: the probe changes
    neither the weights, nor BatchNorm statistics, nor the random stream of the run."""
    import copy

    from vit.train import memory

    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" else None
    probe = copy.deepcopy(trained)
    forward = (lambda m, x: m(x, mpp=True)[0]) if cfg.objective == "mpp" else None
    with _autocast(device):
        per_image = memory.saved_bytes_per_image(probe, cfg.img_size, device, forward)
    del probe
    torch.set_rng_state(rng)
    if cuda_rng is not None:
        torch.cuda.set_rng_state_all(cuda_rng)
    try:
        accum = memory.accum_steps_for(cfg.batch_size, dist.world, cfg.device_memory_gb * 2**30, per_image,
                                       memory.state_bytes(trained, cfg.optimizer))
    except ValueError as e:
        raise cli.ConfigError(f"--device_memory_gb={cfg.device_memory_gb}: {e}") from None
    if dist.main:
        print(f"memory budget {cfg.device_memory_gb:g} GB per device: {per_image / 2**20:.3f} MiB saved per image ({per_image} B) "
              f"-> accum_steps={accum}, micro-batch {cfg.batch_size // (dist.world * accum)}", flush=True)
    return accum


def _out_of_time(deadline: float, margin: float, slowest: float, dist: Dist) -> bool:
    """Whether the time left is too little for two more of the slowest steps and the margin. Rank 0
    decides for all processes, so that every rank stops at the same step."""
    stop = time.monotonic() + 2 * slowest + margin >= deadline
    if dist.world > 1:
        flag = torch.tensor([float(stop)], device="cuda" if torch.cuda.is_available() else "cpu")
        torch.distributed.broadcast(flag, 0)
        stop = bool(flag.item())
    return stop


def _resume(path: Path, model, opt, ema, metrics_path: Path, main: bool) -> tuple[int, float, int, float | None]:
    if not path.exists():
        if main:
            metrics_path.unlink(missing_ok=True)
        return 0, 0.0, 0, None
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])  # dropout and stochastic depth continue as if uninterrupted
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if ema is not None:
        ema.module.load_state_dict(state["ema"])
    step = state["step"]
    if main and metrics_path.exists():  # keep the history up to the saved step, drop what came after it
        lines = [ln for ln in metrics_path.read_text().splitlines() if json.loads(ln).get("step", 0) <= step]
        metrics_path.write_text("".join(ln + "\n" for ln in lines))
    print(f"resuming {path} at step {step}")
    return step, state["train_time_s"], state["timed_images"], state.get("loss_ema")


def _history(metrics_path: Path) -> list[dict]:
    """The curve logged so far (non-empty when resuming), in the compact form summary.json keeps."""
    history = []
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            r = json.loads(line)
            if r.get("split") == "train":
                history.append({"step": r["step"], "split": "train", "loss": r["loss_ema"]})
            elif "top1" in r:
                history.append({"step": r["step"], "split": r["split"], "loss": r["loss"], "top1": r["top1"]})
    return history


def train(cfg: Config) -> dict:
    if not cfg.data or not cfg.out:
        raise cli.ConfigError("--data and --out are required")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    dist = _dist_init()
    device = _device(dist)
    micro = cfg.batch_size // (dist.world * cfg.accum_steps)
    if micro * dist.world * cfg.accum_steps != cfg.batch_size:
        raise cli.ConfigError(f"--batch_size={cfg.batch_size} must split evenly over {dist.world} process(es) "
                              f"x --accum_steps={cfg.accum_steps}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    chash = run_hash(cfg)

    # ---------------------------------------------------------------- data
    xs, ys, manifest = data.load_split(cfg.data, cfg.train_split, soft=cfg.soft_targets)
    x_train, y_train = data.images(xs, cfg.img_size, cfg.memory_gb), torch.from_numpy(ys)
    total = optim.to_steps(cfg.epochs, cfg.steps, len(x_train), cfg.batch_size)

    # ---------------------------------------------------------------- model, optimiser, resume
    model, init_info = _build(cfg, manifest, device)
    cost = flops.count(model, cfg.img_size, device)  # the backbone's; MPP's 512-way head on half the tokens aside
    # `trained` is what the optimiser updates: the model, or for masked patch prediction the model inside
    # a wrapper with a mask token and a colour head; `model` stays the plain classifier for checkpoints
    trained = _objective(cfg, model, device)
    opt = optim.make_optimizer(trained, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum, cfg.beta2)
    if cfg.device_memory_gb:
        cfg = dataclasses.replace(cfg, accum_steps=_accum_for_budget(cfg, trained, device, dist))
        micro = cfg.batch_size // (dist.world * cfg.accum_steps)
    state_path = out / f"state-{chash}.pt"
    metrics_path = out / "metrics.jsonl"
    ema = ModelEmaV3(trained, decay=cfg.polyak) if cfg.polyak else None  # timm's exponential moving average
    start, train_time, timed_images, loss_ema = _resume(state_path, trained, opt, ema, metrics_path, dist.main)
    scored = ema.module if ema is not None else trained  # what evaluation and the checkpoint see
    scored = getattr(scored, "vit", scored) if cfg.objective == "mpp" else scored
    log = MetricWriter(metrics_path) if dist.main else None
    probe_sets = _fewshot_sets(cfg) if dist.main else {}
    net = trained if dist.world == 1 else torch.nn.parallel.DistributedDataParallel(
        trained, device_ids=[dist.local_rank] if device.type == "cuda" else None)

    # ---------------------------------------------------------------- loop
    # this process's slice of each micro-batch: the same examples a single process would take
    parts = [slice((a * dist.world + dist.rank) * micro, (a * dist.world + dist.rank + 1) * micro)
             for a in range(cfg.accum_steps)]

    def fetch(step: int) -> list:
        return [data.train_batch(x_train, y_train, step, cfg.batch_size, cfg.seed, cfg.augment, part=p,
                                 mixup=cfg.mixup, num_classes=manifest["num_classes"]) for p in parts]

    ckpt_time, ckpt_saves = 0.0, 0  # the cost of resumability, reported in summary.json
    slowest = 0.0  # the slowest step so far: the time limit keeps room for two more
    deadline = _deadline(cfg)

    def save_state(steps_done: int) -> None:
        # the schedule is a pure function of (step, config) and batches of (seed, step): step restores both
        save_torch(state_path, {"model": trained.state_dict(), "optimizer": opt.state_dict(), "step": steps_done,
                                "train_time_s": train_time, "timed_images": timed_images,
                                "rng": torch.get_rng_state(), "loss_ema": loss_ema,
                                "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                                "ema": ema.module.state_dict() if ema is not None else None,
                                "config": dataclasses.asdict(cfg), "config_hash": chash})
    streamed = isinstance(x_train, data.Streamed)
    prefetch = concurrent.futures.ThreadPoolExecutor(1) if streamed else None
    next_batches = None
    trained.train()
    convnet = models.is_convnet(model)
    history = _history(metrics_path)  # compact curve for summary.json, so reports need no log files
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"{cfg.model} {Path(cfg.data).name}",
               mininterval=2.0, unit="step", dynamic_ncols=True, disable=not dist.main)
    for step in bar:
        # checked before a step, once the previous one is fully done (logged, evaluated): the saved state
        # is then exactly what a checkpoint at this step holds
        if deadline is not None and step > start and _out_of_time(deadline, cfg.time_margin_s, slowest, dist):
            if dist.main:
                save_state(step)
                log.close()
            bar.close()
            if prefetch is not None:
                prefetch.shutdown()
            if dist.world > 1:
                torch.distributed.barrier()
            raise TimeLimit(f"{cfg.out}: stopped before step {step + 1}/{total}, "
                            f"{deadline - time.monotonic():.0f} s before the time limit; the state "
                            f"is saved and the next attempt resumes (exit status {EXIT_RESUME})")
        lr = optim.lr_at(step, total, cfg.lr, cfg.warmup_steps, cfg.schedule, cfg.decay_at)
        for group in opt.param_groups:
            group["lr"] = lr
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_value = 0.0
        batches = next_batches.result() if next_batches is not None else fetch(step)
        if prefetch is not None and step + 1 < total:  # read the next step from disk while this one trains
            next_batches = prefetch.submit(fetch, step + 1)
        for a, (xb, yb) in enumerate(batches):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if convnet:
                xb = xb.contiguous(memory_format=torch.channels_last)
            last = a == cfg.accum_steps - 1
            with contextlib.nullcontext() if last or dist.world == 1 else net.no_sync():  # all-reduce once
                with _autocast(device):
                    if cfg.objective == "mpp":  # through forward, so that DDP synchronises the gradients
                        loss = net(xb, mpp=True)[0] / cfg.accum_steps
                    else:
                        loss = F.cross_entropy(net(xb), yb, label_smoothing=cfg.label_smoothing) / cfg.accum_steps
                loss.backward()
            loss_value += loss.item()  # synchronises on CUDA
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(trained.parameters(), cfg.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(trained)
        dt = time.perf_counter() - t0
        slowest = max(slowest, dt)
        if step - start >= 2:  # the first steps of a process pay for allocation and kernel selection
            train_time += dt
            timed_images += cfg.batch_size
        if not dist.main:
            continue
        loss_ema = loss_value if loss_ema is None else 0.9 * loss_ema + 0.1 * loss_value
        if (step + 1) % cfg.log_every == 0 or step + 1 == total:
            ips = timed_images / train_time if train_time else 0.0
            log.write(step=step + 1, split="train", loss=loss_value, loss_ema=loss_ema, lr=lr, img_per_s=ips)
            history.append({"step": step + 1, "split": "train", "loss": loss_ema})
            bar.set_postfix(loss=f"{loss_ema:.3f}", img_s=f"{ips:.0f}")
        if cfg.val_split and cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < total:
            result = _eval(scored, cfg, cfg.val_split, device)
            log.write(step=step + 1, split=cfg.val_split, **result)
            if probe_sets:
                log.write(step=step + 1, split="fewshot", **fewshot.fewshot_summary(scored, probe_sets, cfg.img_size,
                                                                                    device=device))
            history.append({"step": step + 1, "split": cfg.val_split, "loss": result["loss"], "top1": result["top1"]})
            trained.train()
        if cfg.ckpt_every and (step + 1) % cfg.ckpt_every == 0 and step + 1 < total:
            t_save = time.perf_counter()
            save_state(step + 1)
            ckpt_time += time.perf_counter() - t_save
            ckpt_saves += 1
    bar.close()
    if prefetch is not None:
        prefetch.shutdown()
    if not dist.main:  # the other processes are done once the weights are; rank 0 evaluates and writes
        torch.distributed.barrier()
        return {}

    # ---------------------------------------------------------------- final evaluation and records
    results = {}
    for split in dict.fromkeys(s for s in (cfg.val_split, cfg.test_split) if s):
        results[split] = _eval(scored, cfg, split, device)
        log.write(step=total, split=split, **results[split])
    if probe_sets:
        results["fewshot"] = fewshot.fewshot_summary(scored, probe_sets, cfg.img_size, device=device)
        log.write(step=total, split="fewshot", **results["fewshot"])
    log.close()
    summary = {
        "config": dataclasses.asdict(cfg), "config_hash": chash, "dataset": manifest["name"],
        "dataset_files": manifest["files"], "num_classes": manifest["num_classes"],
        "steps": total, "images_seen": total * cfg.batch_size, "train_examples": len(x_train),
        "train_time_s": train_time, "timed_images": timed_images,
        "img_per_s": timed_images / train_time if train_time else None,
        "final_train_loss": loss_ema, "params": models.num_params(model),
        "params_backbone": models.num_params(model, exclude_head=True), **cost,
        "grid_size": models.grid_size(model), "init": init_info, "eval": results, "history": history,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "processes": dist.world, "accum_steps": cfg.accum_steps, "micro_batch": micro,
        "checkpoint_time_s": ckpt_time, "checkpoints_saved": ckpt_saves,
        "precision": "bf16 autocast, fp32 weights" if device.type == "cuda" else "fp32",
        "env": environment(), **cfg.tags,
    }
    if cfg.save_checkpoint:
        save_torch(out / "checkpoint.pt", models.checkpoint(scored, cfg.model_args, manifest["num_classes"],
                                                            cfg.img_size, dataclasses.asdict(cfg)))
    write_json(out / "summary.json", summary)
    state_path.unlink(missing_ok=True)
    if dist.world > 1:
        torch.distributed.barrier()
    return summary


def _fewshot_sets(cfg: Config) -> dict:
    """Few-shot datasets loaded once, at the training resolution: shots from train(+val), a test subset."""
    sets = {}
    for path in cfg.fewshot:
        xs, ys, m = data.load_split(path, "+".join(s for s in ("train", "val") if s in read_manifest(path)["splits"]))
        xt, yt, _ = data.load_split(path, "test")
        xt, yt = xt[:cfg.fewshot_test], yt[:cfg.fewshot_test]
        sets[m["name"]] = (data.to_tensor(xs, cfg.img_size), torch.from_numpy(ys), data.to_tensor(xt, cfg.img_size),
                           torch.from_numpy(yt))
    return sets


def _eval(model, cfg: Config, split: str, device) -> dict:
    xs, ys, manifest = data.load_split(cfg.data, split)
    names = None
    if manifest["source"] == "imagenet" and f"{split}_names.txt" in manifest["files"]:  # ImageNet val: ReaL too
        data.verify(cfg.data, [f"{split}_names.txt"], manifest)
        names = (Path(cfg.data) / f"{split}_names.txt").read_text().split()
    return evaluate(model, data.images(xs, cfg.img_size, cfg.memory_gb), torch.from_numpy(ys), cfg.eval_batch_size, device,
                    real_names=names)


if __name__ == "__main__":
    cli.main_guard(train, Config)
