"""A run's resumable state: saved every `ckpt_every` steps and at a time-limit stop, restored on restart.

The state is `<out>/state-<config hash>.pt`. The learning-rate schedule is a pure function of (step,
config) and the batches of (seed, step), so the step restores both; the RNG state makes dropout and
stochastic depth continue as if uninterrupted. metrics.jsonl is cut back to the saved step. With
keep_best, the best validation so far and its weights travel with the state (`Best`).

A damaged state file is never deleted or overwritten here: resuming stops with a DataError that says
deleting it restarts the run from step 0, a choice left to the user (the steps before it are lost).
metrics.jsonl may end in a line cut short by a killed writer, which is dropped; other damage is an error.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vit.errors import DataError
from vit.logs import load_torch, read_jsonl, save_torch

STATE_KEYS = ("model", "optimizer", "step", "rng", "train_time_s", "timed_images")  # what `resume` needs


@dataclass
class Best:
    """keep_best: the periodic validation with the highest top-1 so far, and the weights it scored (the
    Polyak average, if any), copied to CPU: the accelerator keeps no second model."""
    step: int
    result: dict   # what scoring.split returned: the summary's val result if these weights are kept
    weights: dict  # state_dict, buffers included

    @staticmethod
    def of(step: int, result: dict, module: torch.nn.Module) -> Best:
        # a copy even of CPU tensors (.cpu() alone would alias the weights that training goes on changing)
        return Best(step, dict(result), {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()})

    def beaten_by(self, result: dict) -> bool:
        """Whether `result` is better; a tie keeps the earlier weights."""
        return result["top1"] > self.result["top1"]


@dataclass
class Progress:
    """Where a run stands. The first eight fields are saved with the state; the rest are this process's."""
    start: int = 0                 # the step this process began at (> 0 when resumed)
    train_time: float = 0.0        # seconds of timed training steps, summed over attempts
    timed_images: int = 0          # images in those steps
    loss_ema: float | None = None  # smoothed training loss
    loop_time: float = 0.0         # wall seconds of the same iterations with what follows each step (logging,
                                   # validation, state saves): the loop's real throughput, which `make bench` times
    eval_time: float = 0.0         # seconds of validation and few-shot probes during training
    form: dict | None = None       # the step's form (vit.train.forms), kept so that a resumed run keeps it
    best: Best | None = None       # keep_best: the best periodic validation so far
    slowest: float = 0.0           # the slowest step so far: the time limit keeps room for two more
    ckpt_time: float = 0.0         # the cost of resumability, reported in summary.json
    ckpt_saves: int = 0
    history: list = field(default_factory=list)  # compact curve for summary.json (see `history`)

    def timed(self, step: int) -> bool:
        """Whether `step` counts: the first steps of a process pay for allocation and kernel selection."""
        return step - self.start >= 2

    def count(self, step: int, seconds: float, images: int) -> None:
        self.slowest = max(self.slowest, seconds)
        if self.timed(step):
            self.train_time += seconds
            self.timed_images += images


def save(path: Path, step: int, progress: Progress, optimised: torch.nn.Module, opt: torch.optim.Optimizer,
         ema, config, chash: str, device: torch.device) -> None:
    """The state after `step` steps; `ema` is the Polyak average (timm's ModelEmaV3) or None."""
    save_torch(path, {"model": optimised.state_dict(), "optimizer": opt.state_dict(), "step": step,
                      "train_time_s": progress.train_time, "timed_images": progress.timed_images,
                      "loop_time_s": progress.loop_time, "eval_time_s": progress.eval_time, "form": progress.form,
                      "rng": torch.get_rng_state(), "loss_ema": progress.loss_ema,
                      "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                      "ema": ema.module.state_dict() if ema is not None else None,
                      "best": vars(progress.best) if progress.best is not None else None,
                      "config": dataclasses.asdict(config), "config_hash": chash})


def resume(path: Path, optimised: torch.nn.Module, opt: torch.optim.Optimizer, ema, metrics_path: Path,
           main: bool) -> Progress:
    """Restore the state at `path` into the modules, or start afresh (and drop a stale metrics.jsonl)."""
    if not path.exists():
        if main:
            metrics_path.unlink(missing_ok=True)
        return Progress()
    state = load_state(path)
    optimised.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    if ema is not None:
        ema.module.load_state_dict(state["ema"])
    step = state["step"]
    records = []
    if main and metrics_path.exists():  # keep the history up to the saved step, drop what came after it
        records = [r for r in read_metrics(metrics_path, path) if r.get("step", 0) <= step]
        metrics_path.write_text("".join(json.dumps(r, default=float) + "\n" for r in records))
    print(f"resuming {path} at step {step}")
    best = Best(**state["best"]) if main and state.get("best") is not None else None  # rank 0 alone validates
    return Progress(start=step, train_time=state["train_time_s"], timed_images=state["timed_images"],
                    loss_ema=state.get("loss_ema"), loop_time=state.get("loop_time_s", 0.0),
                    eval_time=state.get("eval_time_s", 0.0), form=state.get("form"), best=best,
                    history=history(records))


def load_state(path: Path) -> dict:
    """The state file, or a DataError that names it: a damaged state cannot be resumed, and deleting it
    (which restarts the run) is the user's call, not this function's."""
    fix = "the run cannot resume from it: delete it to restart this run from step 0"
    state = load_torch(path, fix)
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise DataError(f"{path}: not a run's resumable state (no {', '.join(missing)}); {fix}")
    return state


def read_metrics(metrics_path: Path, state_path: Path) -> list[dict]:
    """metrics.jsonl's records. MetricWriter appends one line per record, so a writer killed mid-write
    (kill -9, a lost node) leaves at most its last line cut short: that line alone is dropped (the resumed
    run logs its step again). Damage anywhere else is a DataError."""
    fix = f"delete it and {state_path.name} beside it to restart this run from step 0"
    return read_jsonl(metrics_path, fix, partial_last=True)


def history(records: list[dict]) -> list[dict]:
    """The curve logged so far (metrics.jsonl's records when resuming), in the compact form summary.json
    keeps, so that reports need no log files."""
    curve = []
    for r in records:
        if r.get("split") == "train":
            curve.append({"step": r["step"], "split": "train", "loss": r["loss_ema"]})
        elif "top1" in r:
            curve.append({"step": r["step"], "split": r["split"], "loss": r["loss"], "top1": r["top1"]})
    return curve
