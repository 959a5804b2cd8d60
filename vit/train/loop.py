r"""The one training loop, for pre-training and fine-tuning alike (paper sec. 3.2, Tables 3-4).

    python -m vit.train --data=results/data/shapes_l --model=vit \
        '--model_args={"arch": "vit", "patch_size": 8, "embed_dim": 128, "depth": 6, "num_heads": 4}' \
        --img_size=32 --epochs=4 --optimizer=adam --lr=1e-3 --out=results/pretrain/vit/shapes_l

Fine-tuning is the same call with `--init=<pre-training checkpoint.pt>`: the head is replaced by a
zero-initialised linear layer and, at a new resolution, the position embeddings are resampled in 2D.

A run writes into `--out`: checkpoint.pt (final weights + what is needed to load them), summary.json
(results, measured cost, provenance), metrics.jsonl (one JSON line per logged step / evaluation).
It resumes by itself from `state-<config hash>.pt` (vit.train.state), which is saved every `ckpt_every`
steps, lives outside Snakemake's declared outputs (so a failed job's cleanup cannot delete it) and is
removed once the run has finished. Before the process's wall-clock budget runs out, and when SIGTERM,
SIGINT or SIGUSR1 arrives, it saves the state at the next step boundary and exits with EXIT_RESUME; a
loss or gradient norm that is not finite stops it with EXIT_DIVERGED and no summary (vit.stops).

With `--keep_best` (a run that may overfit: a small upstream set seen for many epochs), checkpoint.pt,
the val result and the test and few-shot scores are those of the best validation's weights where an
earlier validation beat the final one; summary.json records both ("best", "last") and which it "kept".
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from tqdm import tqdm

from vit import cli, data, models
from vit.errors import ConfigError
from vit.logs import MetricWriter, write_json
from vit.models import flops
from vit.train import batches, distributed, finish, forms, guard, nets, optim, scoring, state
from vit.train.config import RUNTIME_KEYS, Config, run_hash
from vit.train.deadline import Deadline, parse_slurm_time, slurm_time_left
from vit.train.distributed import Dist
from vit.stops import EXIT_DIVERGED, EXIT_RESUME, Diverged, Resumable, Signals, Stop

# Config, run_hash, RUNTIME_KEYS, the stops and their exit statuses are the stage's interface
# (vit.train.finetune, vit.account.cost, vit.report.departures), kept importable from here.
__all__ = ("Config", "RUNTIME_KEYS", "run_hash", "Stop", "Resumable", "Diverged", "EXIT_RESUME", "EXIT_DIVERGED",
           "parse_slurm_time", "slurm_time_left", "Process", "train", "main")


@dataclass
class Process:
    """What one Python process carries across the runs it trains (vit.train.finetune trains a grid in
    one): its wall-clock budget, the stop signals received and the hashes of the checkpoints read so far.
    The stage's entry point makes one first thing, since the budget counts from the process's start, and
    installs its signal handlers."""
    deadline: Deadline = field(default_factory=Deadline)
    signals: Signals = field(default_factory=Signals)
    file_hashes: dict = field(default_factory=dict)


@dataclass
class Run:
    """A started run's fixed facts."""
    cfg: Config
    dist: Dist
    device: torch.device
    out: Path
    chash: str

    @property
    def micro(self) -> int:  # images per process and accumulation step
        return self.cfg.batch_size // (self.dist.world * self.cfg.accum_steps)

    @property
    def state_path(self) -> Path:
        return self.out / f"state-{self.chash}.pt"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def diverged_path(self) -> Path:  # written when these settings diverged: retries stop at once
        return self.out / f"diverged-{self.chash}.json"


@dataclass
class TrainSet:
    x: torch.Tensor | data.Streamed  # images, resized to the training resolution
    y: torch.Tensor                  # labels, or target distributions (soft_targets)
    manifest: dict
    steps: int                       # the run's length, from epochs or steps


@dataclass
class Job:
    """What the steps of a run read and update."""
    run: Run
    nets: nets.Nets
    opt: torch.optim.Optimizer
    progress: state.Progress
    log: MetricWriter | None  # metrics.jsonl, rank 0 only
    probe_sets: dict          # few-shot datasets, rank 0 only
    steps: int
    form: forms.Form = forms.Form("fp32", "")  # precision and attention form of the steps (vit.train.forms)
    setup_time: float = 0.0   # this process's seconds before the first step: data, model, FLOPs, resume, form
    last_loss: float | None = None  # the last finite training loss, for a divergence's message


def train(cfg: Config, process: Process | None = None) -> dict:
    """Train one run (see the module doc); rank 0 returns its summary, the other ranks {}. `process` is
    the caller's process-wide budget and hash cache; without one the time limit counts from this call."""
    process = process or Process()
    t0 = time.perf_counter()
    run = _start(cfg)
    guard.refuse_diverged(run.out, run.diverged_path)
    trainset = _data(run.cfg)
    model, init_info, cost = _model(run, trainset.manifest, process.file_hashes)
    job = _resume(run, model, trainset)
    _choose_form(job)
    job.setup_time = time.perf_counter() - t0
    _loop(job, trainset, process.deadline.at(job.run.cfg.time_limit_s), process.signals)
    if not run.dist.main:  # the other processes are done once the weights are; rank 0 evaluates and writes
        distributed.barrier(run.dist)
        return {}
    return finish.records(job, trainset, init_info, cost)


def _start(cfg: Config) -> Run:
    if not cfg.data or not cfg.out:
        raise ConfigError("--data and --out are required")
    if cfg.keep_best and not (cfg.val_split and cfg.eval_every > 0):
        raise ConfigError(f"--keep_best chooses the weights by validation: it needs --val_split and --eval_every > 0 "
                          f"(got val_split={cfg.val_split!r}, eval_every={cfg.eval_every})")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    dist = distributed.init()
    run = Run(cfg, dist, distributed.device(dist), Path(cfg.out), run_hash(cfg))
    if run.micro * dist.world * cfg.accum_steps != cfg.batch_size:
        raise ConfigError(f"--batch_size={cfg.batch_size} must split evenly over {dist.world} process(es) "
                          f"x --accum_steps={cfg.accum_steps}")
    run.out.mkdir(parents=True, exist_ok=True)
    return run


def _data(cfg: Config) -> TrainSet:
    xs, ys, manifest = data.load_split(cfg.data, cfg.train_split, soft=cfg.soft_targets)
    # an inception or BiT crop zooms into the stored image: keep its full resolution (it is resized per batch);
    # the sharded store keeps the originals anyway
    keep = xs.shape[1] if cfg.augment in data.ZOOMS and not hasattr(xs, "originals") else cfg.img_size
    x = data.images(xs, keep, cfg.memory_gb)
    return TrainSet(x, torch.from_numpy(ys), manifest, optim.to_steps(cfg.epochs, cfg.steps, len(x), cfg.batch_size))


def _model(run: Run, manifest: dict, file_hashes: dict) -> tuple[torch.nn.Module, dict, dict]:
    """The classifier, how it was initialised, and its FLOPs (the backbone's: MPP's 512-way head on half
    the tokens aside)."""
    model, init_info = nets.classifier(run.cfg, manifest["num_classes"], run.device, file_hashes)
    return model, init_info, flops.count(model, run.cfg.img_size, run.device)


def _resume(run: Run, model: torch.nn.Module, trainset: TrainSet) -> Job:
    """The objective and optimiser around the classifier, restored to the saved state if there is one."""
    cfg = run.cfg
    optimised = nets.for_objective(cfg, model, run.device)
    opt = optim.make_optimizer(optimised, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum, cfg.beta2)
    if cfg.device_memory_gb:
        cfg = dataclasses.replace(cfg, accum_steps=nets.accum_for_budget(cfg, optimised, run.device, run.dist))
        run = dataclasses.replace(run, cfg=cfg)
    ema = ModelEmaV3(optimised, decay=cfg.polyak) if cfg.polyak else None  # timm's exponential moving average
    progress = state.resume(run.state_path, optimised, opt, ema, run.metrics_path, run.dist.main)
    roles = nets.roles(cfg, model, optimised, ema, run.dist, run.device)
    log = MetricWriter(run.metrics_path) if run.dist.main else None
    probe_sets = scoring.fewshot_sets(cfg) if run.dist.main else {}
    return Job(run, roles, opt, progress, log, probe_sets, trainset.steps)


def _choose_form(job: Job) -> None:
    """The step's precision and attention form: the resumed run's, or this device's (vit.train.forms;
    rank 0's on every rank)."""
    run, cfg = job.run, job.run.cfg
    if job.progress.form is not None:
        job.form = forms.Form(**job.progress.form)
    else:
        form = forms.choose(job.nets.optimised, run.device, cfg.precision, cfg.attention)
        job.form = distributed.rank0_value(run.dist, form)
        job.progress.form = dataclasses.asdict(job.form)
    for module in {id(m): m for m in (job.nets.optimised, job.nets.scored)}.values():
        forms.apply(module, job.form)
    if run.dist.main:
        print(f"step form: {job.form}", flush=True)


def _loop(job: Job, trainset: TrainSet, deadline: float | None, signals: Signals) -> None:
    run, progress, cfg = job.run, job.progress, job.run.cfg
    feed = batches.Feed(trainset.x, trainset.y, cfg, trainset.manifest["num_classes"],
                        batches.slices(run.micro, cfg.accum_steps, run.dist), job.steps, cfg.loader_workers,
                        uint8=run.device.type == "cuda")
    job.nets.optimised.train()
    convnet = models.is_convnet(job.nets.classifier)
    bar = tqdm(range(progress.start, job.steps), initial=progress.start, total=job.steps, mininterval=2.0,
               desc=f"{cfg.model} {Path(cfg.data).name}", unit="step", dynamic_ncols=True, disable=not run.dist.main)
    try:
        for step in bar:
            # checked before a step, once the previous one is fully done (logged, evaluated): the saved state
            # is then exactly what a checkpoint at this step holds; rank 0 decides, so all ranks stop together
            why = guard.stop_code(signals, deadline, cfg.time_margin_s, progress.slowest, step > progress.start)
            why = distributed.rank0_int(run.dist, why)
            if why:
                _stop(job, step, deadline, why)
            t_iter = time.perf_counter()
            lr = optim.lr_at(step, job.steps, cfg.lr, cfg.warmup_steps, cfg.schedule, cfg.decay_at)
            loss, seconds = _step(job, feed, step, lr, convnet)
            progress.count(step, seconds, cfg.batch_size)
            if run.dist.main:
                _after_step(job, step + 1, lr, loss, bar)
            if progress.timed(step):
                progress.loop_time += time.perf_counter() - t_iter
    finally:
        bar.close()
        feed.close()


def _stop(job: Job, step: int, deadline: float | None, why: int) -> None:
    if job.run.dist.main:
        _save(job, step)
        job.log.close()
    distributed.barrier(job.run.dist)
    raise guard.resumable(job.run.cfg.out, step, job.steps, why, deadline)


def _step(job: Job, feed: batches.Feed, step: int, lr: float, convnet: bool) -> tuple[float, float]:
    """One optimiser step: (its training loss, its seconds, reading the batches included)."""
    run, cfg, opt = job.run, job.run.cfg, job.opt
    for group in opt.param_groups:
        group["lr"] = lr
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss = 0.0
    micro_batches = feed.get(step)
    for a, (xb, yb) in enumerate(micro_batches):
        xb, yb = xb.to(run.device, non_blocking=True), yb.to(run.device, non_blocking=True)
        if xb.dtype == torch.uint8:  # from DataLoader workers: normalised here, on the device (batches.Feed)
            xb = data.normalize(xb)
        if convnet:
            xb = xb.contiguous(memory_format=torch.channels_last)
        last = a == len(micro_batches) - 1
        with contextlib.nullcontext() if last or run.dist.world == 1 else job.nets.forward.no_sync():  # all-reduce once
            with forms.autocast(run.device, job.form):
                part = _loss(cfg, job.nets.forward, xb, yb) / cfg.accum_steps
            part.backward()
        loss += part.item()  # synchronises on CUDA
    grad_norm = None
    if cfg.grad_clip > 0:  # the norm is there for free: check it too (a NaN gradient can follow a finite loss)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(job.nets.optimised.parameters(), cfg.grad_clip))
    # before the update, so the weights stay those of the last finite step; every rank takes part, so
    # all of them stop at this step together (a rank's own loss may be finite while another's is not)
    finite = math.isfinite(loss) and (grad_norm is None or math.isfinite(grad_norm))
    if distributed.any_rank(run.dist, not finite):
        _diverged(job, step, lr, loss, grad_norm)
    opt.step()
    if job.nets.ema is not None:
        job.nets.ema.update(job.nets.optimised)
    job.last_loss = loss
    return loss, time.perf_counter() - t0


def _diverged(job: Job, step: int, lr: float, loss: float, grad_norm: float | None) -> None:
    """Stop a run whose loss or gradient is not finite: rank 0 logs it and leaves the marker that stops
    retries; no summary or checkpoint; the last saved state stays (vit.stops)."""
    run = job.run
    record = guard.divergence(step, job.steps, lr, loss, grad_norm, job.last_loss, run.chash)
    if run.dist.main:
        job.log.write(split="diverged", **record)
        job.log.close()
        write_json(run.diverged_path, record)
    raise guard.diverged(run.cfg.out, record, run.state_path, run.diverged_path)


def _loss(cfg: Config, module: torch.nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    if cfg.objective == "mpp":  # through forward, so that DDP synchronises the gradients
        return module(xb, mpp=True)[0]
    return F.cross_entropy(module(xb), yb, label_smoothing=cfg.label_smoothing)


def _after_step(job: Job, done: int, lr: float, loss: float, bar) -> None:
    """Rank 0's records after `done` steps: the log line, a validation and probe, the resumable state."""
    cfg, progress = job.run.cfg, job.progress
    progress.loss_ema = loss if progress.loss_ema is None else 0.9 * progress.loss_ema + 0.1 * loss
    if done % cfg.log_every == 0 or done == job.steps:
        ips = progress.timed_images / progress.train_time if progress.train_time else 0.0
        job.log.write(step=done, split="train", loss=loss, loss_ema=progress.loss_ema, lr=lr, img_per_s=ips)
        progress.history.append({"step": done, "split": "train", "loss": progress.loss_ema})
        bar.set_postfix(loss=f"{progress.loss_ema:.3f}", img_s=f"{ips:.0f}")
    if cfg.val_split and cfg.eval_every and done % cfg.eval_every == 0 and done < job.steps:
        _validate(job, done)
    if cfg.ckpt_every and done % cfg.ckpt_every == 0 and done < job.steps:
        t_save = time.perf_counter()
        _save(job, done)
        progress.ckpt_time += time.perf_counter() - t_save
        progress.ckpt_saves += 1


def _validate(job: Job, done: int) -> None:
    run, scored, t0 = job.run, job.nets.scored, time.perf_counter()
    with forms.autocast(run.device, job.form):  # scored in the precision it trains in
        result = scoring.split(scored, run.cfg, run.cfg.val_split, run.device)
        probes = scoring.probes(scored, job.probe_sets, run.cfg, run.device) if job.probe_sets else None
    job.log.write(step=done, split=run.cfg.val_split, **result)
    if probes is not None:
        job.log.write(step=done, split="fewshot", **probes)
    job.progress.history.append({"step": done, "split": run.cfg.val_split, "loss": result["loss"],
                                 "top1": result["top1"]})
    best = job.progress.best
    if run.cfg.keep_best and (best is None or best.beaten_by(result)):
        job.progress.best = state.Best.of(done, result, scored)
    job.nets.optimised.train()
    job.progress.eval_time += time.perf_counter() - t0


def _save(job: Job, done: int) -> None:
    run = job.run
    state.save(run.state_path, done, job.progress, job.nets.optimised, job.opt, job.nets.ema, run.cfg, run.chash,
               run.device)


def main() -> None:
    process = Process()  # first: the time limit counts from the process's start
    process.signals.install()
    cli.main_guard(lambda cfg: train(cfg, process), Config)


if __name__ == "__main__":
    main()
